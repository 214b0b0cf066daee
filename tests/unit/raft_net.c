/* The in-process test network of Raft cores (see raft_net.h): disks, state
 * machines, a FIFO of encoded messages, partitions, crashes and restarts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/alloc.h"
#include "unit/raft_net.h"

struct rnet_msg {
    struct rnet_msg *next;
    uint64_t from, to;
    size_t len;
    uint8_t buf[];
};

/* ---- small helpers ---- */

static void *xrealloc(void *p, size_t size)
{
    void *q = craft_realloc(p, size);
    assert_non_null(q);
    return q;
}

struct rnet_node *rnet_node(struct rnet *net, uint64_t id)
{
    assert_true(id >= 1 && id <= net->n);
    return &net->nodes[id - 1];
}

struct raft *rnet_raft(struct rnet *net, uint64_t id)
{
    return rnet_node(net, id)->r;
}

size_t rnet_queued(const struct rnet *net)
{
    size_t n = 0;
    for (const struct rnet_msg *m = net->head; m; m = m->next)
        n++;
    return n;
}

/* ---- the disk ---- */

static void disk_truncate(struct rnet_node *nd, uint64_t from)
{
    while (nd->n_log > 0 && nd->log[nd->n_log - 1].index >= from) {
        nd->n_log--;
        craft_free((void *)nd->log[nd->n_log].data);
    }
}

static void disk_append(struct rnet_node *nd, const struct raft_entry *e)
{
    if (nd->n_log > 0)
        assert_int_equal(e->index, nd->log[nd->n_log - 1].index + 1);
    if (nd->n_log == nd->cap_log) {
        nd->cap_log = nd->cap_log ? nd->cap_log * 2 : 64;
        nd->log = xrealloc(nd->log, nd->cap_log * sizeof *nd->log);
    }
    struct raft_entry *d = &nd->log[nd->n_log++];
    *d = *e;
    d->data = e->len ? craft_memdup(e->data, e->len) : NULL;
}

/* Drop stored entries below index. */
static void disk_compact(struct rnet_node *nd, uint64_t index)
{
    size_t k = 0;
    while (k < nd->n_log && nd->log[k].index < index)
        craft_free((void *)nd->log[k++].data);
    memmove(nd->log, nd->log + k, (nd->n_log - k) * sizeof *nd->log);
    nd->n_log -= k;
}

static const struct raft_entry *disk_at(const struct rnet_node *nd,
                                        uint64_t index)
{
    if (nd->n_log == 0 || index < nd->log[0].index ||
        index > nd->log[nd->n_log - 1].index)
        return NULL;
    return &nd->log[index - nd->log[0].index];
}

/* ---- the state machine ---- */

static void sm_set(struct rnet_node *nd, const uint8_t *data, uint64_t size)
{
    assert_int_equal(size % 8, 0);
    nd->n_sm = size / 8;
    if (nd->cap_sm < nd->n_sm) {
        nd->cap_sm = nd->n_sm;
        nd->sm = xrealloc(nd->sm, nd->cap_sm * sizeof *nd->sm);
    }
    if (size)
        memcpy(nd->sm, data, size);
}

static void sm_push(struct rnet_node *nd, uint64_t v)
{
    if (nd->n_sm == nd->cap_sm) {
        nd->cap_sm = nd->cap_sm ? nd->cap_sm * 2 : 64;
        nd->sm = xrealloc(nd->sm, nd->cap_sm * sizeof *nd->sm);
    }
    nd->sm[nd->n_sm++] = v;
}

/* Every index is applied with one term, whoever applies it. */
static void note_applied(struct rnet *net, uint64_t index, uint64_t term)
{
    if (index >= net->n_applied_terms) {
        size_t n = net->n_applied_terms ? net->n_applied_terms : 64;
        while (n <= index)
            n *= 2;
        net->applied_terms = xrealloc(net->applied_terms,
                                      n * sizeof *net->applied_terms);
        memset(net->applied_terms + net->n_applied_terms, 0,
               (n - net->n_applied_terms) * sizeof *net->applied_terms);
        net->n_applied_terms = n;
    }
    if (net->applied_terms[index] == 0)
        net->applied_terms[index] = term;
    if (net->applied_terms[index] != term)
        fail_msg("index %llu applied with terms %llu and %llu",
                 (unsigned long long)index,
                 (unsigned long long)net->applied_terms[index],
                 (unsigned long long)term);
}

static void apply_entry(struct rnet *net, struct rnet_node *nd,
                        const struct raft_entry *e)
{
    if (e->index != nd->applied + 1)
        fail_msg("node %llu applies %llu after %llu",
                 (unsigned long long)nd->id, (unsigned long long)e->index,
                 (unsigned long long)nd->applied);
    note_applied(net, e->index, e->term);
    nd->applied = e->index;
    if (e->type == RAFT_ENTRY_NORMAL) {
        uint64_t v = 0;
        assert_int_equal(e->len, 8);
        memcpy(&v, e->data, 8);
        sm_push(nd, v);
    }
}

/* ---- sending ---- */

static const uint8_t *snap_bytes(struct rnet_node *nd, uint64_t index)
{
    if (index == nd->snap.index)
        return nd->snap_data;
    if (index == nd->prev_snap.index)
        return nd->prev_snap_data;
    fail_msg("node %llu sends unknown snapshot %llu",
             (unsigned long long)nd->id, (unsigned long long)index);
    return NULL;
}

static void check_durability(struct rnet *net, const struct raft_msg *m,
                             bool after)
{
    bool vote = m->type == RAFT_MSG_VOTE;
    bool grant = m->type == RAFT_MSG_VOTE_RESP && !m->reject;
    bool ack = m->type == RAFT_MSG_APP_RESP && !m->reject && m->index > 0;
    if (after) {
        net->after_votes += vote;
        net->after_grants += grant;
        net->after_acks += ack;
    } else {
        net->early_votes += vote;
        net->early_grants += grant;
        net->early_acks += ack;
    }
}

static void send_msg(struct rnet *net, struct rnet_node *nd,
                     const struct raft_msg *m0, bool after)
{
    struct raft_msg m = *m0;
    assert_int_equal(m.from, nd->id);
    assert_true(m.type > 0 && m.type < RAFT_MSG__COUNT);
    net->sent[m.type]++;
    check_durability(net, &m, after);
    if (m.type == RAFT_MSG_SNAP) {
        assert_null(m.snap.data);
        assert_true(m.snap.offset + m.snap.len <= m.snap.meta.size);
        m.snap.data = m.snap.len ? snap_bytes(nd, m.snap.meta.index) +
                                       m.snap.offset
                                 : NULL;
    }
    if (net->watch && !net->watch(net->watch_arg, &m, after))
        return;
    if (m.to < 1 || m.to > net->n || net->cut[m.from][m.to])
        return;
    size_t len = raft_msg_size(&m);
    struct rnet_msg *q = craft_malloc(sizeof *q + len);
    assert_non_null(q);
    q->next = NULL;
    q->from = m.from;
    q->to = m.to;
    q->len = len;
    raft_msg_encode(&m, q->buf);
    if (net->tail)
        net->tail->next = q;
    else
        net->head = q;
    net->tail = q;
}

/* ---- persisting ---- */

static void persist_chunk(struct rnet_node *nd, const struct raft_snap_chunk *c)
{
    nd->n_snap_chunks++;
    if (c->offset == 0 || nd->recv_index != c->meta.index) {
        craft_free(nd->recv_data);
        nd->recv_data = craft_malloc(c->meta.size ? c->meta.size : 1);
        assert_non_null(nd->recv_data);
        nd->recv_index = c->meta.index;
        nd->recv_size = c->meta.size;
    }
    assert_true(c->offset + c->len <= nd->recv_size);
    if (c->len)
        memcpy(nd->recv_data + c->offset, c->data, c->len);
    if (!c->last)
        return;
    /* Complete: it replaces the log and the state machine. */
    craft_free(nd->prev_snap_data);
    nd->prev_snap = nd->snap;
    nd->prev_snap_data = nd->snap_data;
    nd->snap = c->meta;
    nd->snap_data = nd->recv_data;
    nd->recv_data = NULL;
    nd->recv_index = 0;
    disk_truncate(nd, 0);
    sm_set(nd, nd->snap_data, nd->snap.size);
    nd->applied = nd->snap.index;
}

static void handle_ready(struct rnet *net, struct rnet_node *nd)
{
    struct raft_ready rd;
    raft_ready(nd->r, &rd);
    /* 4 (checked first): what is handed out to apply is durable already. */
    for (size_t i = 0; i < rd.n_committed; i++) {
        const struct raft_entry *e = &rd.committed[i];
        const struct raft_entry *d = disk_at(nd, e->index);
        if (d == NULL || d->term != e->term)
            fail_msg("node %llu: entry %llu handed out to apply before it "
                     "was durable",
                     (unsigned long long)nd->id, (unsigned long long)e->index);
    }
    /* 1. */
    for (size_t i = 0; i < rd.n_msgs; i++)
        send_msg(net, nd, &rd.msgs[i], false);
    /* 2. */
    if (rd.hs_changed)
        nd->hs = rd.hs;
    if (rd.snap_chunk)
        persist_chunk(nd, rd.snap_chunk);
    if (rd.n_entries) {
        for (size_t i = 1; i < rd.n_entries; i++)
            assert_int_equal(rd.entries[i].index, rd.entries[i - 1].index + 1);
        disk_truncate(nd, rd.entries[0].index);
        if (nd->n_log == 0)
            assert_true(rd.entries[0].index <= nd->snap.index + 1);
        for (size_t i = 0; i < rd.n_entries; i++)
            disk_append(nd, &rd.entries[i]);
    }
    /* 3. */
    for (size_t i = 0; i < rd.n_msgs_after; i++)
        send_msg(net, nd, &rd.msgs_after[i], true);
    /* 4. */
    for (size_t i = 0; i < rd.n_committed; i++)
        apply_entry(net, nd, &rd.committed[i]);
    /* 5. */
    for (size_t i = 0; i < rd.n_props; i++) {
        assert_true(nd->n_props < RNET_RESULTS);
        nd->props[nd->n_props++] = rd.props[i];
    }
    for (size_t i = 0; i < rd.n_reads; i++) {
        assert_true(nd->n_reads < RNET_RESULTS);
        nd->reads[nd->n_reads++] = rd.reads[i];
    }
    nd->want_snapshot = rd.want_snapshot;
    /* 6. */
    raft_advance(nd->r, &rd);
    if (net->auto_snapshot && nd->want_snapshot)
        assert_int_equal(rnet_snapshot(net, nd->id), 0);
}

void rnet_flush(struct rnet *net, uint64_t id)
{
    struct rnet_node *nd = rnet_node(net, id);
    for (int i = 0; nd->r != NULL && raft_has_ready(nd->r); i++) {
        assert_true(i < 1000);
        handle_ready(net, nd);
    }
}

/* ---- delivering ---- */

static void deliver(struct rnet *net, struct rnet_msg *q)
{
    struct rnet_node *nd = rnet_node(net, q->to);
    if (nd->r == NULL || net->cut[q->from][q->to])
        return;
    struct raft_msg m;
    assert_int_equal(raft_msg_decode(q->buf, q->len, &m), 0);
    net->delivered[m.type]++;
    uint64_t capped = raft_stats(nd->r).jumps_capped;
    int rv = raft_step(nd->r, &m);
    /* A term jump beyond RAFT_TERM_JUMP_MAX is dropped, by design, after
     * moving the term (a test that forges a huge term causes those). */
    if (rv != 0 && raft_stats(nd->r).jumps_capped == capped)
        fail_msg("node %llu refused %s from %llu: %s",
                 (unsigned long long)q->to, raft_msg_type_name(m.type),
                 (unsigned long long)q->from, craft_errname(rv));
    raft_msg_decoded_free(&m);
}

bool rnet_step(struct rnet *net)
{
    for (size_t i = 0; i < net->n; i++)
        rnet_flush(net, i + 1);
    struct rnet_msg *q = net->head;
    if (q == NULL)
        return false;
    net->head = q->next;
    if (net->head == NULL)
        net->tail = NULL;
    deliver(net, q);
    craft_free(q);
    return true;
}

void rnet_settle(struct rnet *net)
{
    for (int i = 0; rnet_step(net); i++)
        assert_true(i < 200000);
}

void rnet_tick(struct rnet *net, unsigned k)
{
    for (unsigned t = 0; t < k; t++) {
        for (size_t i = 0; i < net->n; i++)
            if (net->nodes[i].r)
                raft_tick(net->nodes[i].r);
        rnet_settle(net);
    }
}

uint64_t rnet_leader(struct rnet *net)
{
    uint64_t best = RAFT_NONE, best_term = 0;
    for (size_t i = 0; i < net->n; i++) {
        struct raft *r = net->nodes[i].r;
        if (r == NULL || raft_soft(r).role != RAFT_LEADER)
            continue;
        uint64_t t = raft_soft(r).term;
        if (t == best_term)
            fail_msg("two leaders in term %llu", (unsigned long long)t);
        if (t > best_term) {
            best_term = t;
            best = net->nodes[i].id;
        }
    }
    return best;
}

unsigned rnet_count_leaders(struct rnet *net)
{
    unsigned n = 0;
    for (size_t i = 0; i < net->n; i++)
        if (net->nodes[i].r && raft_soft(net->nodes[i].r).role == RAFT_LEADER)
            n++;
    return n;
}

uint64_t rnet_elect(struct rnet *net, unsigned max_ticks)
{
    for (unsigned t = 0; t <= max_ticks; t++) {
        uint64_t l = rnet_leader(net);
        if (l != RAFT_NONE) {
            struct raft *r = rnet_raft(net, l);
            if (raft_term_at(r, raft_commit_index(r)) == raft_soft(r).term)
                return l;
        }
        rnet_tick(net, 1);
    }
    fail_msg("no leader after %u ticks", max_ticks);
    return RAFT_NONE;
}

/* ---- partitions, crashes ---- */

void rnet_cut_one(struct rnet *net, uint64_t from, uint64_t to)
{
    net->cut[from][to] = true;
}

void rnet_cut(struct rnet *net, uint64_t a, uint64_t b)
{
    net->cut[a][b] = net->cut[b][a] = true;
}

void rnet_isolate(struct rnet *net, uint64_t id)
{
    for (uint64_t o = 1; o <= net->n; o++)
        if (o != id)
            rnet_cut(net, id, o);
}

void rnet_heal(struct rnet *net)
{
    memset(net->cut, 0, sizeof net->cut);
}

void rnet_crash(struct rnet *net, uint64_t id)
{
    struct rnet_node *nd = rnet_node(net, id);
    raft_free(nd->r);
    nd->r = NULL;
    craft_free(nd->recv_data);
    nd->recv_data = NULL;
    nd->recv_index = 0;
}

int rnet_restart(struct rnet *net, uint64_t id)
{
    struct rnet_node *nd = rnet_node(net, id);
    assert_null(nd->r);
    struct raft_persisted p = {.hs = nd->hs, .snap = nd->snap,
                               .entries = nd->log, .n_entries = nd->n_log};
    int rv = raft_new(&nd->cfg, &p, &nd->r);
    if (rv != 0) {
        nd->r = NULL;
        return rv;
    }
    sm_set(nd, nd->snap_data, nd->snap.index ? nd->snap.size : 0);
    nd->applied = nd->snap.index;
    return 0;
}

/* ---- requests ---- */

int rnet_propose(struct rnet *net, uint64_t id, uint64_t req, uint64_t v)
{
    uint8_t b[8];
    memcpy(b, &v, 8);
    return raft_propose(rnet_raft(net, id), req, b, 8);
}

int rnet_conf(struct rnet *net, uint64_t id, uint64_t req, uint8_t op,
              uint64_t node)
{
    struct raft_conf_change cc = {.op = op, .node = node};
    return raft_propose_conf(rnet_raft(net, id), req, &cc);
}

int rnet_snapshot(struct rnet *net, uint64_t id)
{
    struct rnet_node *nd = rnet_node(net, id);
    uint64_t size = nd->n_sm * 8, compact_to = 0;
    assert_int_equal(nd->applied, raft_applied_index(nd->r));
    int rv = raft_snapshot_taken(nd->r, nd->applied, size, &compact_to);
    if (rv != 0)
        return rv;
    const struct raft_snap_meta *meta = raft_snapshot(nd->r);
    assert_int_equal(meta->index, nd->applied);
    craft_free(nd->prev_snap_data);
    nd->prev_snap = nd->snap;
    nd->prev_snap_data = nd->snap_data;
    nd->snap = *meta;
    nd->snap_data = craft_memdup(nd->sm, size);
    assert_non_null(nd->snap_data);
    disk_compact(nd, compact_to);
    return 0;
}

const struct raft_prop_result *rnet_prop(struct rnet *net, uint64_t id,
                                         uint64_t req)
{
    struct rnet_node *nd = rnet_node(net, id);
    for (size_t i = 0; i < nd->n_props; i++)
        if (nd->props[i].id == req)
            return &nd->props[i];
    return NULL;
}

const struct raft_read_result *rnet_read(struct rnet *net, uint64_t id,
                                         uint64_t req)
{
    struct rnet_node *nd = rnet_node(net, id);
    for (size_t i = 0; i < nd->n_reads; i++)
        if (nd->reads[i].id == req)
            return &nd->reads[i];
    return NULL;
}

bool rnet_sm_consistent(struct rnet *net, uint64_t a, uint64_t b)
{
    struct rnet_node *x = rnet_node(net, a), *y = rnet_node(net, b);
    size_t n = x->n_sm < y->n_sm ? x->n_sm : y->n_sm;
    return n == 0 || memcmp(x->sm, y->sm, n * sizeof *x->sm) == 0;
}

/* ---- lifecycle ---- */

struct rnet *rnet_new(size_t n, const struct raft_config *tmpl)
{
    assert_true(n >= 1 && n <= RNET_MAX);
    struct rnet *net = craft_calloc(1, sizeof *net);
    assert_non_null(net);
    net->n = n;
    for (size_t i = 0; i < n; i++) {
        struct rnet_node *nd = &net->nodes[i];
        nd->id = i + 1;
        nd->cfg = *tmpl;
        nd->cfg.id = nd->id;
        nd->cfg.seed = 1000 + tmpl->seed * 31 + i;
        assert_int_equal(raft_new(&nd->cfg, NULL, &nd->r), 0);
    }
    return net;
}

void rnet_bootstrap(struct rnet *net, size_t n_voters)
{
    uint64_t ids[RNET_MAX];
    for (size_t i = 0; i < n_voters; i++)
        ids[i] = i + 1;
    for (size_t i = 0; i < n_voters; i++) {
        assert_int_equal(raft_bootstrap(net->nodes[i].r, ids, n_voters, NULL),
                         0);
        rnet_flush(net, i + 1);
    }
}

void rnet_free(struct rnet *net)
{
    while (net->head) {
        struct rnet_msg *q = net->head;
        net->head = q->next;
        craft_free(q);
    }
    for (size_t i = 0; i < net->n; i++) {
        struct rnet_node *nd = &net->nodes[i];
        raft_free(nd->r);
        disk_truncate(nd, 0);
        craft_free(nd->log);
        craft_free(nd->snap_data);
        craft_free(nd->prev_snap_data);
        craft_free(nd->recv_data);
        craft_free(nd->sm);
    }
    craft_free(net->applied_terms);
    craft_free(net);
}
