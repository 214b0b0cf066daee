/* The store's life cycle and its two log operations: stor_open (directory,
 * lock, recovery of snapshots and log, consistency checks), stor_save,
 * stor_compact and stor_close. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>

#include "common/alloc.h"
#include "common/error.h"
#include "storage/internal.h"

#define LOCK_NAME "LOCK"

/* Create the data directory if needed and open it. */
static int open_dir(struct stor *s)
{
    errno = 0;
    if (s->sys.mkdir(s->dir, 0700) == 0) {
        /* fsync the parent: the new directory's entry survives a crash. */
        char *copy = craft_memdup(s->dir, strlen(s->dir) + 1);
        if (copy == NULL)
            return CRAFT_ENOMEM;
        int pfd = s->sys.openat(AT_FDCWD, dirname(copy),
                                O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
        craft_free(copy);
        errno = 0;
        if (pfd < 0 || s->sys.fsync(pfd) != 0) {
            int err = stor__err(errno);
            stor__close_fd(s, &pfd);
            return err;
        }
        stor__close_fd(s, &pfd);
    } else if (errno != EEXIST) {
        return stor__err(errno);
    }
    errno = 0;
    s->dirfd = s->sys.openat(AT_FDCWD, s->dir,
                             O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    return s->dirfd < 0 ? stor__err(errno) : 0;
}

/* flock is per open file description: a second stor_open, even in this
 * process, gets its own description and is refused (after wait_ms of
 * trying again, logged once). */
static int take_lock(struct stor *s, unsigned wait_ms)
{
    errno = 0;
    s->lockfd = s->sys.openat(s->dirfd, LOCK_NAME,
                              O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lockfd < 0)
        return stor__err(errno);
    for (unsigned waited = 0;; waited += 10) {
        errno = 0;
        if (s->sys.flock(s->lockfd, LOCK_EX | LOCK_NB) == 0) {
            if (waited > 0)
                CRAFT_INFO(s->log, "storage: %s: lock taken after %u ms", s->dir, waited);
            return 0;
        }
        if (errno != EWOULDBLOCK)
            return stor__err(errno);
        if (waited >= wait_ms)
            break;
        if (waited == 0)
            CRAFT_WARN(s->log, "storage: %s is locked by another process; waiting up to "
                       "%u ms (a craftd that was just stopped may still be exiting)",
                       s->dir, wait_ms);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    CRAFT_ERROR(s->log, "storage: %s is locked by another craftd (or another "
                "store in this process)", s->dir);
    return CRAFT_ELOCKED;
}

/* Temporary files are unfinished snapshots of a previous run. */
static int remove_tmp(struct stor *s, char **names, size_t n)
{
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(names[i], "tmp-", 4) != 0)
            continue;
        int err = stor__unlink(s, names[i]);
        if (err)
            return err;
        CRAFT_INFO(s->log, "storage: %s: removed unfinished %s", s->dir,
                   names[i]);
        any = true;
    }
    return any ? stor__sync_dir(s, "temporary file removal") : 0;
}

/* Check that log, snapshot and hard state agree, and settle the log:
 * entries are kept only where they continue the snapshot (Raft's rule for
 * installing one: keep the log if it holds the snapshot's last entry with
 * its term, else discard it). */
static int settle(struct stor *s, const struct stor__recovered *rec,
                  size_t n_bad, bool *discarded)
{
    const struct raft_snap_meta *snap = &s->slots[0].meta;
    uint64_t si = s->slots[0].fd >= 0 ? snap->index : 0;
    uint64_t base = rec->base;
    uint64_t start = s->n_ents ? s->ents[0].index : base + 1;
    char seg[64] = "", sname[64] = "no snapshot";
    if (s->n_segs)
        stor__seg_name(seg, sizeof seg, s->segs[0].seq, s->segs[0].first);
    if (si)
        stor__snap_name(sname, sizeof sname, si);
    if (start > si + 1)
        return stor__refuse(s, seg[0] ? seg : NULL, 0, "the log starts at "
                            "index %" PRIu64 " but the newest valid snapshot "
                            "(%s%s) covers up to %" PRIu64 ": entries %"
                            PRIu64 "..%" PRIu64 " are lost", start, sname,
                            n_bad ? ", newer ones are corrupt" : "", si,
                            si + 1, start - 1);
    if (n_bad)
        CRAFT_WARN(s->log, "storage: %s: using snapshot %" PRIu64 " instead "
                   "of %zu newer corrupt one(s); the log covers it from %"
                   PRIu64, s->dir, si, n_bad, start);
    if (si && s->n_ents && si >= s->ents[0].index) {
        uint64_t last = s->ents[s->n_ents - 1].index;
        uint64_t commit = s->hs.commit > s->st.hs.commit ? s->hs.commit
                                                         : s->st.hs.commit;
        uint64_t term = si > last ? 0 : s->ents[si - s->ents[0].index].term;
        /* Entries up to the commit index are final: a snapshot that
         * disagrees with one of them does not belong to this log. */
        if (si <= last && term != snap->term && si <= commit)
            return stor__refuse(s, sname, 0, "the snapshot ends at index %"
                                PRIu64 " of term %" PRIu64 ", but the log "
                                "holds that committed index (commit %" PRIu64
                                ") with term %" PRIu64 ": the snapshot does "
                                "not match the log", si, snap->term, commit,
                                term);
        if (si > last || term != snap->term) {
            CRAFT_INFO(s->log, "storage: %s: log (%" PRIu64 "..%" PRIu64 ") "
                       "does not continue snapshot %" PRIu64 "; discarding "
                       "it", s->dir, s->ents[0].index, last, si);
            s->n_ents = 0;
            *discarded = true;
        }
    }
    s->last = s->n_ents ? s->ents[s->n_ents - 1].index
                        : (base > si ? base : si);
    if (s->hs.commit > s->last)
        return stor__refuse(s, rec->hs_file[0] ? rec->hs_file : NULL,
                            rec->hs_off, "the hard state's commit index %"
                            PRIu64 " is beyond the last stored index %" PRIu64
                            ": acknowledged entries are lost", s->hs.commit,
                            s->last);
    return 0;
}

static int recover(struct stor *s)
{
    char **names;
    size_t n, n_bad = 0;
    struct stor__recovered rec = {0};
    int err = stor__list_dir(s, &names, &n);
    if (err)
        return err;
    err = remove_tmp(s, names, n);
    if (err == 0)
        err = stor__snap_load(s, names, n, &n_bad);
    if (err == 0)
        err = stor__state_load(s);
    if (err == 0)
        err = stor__recover_log(s, names, n, &rec);
    stor__free_names(names, n);
    bool discarded = false;
    if (err == 0)
        err = settle(s, &rec, n_bad, &discarded);
    if (err == 0)
        err = stor__state_check(s, &rec);
    /* The state file exists before the first segment of format 2, and
     * holds whatever term and vote the log has (a crash may have come
     * between the two syncs of a save). */
    if (err == 0 && (!s->st_present || s->hs.term != s->st.hs.term ||
                     s->hs.vote != s->st.hs.vote))
        err = stor__state_write(s);
    if (err == 0)
        err = stor__seg_open_tail(s, rec.next_seq);
    if (err == 0 && discarded) {
        /* A crash came between a received snapshot's rename and its log
         * reset: write the reset now, or entries saved from here on would
         * land behind a log that does not continue the snapshot. */
        const struct raft_snap_meta *m = &s->slots[0].meta;
        struct stor__batch b = {.reset = true, .reset_index = m->index,
                                .reset_term = m->term};
        err = stor__seg_write(s, &b);
        if (err == 0)
            err = stor__seg_drop_while_below(s, UINT64_MAX);
    }
    return err;
}

int stor_open(const struct stor_opts *o, struct stor **out,
              struct raft_persisted *p)
{
    if (!o->inmem && (o->dir == NULL || o->dir[0] == '\0'))
        return CRAFT_EINVAL;
    struct stor *s = craft_calloc(1, sizeof *s);
    if (s == NULL)
        return CRAFT_ENOMEM;
    s->sys = o->sys ? *o->sys : *stor_sys_default();
    s->log = o->log;
    s->inmem = o->inmem;
    s->seg_bytes = o->segment_bytes ? o->segment_bytes
                                    : STOR_DEFAULT_SEGMENT_BYTES;
    s->dirfd = s->lockfd = s->seg_fd = s->recv.fd = s->st_fd = -1;
    s->refresh_ms = STOR_STATE_REFRESH_MS;
    s->slots[0].fd = s->slots[1].fd = -1;
    pthread_mutex_init(&s->mu, NULL);
    const char *dir = o->inmem ? "(memory)" : o->dir;
    s->dir = craft_memdup(dir, strlen(dir) + 1);
    int err = s->dir ? 0 : CRAFT_ENOMEM;
    if (err == 0 && !s->inmem)
        err = open_dir(s);
    if (err == 0 && !s->inmem)
        err = take_lock(s, o->lock_wait_ms);
    if (err == 0 && !s->inmem)
        err = recover(s);
    if (err) {
        stor_close(s);
        return err;
    }
    *p = (struct raft_persisted){
        .hs = s->hs,
        .snap = s->slots[0].fd >= 0 ? s->slots[0].meta
                                    : (struct raft_snap_meta){0},
        .entries = s->ents,
        .n_entries = s->n_ents,
    };
    CRAFT_INFO(s->log, "storage: %s: opened: term %" PRIu64 ", commit %"
               PRIu64 ", snapshot %" PRIu64 ", %zu entries up to %" PRIu64,
               s->dir, s->hs.term, s->hs.commit, p->snap.index, s->n_ents,
               s->last);
    *out = s;
    return 0;
}

void stor_release_persisted(struct stor *s)
{
    for (size_t i = 0; i < s->n_bufs; i++)
        craft_free(s->bufs[i]);
    craft_free(s->bufs);
    craft_free(s->ents);
    s->bufs = NULL;
    s->ents = NULL;
    s->n_bufs = s->n_ents = s->cap_ents = 0;
}

static int check_entries(const struct raft_entry *ents, size_t n,
                         uint64_t last)
{
    if (n == 0)
        return 0;
    if (ents == NULL || ents[0].index == 0 || ents[0].index > last + 1)
        return CRAFT_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (ents[i].index != ents[0].index + i ||
            ents[i].len > STOR__REC_MAX - STOR__ENTS_HDR - STOR__ENT_HDR ||
            (ents[i].len && ents[i].data == NULL))
            return CRAFT_EINVAL;
    }
    return 0;
}

int stor_save(struct stor *s, const struct raft_hard_state *hs,
              const struct raft_entry *ents, size_t n,
              const struct raft_snap_chunk *chunk)
{
    if (s->failed)
        return s->failed;
    bool resets = chunk && chunk->last;
    int err = check_entries(ents, n, resets ? chunk->meta.index : s->last);
    if (err == 0 && chunk && chunk->len && chunk->data == NULL)
        err = CRAFT_EINVAL;
    if (err)
        return err;
    bool committed = false;
    if (chunk) {
        err = stor__snap_recv(s, chunk, &committed);
        if (err)
            return err;
    }
    struct stor__batch b = {
        .reset = committed,
        .reset_index = committed ? chunk->meta.index : 0,
        .reset_term = committed ? chunk->meta.term : 0,
        .ents = ents,
        .n = n,
        .hs = hs,
    };
    err = stor__seg_write(s, &b);
    /* The reset record is durable: nothing before it is needed. */
    if (err == 0 && committed)
        err = stor__seg_drop_while_below(s, UINT64_MAX);
    /* After the log: the state file is never ahead of what the log holds
     * but of the commit index, and a new term or vote is in it before this
     * returns (before any message depending on it is sent). */
    if (err == 0)
        err = stor__state_after_save(s);
    return err;
}

int stor_save_commit(struct stor *s, uint64_t commit)
{
    if (s->failed)
        return s->failed;
    if (s->inmem)
        return 0;
    uint64_t c = commit < s->last ? commit : s->last;
    if (c <= s->st.hs.commit)
        return 0;
    if (c > s->hs.commit)
        s->hs.commit = c;
    return stor__state_write(s);
}

bool stor_state_due(const struct stor *s, uint64_t commit)
{
    return !s->inmem && !s->failed && commit > s->st_commit &&
           stor__now_ms(s) >= s->st_next_ms;
}

int stor_compact(struct stor *s, uint64_t keep_from)
{
    if (s->failed)
        return s->failed;
    uint64_t si = s->slots[0].fd >= 0 ? s->slots[0].meta.index : 0;
    if (keep_from > si + 1)
        return CRAFT_EINVAL;
    return stor__seg_drop_while_below(s, keep_from);
}

uint64_t stor_last_index(const struct stor *s)
{
    return s->last;
}

void stor_close(struct stor *s)
{
    if (s == NULL)
        return;
    stor__snap_close_all(s);
    stor__seg_close(s);
    stor__close_fd(s, &s->st_fd);
    stor__close_fd(s, &s->lockfd); /* releases the flock */
    stor__close_fd(s, &s->dirfd);
    stor_release_persisted(s);
    pthread_mutex_destroy(&s->mu);
    craft_free(s->segs);
    craft_free(s->wbuf);
    craft_free(s->dir);
    craft_free(s);
}
