/* The simulated network: every message is encoded with the real codec, kept
 * as bytes with a delivery step, and decoded on delivery. Faults: drops,
 * duplicates, random latency (hence reordering), a small share of messages
 * held back for many election timeouts (a frame queued across a redial),
 * partitions checked at delivery (so they also cut messages already in
 * flight). A message that reaches a paused node waits in its inbox until
 * it wakes. Packets go from slot to slot; a message for an earlier
 * incarnation of a node reaches the node (same name, same address), whose
 * core refuses it. */
#include "sim/sim.h"

#include <inttypes.h>
#include <string.h>

#include "common/alloc.h"

static bool before(const struct sim_packet *a, const struct sim_packet *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static int push(struct sim_net *net, struct sim_packet p)
{
    if (net->n == net->cap) {
        size_t cap = net->cap ? net->cap * 2 : 256;
        struct sim_packet *h = craft_realloc(net->heap, cap * sizeof(*h));
        if (!h)
            return CRAFT_ENOMEM;
        net->heap = h;
        net->cap = cap;
    }
    size_t i = net->n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!before(&p, &net->heap[up]))
            break;
        net->heap[i] = net->heap[up];
        i = up;
    }
    net->heap[i] = p;
    return 0;
}

static struct sim_packet pop(struct sim_net *net)
{
    struct sim_packet top = net->heap[0];
    struct sim_packet last = net->heap[--net->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= net->n)
            break;
        if (c + 1 < net->n && before(&net->heap[c + 1], &net->heap[c]))
            c++;
        if (!before(&net->heap[c], &last))
            break;
        net->heap[i] = net->heap[c];
        i = c;
    }
    if (net->n)
        net->heap[i] = last;
    return top;
}

/* from, to: slots */
static void ev_msg(struct sim *s, int kind, const struct raft_msg *m,
                   unsigned from, unsigned to, const char *note)
{
    sim_ev(s, kind, m->type, from, to, m->term, m->index,
           m->type == RAFT_MSG_SNAP ? m->snap.offset : m->commit,
           m->n_entries | ((uint64_t)m->reject << 32), note);
}

static int enqueue(struct sim *s, uint64_t from, uint64_t to, uint8_t type,
                   uint8_t *buf, size_t len)
{
    struct sim_net *net = &s->net;
    struct sim_packet p = {
        .at = s->now + sim_rng_range(&s->rng, net->lat_min, net->lat_max),
        .seq = ++net->seq,
        .from = (uint8_t)from,
        .to = (uint8_t)to,
        .type = type,
        .len = (uint32_t)len,
        .buf = buf,
    };
    bool hold = type == RAFT_MSG_TIMEOUT_NOW && net->hold_timeout_now;
    if (hold || (!s->final_phase && sim_rng_ppm(&s->rng, s->p.late_ppm))) {
        uint64_t e = sim_election_steps(s);
        p.at = s->now + (hold ? sim_rng_range(&s->rng, 2 * e, 5 * e)
                              : sim_rng_range(&s->rng, s->p.late_min,
                                              s->p.late_max));
        p.late = true;
        net->hold_timeout_now &= !hold;
        s->st.late_msgs++;
        sim_ev(s, EV_LATE, type, from, to, p.at, 0, 0, 0, NULL);
    }
    int err = push(net, p);
    if (err)
        craft_free(buf);
    return err;
}

void sim_net_send(struct sim *s, struct sim_node *from,
                  const struct raft_msg *m)
{
    unsigned to = sim_slot_of(s, m->to);
    if (to == 0 || m->to == from->rid || m->from != from->rid ||
        m->type == 0 || m->type >= RAFT_MSG__COUNT) {
        sim_fail(s, "message-address", "n%" PRIu64 " (Raft id %#" PRIx64 ")"
                 " sends a %s from %#" PRIx64 " to %#" PRIx64, from->id,
                 from->rid, raft_msg_type_name(m->type), m->from, m->to);
        return;
    }
    struct raft_msg c = *m;
    if (c.type == RAFT_MSG_SNAP) {
        uint64_t size = 0;
        const uint8_t *b = sim_node_snap_bytes(from, c.snap.meta.index, &size);
        if (!b || size != c.snap.meta.size ||
            c.snap.offset + c.snap.len > size) {
            sim_fail(s, "snapshot-source", "n%" PRIu64 " sends chunk %" PRIu64
                     "+%u of snapshot %" PRIu64 " (size %" PRIu64 ") but has %s"
                     " (size %" PRIu64 ")", from->id, c.snap.offset, c.snap.len,
                     c.snap.meta.index, c.snap.meta.size,
                     b ? "it" : "no such snapshot", size);
            return;
        }
        c.snap.data = b + c.snap.offset;
    }
    size_t len = raft_msg_size(&c);
    uint8_t *buf = craft_malloc(len);
    if (!buf) {
        sim_fail(s, "sim", "out of memory");
        return;
    }
    raft_msg_encode(&c, buf);
    s->st.msgs++;
    if (sim_rng_ppm(&s->rng, s->net.drop_ppm)) {
        s->st.dropped++;
        ev_msg(s, EV_DROP, &c, (unsigned)from->id, to, NULL);
        craft_free(buf);
        return;
    }
    ev_msg(s, EV_SEND, &c, (unsigned)from->id, to, NULL);
    /* A forwarded proposal is never duplicated: exactly-once needs client
     * sessions, which are not the core's job (TCP does not duplicate). */
    if (c.type != RAFT_MSG_PROP && sim_rng_ppm(&s->rng, s->net.dup_ppm)) {
        uint8_t *copy = craft_memdup(buf, len);
        if (copy && !enqueue(s, from->id, to, c.type, copy, len)) {
            s->st.dups++;
            ev_msg(s, EV_DUP, &c, (unsigned)from->id, to, NULL);
        }
    }
    if (enqueue(s, from->id, to, c.type, buf, len))
        sim_fail(s, "sim", "out of memory");
}

/* Decode, and check that encoding the decoded message gives the same bytes. */
static int decode_checked(struct sim *s, const struct sim_packet *p,
                          struct raft_msg *m)
{
    int rc = raft_msg_decode(p->buf, p->len, m);
    if (rc) {
        sim_fail(s, "codec", "a %s n%u->n%u (%u bytes) encoded by the core"
                 " does not decode: %s", raft_msg_type_name(p->type), p->from,
                 p->to, p->len, craft_errname(rc));
        return rc;
    }
    size_t len = raft_msg_size(m);
    uint8_t *again = len == p->len ? craft_malloc(len) : NULL;
    if (again)
        raft_msg_encode(m, again);
    if (!again || memcmp(again, p->buf, len) != 0 || m->type != p->type) {
        sim_fail(s, "codec", "a %s n%u->n%u does not survive decode+encode"
                 " (%u bytes, re-encoded %zu)", raft_msg_type_name(p->type),
                 p->from, p->to, p->len, len);
        rc = CRAFT_ECORRUPT;
    }
    craft_free(again);
    if (rc)
        raft_msg_decoded_free(m);
    return rc;
}

/* Every message a core steps goes through here (from the network, or from
 * a woken node's inbox): the checkers see it (s->chk.in_msg, and the
 * responses a leader counts) before the node is observed. */
static void step_packet(struct sim *s, struct sim_node *to,
                        const struct sim_packet *p, const struct raft_msg *m)
{
    bool old = m->to != to->rid; /* for an earlier incarnation */
    s->st.delivered++;
    ev_msg(s, EV_DELIVER, m, p->from, p->to,
           old ? (p->late ? "(late, old id)" : "(old id)")
               : p->late ? "(late)" : NULL);
    s->chk.in_msg = m;
    int rc = raft_step(to->r, m);
    if (rc)
        sim_ev(s, EV_STEP_ERR, m->type, p->to, p->from, (uint64_t)rc, 0, 0, 0,
               NULL);
    if (!old && rc != 0)
        sim_fail(s, "message-checks", "n%u refuses a %s from n%u that a real"
                 " core sent: %s (term %" PRIu64 ", its term %" PRIu64 ")",
                 p->to, raft_msg_type_name(m->type), p->from,
                 craft_errname(rc), m->term, raft_soft(to->r).term);
    if (old && rc == 0)
        sim_fail(s, "message-address", "n%u takes a %s addressed to Raft id %#"
                 PRIx64 ", not its own %#" PRIx64, p->to,
                 raft_msg_type_name(m->type), m->to, to->rid);
    if (p->late && m->type == RAFT_MSG_TIMEOUT_NOW) {
        s->net.late_tn.step = s->now;
        s->net.late_tn.from = m->from;
        s->net.late_tn.to = m->to;
        s->net.late_tn.term = m->term;
    }
    sim_check_delivered(s, to, m);
    sim_node_observe(s, to);
    s->chk.in_msg = NULL;
}

static int inbox_push(struct sim *s, struct sim_inbox *q,
                      const struct sim_packet *p)
{
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 64;
        struct sim_packet *a = craft_realloc(q->p, cap * sizeof(*a));
        if (!a) {
            sim_fail(s, "sim", "out of memory");
            return CRAFT_ENOMEM;
        }
        q->p = a;
        q->cap = cap;
    }
    q->p[q->n++] = *p;
    return 0;
}

void sim_net_deliver(struct sim *s)
{
    struct sim_net *net = &s->net;
    while (net->n && net->heap[0].at <= s->now && !s->failed) {
        struct sim_packet p = pop(net);
        struct sim_node *to = &s->nodes[p.to];
        struct raft_msg m;
        if (decode_checked(s, &p, &m)) {
            craft_free(p.buf);
            return;
        }
        if (net->blocked[p.from][p.to] || to->state != SIM_UP) {
            ev_msg(s, EV_LOST, &m, p.from, p.to,
                   net->blocked[p.from][p.to] ? "(partition)" : "(node down)");
        } else if (to->paused_until) {
            /* It arrived; the frozen process reads it when it wakes. */
            raft_msg_decoded_free(&m);
            if (inbox_push(s, &net->inbox[p.to], &p))
                craft_free(p.buf);
            continue;
        } else {
            step_packet(s, to, &p, &m);
        }
        raft_msg_decoded_free(&m);
        craft_free(p.buf);
    }
}

size_t sim_net_inbox_len(const struct sim *s, const struct sim_node *n)
{
    return s->net.inbox[n->id].n;
}

void sim_net_step_inbox(struct sim *s, struct sim_node *n, size_t k)
{
    struct sim_inbox *q = &s->net.inbox[n->id];
    size_t i = 0;
    for (; i < q->n && i < k && !s->failed && n->state == SIM_UP; i++) {
        struct raft_msg m;
        if (decode_checked(s, &q->p[i], &m) == 0) {
            step_packet(s, n, &q->p[i], &m);
            raft_msg_decoded_free(&m);
        }
        craft_free(q->p[i].buf);
        q->p[i].buf = NULL;
    }
    if (i == 0)
        return; /* q->p may be NULL: no memmove on it, even of 0 bytes */
    memmove(q->p, q->p + i, (q->n - i) * sizeof(*q->p));
    q->n -= i;
}

void sim_net_drop_inbox(struct sim *s, struct sim_node *n)
{
    struct sim_inbox *q = &s->net.inbox[n->id];
    for (size_t i = 0; i < q->n; i++)
        craft_free(q->p[i].buf);
    q->n = 0;
}

void sim_net_free(struct sim_net *net)
{
    for (size_t i = 0; i < net->n; i++)
        craft_free(net->heap[i].buf);
    craft_free(net->heap);
    net->heap = NULL;
    net->n = net->cap = 0;
    for (unsigned id = 0; id <= SIM_MAX_NODES; id++) {
        struct sim_inbox *q = &net->inbox[id];
        for (size_t i = 0; i < q->n; i++)
            craft_free(q->p[i].buf);
        craft_free(q->p);
        memset(q, 0, sizeof(*q));
    }
}
