/* Reading the log back at start-up: segments in sequence order, records
 * replayed into the stored log and hard state, a torn tail cut off with a
 * WARN, any other damage refused with CRAFT_ECORRUPT and an ERROR line. */
#include <errno.h>
#include <fcntl.h>
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
    const char *file; /* segment being read, for messages */
    bool started;     /* an entries or reset record was seen */
    uint64_t base;    /* last reset index (log restarts at base + 1) */
    uint64_t seg_max; /* highest index written in the current segment */
};

static int corrupt(struct replay *rp, size_t off, const char *why)
{
    CRAFT_ERROR(rp->s->log, "storage: %s/%s: offset %zu: %s; refusing to "
                "start (not a torn write: acknowledged data may be damaged)",
                rp->s->dir, rp->file, off, why);
    return CRAFT_ECORRUPT;
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
                         size_t off)
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

static int apply(struct replay *rp, const struct stor__rec *r, size_t off)
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
        return 0;
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
        if (stor__rec_check(buf + o, size - o, salt, &r) == NULL)
            return o;
    return 0;
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

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
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
    uint64_t seq, salt, first;
    const char *why = stor__seg_header_decode(buf, size, &seq, &salt, &first);
    if (why && (!is_last || !all_zero(buf, size < STOR__SEG_HDR
                                                ? size : STOR__SEG_HDR)))
        return corrupt(rp, 0, why);
    if (why) {
        /* Short or zero header: the crash hit while the segment was being
         * created, and nothing in it was ever acknowledged (the header is
         * synced together with the first records). A header with other
         * bytes in it is damage, refused above. */
        CRAFT_WARN(s->log, "storage: %s/%s: %s; removing the last segment "
                   "(%zu bytes): torn at creation", s->dir, name, why, size);
        err = stor__unlink(s, name);
        return err ? err : stor__sync_dir(s, name);
    }
    if (seq != g->seq || first != g->first)
        return corrupt(rp, 0, "segment header does not match its name");

    size_t off = STOR__SEG_HDR;
    struct stor__rec r;
    while (off < size &&
           (why = stor__rec_check(buf + off, size - off, salt, &r)) == NULL) {
        err = apply(rp, &r, off);
        if (err)
            return err;
        off += STOR__REC_HDR + r.len;
    }
    if (off < size) {
        if (!is_last)
            return corrupt(rp, off, why);
        size_t next = valid_after(buf, size, off + 1, salt);
        if (next) {
            char msg[160];
            snprintf(msg, sizeof msg, "%s, followed by a valid record at "
                     "offset %zu", why, next);
            return corrupt(rp, off, msg);
        }
        CRAFT_WARN(s->log, "storage: %s/%s: torn tail: cutting %zu bytes at "
                   "offset %zu (%s); records before it are intact", s->dir,
                   name, size - off, off, why);
        err = cut_tail(s, name, off);
        if (err)
            return err;
    }
    /* Appends go to the last segment kept (earlier ones are whole). */
    s->seg_salt = salt;
    s->seg_size = off;
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
            CRAFT_ERROR(s->log, "storage: %s: segment sequence jumps from %"
                        PRIu64 " to %" PRIu64 " (a segment is missing or "
                        "duplicated); refusing to start", s->dir,
                        g[i - 1].seq, g[i].seq);
            craft_free(g);
            return CRAFT_ECORRUPT;
        }
    }
    *out = g;
    *n_out = n;
    return 0;
}

int stor__recover_log(struct stor *s, char **names, size_t n_names,
                      uint64_t *base)
{
    struct stor__seg *segs;
    size_t n;
    int err = list_segments(s, names, n_names, &segs, &n);
    if (err)
        return err;
    struct replay rp = {.s = s};
    for (size_t i = 0; i < n && err == 0; i++)
        err = replay_segment(&rp, &segs[i], i == n - 1);
    craft_free(segs);
    *base = rp.started ? rp.base : 0;
    return err;
}
