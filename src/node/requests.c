/* HTTP requests that wait on Raft. A write is proposed (on any node: a
 * follower's core forwards it to the leader over the peer transport) and
 * answered once this node has applied the entry at the index and term the
 * leader gave it. A linearizable read gets a read index (from the leader)
 * and is answered once this node has applied up to it. Every request has a
 * deadline; errors that mean "certainly not done" (no leader, transfer in
 * progress) are retried at each tick until then. What a key request reads
 * or writes, and its answer, is in keys.c (node__answer_fn): a write's
 * answer is made from its own entry's result, right after it applied. */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "node/internal.h"
#include "node/metrics.h"

/* ---- the table of pending requests (by id) ---- */

static struct node__req *lookup(struct node *n, uint64_t id)
{
    if (n->n_slots == 0)
        return NULL;
    struct node__req *q = n->slots[id & (n->n_slots - 1)];
    return q && q->id == id ? q : NULL;
}

static int slot_insert(struct node *n, struct node__req *q)
{
    while (n->n_slots == 0 || n->slots[q->id & (n->n_slots - 1)] != NULL) {
        size_t cap = n->n_slots ? n->n_slots * 2 : 256;
        struct node__req **s = craft_calloc(cap, sizeof *s);
        if (s == NULL)
            return CRAFT_ENOMEM;
        for (size_t i = 0; i < n->n_slots; i++)
            if (n->slots[i])
                s[n->slots[i]->id & (cap - 1)] = n->slots[i];
        craft_free(n->slots);
        n->slots = s;
        n->n_slots = cap;
    }
    n->slots[q->id & (n->n_slots - 1)] = q;
    return 0;
}

struct node__req *node__req_new(struct node *n, int kind,
                                struct http_req *http)
{
    struct node__req *q = craft_calloc(1, sizeof *q);
    if (q == NULL)
        return NULL;
    q->id = n->next_req++;
    q->kind = kind;
    q->http = http;
    q->deadline = node__now(n) + n->o.request_timeout_ms;
    if (http != NULL)
        http_req_set_tag(http, q);
    if (slot_insert(n, q) != 0) {
        craft_free(q);
        return NULL;
    }
    q->prev = n->tail;
    if (n->tail)
        n->tail->next = q;
    else
        n->head = q;
    n->tail = q;
    return q;
}

/* ---- the heap of requests waiting for an index to be applied ---- */

static void heap_swap(struct node *n, size_t a, size_t b)
{
    struct node__req *t = n->heap[a];
    n->heap[a] = n->heap[b];
    n->heap[b] = t;
    n->heap[a]->heap_pos = a + 1;
    n->heap[b]->heap_pos = b + 1;
}

static void heap_up(struct node *n, size_t i)
{
    while (i > 0 && n->heap[(i - 1) / 2]->index > n->heap[i]->index) {
        heap_swap(n, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(struct node *n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n->n_heap && n->heap[l]->index < n->heap[m]->index)
            m = l;
        if (l + 1 < n->n_heap && n->heap[l + 1]->index < n->heap[m]->index)
            m = l + 1;
        if (m == i)
            return;
        heap_swap(n, i, m);
        i = m;
    }
}

static void heap_remove(struct node *n, struct node__req *q)
{
    if (q->heap_pos == 0)
        return;
    size_t i = q->heap_pos - 1;
    q->heap_pos = 0;
    n->n_heap--;
    if (i == n->n_heap)
        return;
    n->heap[i] = n->heap[n->n_heap];
    n->heap[i]->heap_pos = i + 1;
    heap_up(n, i);
    heap_down(n, n->heap[i]->heap_pos - 1);
}

void node__req_done(struct node *n, struct node__req *q)
{
    node__block_end(n, q);
    heap_remove(n, q);
    node__join_resolve_detach(q);
    if (n->slots[q->id & (n->n_slots - 1)] == q)
        n->slots[q->id & (n->n_slots - 1)] = NULL;
    if (q->prev)
        q->prev->next = q->next;
    else
        n->head = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else
        n->tail = q->prev;
    craft_free(q->buf);
    if (q->arg_free)
        q->arg_free(q->arg);
    else
        craft_free(q->arg);
    craft_free(q->jid);
    craft_free(q->jaddr);
    craft_free(q->jhttp);
    craft_free(q);
}

/* q waits until the map has applied q->index. */
void node__req_wait_index(struct node *n, struct node__req *q)
{
    assert(q->heap_pos == 0 && "a request waits only once");
    if (q->kind == NODE__GET && n->applied >= q->index) {
        node__req_serve(n, q);
        return;
    }
    if (n->n_heap == n->cap_heap) {
        size_t cap = n->cap_heap ? n->cap_heap * 2 : 256;
        struct node__req **h = craft_realloc(n->heap, cap * sizeof *h);
        if (h == NULL) {
            node__req_error(n, q, 503, "out of memory");
            node__req_done(n, q);
            return;
        }
        n->heap = h;
        n->cap_heap = cap;
    }
    n->heap[n->n_heap++] = q;
    q->heap_pos = n->n_heap;
    heap_up(n, n->n_heap - 1);
}

/* ---- answers ---- */

int node__status_of(int err)
{
    switch (err) {
    case CRAFT_ETOOBIG:
        return 413;
    case CRAFT_EINVAL:
    case CRAFT_EEXISTS:
    case CRAFT_ENOTFOUND:
        return 400;
    default:
        return 503;
    }
}

static bool retryable(int err)
{
    return err == CRAFT_ENOLEADER || err == CRAFT_ENOTLEADER ||
           err == CRAFT_ETRANSFER || err == CRAFT_EDROPPED ||
           err == CRAFT_EBUSY || err == CRAFT_EOVERLOAD;
}

void node__req_error(struct node *n, struct node__req *q, int status,
                     const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (q->kind == NODE__GET || q->kind == NODE__WRITE)
        http_reply_set_index(q->http, n->applied);
    http_reply_error(q->http, status, "%s", msg);
}

void node__req_serve(struct node *n, struct node__req *q)
{
    assert(q->answer != NULL && "a read says how it is answered");
    q->answer(n, q, NULL);
    node__req_done(n, q);
}

/* The write q's entry applied with result res (NULL: not known): answer. */
static void answer_write(struct node *n, struct node__req *q,
                         const struct kv_result *res)
{
    if (q->answer != NULL) {
        q->answer(n, q, res);
    } else {
        if (q->kind == NODE__WRITE)
            http_reply_set_index(q->http, q->index);
        http_reply_ok(q->http);
    }
    node__req_done(n, q);
}

/* The result of the entry at index, if it is still the map's last one. The
 * caller has checked that the entry there has the request's term. */
static const struct kv_result *result_at(const struct node *n, uint64_t index)
{
    const struct kv_result *res = kv_last_result(n->kv);
    return res != NULL && res->index == index ? res : NULL;
}

/* Hand q to the core (again). */
static void issue(struct node *n, struct node__req *q)
{
    q->retry = false;
    q->issued = true;
    int rv = 0;
    struct raft_conf_change cc = {.op = RAFT_CONF_REMOVE, .node = q->target};
    switch (q->kind) {
    case NODE__JOIN:
        q->issued = false;
        node__join_step(n, q);
        return;
    case NODE__GET:
        rv = raft_read_index(n->raft, q->id);
        break;
    case NODE__WRITE:
        rv = raft_propose(n->raft, q->id, q->buf, q->len);
        break;
    case NODE__REMOVE:
        rv = raft_propose_conf(n->raft, q->id, &cc);
        break;
    case NODE__TRANSFER:
        /* Asked again at each tick until the target leads. */
        rv = raft_transfer_leader(n->raft, q->target);
        if (retryable(rv)) {
            q->retry = true;
            rv = 0;
        }
        break;
    }
    if (rv) {
        node__req_error(n, q, node__status_of(rv), "%s", craft_strerror(rv));
        node__req_done(n, q);
    }
}

void node__req_issue(struct node *n, struct node__req *q)
{
    issue(n, q);
}

void node__req_read(struct node *n, struct node__req *q)
{
    uint64_t index;
    if (q->level == HTTP_READ_NONE) {
        node__req_serve(n, q);
    } else if (q->level == HTTP_READ_WEAK &&
               raft_read_lease(n->raft, node__ticks_now(n), &index) == 0) {
        q->index = index;
        node__req_wait_index(n, q);
    } else {
        /* Linearizable, or weak without a lease here (a follower, or a
         * leader whose lease lapsed): a read index is at least as strong. */
        issue(n, q);
    }
}

void node__on_prop(struct node *n, const struct raft_prop_result *p)
{
    struct node__req *q = lookup(n, p->id);
    /* A request asked again (after a leader change) may get a second
     * answer; the first placement it waits on decides. */
    if (q == NULL || q->heap_pos != 0)
        return;
    q->issued = false;
    if (p->err) {
        if (retryable(p->err)) {
            q->retry = true;
            return;
        }
        if (q->kind == NODE__JOIN) {
            node__join_refused(n, q, p->err);
            return;
        }
        node__req_error(n, q, node__status_of(p->err), "%s",
                        craft_strerror(p->err));
        node__req_done(n, q);
        return;
    }
    q->index = p->index;
    q->term = p->term;
    if (n->applied >= p->index) {
        /* Already applied: the term tells, while the entry is in the log. */
        uint64_t term = raft_term_at(n->raft, p->index);
        if (term == 0 && q->kind != NODE__JOIN) {
            node__metrics_prop_final(n, NODE__PROP_UNKNOWN);
            node__req_error(n, q, 504, "outcome unknown (the entry was "
                            "compacted before its result came); retry to "
                            "make sure");
            node__req_done(n, q);
            return;
        }
        bool ok = term == p->term;
        node__metrics_prop_final(n, term == 0 ? NODE__PROP_UNKNOWN /* a join's */
                                    : ok      ? NODE__PROP_COMMITTED
                                              : NODE__PROP_LOST);
        if (q->kind == NODE__JOIN) {
            node__join_applied(n, q, ok);
        } else if (ok) {
            answer_write(n, q, result_at(n, p->index));
        } else {
            node__req_error(n, q, 503, "write lost in a leader change; not "
                            "applied");
            node__req_done(n, q);
        }
        return;
    }
    node__req_wait_index(n, q);
}

void node__on_read(struct node *n, const struct raft_read_result *r)
{
    struct node__req *q = lookup(n, r->id);
    if (q == NULL || q->heap_pos != 0) /* (asked twice: first answer wins) */
        return;
    if (r->err) {
        if (retryable(r->err)) {
            q->retry = true;
            return;
        }
        node__req_error(n, q, 503, "%s", craft_strerror(r->err));
        node__req_done(n, q);
        return;
    }
    q->index = r->index;
    node__req_wait_index(n, q);
}

/* Entry e was applied: answer what waited for it. A write's answer is
 * made from kv_last_result now, before the next entry applies and
 * replaces it. */
void node__on_apply(struct node *n, const struct raft_entry *e)
{
    const struct kv_result *res =
        e->type == RAFT_ENTRY_NORMAL ? result_at(n, e->index) : NULL;
    while (n->n_heap > 0 && n->heap[0]->index <= e->index) {
        struct node__req *q = n->heap[0];
        heap_remove(n, q);
        if (q->kind == NODE__GET) {
            node__req_serve(n, q);
            continue;
        }
        bool ok = q->index == e->index && q->term == e->term;
        node__metrics_prop_final(n, ok ? NODE__PROP_COMMITTED : NODE__PROP_LOST);
        if (q->kind == NODE__JOIN) {
            node__join_applied(n, q, ok);
            continue;
        }
        if (ok) {
            answer_write(n, q, q->kind == NODE__WRITE ? res : NULL);
        } else {
            node__req_error(n, q, 503, "write lost in a leader change; not "
                            "applied");
            node__req_done(n, q);
        }
    }
}

/* A snapshot replaced the map: reads are served from it; for writes the
 * entry's term is no longer known here. */
void node__on_snapshot_installed(struct node *n)
{
    while (n->n_heap > 0 && n->heap[0]->index <= n->applied) {
        struct node__req *q = n->heap[0];
        heap_remove(n, q);
        if (q->kind != NODE__GET)
            node__metrics_prop_final(n, NODE__PROP_UNKNOWN);
        if (q->kind == NODE__GET) {
            node__req_serve(n, q);
        } else if (q->kind == NODE__JOIN) {
            node__join_applied(n, q, false); /* re-examines membership */
        } else {
            node__req_error(n, q, 504, "outcome unknown (state replaced by "
                            "a snapshot); retry to make sure");
            node__req_done(n, q);
        }
    }
}

void node__requests_tick(struct node *n)
{
    uint64_t now = node__now(n);
    for (struct node__req *q = n->head, *next; q; q = next) {
        next = q->next;
        if (q->deadline > now)
            continue;
        if (q->block_sub != NULL) { /* a blocking query's wait= ran out */
            node__block_end(n, q);
            node__req_serve(n, q);
            continue;
        }
        bool placed = q->index != 0 || q->issued; /* or maybe placed */
        if (q->kind != NODE__GET && q->index != 0)
            node__metrics_prop_final(n, NODE__PROP_UNKNOWN);
        bool no_leader = raft_soft(n->raft).leader == RAFT_NONE;
        if ((q->kind == NODE__WRITE || q->kind == NODE__REMOVE) && placed)
            node__req_error(n, q, 503,
                            "not committed in time (%s); it may or may "
                            "not have been applied",
                            no_leader ? "no leader" : "no quorum?");
        else if (no_leader)
            node__req_error(n, q, 503, "no leader");
        else
            node__req_error(n, q, 504, "timed out");
        node__req_done(n, q);
    }
    uint64_t leader = raft_soft(n->raft).leader;
    for (struct node__req *q = n->head, *next; q; q = next) {
        next = q->next;
        if (q->kind == NODE__TRANSFER) {
            if (leader == q->target) {
                http_reply_ok(q->http);
                node__req_done(n, q);
            } else {
                issue(n, q);
            }
            continue;
        }
        if (q->retry || (q->kind == NODE__JOIN && !q->issued &&
                         q->heap_pos == 0 && q->resolve == NULL))
            issue(n, q);
    }
}

/* The leader changed. A read or proposal forwarded to the old one whose
 * answer has not come will never get one: a read is simply asked again;
 * a write may or may not have been appended there, so it is not proposed
 * again (it could apply twice) but answered now instead of at its
 * deadline. Once a leader is known, whatever waits to be retried is issued
 * at once. */
void node__requests_leader_changed(struct node *n)
{
    for (struct node__req *q = n->head, *next; q; q = next) {
        next = q->next;
        if (!q->issued || q->index != 0)
            continue;
        if (q->kind == NODE__GET) {
            q->retry = true;
        } else if (q->kind == NODE__WRITE) {
            node__req_error(n, q, 503, "the leader changed before the "
                            "write was placed; it may or may not have been "
                            "applied");
            node__req_done(n, q);
        } else if (q->kind != NODE__TRANSFER) {
            q->issued = false; /* membership: looked at again */
            q->retry = true;
        }
    }
    if (raft_soft(n->raft).leader == RAFT_NONE)
        return;
    /* A leader is known: what waits for one is asked of it now, not at the
     * next tick (a write that came while there was none, a read asked
     * again). The caller pumps the core afterwards. */
    for (struct node__req *q = n->head, *next; q; q = next) {
        next = q->next;
        if (q->retry && q->kind != NODE__TRANSFER && q->kind != NODE__JOIN)
            issue(n, q);
    }
}

/* Answer everything pending (the node stops). A change already handed to
 * the core may still commit: say so, never just "failed". */
void node__requests_fail_all(struct node *n, int status, const char *why)
{
    while (n->head) {
        struct node__req *q = n->head;
        bool placed = q->kind != NODE__GET && q->kind != NODE__TRANSFER &&
                      (q->issued || q->index != 0);
        if (placed)
            node__req_error(n, q, status, "%s; it may or may not have "
                            "been applied", why);
        else
            node__req_error(n, q, status, "%s", why);
        node__req_done(n, q);
    }
}

/* ---- HTTP handlers ---- */

struct node__req *node__req_open(struct node *n, int kind,
                                 struct http_req *req)
{
    if (n->stopping || n->handing_over) {
        http_reply_error(req, 503, "shutting down");
        return NULL;
    }
    if (node__refuse_request(n, req)) /* removed (410), conflict (409) */
        return NULL;
    struct node__req *q = node__req_new(n, kind, req);
    if (q == NULL)
        http_reply_error(req, 503, "out of memory");
    return q;
}

void node__propose(struct node *n, struct http_req *req, uint8_t *buf,
                   size_t len, bool precond, node__answer_fn answer)
{
    struct node__req *q = node__req_open(n, NODE__WRITE, req);
    if (q == NULL) {
        craft_free(buf);
        return;
    }
    q->buf = buf;
    q->len = len;
    q->precond = precond;
    q->answer = answer;
    issue(n, q);
}

void node__propose_txn(struct node *n, struct http_req *req,
                       const struct kv_txn *t, bool precond,
                       node__answer_fn answer)
{
    size_t len = kv_txn_size(t);
    if (len == 0) {
        http_reply_error(req, 400, "the transaction cannot be encoded (a "
                         "key or value over 4 GiB, or too many ops)");
        return;
    }
    uint8_t *buf = craft_malloc(len);
    if (buf == NULL) {
        http_reply_error(req, 503, "out of memory");
        return;
    }
    kv_txn_encode(t, buf);
    node__propose(n, req, buf, len, precond, answer);
}

static void on_join(void *ud, struct http_req *req, const char *id,
                    const char *addr, const char *http_addr,
                    const struct http_join_ext *ext)
{
    struct node *n = ud;
    uint64_t rid;
    /* With a cluster token, a join proves it (or comes from a user who
     * had the admin role): else anyone reaching the HTTP port could add
     * members, seats that count toward the limit and, once voters, the
     * quorum. */
    if (peer_transport_authenticated(n->peers) && !ext->by_user &&
        !peer_join_proof_ok(n->peers, ext->body, ext->body_len, ext->proof,
                            ext->proof_len)) {
        unsigned sup = 0;
        if (node__log_allowed(n, 0x6000, &sup))
            CRAFT_WARN(&n->log, "refused a /join of %s: %s cluster-token "
                       "proof (%u more refused since the last line)", id,
                       ext->proof ? "a wrong" : "no", sup);
        http_reply_error(req, 403, "%s: this cluster requires the cluster "
                         "token for /join (start the joining node with the "
                         "same -cluster-token or CRAFTD_CLUSTER_TOKEN)",
                         ext->proof ? "the join's cluster-token proof is wrong"
                                    : "no cluster-token proof");
        return;
    }
    if (node__join_check(n, req, id, ext, &rid) != 0)
        return; /* answered */
    char host[PEER_HOST_MAX + 1], err[512];
    bool dns;
    if (node__join_addr_check("addr", addr, host, sizeof host, &dns, err,
                              sizeof err) != 0 ||
        (http_addr && http_addr[0] &&
         node__join_addr_check("http_addr", http_addr, host, sizeof host,
                               &dns, err, sizeof err) != 0)) {
        http_reply_error(req, 400, "%s", err);
        return;
    }
    if (http_addr && node__same_addr(addr, http_addr)) {
        http_reply_error(req, 400, "addr and http_addr are both %s: they "
                         "must be two ports", addr);
        return;
    }
    struct node__req *q = node__req_open(n, NODE__JOIN, req);
    if (q == NULL)
        return;
    q->jrid = rid;
    q->jid = craft_memdup(id, strlen(id) + 1);
    q->jaddr = craft_memdup(addr, strlen(addr) + 1);
    q->jhttp = http_addr ? craft_memdup(http_addr, strlen(http_addr) + 1)
                         : NULL;
    if (q->jid == NULL || q->jaddr == NULL || (http_addr && !q->jhttp)) {
        http_reply_error(req, 503, "out of memory");
        node__req_done(n, q);
        return;
    }
    /* A join may wait for a learner to catch up: give it longer. */
    q->deadline += 4 * (uint64_t)n->o.request_timeout_ms;
    int rv = node__join_resolve(n, q);
    if (rv == 0) {
        issue(n, q);
    } else if (rv != 1) {
        http_reply_error(req, 503, "cannot resolve the join's addresses "
                         "now: %s", craft_strerror(rv));
        node__req_done(n, q);
    }
}

/* Its host names resolved: go on with the join. */
void node__join_resolved(struct node *n, struct node__req *q)
{
    issue(n, q);
}

static void on_status(void *ud, struct http_req *req)
{
    node__status(ud, req);
}

/* POST /remove and /transfer name a member by its id string. */
static void member_op(struct node *n, struct http_req *req, const char *id,
                      int kind)
{
    const struct kv_member *m = kv_member_get(n->kv, id);
    if (m == NULL) {
        http_reply_error(req, 404, "no member %s", id);
        return;
    }
    if (kind == NODE__TRANSFER &&
        !raft_conf_is_voter(raft_conf(n->raft), m->raft_id)) {
        http_reply_error(req, 400, "member %s is not a voter", id);
        return;
    }
    struct node__req *q = node__req_open(n, kind, req);
    if (q == NULL)
        return;
    q->target = m->raft_id;
    issue(n, q);
}

static void on_remove(void *ud, struct http_req *req, const char *id)
{
    member_op(ud, req, id, NODE__REMOVE);
}

static void on_transfer(void *ud, struct http_req *req, const char *id)
{
    member_op(ud, req, id, NODE__TRANSFER);
}

/* The client of req went away. What has not been handed to Raft yet (a
 * write or removal waiting to be retried, any read: reads change nothing)
 * is dropped now; a proposal already made may still apply, and its answer
 * then goes nowhere. A join is dropped at any step: its next steps would
 * work for a node that no longer waits for them, e.g. an incarnation that
 * died, by removing the live incarnation of the same name to re-add it. A
 * step already proposed may still apply. */
static void on_cancel(void *ud, struct http_req *req)
{
    struct node *n = ud;
    if (node__backup_cancel(n, req))
        return;
    struct node__req *q = http_req_tag(req);
    if (q == NULL || q->http != req)
        return;
    bool placed = q->issued || q->index != 0;
    if (q->kind == NODE__GET || q->kind == NODE__JOIN ||
        ((q->kind == NODE__WRITE || q->kind == NODE__REMOVE) && !placed)) {
        node__req_error(n, q, 503, "the client went away");
        node__req_done(n, q);
    }
}

const struct http_handlers node__http_handlers = {
    .get = node__key_get,
    .set = node__key_set,
    .del = node__key_del,
    .put = node__key_put,
    .join = on_join,
    .status = on_status,
    .remove = on_remove,
    .transfer = on_transfer,
    .cancel = on_cancel,
    .txn = node__txn,
    .list = node__list,
    .del_prefix = node__del_prefix,
    .backup = node__backup,
    .lease_grant = node__lease_grant,
    .lease_keepalive = node__lease_keepalive,
    .lease_revoke = node__lease_revoke,
    .lease_get = node__lease_get,
    .lease_list = node__lease_list,
    .watch = node__watch,
};
