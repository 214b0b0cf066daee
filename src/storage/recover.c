/* Reading the log back at start-up: segments in sequence order, records
 * replayed into the stored log and hard state, a torn tail cut off with a
 * WARN (only where the torn tail rule of record.c allows), any other damage
 * refused with CRAFT_ECORRUPT and an ERROR line saying what to do. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/endian.h"
#include "common/error.h"
#include "storage/internal.h"

/* Replay state across all segments. */
struct replay {
    struct stor *s;
    struct stor__recovered *rec;
    const char *file;   /* segment being read, for messages */
    uint64_t file_off;  /* offset of the record being applied */
    bool started;       /* an entries or reset record was seen */
    uint64_t base;      /* last reset index (log restarts at base + 1) */
    uint64_t seg_max;   /* highest index written in the current segment */
    bool have_prev;     /* segment seq - 1 was read ... */
    uint64_t prev_size; /* ... and is this long */
};

int stor__refuse(struct stor *s, const char *file, uint64_t off,
                 const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (file)
        CRAFT_ERROR(s->log, "storage: data directory %s: file %s, offset %"
                    PRIu64 ": %s. Refusing to start: this is not a torn "
                    "write, acknowledged data is damaged or missing. To "
                    "repair, " STOR__REPAIR, s->dir, file, off, what);
    else
        CRAFT_ERROR(s->log, "storage: data directory %s: %s. Refusing to "
                    "start: this is not a torn write, acknowledged data is "
                    "damaged or missing. To repair, " STOR__REPAIR, s->dir,
                    what);
    return CRAFT_ECORRUPT;
}

static int corrupt(struct replay *rp, uint64_t off, const char *why)
{
    return stor__refuse(rp->s, rp->file, off, "%s", why);
}

static int ents_reserve(struct stor *s, size_t n)
{
    if (n <= s->cap_ents)
        return 0;
    size_t cap = s->cap_ents ? s->cap_ents : 256;
    while (cap < n)
        cap *= 2;
    struct raft_entry *p = craft_realloc(s->ents, cap * sizeof *p);
    if (p == NULL)
        return CRAFT_ENOMEM;
    s->ents = p;
    s->cap_ents = cap;
    return 0;
}

/* Walk an entries record; with out != NULL store the entries there. */
static bool ents_parse(const uint8_t *p, uint32_t len, struct raft_entry *out)
{
    uint64_t first = craft_get64(p);
    uint32_t count = craft_get32(p + 8);
    size_t off = STOR__ENTS_HDR;
    for (uint32_t i = 0; i < count; i++) {
        if (len - off < STOR__ENT_HDR)
            return false;
        const uint8_t *e = p + off;
        uint32_t elen = craft_get32(e + 8);
        if (e[13] || e[14] || e[15] || elen > len - off - STOR__ENT_HDR)
            return false;
        if (out)
            out[i] = (struct raft_entry){.term = craft_get64(e),
                                         .index = first + i,
                                         .type = e[12],
                                         .len = elen,
                                         .data = e + STOR__ENT_HDR};
        off += STOR__ENT_HDR + elen;
    }
    return off == len;
}

static int apply_entries(struct replay *rp, const struct stor__rec *r,
                         uint64_t off)
{
    struct stor *s = rp->s;
    if (r->len < STOR__ENTS_HDR)
        return corrupt(rp, off, "malformed entries record");
    uint64_t first = craft_get64(r->payload);
    uint32_t count = craft_get32(r->payload + 8);
    if (first == 0 || count == 0 || craft_get32(r->payload + 12) != 0 ||
        first + count < first || !ents_parse(r->payload, r->len, NULL))
        return corrupt(rp, off, "malformed entries record");
    if (rp->started) {
        uint64_t last = s->n_ents ? s->ents[s->n_ents - 1].index : rp->base;
        if (first > last + 1) {
            char why[128];
            snprintf(why, sizeof why, "entries start at %" PRIu64 " but the "
                     "log ends at %" PRIu64 " (gap)", first, last);
            return corrupt(rp, off, why);
        }
    }
    /* Truncate after first - 1, then append. */
    if (s->n_ents && first >= s->ents[0].index)
        s->n_ents = first - s->ents[0].index;
    else
        s->n_ents = 0;
    int err = ents_reserve(s, s->n_ents + count);
    if (err)
        return err;
    ents_parse(r->payload, r->len, s->ents + s->n_ents);
    s->n_ents += count;
    rp->started = true;
    if (first + count - 1 > rp->seg_max)
        rp->seg_max = first + count - 1;
    return 0;
}

/* A log reset to a snapshot ending at (index, term) keeps the entries after
 * it when the log holds that very entry (Raft's rule for installing a
 * snapshot): they were durable and maybe acknowledged, and the entries
 * written after the reset in the same batch may not have reached the disk. */
static void keep_after_reset(struct stor *s, uint64_t index, uint64_t term)
{
    size_t keep = 0;
    if (s->n_ents > 0 && index >= s->ents[0].index &&
        index < s->ents[s->n_ents - 1].index &&
        s->ents[index - s->ents[0].index].term == term)
        keep = (size_t)(s->ents[s->n_ents - 1].index - index);
    if (keep > 0)
        memmove(s->ents, s->ents + (s->n_ents - keep), keep * sizeof *s->ents);
    s->n_ents = keep;
}

static int apply(struct replay *rp, const struct stor__rec *r, uint64_t off)
{
    const uint8_t *p = r->payload;
    switch (r->type) {
    case STOR__REC_ENTRIES:
        return apply_entries(rp, r, off);
    case STOR__REC_HS:
        if (r->len != 24)
            return corrupt(rp, off, "malformed hard state record");
        rp->s->hs = (struct raft_hard_state){craft_get64(p),
                                             craft_get64(p + 8),
                                             craft_get64(p + 16)};
        rp->s->have_hs = true;
        snprintf(rp->rec->hs_file, sizeof rp->rec->hs_file, "%s", rp->file);
        rp->rec->hs_off = off;
        return 0;
    case STOR__REC_OPEN:
        return corrupt(rp, off, "an OPEN record that is not the first record "
                       "of its segment");
    default: /* STOR__REC_RESET: stor__rec_check admits no other type */
        if (r->len != 16)
            return corrupt(rp, off, "malformed log reset record");
        keep_after_reset(rp->s, craft_get64(p), craft_get64(p + 8));
        rp->base = craft_get64(p);
        rp->started = true;
        if (rp->base > rp->seg_max)
            rp->seg_max = rp->base;
        return 0;
    }
}

/* The first offset after from where a valid record starts, or 0. */
static size_t valid_after(const uint8_t *buf, size_t size, size_t from,
                          uint64_t salt)
{
    struct stor__rec r;
    for (size_t o = from; o + STOR__REC_HDR <= size; o++)
        if (stor__rec_check(buf + o, size - o, salt, &r, NULL) == NULL)
            return o;
    return 0;
}

/* The end of the segment being written is allocated ahead of its records
 * (STOR__PREALLOC): zeros, if nothing was being written there. Cut like a
 * torn tail, but not one: no WARN after every kill -9. */
static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

/* Cut the last segment at off (the end of its last valid record). */
static int cut_tail(struct stor *s, const char *name, size_t off)
{
    errno = 0;
    int fd = s->sys.openat(s->dirfd, name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0)
        return stor__err(errno);
    int err = 0;
    errno = 0;
    if (s->sys.ftruncate(fd, (off_t)off) != 0)
        err = stor__err(errno);
    /* fdatasync: the cut is durable before new records are appended at
     * off, so torn bytes can never reappear behind them. */
    if (err == 0)
        err = stor__sync(s, fd, name);
    stor__close_fd(s, &fd);
    return err;
}

/* Read a whole file; the buffer joins s->bufs (freed with the entries). */
static int read_file(struct stor *s, const char *name, uint8_t **buf,
                     size_t *size)
{
    errno = 0;
    int fd = s->sys.openat(s->dirfd, name, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return stor__err(errno);
    uint64_t sz = 0;
    int err = stor__file_size(s, fd, &sz);
    uint8_t **bufs = err ? NULL : craft_realloc(s->bufs, (s->n_bufs + 1) *
                                                            sizeof *bufs);
    if (err == 0 && bufs == NULL)
        err = CRAFT_ENOMEM;
    if (err == 0) {
        s->bufs = bufs;
        *buf = craft_malloc((size_t)sz);
        err = *buf ? stor__pread_all(s, fd, *buf, (size_t)sz, 0)
                   : CRAFT_ENOMEM;
        if (*buf)
            s->bufs[s->n_bufs++] = *buf;
    }
    stor__close_fd(s, &fd);
    *size = (size_t)sz;
    return err;
}

/* The last segment's creation write was torn (creation rule, record.c):
 * remove the file, unless the state file names it or a later segment (then
 * its creation had been synced, and this is damage). */
static int drop_torn_creation(struct replay *rp, const struct stor__seg *g,
                              size_t size, const char *why)
{
    struct stor *s = rp->s;
    if (s->st_present && s->st.seg_seq >= g->seq)
        return stor__refuse(s, rp->file, 0, "%s, but the state file says "
                            "segment %" PRIu64 " was durable up to offset %"
                            PRIu64 ": its creation had been synced", why,
                            s->st.seg_seq, s->st.seg_off);
    CRAFT_WARN(s->log, "storage: %s/%s: %s in a file of %zu bytes (no longer "
               "than its creation write of %d): a crash while the segment "
               "was being created, nothing in it was acknowledged; removing "
               "it", s->dir, rp->file, why, size, STOR__SEG_CREATE);
    rp->rec->next_seq = g->seq;
    int err = stor__unlink(s, rp->file);
    /* Directory fsync: the removal is durable before a new segment of the
     * same seq (under another name) is created, so two never coexist. */
    return err ? err : stor__sync_dir(s, rp->file);
}

/* The first invalid record of the last segment, at off: a torn tail (cut
 * it) or damage (refuse), by the torn tail rule of record.c. */
static int torn_tail(struct replay *rp, const struct stor__seg *g,
                     const uint8_t *buf, size_t size, size_t off,
                     uint64_t salt, const char *why, uint64_t claimed)
{
    struct stor *s = rp->s;
    size_t next = valid_after(buf, size, off + 1, salt);
    if (next)
        return stor__refuse(s, rp->file, off, "%s, followed by a valid record "
                            "at offset %zu", why, next);
    uint64_t bound = claimed > STOR__WRITE_MAX ? claimed : STOR__WRITE_MAX;
    if (size - off > bound)
        return stor__refuse(s, rp->file, off, "%s, and %zu invalid bytes from "
                            "there to the end of the file: more than one "
                            "write step (%" PRIu64 " bytes), so not the torn "
                            "end of the last one", why, size - off, bound);
    if (s->st_present && s->st.seg_seq == g->seq && off < s->st.seg_off)
        return stor__refuse(s, rp->file, off, "%s, but the state file says "
                            "this segment was durable up to offset %" PRIu64,
                            why, s->st.seg_off);
    if (size - off <= STOR__PREALLOC && all_zero(buf + off, size - off))
        CRAFT_INFO(s->log, "storage: %s/%s: cutting %zu bytes of "
                   "preallocated space at offset %zu", s->dir, rp->file,
                   size - off, off);
    else
        CRAFT_WARN(s->log, "storage: %s/%s: torn tail: cutting %zu bytes at "
                   "offset %zu (%s); records before it are intact", s->dir,
                   rp->file, size - off, off, why);
    return cut_tail(s, rp->file, off);
}

/* The OPEN record of a version 2 segment, at offset STOR__SEG_HDR. 1 if
 * the segment is to be dropped as torn at creation. */
static int check_open(struct replay *rp, const struct stor__seg *g,
                      const uint8_t *buf, size_t size, uint64_t salt,
                      bool is_last)
{
    struct stor__rec r;
    const char *why = stor__rec_check(buf + STOR__SEG_HDR,
                                      size - STOR__SEG_HDR, salt, &r, NULL);
    if (why == NULL && (r.type != STOR__REC_OPEN || r.len != STOR__OPEN_LEN))
        why = "the first record is not an OPEN record";
    if (why && is_last && size <= STOR__SEG_CREATE) {
        int err = drop_torn_creation(rp, g, size, why);
        return err ? err : 1;
    }
    if (why)
        return corrupt(rp, STOR__SEG_HDR, why);
    struct stor__open o;
    stor__open_decode(r.payload, &o);
    if (rp->have_prev && o.prev_size != rp->prev_size)
        return stor__refuse(rp->s, rp->file, STOR__SEG_HDR, "the segment "
                            "before it (seq %" PRIu64 ") is %" PRIu64 " bytes "
                            "long, but was %" PRIu64 " bytes when this one "
                            "was created: it was truncated or extended "
                            "since", g->seq - 1, rp->prev_size, o.prev_size);
    if (o.hs.term || o.hs.vote || o.hs.commit) {
        rp->s->hs = o.hs;
        rp->s->have_hs = true;
        snprintf(rp->rec->hs_file, sizeof rp->rec->hs_file, "%s", rp->file);
        rp->rec->hs_off = STOR__SEG_HDR;
    }
    return 0;
}

/* Replay one segment; on a torn tail of the last one, cut it. */
static int replay_segment(struct replay *rp, const struct stor__seg *g,
                          bool is_last)
{
    struct stor *s = rp->s;
    char name[64];
    stor__seg_name(name, sizeof name, g->seq, g->first);
    rp->file = name;
    rp->seg_max = 0;

    uint8_t *buf = NULL;
    size_t size = 0;
    int err = read_file(s, name, &buf, &size);
    if (err)
        return err;
    uint32_t version;
    uint64_t seq, salt, first;
    const char *why = stor__seg_header_decode(buf, size, &version, &seq,
                                              &salt, &first);
    if (why && is_last && size <= STOR__SEG_CREATE)
        return drop_torn_creation(rp, g, size, why);
    if (why && size > STOR__SEG_CREATE)
        return stor__refuse(s, name, 0, "%s in a file of %zu bytes: longer "
                            "than the segment's creation write (%d bytes), "
                            "which is synced before anything else is written "
                            "into it", why, size, STOR__SEG_CREATE);
    if (why)
        return corrupt(rp, 0, why);
    if (seq != g->seq || first != g->first)
        return corrupt(rp, 0, "segment header does not match its name");

    size_t off = STOR__SEG_HDR;
    if (version == STOR__SEG_VERSION) {
        err = check_open(rp, g, buf, size, salt, is_last);
        if (err)
            return err < 0 ? err : 0; /* 1: dropped */
        rp->rec->v2 = true;
        off = STOR__SEG_CREATE;
    } else if (rp->rec->v2) {
        return corrupt(rp, 0, "a segment of format 1 after one of format 2");
    }

    struct stor__rec r;
    uint64_t claimed = 0;
    while (off < size && (why = stor__rec_check(buf + off, size - off, salt,
                                                &r, &claimed)) == NULL) {
        err = apply(rp, &r, off);
        if (err)
            return err;
        off += STOR__REC_HDR + r.len;
    }
    if (off < size && !is_last)
        return corrupt(rp, off, why);
    if (off < size) {
        err = torn_tail(rp, g, buf, size, off, salt, why, claimed);
        if (err)
            return err;
    }
    if (s->st_present && s->st.seg_seq == g->seq && off < s->st.seg_off)
        return stor__refuse(s, name, off, "the segment ends here, but the "
                            "state file says it was durable up to offset %"
                            PRIu64 ": it was truncated", s->st.seg_off);
    /* Appends go to the last segment kept (earlier ones are whole). */
    s->seg_salt = salt;
    s->seg_size = s->seg_alloc = off;
    rp->have_prev = true;
    rp->prev_size = off;
    rp->rec->newest_seq = g->seq;
    rp->rec->next_seq = g->seq + 1;
    return stor__seg_push(s, g->seq, g->first, rp->seg_max);
}

static int seg_cmp(const void *a, const void *b)
{
    const struct stor__seg *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The segments named in names, sorted by seq; gaps and twins refused. */
static int list_segments(struct stor *s, char **names, size_t n_names,
                         struct stor__seg **out, size_t *n_out)
{
    struct stor__seg *g = craft_calloc(n_names ? n_names : 1, sizeof *g);
    if (g == NULL)
        return CRAFT_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < n_names; i++)
        if (stor__seg_parse(names[i], &g[n].seq, &g[n].first))
            n++;
    qsort(g, n, sizeof *g, seg_cmp);
    for (size_t i = 1; i < n; i++) {
        if (g[i].seq != g[i - 1].seq + 1) {
            char a[64], b[64];
            stor__seg_name(a, sizeof a, g[i - 1].seq, g[i - 1].first);
            stor__seg_name(b, sizeof b, g[i].seq, g[i].first);
            uint64_t from = g[i - 1].seq, to = g[i].seq;
            craft_free(g);
            return stor__refuse(s, b, 0, "the segment before it is %s: the "
                                "sequence jumps from %" PRIu64 " to %" PRIu64
                                " (a segment is missing or duplicated)", a,
                                from, to);
        }
    }
    *out = g;
    *n_out = n;
    return 0;
}

int stor__recover_log(struct stor *s, char **names, size_t n_names,
                      struct stor__recovered *rec)
{
    struct stor__seg *segs = NULL;
    size_t n = 0;
    *rec = (struct stor__recovered){.next_seq = 1};
    int err = list_segments(s, names, n_names, &segs, &n);
    if (err)
        return err;
    struct replay rp = {.s = s, .rec = rec};
    for (size_t i = 0; i < n && err == 0; i++)
        err = replay_segment(&rp, &segs[i], i == n - 1);
    craft_free(segs);
    rec->base = rp.started ? rp.base : 0;
    return err;
}
