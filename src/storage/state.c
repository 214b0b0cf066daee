/* The state file: the hard state (term, vote, commit index) and how far the
 * log was durable, kept outside the log in two alternating checksummed
 * slots (layout in record.c). It is what lets recovery tell a log that lost
 * synced writes (a lying or failing disk) from one that merely crashed. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "common/error.h"
#include "storage/internal.h"

#define TMP_NAME "tmp-state"

uint64_t stor__now_ms(const struct stor *s)
{
    struct timespec ts = {0};
    s->sys.clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t slot_off(uint64_t gen)
{
    return (gen % 2) * STOR__STATE_SLOT;
}

static void remember(struct stor *s, const struct stor__state *st)
{
    s->st = *st;
    s->st_commit = st->hs.commit;
    s->st_next_ms = stor__now_ms(s) + s->refresh_ms;
}

int stor__state_load(struct stor *s)
{
    s->st_present = false;
    errno = 0;
    int fd = s->sys.openat(s->dirfd, STOR__STATE_NAME, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0)
        return errno == ENOENT ? 0 : stor__err(errno);
    uint64_t size = 0;
    uint8_t *buf = NULL;
    int err = stor__file_size(s, fd, &size);
    if (err == 0 && size != STOR__STATE_BYTES)
        err = stor__refuse(s, STOR__STATE_NAME, 0, "the state file is %"
                           PRIu64 " bytes long instead of %d (it is created "
                           "whole and never resized)", size,
                           STOR__STATE_BYTES);
    if (err == 0 && (buf = craft_malloc(STOR__STATE_BYTES)) == NULL)
        err = CRAFT_ENOMEM;
    if (err == 0)
        err = stor__pread_all(s, fd, buf, STOR__STATE_BYTES, 0);
    struct stor__state st[2] = {{0}, {0}};
    const char *why[2] = {NULL, NULL};
    if (err == 0) {
        for (unsigned k = 0; k < 2; k++)
            why[k] = stor__state_decode(buf + k * STOR__STATE_SLOT, k, &st[k]);
        if (why[0] && why[1])
            err = stor__refuse(s, STOR__STATE_NAME, 0, "neither slot of the "
                               "state file is valid (slot 0: %s; slot 1 at "
                               "offset %d: %s): a torn write spoils only "
                               "one", why[0], STOR__STATE_SLOT, why[1]);
    }
    craft_free(buf);
    if (err) {
        stor__close_fd(s, &fd);
        return err;
    }
    unsigned k = why[0] ? 1 : why[1] ? 0 : st[1].gen > st[0].gen;
    if (why[!k])
        CRAFT_WARN(s->log, "storage: %s/%s: slot %u (offset %d) is not valid "
                   "(%s): a write to it was torn; using slot %u (write %"
                   PRIu64 ")", s->dir, STOR__STATE_NAME, !k,
                   (int)(!k * STOR__STATE_SLOT), why[!k], k, st[k].gen);
    remember(s, &st[k]);
    s->st_fd = fd;
    s->st_present = true;
    return 0;
}

int stor__state_check(struct stor *s, const struct stor__recovered *rec)
{
    if (!s->st_present) {
        if (rec->v2)
            return stor__refuse(s, STOR__STATE_NAME, 0, "the state file is "
                                "missing, but the log was written by a "
                                "version that keeps one (segments of format "
                                "2): it was lost");
        return 0;
    }
    const struct stor__state *st = &s->st;
    const struct raft_hard_state *hs = &s->hs;
    uint64_t off = slot_off(st->gen);
    const char *where = rec->hs_file[0] ? rec->hs_file : "no segment";
    if (st->hs.term > hs->term)
        return stor__refuse(s, STOR__STATE_NAME, off, "the state file "
                            "records term %" PRIu64 ", but the newest hard "
                            "state in the log (%s, offset %" PRIu64 ") has "
                            "term %" PRIu64 ": the log lost synced writes",
                            st->hs.term, where, rec->hs_off, hs->term);
    if (st->hs.term == hs->term && st->hs.vote != RAFT_NONE &&
        hs->vote != st->hs.vote)
        return stor__refuse(s, STOR__STATE_NAME, off, "the state file "
                            "records a vote for %016" PRIx64 " in term %"
                            PRIu64 ", but the newest hard state in the log "
                            "(%s, offset %" PRIu64 ") has a vote for %016"
                            PRIx64 ": the log lost synced writes",
                            st->hs.vote, st->hs.term, where, rec->hs_off,
                            hs->vote);
    if (st->hs.commit > s->last)
        return stor__refuse(s, STOR__STATE_NAME, off, "the state file "
                            "records commit index %" PRIu64 ", but the log "
                            "ends at index %" PRIu64 ": acknowledged "
                            "entries are lost", st->hs.commit, s->last);
    if (st->seg_seq > rec->newest_seq)
        return stor__refuse(s, STOR__STATE_NAME, off, "the state file says "
                            "segment %" PRIu64 " was durable up to offset %"
                            PRIu64 ", but the newest segment is %" PRIu64
                            ": segments are missing at the end of the log",
                            st->seg_seq, st->seg_off, rec->newest_seq);
    if (st->hs.commit > s->hs.commit)
        s->hs.commit = st->hs.commit;
    return 0;
}

/* The state a write now would record. */
static struct stor__state current(const struct stor *s)
{
    uint64_t commit = s->hs.commit < s->last ? s->hs.commit : s->last;
    struct stor__state st = {
        .gen = s->st.gen + 1,
        .hs = {s->hs.term, s->hs.vote,
               commit > s->st.hs.commit ? commit : s->st.hs.commit},
        .seg_seq = s->n_segs ? s->segs[s->n_segs - 1].seq : 0,
        .seg_off = s->n_segs ? s->seg_size : 0,
    };
    return st;
}

/* The first write: both slots, to a temporary file renamed into place. */
static int create(struct stor *s, const struct stor__state *st)
{
    uint8_t buf[STOR__STATE_BYTES];
    struct stor__state older = *st;
    older.gen--;
    stor__state_encode(buf + slot_off(st->gen), st);
    stor__state_encode(buf + slot_off(older.gen), &older);
    int fd;
    int err = stor__create(s, TMP_NAME, &fd);
    if (err)
        return err;
    err = stor__pwrite_all(s, fd, buf, sizeof buf, 0);
    /* fdatasync: both slots are on disk before the name appears, so a
     * state file is never short or empty. */
    if (err == 0)
        err = stor__sync(s, fd, TMP_NAME);
    errno = 0;
    if (err == 0 && s->sys.renameat(s->dirfd, TMP_NAME, s->dirfd,
                                    STOR__STATE_NAME) != 0)
        err = stor__err(errno);
    /* Directory fsync: the name is durable before any segment of format 2
     * is created (recovery refuses such a log without a state file). */
    if (err == 0)
        err = stor__sync_dir(s, STOR__STATE_NAME);
    if (err) {
        stor__close_fd(s, &fd);
        stor__unlink(s, TMP_NAME);
        return err;
    }
    s->st_fd = fd;
    s->st_present = true;
    return 0;
}

int stor__state_write(struct stor *s)
{
    if (s->inmem)
        return 0;
    struct stor__state st = current(s);
    int err;
    if (!s->st_present) {
        err = create(s, &st);
    } else {
        uint8_t buf[STOR__STATE_SLOT];
        stor__state_encode(buf, &st);
        err = stor__pwrite_all(s, s->st_fd, buf, sizeof buf,
                               slot_off(st.gen));
        /* fdatasync: the slot is durable before stor_save returns, i.e.
         * before a vote or a message of the new term is sent. The other
         * slot still holds the write before, should this one tear. */
        if (err == 0)
            err = stor__sync(s, s->st_fd, STOR__STATE_NAME);
    }
    if (err)
        return err;
    remember(s, &st);
    return 0;
}

int stor__state_after_save(struct stor *s)
{
    if (s->inmem)
        return 0;
    struct stor__state st = current(s);
    if (st.hs.term != s->st.hs.term || st.hs.vote != s->st.hs.vote)
        return stor__state_write(s);
    bool moved = st.hs.commit != s->st.hs.commit ||
                 st.seg_seq != s->st.seg_seq || st.seg_off != s->st.seg_off;
    if (moved && stor__now_ms(s) >= s->st_next_ms)
        return stor__state_write(s);
    return 0;
}
