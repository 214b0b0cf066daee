/* The ready loop. Once per loop iteration (a uv_check handle), everything
 * that arrived in it (messages, proposals, reads) leaves the core as one
 * ready batch: the leader's appends go out at once, the batch is made
 * durable by one disk job on the thread pool (group commit) while the loop
 * goes on, and when it is, the held messages go out and the core advances.
 * Heartbeats made meanwhile do not wait for the write (send_heartbeats).
 * Disk jobs run one at a time, in the order they were queued.
 *
 * A batch applies at most the core's max_apply_bytes (more after a disk
 * write, see apply_budget); what remains (a restart's replay, a follower's
 * catch-up) goes on in the next batches, the applier idle handle keeping
 * the loop from blocking while no batch is out, so that requests and
 * heartbeats are served between them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "node/internal.h"
#include "node/metrics.h"

struct node__job {
    struct node__job *next;
    node__job_fn fn;
    node__job_done done;
    void *arg;
    int rc;
    struct stor_sync_log syncs; /* what the job's syncs took */
};

static void job_start(struct node *n);

static void job_work(uv_work_t *w)
{
    struct node *n = w->data;
    struct node__job *j = n->jobs_head;
    j->rc = j->fn(n, j->arg);
    stor_sync_take(n->stor, &j->syncs); /* on this thread, like the job */
}

static void job_after(uv_work_t *w, int status)
{
    struct node *n = w->data;
    struct node__job *j = n->jobs_head;
    n->jobs_head = j->next;
    if (n->jobs_head == NULL)
        n->jobs_tail = NULL;
    n->job_running = false;
    int rc = status ? status : j->rc;
    if (status == 0)
        node__metrics_syncs(n, &j->syncs);
    node__job_done done = j->done;
    void *arg = j->arg;
    craft_free(j);
    job_start(n);
    done(n, arg, rc);
}

static void job_start(struct node *n)
{
    if (n->job_running || n->jobs_head == NULL)
        return;
    n->job_running = true;
    n->work.data = n;
    int rv = uv_queue_work(n->loop, &n->work, job_work, job_after);
    if (rv) {
        CRAFT_ERROR(&n->log, "cannot queue a disk job: %s", uv_strerror(rv));
        abort();
    }
}

/* Queue fn(arg) to run on a worker thread, then done(arg, rc) on the loop. */
int node__job(struct node *n, node__job_fn fn, node__job_done done, void *arg)
{
    struct node__job *j = craft_calloc(1, sizeof *j);
    if (j == NULL)
        return CRAFT_ENOMEM;
    j->fn = fn;
    j->done = done;
    j->arg = arg;
    if (n->jobs_tail)
        n->jobs_tail->next = j;
    else
        n->jobs_head = j;
    n->jobs_tail = j;
    job_start(n);
    return 0;
}

/* ---- sending ---- */

/* What a lost TCP segment must not hold up: the messages that keep a
 * leader in office and elect the next one. Small, and safe to deliver
 * twice or out of order (the core takes duplicates and reordering, the
 * simulator makes both), they also go as datagrams (peer_send_urgent).
 * The TCP copy is for networks that drop UDP. Votes always have one.
 * Heartbeats and their answers have one at most every fifth of a tick per
 * peer: a tick's round keeps its copy unless a round had one just before,
 * and the rounds linearizable reads start between ticks (up to one per
 * read on the leader) go mostly as datagrams alone, one send and one
 * wake-up each instead of two. Where UDP is dropped one way only, a read
 * whose round was lost waits for the next round with a copy, within a
 * tick, and the transport then keeps the copies for a while
 * (peer_send_urgent). Returns
 * the copy gap in ms, or -1: not urgent, the connection only. */
static int urgent_copy_gap(const struct node *n, const struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_HEARTBEAT_RESP:
        return n->o.tick_ms >= 5 ? (int)(n->o.tick_ms / 5) : 1;
    case RAFT_MSG_VOTE:
    case RAFT_MSG_VOTE_RESP:
    case RAFT_MSG_PRE_VOTE:
    case RAFT_MSG_PRE_VOTE_RESP:
        return 0;
    default:
        return -1;
    }
}

void node__send(struct node *n, struct raft_msg *m)
{
    uint8_t chunk_stack[1];
    uint8_t *chunk = NULL;
    if (m->type == RAFT_MSG_SNAP && m->snap.len > 0) {
        chunk = craft_malloc(m->snap.len);
        if (chunk == NULL)
            return;
        int rv = stor_snap_read(n->stor, m->snap.meta.index, m->snap.offset,
                                chunk, m->snap.len);
        if (rv) {
            CRAFT_WARN(&n->log, "cannot read snapshot %llu for a follower: %s",
                       (unsigned long long)m->snap.meta.index,
                       craft_strerror(rv));
            craft_free(chunk);
            return;
        }
        m->snap.data = chunk;
    } else if (m->type == RAFT_MSG_SNAP) {
        m->snap.data = chunk_stack;
    }
    size_t size = raft_msg_size(m);
    if (size > n->ecap) {
        uint8_t *b = craft_realloc(n->ebuf, size);
        if (b == NULL) {
            craft_free(chunk);
            return;
        }
        n->ebuf = b;
        n->ecap = size;
    }
    raft_msg_encode(m, n->ebuf);
    craft_free(chunk);
    int gap = urgent_copy_gap(n, m);
    int rv = gap >= 0 ? peer_send_urgent(n->peers, m->to, n->ebuf, size,
                                         (unsigned)gap)
                      : peer_send(n->peers, m->to, n->ebuf, size);
    if (rv && rv != -ENOBUFS && rv != CRAFT_ENOTFOUND)
        CRAFT_DEBUG(&n->log, "send to %016llx: %s", (unsigned long long)m->to,
                    peer_strerror(rv));
}

/* ---- the batch ---- */

static void apply_committed(struct node *n, const struct raft_ready *rd)
{
    for (size_t i = 0; i < rd->n_committed; i++) {
        const struct raft_entry *e = &rd->committed[i];
        if (e->index <= n->applied)
            continue;
        if (e->type == RAFT_ENTRY_NORMAL) {
            int rv = kv_apply_at(n->kv, e->index, e->data, e->len);
            if (rv == CRAFT_ECORRUPT) /* the same on every node: skipped */
                CRAFT_ERROR(&n->log, "entry %llu does not apply: %s",
                            (unsigned long long)e->index, craft_strerror(rv));
            else if (rv) {
                /* Out of memory here only: skipping the entry would leave
                 * this node's map unlike every other's for good. Stop as a
                 * crash would; a restart applies it again from the log. */
                CRAFT_ERROR(&n->log, "cannot apply committed entry %llu: %s; "
                            "stopping rather than diverge from the cluster",
                            (unsigned long long)e->index, craft_strerror(rv));
                exit(1);
            }
            const struct kv_result *res = kv_last_result(n->kv);
            if (rv == 0 && res != NULL && res->index == e->index)
                node__leases_applied(n, res); /* a lease command's effect */
        } else if (e->type == RAFT_ENTRY_CONF) {
            node__apply_conf(n, e);
        }
        n->applied = e->index;
        n->applied_bytes += e->len;
        n->applied_mem += e->len + NODE__ENTRY_MEM;
        node__on_apply(n, e);
        if (e->type == RAFT_ENTRY_CONF)
            node__joins_look(n);
        node__watch_applied(n, e->index);
    }
}

/* A leader's first commit of its term (its no-op entry, or a later one in
 * the same batch): the end of a failover, logged at debug level for the
 * breakdown in docs/operations.md ("Failover"). */
static void log_first_commit(struct node *n, const struct raft_ready *rd)
{
    if (rd->n_committed == 0 || n->soft.role != RAFT_LEADER ||
        n->first_commit_term == n->soft.term)
        return;
    const struct raft_entry *last = &rd->committed[rd->n_committed - 1];
    if (last->term != n->soft.term)
        return;
    n->first_commit_term = last->term;
    CRAFT_DEBUG(&n->log, "first commit of term %llu at index %llu",
                (unsigned long long)last->term,
                (unsigned long long)last->index);
}

static void finish_batch_rest(struct node *n)
{
    struct raft_ready *rd = &n->rd;
    for (size_t i = 0; i < rd->n_msgs_after; i++)
        node__send(n, &rd->msgs_after[i]);
    if (rd->hs_changed) /* every entry up to it is durable by now */
        n->commit_seen = rd->hs.commit;
    raft_advance(n->raft, rd);
    n->rd_out = false;
    node__snapshot_maybe(n);
}

static void snapshot_installed(struct node *n)
{
    node__on_snapshot_installed(n);
    finish_batch_rest(n);
    node__pump(n);
}

/* The batch is durable: a snapshot it completes replaces the map (off the
 * loop: the batch stays out meanwhile, so nothing applies, while
 * heartbeats still go both ways), then the messages that had to wait for
 * the disk go out and the core is told. */
static void finish_batch(struct node *n)
{
    struct raft_ready *rd = &n->rd;
    if (rd->snap_chunk != NULL && rd->snap_chunk->last) {
        node__snapshot_cancel(n); /* a local one would be older */
        node__snapshot_install(n, rd->snap_chunk->meta.index, snapshot_installed);
        return;
    }
    finish_batch_rest(n);
}

static void pump_batches(struct node *n);

static int save_job(struct node *n, void *arg)
{
    struct raft_ready *rd = arg;
    return stor_save(n->stor, rd->hs_changed ? &rd->hs : NULL, rd->entries,
                     rd->n_entries, rd->snap_chunk);
}

static void save_done(struct node *n, void *arg, int rc)
{
    if (rc) {
        /* Nothing of this batch may be acknowledged, and the store refuses
         * further writes: stop as a crash would. A restart recovers. */
        CRAFT_ERROR(&n->log, "cannot persist the log: %s; stopping",
                    craft_strerror(rc));
        exit(1);
    }
    finish_batch(n);
    node__pump(n);
}

/* ---- the state file's commit index ----
 * A save records it now and then by itself; a node whose commit index
 * moved in batches with nothing to save (an idle follower learning the
 * last commits from a heartbeat) records it here, once due (at most once a
 * second, one fdatasync). */

static int commit_job(struct node *n, void *arg)
{
    return stor_save_commit(n->stor, *(const uint64_t *)arg);
}

static void commit_done(struct node *n, void *arg, int rc)
{
    n->commit_job = false;
    if (rc) {
        /* As for a save: a failed fsync has poisoned the store. */
        CRAFT_ERROR(&n->log, "cannot record the commit index: %s; stopping",
                    craft_strerror(rc));
        exit(1);
    }
}

void node__commit_tick(struct node *n)
{
    if (n->commit_job || !stor_state_due(n->stor, n->commit_seen))
        return;
    n->commit_saving = n->commit_seen;
    if (node__job(n, commit_job, commit_done, &n->commit_saving) == 0)
        n->commit_job = true;
}

/* A batch is out (its disk write under way): heartbeats and their answers
 * made since go out now rather than after the write, so a slow fsync does
 * not look like a dead leader to the followers (nor a dead follower to
 * check-quorum). */
static void send_heartbeats(struct node *n)
{
    struct raft_msg hb[16];
    size_t k;
    while (n->rd_out &&
           (k = raft_take_heartbeats(n->raft, hb, sizeof hb / sizeof hb[0])) > 0)
        for (size_t i = 0; i < k; i++)
            node__send(n, &hb[i]);
}

/* Nothing to do here: an active idle handle makes the loop poll without
 * blocking, and its check phase (node.c's pumper) pumps the next batch. */
static void on_idle(uv_idle_t *h)
{
    (void)h;
}

void node__pump(struct node *n)
{
    pump_batches(n);
    /* Entries left for the next iteration, and no batch out to wait for:
     * poll without blocking, then pump again. */
    if (!n->rd_out && raft_apply_pending(n->raft))
        uv_idle_start(&n->applier, on_idle);
    else
        uv_idle_stop(&n->applier);
    send_heartbeats(n);
    if (n->peers)
        peer_transport_flush(n->peers);
}

/* A batch made after a disk write may apply NODE__APPLY_PER_MS for each ms
 * the write took (up to NODE__APPLY_MAX_MS of them), not just
 * max_apply_bytes: while every batch carries entries to save, batches come
 * one per write, and a fixed amount per write would let a follower whose
 * disk is slower fall behind for good. Time spent applying earns nothing,
 * so a replay's batches do not grow. */
#define NODE__APPLY_PER_MS (64u << 10)
#define NODE__APPLY_MAX_MS 16

static void apply_budget(struct node *n)
{
    if (n->save_start_ns == 0)
        return;
    uint64_t ms = (uv_hrtime() - n->save_start_ns) / 1000000u;
    n->save_start_ns = 0;
    if (ms > NODE__APPLY_MAX_MS)
        ms = NODE__APPLY_MAX_MS;
    if (ms > 1)
        raft_set_apply_budget(n->raft, (size_t)ms * NODE__APPLY_PER_MS);
}

static void pump_batches(struct node *n)
{
    while (!n->rd_out && raft_has_ready(n->raft)) {
        struct raft_ready *rd = &n->rd;
        apply_budget(n);
        raft_ready(n->raft, rd);
        n->rd_out = true;
        /* Placements first: a follower may learn where the leader put its
         * write and that it committed in one batch, and the write's answer
         * needs the entry's result, which lasts only until the next entry
         * applies (node__on_apply reads it). */
        for (size_t i = 0; i < rd->n_props; i++) {
            node__metrics_prop(n, &rd->props[i]);
            node__on_prop(n, &rd->props[i]);
        }
        apply_committed(n, rd);
        log_first_commit(n, rd);
        for (size_t i = 0; i < rd->n_msgs; i++)
            node__send(n, &rd->msgs[i]);
        for (size_t i = 0; i < rd->n_reads; i++)
            node__on_read(n, &rd->reads[i]);
        /* A commit index alone is not worth an fsync: it is only a hint
         * for restarts (the core relearns it). Terms and votes are. */
        bool vote = rd->hs_changed && (rd->hs.term != n->saved_term ||
                                       rd->hs.vote != n->saved_vote);
        if (vote || rd->n_entries > 0 || rd->snap_chunk != NULL) {
            if (rd->hs_changed) {
                n->saved_term = rd->hs.term;
                n->saved_vote = rd->hs.vote;
            }
            /* The appends first, then the disk: a follower's flush is on
             * the write's path, ours runs beside it (thesis §10.2.1), and
             * waking a pool thread costs a few microseconds. */
            if (n->peers)
                peer_transport_flush(n->peers);
            n->save_start_ns = uv_hrtime();
            if (node__job(n, save_job, save_done, rd) != 0) {
                CRAFT_ERROR(&n->log, "out of memory queueing a disk write");
                abort();
            }
            return;
        }
        finish_batch(n);
        if (rd->n_committed > 0 && raft_apply_pending(n->raft))
            return; /* the bound was reached: the rest in the next iteration */
    }
}
