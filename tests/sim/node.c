/* One simulated node: runs its core's ready batches by the contract in
 * raft.h (send, persist after a delay, send-after, apply, advance), takes
 * snapshots, crashes (keeping a prefix of the in-flight write) and restarts
 * from what was durable, and is paused (frozen while its clock runs on)
 * and woken as craftd's loop would wake after a SIGSTOP. */
#include "sim/sim.h"

#include <inttypes.h>
#include <string.h>

#include "common/alloc.h"

static struct raft_config node_config(const struct sim *s,
                                      const struct sim_node *n)
{
    struct raft_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.id = n->rid;
    cfg.seed = sim_mix(s->seed, n->id * 1000 + n->incarnation);
    cfg.election_ticks = SIM_ELECTION_TICKS;
    cfg.election_jitter_ticks = s->p.election_jitter;
    cfg.check_quorum_rounds = s->p.check_quorum_rounds;
    cfg.heartbeat_ticks = s->p.heartbeat_ticks;
    cfg.max_inflight = s->p.max_inflight;
    cfg.max_inflight_bytes = 1 << 20;
    cfg.max_msg_bytes = s->p.max_msg_bytes;
    cfg.max_uncommitted_bytes = s->p.max_uncommitted;
    cfg.snapshot_threshold = s->p.snap_threshold;
    cfg.snapshot_trailing = s->p.snap_trailing;
    cfg.snapshot_trailing_bytes = s->p.snap_trailing_bytes;
    cfg.snap_chunk_bytes = s->p.snap_chunk;
    cfg.max_apply_bytes = s->p.max_apply_bytes;
    return cfg;
}

void sim_node_observe(struct sim *s, struct sim_node *n)
{
    struct raft_soft_state ss = raft_soft(n->r);
    if (ss.role != n->role || ss.term != n->term || ss.leader != n->leader)
        sim_ev(s, EV_ROLE, ss.role, n->id, 0, ss.term, sim_tag(s, ss.leader), 0,
               0, NULL);
    sim_check_observe(s, n, &ss);
    if (ss.role == RAFT_LEADER) {
        sim_check_leader(s, n->id | (uint64_t)n->gen << 8, ss.term);
        if (n->role != RAFT_LEADER || n->term != ss.term) {
            n->lead_tick = raft_now(n->r);
            struct sim_logview v;
            sim_logview_of(&v, n->r);
            sim_check_leader_complete(s, n->id, ss.term, &v);
        }
    }
    n->role = ss.role;
    n->term = ss.term;
    n->leader = ss.leader;
    uint64_t commit = raft_commit_index(n->r);
    sim_check_commit(s, n->id, &n->last_commit, commit);
    if (commit > raft_last_index(n->r))
        sim_fail(s, "commit-monotonic", "n%" PRIu64 " commit %" PRIu64
                 " is beyond its last index %" PRIu64, n->id, commit,
                 raft_last_index(n->r));
}

/* A founder bootstraps (again, after a crash that lost its bootstrap: as
 * craftd does when it finds no state; the entries are the same each time,
 * with the founders' first Raft ids). */
static void bootstrap(struct sim *s, struct sim_node *n)
{
    uint64_t voters[SIM_MAX_NODES];
    struct raft_conf_change ctxs[SIM_MAX_NODES];
    char names[SIM_MAX_NODES][16];
    for (unsigned i = 0; i < s->p.n_founders; i++) {
        voters[i] = sim_rid_of(s, i + 1, 1);
        snprintf(names[i], sizeof(names[i]), "n%u", i + 1);
        ctxs[i].op = RAFT_CONF_ADD_VOTER;
        ctxs[i].node = voters[i];
        ctxs[i].ctx = (const uint8_t *)names[i];
        ctxs[i].ctx_len = (uint32_t)strlen(names[i]);
    }
    int rc = raft_bootstrap(n->r, voters, s->p.n_founders,
                            s->p.boot_ctx ? ctxs : NULL);
    if (rc)
        sim_fail(s, "setup", "raft_bootstrap(n%" PRIu64 ") = %s", n->id,
                 craft_errname(rc));
}

void sim_node_boot(struct sim *s, struct sim_node *n, bool founder)
{
    n->incarnation = 1;
    n->disk.log.first = 1;
    n->boot_ticks = n->clock_ticks;
    struct raft_config cfg = node_config(s, n);
    int rc = raft_new(&cfg, NULL, &n->r);
    if (rc) {
        sim_fail(s, "setup", "raft_new(n%" PRIu64 ") = %s", n->id,
                 craft_errname(rc));
        return;
    }
    n->state = SIM_UP;
    sim_watch_start(s, n);
    if (founder)
        bootstrap(s, n);
    sim_node_observe(s, n);
}

const uint8_t *sim_node_snap_bytes(const struct sim_node *n, uint64_t index,
                                   uint64_t *size)
{
    const struct sim_snap *sn = sim_disk_find_snap(&n->disk, index);
    if (sn) {
        *size = sn->meta.size;
        return sn->data;
    }
    if (n->rx.complete && n->rx.meta.index == index) {
        *size = n->rx.meta.size;
        return n->rx.buf;
    }
    return NULL;
}

/* A message that promises durability may leave only once it holds. */
static void check_send(struct sim *s, struct sim_node *n,
                       const struct raft_msg *m)
{
    const struct sim_disk *d = &n->disk;
    if (m->type == RAFT_MSG_VOTE_RESP && !m->reject &&
        !(d->hs.term > m->term ||
          (d->hs.term == m->term && d->hs.vote == m->to)))
        sim_fail(s, "persist-before-send", "n%" PRIu64 " grants its vote to n%u"
                 " in term %" PRIu64 " but its durable hard state is term %"
                 PRIu64 " vote n%u", n->id, sim_slot_of(s, m->to), m->term,
                 d->hs.term, sim_slot_of(s, d->hs.vote));
    if (m->type == RAFT_MSG_APP_RESP && !m->reject && m->index &&
        m->index > d->cur.meta.index && !sim_log_term(&d->log, m->index))
        sim_fail(s, "persist-before-send", "n%" PRIu64 " acknowledges entry %"
                 PRIu64 " to n%u before it is durable (disk log %" PRIu64 "..%"
                 PRIu64 ")", n->id, m->index, sim_slot_of(s, m->to),
                 d->log.first, sim_log_last(&d->log));
}

static void send_all(struct sim *s, struct sim_node *n,
                     const struct raft_msg *m, size_t count)
{
    for (size_t i = 0; i < count && !s->failed; i++) {
        check_send(s, n, &m[i]);
        if (!s->failed)
            sim_net_send(s, n, &m[i]);
    }
}

/* Volatile: a chunk is written into the receive buffer when handed out. */
static void rx_write(struct sim *s, struct sim_node *n,
                     const struct raft_snap_chunk *c)
{
    struct sim_rx *rx = &n->rx;
    if (c->offset == 0) {
        craft_free(rx->buf);
        memset(rx, 0, sizeof(*rx));
        rx->meta = c->meta;
        rx->buf = craft_malloc(c->meta.size);
        rx->active = true;
    } else if (!rx->active || rx->meta.index != c->meta.index ||
               rx->meta.term != c->meta.term || rx->complete) {
        sim_fail(s, "snapshot-chunks", "n%" PRIu64 " is handed chunk at offset"
                 " %" PRIu64 " of snapshot %" PRIu64 " without its beginning",
                 n->id, c->offset, c->meta.index);
        return;
    }
    if (c->offset > rx->next || c->offset + c->len > rx->meta.size ||
        c->meta.size != rx->meta.size || (c->len && !c->data)) {
        sim_fail(s, "snapshot-chunks", "n%" PRIu64 " chunk %" PRIu64 "+%u of"
                 " snapshot %" PRIu64 " (size %" PRIu64 ") leaves a hole or"
                 " overflows (have %" PRIu64 " bytes)", n->id, c->offset,
                 c->len, c->meta.index, c->meta.size, rx->next);
        return;
    }
    if (c->len)
        memcpy(rx->buf + c->offset, c->data, c->len);
    if (c->offset + c->len > rx->next)
        rx->next = c->offset + c->len;
    if (c->last) {
        if (rx->next != rx->meta.size)
            sim_fail(s, "snapshot-chunks", "n%" PRIu64 " last chunk of"
                     " snapshot %" PRIu64 " leaves it at %" PRIu64 " of %"
                     PRIu64 " bytes", n->id, c->meta.index, rx->next,
                     rx->meta.size);
        rx->complete = true;
    }
}

/* Durable: the received snapshot replaces the stored one; the log is kept
 * after it only if it holds the snapshot's last entry (Raft's rule). */
static void install_snapshot(struct sim *s, struct sim_node *n,
                             const struct raft_snap_chunk *c)
{
    struct sim_disk *d = &n->disk;
    struct sim_rx *rx = &n->rx;
    if (!rx->complete || rx->meta.index != c->meta.index) {
        sim_fail(s, "snapshot-chunks", "n%" PRIu64 " has no complete snapshot"
                 " %" PRIu64 " to install", n->id, c->meta.index);
        return;
    }
    uint64_t si = rx->meta.index, st = rx->meta.term;
    bool same = d->cur.meta.index == si && d->cur.meta.term == st;
    sim_snap_free(&d->prev);
    d->prev = d->cur;
    d->cur.meta = rx->meta;
    d->cur.data = rx->buf;
    rx->buf = NULL;
    memset(rx, 0, sizeof(*rx));
    if (sim_log_term(&d->log, si) == st)
        sim_log_compact(&d->log, si); /* keep si as the base, and after it */
    else if (!(same && d->log.first == si + 1))
        sim_log_reset(&d->log, si + 1);
}

static size_t n_parts(const struct raft_ready *rd)
{
    return (rd->snap_chunk ? 1 : 0) + rd->n_entries + (rd->hs_changed ? 1 : 0);
}

/* Make the first k parts of the in-flight write durable, in order: the
 * snapshot chunk, the entries one by one, then the hard state. */
static void persist_prefix(struct sim *s, struct sim_node *n, size_t k)
{
    const struct raft_ready *rd = &n->rd;
    struct sim_disk *d = &n->disk;
    size_t done = 0;
    if (rd->snap_chunk && done < k) {
        done++;
        if (rd->snap_chunk->last)
            install_snapshot(s, n, rd->snap_chunk);
    }
    size_t m = rd->n_entries < k - done ? rd->n_entries : k - done;
    if (m && !s->failed) {
        /* Log matching is checked on what becomes durable: entries handed
         * out but lost in a crash were never seen by anyone. */
        sim_check_entries(s, n->id, rd->entries, m, n->rd_prev_term);
        int err = sim_log_append(&d->log, rd->entries, m, d->cur.meta.index);
        if (err && !s->failed)
            sim_fail(s, "persist-gap", "n%" PRIu64 " asked to persist entries %"
                     PRIu64 "..%" PRIu64 " onto a disk log %" PRIu64 "..%" PRIu64
                     " (snapshot %" PRIu64 "): %s", n->id, rd->entries[0].index,
                     rd->entries[m - 1].index, d->log.first,
                     sim_log_last(&d->log), d->cur.meta.index,
                     craft_errname(err));
    }
    done += m;
    if (rd->hs_changed && done < k)
        d->hs = rd->hs;
}

/* Entries handed out to apply must already be durable on this node. */
static void check_committed_durable(struct sim *s, struct sim_node *n)
{
    const struct raft_ready *rd = &n->rd;
    const struct sim_disk *d = &n->disk;
    for (size_t i = 0; i < rd->n_committed && !s->failed; i++) {
        const struct raft_entry *e = &rd->committed[i];
        if (e->index <= d->cur.meta.index)
            continue;
        uint64_t t = sim_log_term(&d->log, e->index);
        if (t != e->term)
            sim_fail(s, "apply-before-durable", "n%" PRIu64 " hands out entry %"
                     PRIu64 " term %" PRIu64 " to apply, but its disk has %s %"
                     PRIu64 " there", n->id, e->index, e->term,
                     t ? "term" : "nothing:", t);
    }
}

/* A batch's budget to apply: max_apply_bytes, or now and then a budget
 * given for that batch alone (raft_set_apply_budget), as the daemon gives
 * a batch more when more time has passed since the last. */
static void set_apply_budget(struct sim *s, struct sim_node *n)
{
    size_t cap = s->p.max_apply_bytes ? s->p.max_apply_bytes : 64u << 10;
    n->rd_apply_budget = cap;
    if (s->p.max_apply_bytes && sim_rng_below(&s->rng, 4) == 0) {
        n->rd_apply_budget = cap * (size_t)sim_rng_range(&s->rng, 1, 4);
        raft_set_apply_budget(n->r, n->rd_apply_budget);
    }
}

/* A batch hands out at most its budget to apply (one entry always), and
 * stops short of what is due only where the next entry would go over. */
static void check_apply_bound(struct sim *s, struct sim_node *n)
{
    const struct raft_ready *rd = &n->rd;
    size_t cap = n->rd_apply_budget, used = 0;
    for (size_t i = 0; i < rd->n_committed; i++)
        used += rd->committed[i].len + RAFT_APPLY_ENTRY_COST;
    if (rd->n_committed > 1 && used > cap) {
        sim_fail(s, "apply-batch-bound", "n%" PRIu64 " hands out %zu entries"
                 " (%zu bytes) to apply in one batch, over its bound of %zu",
                 n->id, rd->n_committed, used, cap);
        return;
    }
    if (!raft_apply_pending(n->r))
        return;
    uint64_t next = raft_applied_index(n->r) + 1;
    const struct sim_ent *e = sim_log_at(&n->disk.log, next);
    if (e == NULL)
        sim_fail(s, "apply-batch-bound", "n%" PRIu64 " has entry %" PRIu64
                 " due to apply, but not on its disk", n->id, next);
    else if (rd->n_committed == 0 ||
             used + e->len + RAFT_APPLY_ENTRY_COST <= cap)
        sim_fail(s, "apply-batch-bound", "n%" PRIu64 " stops at %zu entries"
                 " (%zu bytes) to apply, short of its bound of %zu: entry %"
                 PRIu64 " (%u bytes) would fit", n->id, rd->n_committed, used,
                 cap, next, e->len);
}

static void apply_one(struct sim *s, struct sim_node *n,
                      const struct raft_entry *e)
{
    sim_check_apply(s, n->id, n->kv.applied + 1, e);
    sim_model_step(s, e);
    sim_watch_apply(s, n, e);
    if (s->failed)
        return;
    int err = 0;
    struct raft_conf_change cc;
    switch (e->type) {
    case RAFT_ENTRY_NORMAL:
        if (e->len > 0 && ((const uint8_t *)e->data)[0] == SIM_CMD_LEASE)
            err = sim_lease_apply(s, n, e);
        else
            err = sim_kv_apply(&n->kv, s->p.n_keys, e->index, e->data,
                               e->len);
        break;
    case RAFT_ENTRY_NOOP:
        break;
    case RAFT_ENTRY_CONF:
        err = raft_conf_change_decode(e->data, e->len, &cc);
        /* The applied configuration: founders count as they commit. */
        if (!err && cc.op == RAFT_CONF_FOUNDER)
            cc.op = RAFT_CONF_ADD_VOTER;
        if (!err && cc.op == RAFT_CONF_PROMOTE &&
            !raft_conf_is_learner(&n->kv.conf, cc.node))
            break; /* refused by the core too: no change */
        if (!err)
            err = raft_conf_apply(&n->kv.conf, &cc);
        if (!err)
            sim_conf_applied(s, &cc, e->index);
        break;
    default:
        err = CRAFT_EINVAL;
    }
    if (err) {
        sim_fail(s, "bad-entry", "n%" PRIu64 " cannot apply entry %" PRIu64
                 " term %" PRIu64 " type %u (%u bytes): %s", n->id, e->index,
                 e->term, e->type, e->len, craft_errname(err));
        return;
    }
    if (e->type == RAFT_ENTRY_NORMAL && e->len > 0 &&
        ((const uint8_t *)e->data)[0] == SIM_CMD_KV)
        sim_txn_check_apply(s, n, e);
    n->kv.applied = e->index;
    n->kv.applied_term = e->term;
    sim_watch_applied(s, n, e->index);
    sim_client_on_apply(s, n, e->index, e->term);
    sim_lease_applied(s, n, e->index, e->term);
}

static void apply_committed(struct sim *s, struct sim_node *n)
{
    const struct raft_ready *rd = &n->rd;
    for (size_t i = 0; i < rd->n_committed && !s->failed; i++)
        apply_one(s, n, &rd->committed[i]);
    if (rd->n_committed)
        sim_ev(s, EV_APPLY, 0, n->id, 0, rd->committed[0].index,
               rd->committed[rd->n_committed - 1].index,
               rd->committed[rd->n_committed - 1].term, 0, NULL);
    sim_client_serve_reads(s, n);
}

static void restore_sm(struct sim *s, struct sim_node *n)
{
    const struct sim_snap *sn = &n->disk.cur;
    if (sn->meta.index < n->kv.applied) {
        sim_fail(s, "apply-order", "n%" PRIu64 " restores snapshot %" PRIu64
                 " below its applied index %" PRIu64, n->id, sn->meta.index,
                 n->kv.applied);
        return;
    }
    const struct sim_applied *ap = sim_applied_at(s, sn->meta.index);
    int err = sim_kv_restore(&n->kv, sn->data, sn->meta.size, &sn->meta);
    if (err || (ap && ap->term != sn->meta.term)) {
        sim_fail(s, "snapshot-data", "n%" PRIu64 " cannot restore snapshot %"
                 PRIu64 " term %" PRIu64 " (%" PRIu64 " bytes): %s", n->id,
                 sn->meta.index, sn->meta.term, sn->meta.size,
                 err ? craft_errname(err) : "term differs from the applied one");
        return;
    }
    s->st.snaps_installed++;
    sim_watch_replaced(s, n);
    sim_ev(s, EV_SNAP_INSTALL, 0, n->id, 0, sn->meta.index, sn->meta.term,
           sn->meta.size, 0, NULL);
    sim_client_on_restore(s, n);
    sim_lease_restored(s, n);
}

static void begin_snapshot(struct sim *s, struct sim_node *n);

static void take_ready(struct sim *s, struct sim_node *n)
{
    struct raft_ready *rd = &n->rd;
    set_apply_budget(s, n);
    raft_ready(n->r, rd);
    n->busy = true;
    if (rd->hs_changed) {
        sim_check_hs(s, n->id, &n->last_hs, &rd->hs);
        n->last_hs = rd->hs;
        sim_ev(s, EV_HS, 0, n->id, 0, rd->hs.term, sim_tag(s, rd->hs.vote),
               rd->hs.commit, 0, NULL);
    }
    bool snap_last = rd->snap_chunk && rd->snap_chunk->last;
    if (rd->snap_chunk && !s->failed)
        rx_write(s, n, rd->snap_chunk);
    if (rd->n_entries) {
        uint64_t i0 = rd->entries[0].index;
        n->rd_prev_term = i0 > 1 ? raft_term_at(n->r, i0 - 1) : 0;
    }
    if (!snap_last)
        check_committed_durable(s, n);
    check_apply_bound(s, n);
    send_all(s, n, rd->msgs, rd->n_msgs);
    n->rd_apply_later = snap_last || sim_rng_below(&s->rng, 2);
    if (!n->rd_apply_later && !s->failed)
        apply_committed(s, n);
    for (size_t i = 0; i < rd->n_props && !s->failed; i++)
        sim_client_on_prop(s, n, &rd->props[i]);
    for (size_t i = 0; i < rd->n_props && !s->failed; i++)
        sim_lease_on_prop(s, n, &rd->props[i]);
    for (size_t i = 0; i < rd->n_reads && !s->failed; i++)
        sim_client_on_read(s, n, &rd->reads[i]);
    if (rd->want_snapshot && !n->snap_pending) {
        n->snap_pending = true;
        n->snap_due = s->now + sim_rng_below(&s->rng,
                                             s->p.snapshot_delay_max + 1);
        /* written out once this batch's entries are applied, as the
         * daemon forks its writer after applying a batch */
        if (n->rd_apply_later)
            n->snap_begin = true;
        else
            begin_snapshot(s, n);
    }
    uint64_t delay = sim_rng_below(&s->rng, s->p.persist_delay_max + 1);
    n->rd_due = s->now + delay;
    if (rd->n_entries || rd->snap_chunk)
        sim_ev(s, EV_PERSIST, 0, n->id, 0,
               rd->n_entries ? rd->entries[0].index : 0,
               rd->n_entries ? rd->entries[rd->n_entries - 1].index : 0, 0,
               delay, rd->snap_chunk ? (snap_last ? "+last chunk" : "+chunk")
                                     : "");
}

static void finish_ready(struct sim *s, struct sim_node *n)
{
    struct raft_ready *rd = &n->rd;
    bool snap_last = rd->snap_chunk && rd->snap_chunk->last;
    persist_prefix(s, n, n_parts(rd));
    send_all(s, n, rd->msgs_after, rd->n_msgs_after);
    if (snap_last && !s->failed)
        restore_sm(s, n);
    if (n->rd_apply_later && !s->failed) {
        if (snap_last)
            check_committed_durable(s, n);
        if (!s->failed)
            apply_committed(s, n);
    }
    if (n->snap_begin && !s->failed) {
        n->snap_begin = false;
        begin_snapshot(s, n);
    }
    if (s->failed)
        return;
    raft_advance(n->r, rd);
    n->busy = false;
    sim_node_observe(s, n);
}

/* The state machine as it is now, written out for the snapshot asked for
 * (the daemon forks its writer here); reported by take_snapshot later. */
static void begin_snapshot(struct sim *s, struct sim_node *n)
{
    struct sim_kv *kv = &n->kv;
    craft_free(n->snap_data);
    n->snap_data = NULL;
    if (kv->applied == 0)
        return;
    if (sim_kv_serialize(kv, s->p.snap_pad, &n->snap_data, &n->snap_len)) {
        sim_fail(s, "sim", "out of memory");
        return;
    }
    n->snap_index = kv->applied;
    n->snap_term = kv->applied_term;
    n->snap_conf = kv->conf;
}

static void take_snapshot(struct sim *s, struct sim_node *n)
{
    n->snap_pending = false;
    struct sim_disk *d = &n->disk;
    uint8_t *data = n->snap_data;
    size_t len = n->snap_len;
    uint64_t index = n->snap_index;
    n->snap_data = NULL;
    /* The core may already hold a newer snapshot (one received, whose
     * restore into the state machine is still pending, or installed while
     * this one was being written). */
    if (data == NULL || index <= d->cur.meta.index ||
        index <= raft_snapshot(n->r)->index) {
        craft_free(data);
        return;
    }
    uint64_t compact_to = 0;
    int rc = raft_snapshot_taken(n->r, index, len, &compact_to);
    const struct raft_snap_meta *m = raft_snapshot(n->r);
    if (rc || m->index != index || m->size != len ||
        m->term != n->snap_term || !sim_conf_equal(&m->conf, &n->snap_conf) ||
        compact_to > index + 1) {
        sim_fail(s, "snapshot-meta", "n%" PRIu64 " raft_snapshot_taken(%" PRIu64
                 ", %zu) = %s; core reports snapshot %" PRIu64 " term %" PRIu64
                 " size %" PRIu64 " (%u voters), compact_to %" PRIu64
                 "; expected term %" PRIu64 " (%u voters)", n->id, index,
                 len, craft_errname(rc), m->index, m->term, m->size,
                 m->conf.n_voters, compact_to, n->snap_term,
                 n->snap_conf.n_voters);
        craft_free(data);
        return;
    }
    sim_snap_free(&d->prev);
    d->prev = d->cur;
    d->cur.meta = *m;
    d->cur.data = data;
    if (compact_to)
        sim_log_compact(&d->log, compact_to);
    s->st.snaps_taken++;
    sim_ev(s, EV_SNAP_TAKEN, 0, n->id, 0, m->index, len, compact_to, 0, NULL);
    sim_node_observe(s, n);
}

/* While a batch's write is under way, the heartbeats (and their answers)
 * the core made since go out at once, as the daemon sends them
 * (src/node/pump.c, raft_take_heartbeats): a slow disk must not look
 * like a dead leader. */
static void send_heartbeats(struct sim *s, struct sim_node *n)
{
    struct raft_msg hb[16];
    size_t k;
    while (!s->failed && (k = raft_take_heartbeats(n->r, hb, 16)) > 0)
        send_all(s, n, hb, k);
}

void sim_node_process(struct sim *s, struct sim_node *n)
{
    if (!sim_node_live(n))
        return; /* a paused node's disk writes do not complete either */
    for (int round = 0; round < 4 && !s->failed; round++) {
        if (n->busy) {
            if (s->now < n->rd_due) {
                send_heartbeats(s, n);
                break;
            }
            finish_ready(s, n);
            if (s->failed)
                return;
        }
        if (n->snap_pending && s->now >= n->snap_due)
            take_snapshot(s, n);
        if (s->failed || !raft_has_ready(n->r))
            break;
        take_ready(s, n);
        if (n->rd_due > s->now)
            break;
    }
    if (!s->failed)
        sim_client_serve_reads(s, n);
}

void sim_node_crash(struct sim *s, struct sim_node *n, bool for_good)
{
    size_t total = 0, kept = 0;
    if (n->busy) {
        total = n_parts(&n->rd);
        switch (sim_rng_below(&s->rng, 3)) {
        case 0: kept = 0; break;
        case 1: kept = total; break;
        default: kept = sim_rng_below(&s->rng, total + 1);
        }
        persist_prefix(s, n, kept);
    }
    sim_client_on_crash(s, n);
    sim_net_drop_inbox(s, n);
    n->paused_until = 0;
    raft_free(n->r);
    n->r = NULL;
    n->busy = false;
    n->snap_pending = false;
    n->snap_begin = false;
    craft_free(n->snap_data);
    n->snap_data = NULL;
    craft_free(n->rx.buf);
    memset(&n->rx, 0, sizeof(n->rx));
    sim_watch_stop(s, n);
    sim_kv_reset(&n->kv);
    n->state = for_good ? SIM_STOPPED : SIM_DOWN;
    n->role = RAFT_FOLLOWER;
    if (for_good)
        s->st.stops++;
    else
        s->st.crashes++;
    sim_ev(s, EV_CRASH, 0, n->id, 0, kept, total, 0, 0,
           for_good ? " for good" : "");
}

void sim_node_restart(struct sim *s, struct sim_node *n)
{
    if (sim_ident_restart(s, n)) /* a damaged disk: it refuses to start */
        return;
    struct sim_disk *d = &n->disk;
    if (d->log.n && d->log.first > d->cur.meta.index + 1) {
        sim_fail(s, "sim", "n%" PRIu64 " disk log starts at %" PRIu64
                 " after snapshot %" PRIu64, n->id, d->log.first,
                 d->cur.meta.index);
        return;
    }
    struct raft_entry *ents = craft_calloc(d->log.n + 1, sizeof(*ents));
    if (!ents) {
        sim_fail(s, "sim", "out of memory");
        return;
    }
    for (size_t i = 0; i < d->log.n; i++) {
        const struct sim_ent *e = &d->log.e[i];
        ents[i].index = e->index;
        ents[i].term = e->term;
        ents[i].type = e->type;
        ents[i].len = e->len;
        ents[i].data = e->data;
    }
    struct raft_persisted p;
    memset(&p, 0, sizeof(p));
    p.hs = d->hs;
    p.snap = d->cur.meta;
    p.entries = ents;
    p.n_entries = d->log.n;
    /* As the core (and craftd) see it: no durable term and no snapshot
     * is a fresh node; entries without a term are a torn first write. */
    bool empty = !d->hs.term && !d->cur.meta.index;
    n->incarnation++;
    n->boot_ticks = n->clock_ticks;
    struct raft_config cfg = node_config(s, n);
    int rc = raft_new(&cfg, empty && sim_rng_below(&s->rng, 2) ? NULL : &p,
                      &n->r);
    craft_free(ents);
    if (rc) {
        n->r = NULL;
        sim_fail(s, "restart", "n%" PRIu64 " raft_new refuses its durable"
                 " state (term %" PRIu64 " commit %" PRIu64 ", snapshot %"
                 PRIu64 ", log %" PRIu64 "..%" PRIu64 "): %s", n->id,
                 d->hs.term, d->hs.commit, d->cur.meta.index, d->log.first,
                 sim_log_last(&d->log), craft_errname(rc));
        return;
    }
    sim_kv_reset(&n->kv);
    if (d->cur.meta.index) {
        rc = sim_kv_restore(&n->kv, d->cur.data, d->cur.meta.size,
                            &d->cur.meta);
        if (rc) {
            sim_fail(s, "snapshot-data", "n%" PRIu64 " cannot restore its"
                     " stored snapshot %" PRIu64 ": %s", n->id,
                     d->cur.meta.index, craft_errname(rc));
            return;
        }
    }
    n->state = SIM_UP;
    sim_watch_start(s, n); /* from the snapshot's index, as craftd */
    if (empty && n->id <= s->p.n_founders && n->gen == 1)
        bootstrap(s, n); /* a new incarnation waits to be added */
    n->last_hs = d->hs;
    n->last_commit = 0;
    n->role = RAFT_FOLLOWER;
    n->term = 0;
    n->leader = 0;
    s->st.restarts++;
    sim_lease_rebuild(s, n); /* as the daemon at start */
    sim_ev(s, EV_RESTART, 0, n->id, 0, d->hs.term, d->hs.commit,
           d->cur.meta.index, d->log.n ? sim_log_last(&d->log) : 0, NULL);
    sim_node_observe(s, n);
}

void sim_node_catch_up(struct sim *s, struct sim_node *n)
{
    while (!s->failed && raft_now(n->r) < sim_node_clock(n)) {
        raft_tick(n->r);
        sim_node_observe(s, n);
    }
}

void sim_node_pause(struct sim *s, struct sim_node *n, uint64_t steps)
{
    if (!sim_node_live(n) || steps == 0)
        return;
    n->paused_until = s->now + steps;
    n->paused_at = s->now;
    s->st.pauses++;
    sim_ev(s, EV_PAUSE, 0, n->id, 0, n->paused_until, raft_now(n->r), 0, 0,
           NULL);
}

/* As craftd's loop after a SIGCONT (or a long stall): the requests and
 * frames that piled up and the timer are all ready at once. The timer
 * delivers every tick the clock owes, and it does so before any frame is
 * stepped (raft.h: ticks that are due come first; --io-first breaks that
 * rule on purpose). Client requests may be handled before or after it:
 * a lease check passes the clock read at that moment, not the ticks
 * delivered so far. */
void sim_node_wake(struct sim *s, struct sim_node *n)
{
    n->paused_until = 0;
    /* A change it forwarded just before it froze leaves only now: the wipe
     * gate's window (identity.c) starts again. */
    uint64_t w = SIM_CONF_FWD_WINDOW * sim_election_steps(s);
    if (n->conf_fwd_step && n->paused_at < n->conf_fwd_step + w)
        s->conf_fwd_step = s->now;
    size_t burst = sim_net_inbox_len(s, n);
    sim_ev(s, EV_WAKE, 0, n->id, 0, sim_node_clock(n) - raft_now(n->r), burst,
           0, 0, NULL);
    unsigned reads_at = (unsigned)sim_rng_below(&s->rng, 3);
    if (reads_at == 0)
        sim_client_serve_queued(s, n);
    if (s->p.io_first && burst && !s->failed)
        sim_net_step_inbox(s, n, sim_rng_below(&s->rng, 2)
                                     ? burst
                                     : sim_rng_range(&s->rng, 1, burst));
    sim_node_catch_up(s, n);
    if (reads_at == 1 && !s->failed)
        sim_client_serve_queued(s, n);
    if (!s->failed)
        sim_net_step_inbox(s, n, SIZE_MAX);
    if (!s->failed)
        sim_client_serve_queued(s, n);
}

void sim_node_free(struct sim_node *n)
{
    if (n->r)
        raft_free(n->r);
    n->r = NULL;
    sim_disk_free(&n->disk);
    craft_free(n->snap_data);
    n->snap_data = NULL;
    craft_free(n->rx.buf);
    memset(&n->rx, 0, sizeof(n->rx));
    sim_kv_reset(&n->kv);
}
