/* Snapshots of the replicated map. Taking one must not stall the loop on a
 * large map, so a forked child writes the map into the store's temporary
 * file (copy-on-write gives it a frozen view, as Redis does); the parent
 * polls for the child's exit at each tick, commits the file in a disk job,
 * tells the core, and compacts the log behind it. Installing one received
 * from the leader replaces the map. GET /backup (backup.c) forks the same
 * writer into a file of its own. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/alloc.h"
#include "node/internal.h"
#include "node/metrics.h"

struct snap_commit {
    struct stor_snap_writer *w;
    struct raft_snap_meta meta;
};

static int compact_job(struct node *n, void *arg)
{
    return stor_compact(n->stor, *(uint64_t *)arg);
}

static void compact_done(struct node *n, void *arg, int rc)
{
    if (rc)
        CRAFT_WARN(&n->log, "log compaction up to %llu failed: %s",
                   (unsigned long long)*(uint64_t *)arg, craft_strerror(rc));
    craft_free(arg);
}

static int commit_job(struct node *n, void *arg)
{
    struct snap_commit *c = arg;
    return stor_snap_commit(c->w, &c->meta);
}

/* A failed snapshot (a full disk, say) is not retried at every batch: each
 * try forks a copy of the whole process. */
static void snapshot_failed(struct node *n)
{
    n->snap_retry_at = node__now(n) + 10000;
}

static void commit_done(struct node *n, void *arg, int rc)
{
    struct snap_commit *c = arg;
    n->snap_busy = false;
    node__metrics_snapshot_end(n, rc == 0);
    if (rc) {
        CRAFT_ERROR(&n->log, "snapshot at %llu not committed: %s",
                    (unsigned long long)n->snap_index, craft_strerror(rc));
        snapshot_failed(n);
        craft_free(c);
        return;
    }
    if (c->meta.index <= raft_snapshot(n->raft)->index) {
        craft_free(c); /* overtaken by a snapshot from the leader */
        return;
    }
    uint64_t *keep = craft_malloc(sizeof *keep);
    int rv = raft_snapshot_taken(n->raft, c->meta.index, c->meta.size, keep);
    if (rv == 0) {
        n->snap_size = c->meta.size;
        /* What applied while it was written is log still held. */
        n->applied_bytes -= n->snap_bytes_at < n->applied_bytes ? n->snap_bytes_at
                                                                : n->applied_bytes;
        n->applied_mem -= n->snap_mem_at < n->applied_mem ? n->snap_mem_at : n->applied_mem;
        node__memory_release(n, "a snapshot"); /* the log behind it is freed */
    }
    if (rv == 0 && keep != NULL) {
        CRAFT_INFO(&n->log, "snapshot at index %llu (%llu bytes); log kept "
                   "from %llu", (unsigned long long)c->meta.index,
                   (unsigned long long)c->meta.size,
                   (unsigned long long)*keep);
        if (node__job(n, compact_job, compact_done, keep) == 0)
            keep = NULL;
    } else if (rv) {
        CRAFT_WARN(&n->log, "core refused snapshot %llu: %s",
                   (unsigned long long)c->meta.index, craft_strerror(rv));
    }
    craft_free(keep);
    craft_free(c);
}

pid_t node__fork_writer(struct node *n, int fd, uint64_t index, bool sync)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* The child: only write(2) and _exit; it dies with its parent, so an
     * orphan never holds the data directory's lock nor a backup's file. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        _exit(1);
    /* Nor, while it writes, anything else of its parent's: the listening
     * ports (a node restarted at once after a crash found them taken until
     * the child was gone), the lock, connections the parent closes (they
     * would stay open until the child exits). A kernel without close_range
     * leaves them: the child still exits with its parent. */
    if (fd > 3)
        (void)close_range(3, (unsigned)fd - 1, 0);
    (void)close_range((unsigned)fd + 1, ~0u, 0);
    int err = kv_snapshot_write_child(n->kv, fd, index);
    /* A snapshot flushes its data here, off the loop and outside the
     * disk-job queue: the commit's own fdatasync then has little left to
     * do, and log writes queued behind it are not held up. */
    if (err == 0 && sync && fdatasync(fd) != 0)
        err = -1;
    _exit(err ? 1 : 0);
}

/* Whether the log since the last snapshot calls for a new one. The core's
 * threshold counts entries; a snapshot writes the whole map, so wait also
 * until the log since the last one is as large as that snapshot (as Redis
 * rewrites its AOF when it has doubled): snapshots then cost no more than
 * the log they replace, however large the map (else a large map is
 * rewritten every few thousand small writes, and each fork and
 * copy-on-write burst shows in the latency of writes). But that log is
 * also held in memory until the snapshot: once it takes NODE__SNAP_LOG_MIN
 * bytes and an eighth of the snapshot, take one whatever the entry count,
 * so that the log cannot become a second copy of the map in memory (the
 * snapshot then costs at most eight times the memory it frees: a map of
 * 10^6 small keys, writer included, peaks at 1.3 times its settled RSS
 * under random overwrites instead of 1.43 with a quarter, docs/kv.md).
 * That memory
 * is counted as the core holds it, NODE__ENTRY_MEM more than its bytes for
 * each entry: for small writes, more than the entries' bytes themselves. */
#define NODE__SNAP_LOG_MIN (4u << 20)
static bool snapshot_due(const struct node *n)
{
    uint64_t cap = n->snap_size / 8 > NODE__SNAP_LOG_MIN ? n->snap_size / 8
                                                         : NODE__SNAP_LOG_MIN;
    if (n->o.snapshot_log_bytes != 0) /* -snapshot-log-bytes */
        cap = n->o.snapshot_log_bytes;
    if (n->applied_mem >= cap)
        return true;
    return n->rd.want_snapshot && n->applied_bytes >= n->snap_size;
}

/* Once writes pause, the log since the last snapshot is memory held for
 * nothing but followers far behind: take a snapshot then if that log is at
 * least a sixteenth of the snapshot (and NODE__SNAP_QUIET_MIN). A quiet
 * node's RSS is then about its map's, wherever the writes stopped between
 * two snapshots (up to an eighth of a snapshot more otherwise), at the
 * price of one more snapshot per burst of writes. -snapshot-log-bytes,
 * when given, is the only memory rule: none then. */
#define NODE__SNAP_QUIET_MIN (1u << 20)
static bool snapshot_worth_when_quiet(const struct node *n)
{
    if (n->o.snapshot_log_bytes != 0)
        return false;
    uint64_t min = n->snap_size / 16 > NODE__SNAP_QUIET_MIN ? n->snap_size / 16
                                                            : NODE__SNAP_QUIET_MIN;
    return n->applied_mem >= min;
}

static bool snapshot_can_start(const struct node *n)
{
    return !n->snap_busy && !n->installing && !n->stopping &&
           node__now(n) >= n->snap_retry_at &&
           n->applied > raft_snapshot(n->raft)->index;
}

static void snapshot_start(struct node *n)
{
    uint64_t index = n->applied;
    struct raft_snap_meta meta = {.index = index,
                                  .term = raft_term_at(n->raft, index),
                                  .conf = *raft_conf_at(n->raft, index)};
    int rv = stor_snap_begin(n->stor, &meta, &n->snap_w);
    if (rv) {
        CRAFT_WARN(&n->log, "cannot start a snapshot: %s", craft_strerror(rv));
        return;
    }
    pid_t pid = node__fork_writer(n, stor_snap_writer_fd(n->snap_w), index, true);
    if (pid < 0) {
        CRAFT_WARN(&n->log, "cannot fork the snapshot writer: %s",
                   craft_strerror(-errno));
        stor_snap_abort(n->snap_w);
        n->snap_w = NULL;
        return;
    }
    n->snap_pid = pid;
    n->snap_index = index;
    n->snap_bytes_at = n->applied_bytes;
    n->snap_mem_at = n->applied_mem;
    n->snap_busy = true;
    node__metrics_snapshot_begin(n);
}

/* Start a snapshot if one is due and none is being taken. */
void node__snapshot_maybe(struct node *n)
{
    if (snapshot_can_start(n) && snapshot_due(n))
        snapshot_start(n);
}

bool node__snapshot_quiet(struct node *n)
{
    if (snapshot_can_start(n) && snapshot_worth_when_quiet(n))
        snapshot_start(n);
    return n->snap_busy;
}

/* At each tick: has the child finished? */
void node__snapshot_poll(struct node *n)
{
    if (n->snap_pid <= 0)
        return;
    int status;
    pid_t r = waitpid(n->snap_pid, &status, WNOHANG);
    if (r == 0)
        return;
    n->snap_pid = 0;
    bool ok = r > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok) {
        CRAFT_ERROR(&n->log, "snapshot writer failed (status %d)", status);
        stor_snap_abort(n->snap_w);
        n->snap_w = NULL;
        n->snap_busy = false;
        snapshot_failed(n);
        return;
    }
    struct snap_commit *c = craft_calloc(1, sizeof *c);
    if (c != NULL) {
        c->w = n->snap_w; /* before the job can start on a worker thread */
        if (node__job(n, commit_job, commit_done, c) == 0) {
            n->snap_w = NULL;
            return;
        }
    }
    craft_free(c);
    stor_snap_abort(n->snap_w);
    n->snap_w = NULL;
    n->snap_busy = false;
}

void node__snapshot_cancel(struct node *n)
{
    if (n->snap_pid > 0) {
        kill(n->snap_pid, SIGKILL);
        waitpid(n->snap_pid, NULL, 0);
        n->snap_pid = 0;
    }
    if (n->snap_w) {
        stor_snap_abort(n->snap_w);
        n->snap_w = NULL;
        n->snap_busy = false; /* (a commit already queued stays busy) */
    }
}

/* Replace the map by snapshot `index` from the store. */
/* The map kv, read from snapshot `index`, replaces the node's. */
static void snapshot_swap_in(struct node *n, struct kv *kv, uint64_t index,
                             const struct raft_snap_meta *meta)
{
    struct kv *old = n->kv;
    n->kv = kv;
    n->applied = index;
    n->snap_size = meta->size;
    n->applied_bytes = n->applied_mem = 0;
    node__memory_free_map(n, old); /* on a worker, then trimmed */
    node__leases_rebuild(n); /* every lease of it starts now */
    node__watch_kv_replaced(n);
    if (n->peers)
        node__peers_sync(n);
    CRAFT_INFO(&n->log, "state restored from snapshot %llu (%zu keys)",
               (unsigned long long)index, kv_count(kv));
}

/* Reads the map of snapshot `index` from fd (closed): 0 and *out, or an
 * error. Touches nothing of the node: it runs on a worker thread. */
static int snapshot_read_map(int fd, uint64_t index, struct kv **out)
{
    uint64_t applied;
    int rv = kv_restore_fd(fd, 0, out, &applied);
    close(fd);
    if (rv)
        return rv;
    if (applied != index) {
        kv_free(*out);
        *out = NULL;
        return CRAFT_ECORRUPT;
    }
    return 0;
}

int node__snapshot_restore(struct node *n, uint64_t index)
{
    int fd;
    uint64_t off;
    struct raft_snap_meta meta;
    int rv = stor_snap_open_read(n->stor, index, &fd, &off, &meta);
    if (rv)
        return rv;
    struct kv *kv;
    rv = snapshot_read_map(fd, index, &kv);
    if (rv)
        return rv;
    snapshot_swap_in(n, kv, index, &meta);
    return 0;
}

/* A snapshot received from the leader: its map is built on a worker thread
 * (10^6 keys take most of a second, which on the loop held up heartbeats,
 * reads and the transport: make bench-stall), then swapped in here. */
struct snap_install {
    int fd;
    uint64_t index;
    struct raft_snap_meta meta;
    struct kv *kv;
    void (*done)(struct node *n);
};

static int install_job(struct node *n, void *arg)
{
    struct snap_install *in = arg;
    (void)n;
    return snapshot_read_map(in->fd, in->index, &in->kv);
}

static void install_failed(struct node *n, uint64_t index, int rv)
{
    CRAFT_ERROR(&n->log, "cannot load the snapshot received (%llu): %s",
                (unsigned long long)index, craft_strerror(rv));
    abort(); /* it is on disk as the node's state: a restart loads it */
}

static void install_done(struct node *n, void *arg, int rc)
{
    struct snap_install *in = arg;
    if (rc)
        install_failed(n, in->index, rc);
    n->installing = false;
    snapshot_swap_in(n, in->kv, in->index, &in->meta);
    void (*done)(struct node *) = in->done;
    craft_free(in);
    done(n);
}

void node__snapshot_install(struct node *n, uint64_t index, void (*done)(struct node *n))
{
    struct snap_install *in = craft_calloc(1, sizeof *in);
    if (in == NULL)
        install_failed(n, index, CRAFT_ENOMEM);
    uint64_t off;
    int rv = stor_snap_open_read(n->stor, index, &in->fd, &off, &in->meta);
    if (rv)
        install_failed(n, index, rv);
    in->index = index;
    in->done = done;
    if (node__job(n, install_job, install_done, in) != 0)
        install_failed(n, index, CRAFT_ENOMEM);
    n->installing = true;
}
