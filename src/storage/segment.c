/* Writing the log: encoding a save's records, appending them to the current
 * segment (pwrite and fdatasync, in steps of at most STOR__WRITE_MAX bytes),
 * creating new segments (header and OPEN record synced before anything
 * else), and deleting old segments (compaction, log reset). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/endian.h"
#include "common/error.h"
#include "storage/internal.h"

#define HS_REC (STOR__REC_HDR + 24)
#define RESET_REC (STOR__REC_HDR + 16)

void stor__seg_name(char *out, size_t size, uint64_t seq, uint64_t first)
{
    snprintf(out, size, "log-%020" PRIu64 "-%020" PRIu64, seq, first);
}

bool stor__seg_parse(const char *name, uint64_t *seq, uint64_t *first)
{
    char again[64];
    if (strlen(name) != 45 || strncmp(name, "log-", 4) != 0)
        return false;
    if (sscanf(name, "log-%20" SCNu64 "-%20" SCNu64, seq, first) != 2)
        return false;
    stor__seg_name(again, sizeof again, *seq, *first);
    return strcmp(again, name) == 0;
}

int stor__seg_push(struct stor *s, uint64_t seq, uint64_t first,
                   uint64_t max_index)
{
    if (s->n_segs == s->cap_segs) {
        size_t cap = s->cap_segs ? 2 * s->cap_segs : 8;
        struct stor__seg *p = craft_realloc(s->segs, cap * sizeof *p);
        if (p == NULL)
            return CRAFT_ENOMEM;
        s->segs = p;
        s->cap_segs = cap;
    }
    s->segs[s->n_segs++] = (struct stor__seg){seq, first, max_index};
    return 0;
}

/* Entries [i, return) go in one record of *payload bytes: at least one
 * entry, more while the payload stays under STOR__REC_SPLIT. */
static size_t ents_group(const struct raft_entry *e, size_t n, size_t i,
                         size_t *payload)
{
    size_t p = STOR__ENTS_HDR + STOR__ENT_HDR + e[i].len;
    size_t j = i + 1;
    while (j < n && p + STOR__ENT_HDR + e[j].len <= STOR__REC_SPLIT)
        p += STOR__ENT_HDR + e[j++].len;
    *payload = p;
    return j;
}

static size_t batch_size(const struct stor__batch *b)
{
    size_t size = b->reset ? RESET_REC : 0;
    for (size_t i = 0, payload; i < b->n; size += STOR__REC_HDR + payload)
        i = ents_group(b->ents, b->n, i, &payload);
    return size + (b->hs ? HS_REC : 0);
}

static size_t hs_encode(const struct raft_hard_state *hs, uint64_t salt,
                        uint8_t *out)
{
    uint8_t *p = out + STOR__REC_HDR;
    craft_put64(p, hs->term);
    craft_put64(p + 8, hs->vote);
    craft_put64(p + 16, hs->commit);
    stor__rec_seal(out, STOR__REC_HS, 24, salt);
    return HS_REC;
}

static size_t ents_encode(const struct raft_entry *e, size_t n, size_t i,
                          uint64_t salt, uint8_t *out, size_t *next)
{
    size_t payload;
    size_t end = ents_group(e, n, i, &payload);
    uint8_t *p = out + STOR__REC_HDR;
    craft_put64(p, e[i].index);
    craft_put32(p + 8, (uint32_t)(end - i));
    craft_put32(p + 12, 0);
    p += STOR__ENTS_HDR;
    for (size_t k = i; k < end; k++) {
        craft_put64(p, e[k].term);
        craft_put32(p + 8, e[k].len);
        p[12] = e[k].type;
        p[13] = p[14] = p[15] = 0;
        if (e[k].len)
            memcpy(p + STOR__ENT_HDR, e[k].data, e[k].len);
        p += STOR__ENT_HDR + e[k].len;
    }
    stor__rec_seal(out, STOR__REC_ENTRIES, (uint32_t)payload, salt);
    *next = end;
    return STOR__REC_HDR + payload;
}

static void batch_encode(const struct stor__batch *b, uint64_t salt,
                         uint8_t *out)
{
    if (b->reset) {
        craft_put64(out + STOR__REC_HDR, b->reset_index);
        craft_put64(out + STOR__REC_HDR + 8, b->reset_term);
        stor__rec_seal(out, STOR__REC_RESET, 16, salt);
        out += RESET_REC;
    }
    for (size_t i = 0; i < b->n;)
        out += ents_encode(b->ents, b->n, i, salt, out, &i);
    if (b->hs)
        hs_encode(b->hs, salt, out);
}

/* The batch is durable: update what the store knows about its log. */
static void note_written(struct stor *s, const struct stor__batch *b)
{
    if (b->reset)
        s->last = b->reset_index;
    if (b->n)
        s->last = b->ents[b->n - 1].index;
    if ((b->reset || b->n) && s->n_segs > 0) {
        struct stor__seg *cur = &s->segs[s->n_segs - 1];
        if (s->last > cur->max_index)
            cur->max_index = s->last;
    }
    if (b->hs) {
        s->hs = *b->hs;
        s->have_hs = true;
    }
}

static uint64_t new_salt(struct stor *s, uint64_t seq)
{
    uint64_t salt;
    if (s->sys.getrandom(&salt, sizeof salt, 0) == (ssize_t)sizeof salt)
        return salt;
    /* No randomness: still differs from the previous file's salt. */
    return (s->seg_salt ^ seq) * 0x9e3779b97f4a7c15u + 1;
}

static void seg_name_current(const struct stor *s, char *out, size_t size)
{
    const struct stor__seg *g = &s->segs[s->n_segs - 1];
    stor__seg_name(out, size, g->seq, g->first);
}

/* Cut the current segment's preallocated space off, durably: it ends at its
 * last record before the next segment records its length, and before the
 * store is closed. */
static int cut_prealloc(struct stor *s)
{
    if (s->seg_fd < 0 || s->seg_alloc <= s->seg_size)
        return 0;
    char name[64];
    seg_name_current(s, name, sizeof name);
    errno = 0;
    if (s->sys.ftruncate(s->seg_fd, (off_t)s->seg_size) != 0)
        return stor__err(errno);
    s->seg_alloc = s->seg_size;
    /* fdatasync: the cut is durable before the next segment's OPEN record
     * says how long this one is. */
    return stor__sync(s, s->seg_fd, name);
}

void stor__seg_close(struct stor *s)
{
    /* Best effort: recovery cuts the space off too, without a word. */
    if (s->failed == 0 && s->n_segs > 0 && cut_prealloc(s) != 0)
        CRAFT_DEBUG(s->log, "storage: %s: could not cut the preallocated "
                    "end of the last segment", s->dir);
    stor__close_fd(s, &s->seg_fd);
}

/* Create segment seq, named for index first, as its creation write alone:
 * the header and the OPEN record (the hard state of the moment, the length
 * of the segment before it). Durable before it becomes the current segment,
 * so that nothing acknowledged is ever written into a segment whose header
 * could still be lost (the creation rule in record.c). */
static int seg_create(struct stor *s, uint64_t seq, uint64_t first)
{
    if (s->n_segs > 0) {
        int err = cut_prealloc(s);
        if (err)
            return err;
    }
    uint8_t buf[STOR__SEG_CREATE];
    uint64_t salt = new_salt(s, seq);
    stor__seg_header_encode(buf, seq, salt, first);
    struct stor__open o = {.hs = s->have_hs ? s->hs
                                            : (struct raft_hard_state){0},
                           .prev_size = s->n_segs ? s->seg_size : 0};
    stor__open_encode(buf + STOR__SEG_HDR + STOR__REC_HDR, &o);
    stor__rec_seal(buf + STOR__SEG_HDR, STOR__REC_OPEN, STOR__OPEN_LEN, salt);

    char name[64];
    int fd;
    stor__seg_name(name, sizeof name, seq, first);
    int err = stor__create(s, name, &fd);
    if (err)
        return err;
    err = stor__pwrite_all(s, fd, buf, sizeof buf, 0);
    /* fdatasync: the header and OPEN record (and the file's length) are on
     * disk before any record goes in: an invalid header in a longer file is
     * then damage, never a crash during creation. */
    if (err == 0)
        err = stor__sync(s, fd, name);
    /* Directory fsync: the segment's name survives a crash; without it the
     * whole file, with the acknowledged entries to come, could vanish. */
    if (err == 0)
        err = stor__sync_dir(s, name);
    if (err == 0)
        err = stor__seg_push(s, seq, first, 0);
    if (err) {
        stor__close_fd(s, &fd);
        stor__unlink(s, name); /* best effort; recovery copes either way */
        return err;
    }
    stor__close_fd(s, &s->seg_fd);
    s->seg_fd = fd;
    s->seg_size = s->seg_alloc = STOR__SEG_CREATE;
    s->seg_salt = salt;
    CRAFT_DEBUG(s->log, "storage: %s: new segment %s", s->dir, name);
    /* The state file names the new segment before anything acknowledged
     * is in it: should the whole file vanish later, recovery sees that
     * segments are missing at the end of the log (one more fdatasync per
     * segment). */
    return stor__state_write(s);
}

int stor__seg_open_tail(struct stor *s, uint64_t next_seq)
{
    if (s->n_segs == 0)
        return seg_create(s, next_seq, s->last + 1);
    const struct stor__seg *g = &s->segs[s->n_segs - 1];
    char name[64];
    stor__seg_name(name, sizeof name, g->seq, g->first);
    errno = 0;
    s->seg_fd = s->sys.openat(s->dirfd, name, O_RDWR | O_CLOEXEC, 0);
    return s->seg_fd < 0 ? stor__err(errno) : 0;
}

/* A failed append may have left part of the save in the file: records that
 * were never acknowledged (some maybe synced by an earlier step). Cut them
 * off durably, or stop writing: the file must end where the save began, or
 * the length the next segment records for this one would be wrong. */
static int append_failed(struct stor *s, const char *name, int err)
{
    errno = 0;
    if (s->sys.ftruncate(s->seg_fd, (off_t)s->seg_size) != 0) {
        s->failed = CRAFT_EIO;
        CRAFT_ERROR(s->log, "storage: %s: cannot cut a failed append (%s); "
                    "refusing further writes", s->dir,
                    craft_strerror(stor__err(errno)));
        return err;
    }
    s->seg_alloc = s->seg_size;
    /* fdatasync: the cut is durable (a failure poisons the store). */
    stor__sync(s, s->seg_fd, name);
    return err;
}

/* Bytes of the next step at buf (len left): whole records, at most
 * STOR__WRITE_MAX of them, or one record alone if it is longer. */
static size_t step_size(const uint8_t *buf, size_t len)
{
    size_t step = 0;
    do
        step += STOR__REC_HDR + craft_get32(buf + step + 4);
    while (step < len &&
           step + STOR__REC_HDR + craft_get32(buf + step + 4) <=
               STOR__WRITE_MAX);
    return step;
}

/* Allocate the file ahead of a save of len bytes (STOR__PREALLOC), if it
 * runs past what is allocated and fits in one chunk. So the file never
 * extends more than STOR__PREALLOC past the start of a write step, as the
 * torn tail rule needs; a bigger save extends the file itself. A failure
 * costs only the speed-up: the append extends the file as before, and
 * meets ENOSPC itself if the disk is full. */
static void preallocate(struct stor *s, size_t len)
{
    uint64_t end = s->seg_size + len;
    if (s->prealloc_off || len >= STOR__PREALLOC || end <= s->seg_alloc)
        return;
    uint64_t to = s->seg_size + STOR__PREALLOC;
    if (to > s->seg_bytes)
        to = s->seg_bytes > end ? s->seg_bytes : end;
    errno = 0;
    int rc = s->sys.fallocate(s->seg_fd, 0, (off_t)s->seg_alloc,
                              (off_t)(to - s->seg_alloc));
    if (rc != 0 && (errno == EOPNOTSUPP || errno == ENOSYS)) {
        s->prealloc_off = true;
        CRAFT_DEBUG(s->log, "storage: %s: the file system cannot "
                    "preallocate (%s); segments grow by appends",
                    s->dir, craft_strerror(stor__err(errno)));
        return;
    }
    /* Failed or not, the file is at most this long now (a failed call may
     * have allocated part of the range): what cut_prealloc must cut. */
    s->seg_alloc = to;
}

/* Append len encoded bytes at the end of the current segment. */
static int append(struct stor *s, const uint8_t *buf, size_t len)
{
    char name[64];
    seg_name_current(s, name, sizeof name);
    preallocate(s, len);
    for (size_t done = 0; done < len;) {
        size_t step = step_size(buf + done, len - done);
        int err = stor__pwrite_all(s, s->seg_fd, buf + done, step,
                                   s->seg_size + done);
        if (err)
            return append_failed(s, name, err);
        /* fdatasync: this step is on disk before the next is written (so a
         * crash tears at most the last step: the torn tail rule) and the
         * whole save is before stor_save returns, i.e. before any vote or
         * append acknowledgement that depends on it is sent. */
        err = stor__sync(s, s->seg_fd, name);
        if (err)
            return err;
        done += step;
    }
    s->seg_size += len;
    if (s->seg_alloc < s->seg_size)
        s->seg_alloc = s->seg_size;
    return 0;
}

int stor__seg_write(struct stor *s, const struct stor__batch *b)
{
    if (s->inmem) {
        note_written(s, b);
        return 0;
    }
    size_t len = batch_size(b);
    if (len == 0)
        return 0;
    bool full = s->seg_size > STOR__SEG_CREATE &&
                s->seg_size + len > s->seg_bytes;
    if (b->reset || full || s->seg_fd < 0) {
        uint64_t first = b->reset ? b->reset_index + 1
                         : b->n   ? b->ents[0].index
                                  : s->last + 1;
        int err = seg_create(s, s->segs[s->n_segs - 1].seq + 1, first);
        if (err)
            return err;
    }
    int err = stor__wbuf_reserve(s, len);
    if (err)
        return err;
    batch_encode(b, s->seg_salt, s->wbuf);
    err = append(s, s->wbuf, len);
    if (err)
        return err;
    note_written(s, b);
    return 0;
}

int stor__seg_drop_while_below(struct stor *s, uint64_t keep_from)
{
    char name[64];
    while (s->n_segs > 1 && s->segs[0].max_index < keep_from) {
        stor__seg_name(name, sizeof name, s->segs[0].seq, s->segs[0].first);
        int err = stor__unlink(s, name);
        /* Directory fsync after each unlink: deletions become durable in
         * order, so a crash leaves a prefix deleted, never a hole (which
         * recovery would rightly refuse as a missing segment). */
        if (err == 0)
            err = stor__sync_dir(s, name);
        if (err)
            return err;
        CRAFT_INFO(s->log, "storage: %s: deleted segment %s", s->dir, name);
        memmove(s->segs, s->segs + 1, --s->n_segs * sizeof *s->segs);
    }
    return 0;
}
