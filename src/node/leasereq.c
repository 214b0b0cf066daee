/* The lease requests (docs/http-api.md, "Leases"). A grant, keepalive or
 * revoke is a lease command (kv command version 3) proposed from any node
 * like every write and answered from its own entry's result (lease_op,
 * lease_found, ...: kv_last_result right after it applied). GET /lease/<id>
 * and GET /leases are reads (level as for GET /key) served from this
 * node's applied map, remaining_ms from this node's lease clock. Every
 * answer carries X-Craftd-Index: the entry's index for a write, the applied
 * index for a read. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "lease/lease.h"
#include "node/internal.h"

/* What a lease request's answer needs (q->arg, craft_malloc'd with the
 * bytes of GET /lease/<id>'s after= behind it). */
struct lease_arg {
    uint64_t id;    /* the lease (grant: 0) */
    uint64_t ttl_s; /* grant: the TTL granted */
    struct http_leases_query list; /* GET /leases */
    size_t limit;   /* GET /lease/<id>: keys on the page at most */
    bool has_after; /* and keys strictly after after[] only */
    size_t alen;
    uint8_t after[];
};

static void reply_jbuf(struct node__req *q, int status, struct http_jbuf *j)
{
    if (j->failed)
        http_reply_error(q->http, 503, "out of memory writing the answer%s",
                         q->kind == NODE__WRITE ? " (the write itself applied)"
                                                : "");
    else
        http_reply_json(q->http, status, j->data, j->len);
    http_jbuf_free(j);
}

/* The write committed but its result is gone (see node__answer_fn). */
static void outcome_unknown(struct node__req *q, const char *what)
{
    http_reply_error(q->http, 504, "the %s committed at index %" PRIu64 ", but "
                     "whether the lease existed is no longer known here; read "
                     "it with GET /lease/<id> to find out", what, q->index);
}

/* ---- writes ---- */

/* 201 {"id":"<index of the grant>","ttl":N} */
static void answer_grant(struct node *n, struct node__req *q,
                         const struct kv_result *res)
{
    const struct lease_arg *a = q->arg;
    http_reply_set_index(q->http, q->index);
    /* A grant cannot fail once committed: without its result (rare) the
     * lease is still the one at the entry's index, with the TTL asked. */
    uint64_t id = res != NULL ? res->lease_id : q->index;
    uint64_t ttl = res != NULL ? res->lease_ttl_ms / 1000 : a->ttl_s;
    struct http_jbuf j;
    http_jbuf_init(&j);
    http_jbuf_lease(&j, id, ttl);
    reply_jbuf(q, 201, &j);
}

/* 200 {"id","ttl"}, or 404 */
static void answer_keepalive(struct node *n, struct node__req *q,
                             const struct kv_result *res)
{
    const struct lease_arg *a = q->arg;
    http_reply_set_index(q->http, q->index);
    if (res == NULL) {
        outcome_unknown(q, "keepalive");
    } else if (!res->lease_found) {
        http_reply_error(q->http, 404, "lease not found");
    } else {
        struct http_jbuf j;
        http_jbuf_init(&j);
        http_jbuf_lease(&j, a->id, res->lease_ttl_ms / 1000);
        reply_jbuf(q, 200, &j);
    }
}

/* 200 {"deleted":n}, or 404 */
static void answer_revoke(struct node *n, struct node__req *q,
                          const struct kv_result *res)
{
    http_reply_set_index(q->http, q->index);
    if (res == NULL) {
        outcome_unknown(q, "revoke");
    } else if (!res->lease_found) {
        http_reply_error(q->http, 404, "lease not found");
    } else {
        char body[48];
        int len = snprintf(body, sizeof body, "{\"deleted\":%" PRIu64 "}",
                           res->lease_deleted);
        http_reply_json(q->http, 200, body, (size_t)len);
    }
}

/* Proposes the lease command (op, id, ttl_ms) for req, answered by answer
 * once its entry applied here. */
static void propose_lease(struct node *n, struct http_req *req, uint8_t op,
                          uint64_t id, uint64_t ttl_s, node__answer_fn answer)
{
    http_reply_set_index(req, n->applied); /* until a later index */
    uint8_t cmd[KV_LEASE_CMD_MAX];
    size_t len = kv_lease_cmd_encode(op, id, ttl_s * 1000, cmd);
    if (len == 0) {
        http_reply_error(req, 400, "invalid lease command");
        return;
    }
    struct node__req *q = node__req_open(n, NODE__WRITE, req);
    if (q == NULL)
        return;
    struct lease_arg a = {.id = id, .ttl_s = ttl_s};
    q->buf = craft_memdup(cmd, len);
    q->len = len;
    q->arg = craft_memdup(&a, sizeof a);
    q->precond = true; /* its outcome depends on the map's state */
    q->answer = answer;
    if (q->buf == NULL || q->arg == NULL) {
        node__req_error(n, q, 503, "out of memory");
        node__req_done(n, q);
        return;
    }
    node__req_issue(n, q);
}

void node__lease_grant(void *ud, struct http_req *req, uint64_t ttl_s)
{
    struct node *n = ud;
    uint64_t min = node__lease_min_ttl_s(n);
    propose_lease(n, req, KV_LEASE_GRANT, 0, ttl_s < min ? min : ttl_s,
                  answer_grant);
}

void node__lease_keepalive(void *ud, struct http_req *req, uint64_t id)
{
    propose_lease(ud, req, KV_LEASE_KEEPALIVE, id, 0, answer_keepalive);
}

void node__lease_revoke(void *ud, struct http_req *req, uint64_t id)
{
    propose_lease(ud, req, KV_LEASE_REVOKE, id, 0, answer_revoke);
}

/* ---- reads ---- */

/* A page of a lease's keys being written, and its last key. */
struct key_page {
    struct http_jbuf *j;
    const uint8_t *last; /* into the map: valid while it does not change */
    size_t llen;
};

/* One key onto the page; a non-zero return ends the page (it is full). */
static int key_of_lease(void *ud, const struct kv_meta *m)
{
    struct key_page *p = ud;
    http_jbuf_lease_key(p->j, m->key, m->klen);
    p->last = m->key;
    p->llen = m->klen;
    return p->j->failed || p->j->len >= HTTP_LIST_MAX_BYTES;
}

/* 200 {"id","ttl","remaining_ms","keys":[...],"more":bool,"next":<last
 * key>}, or 404 */
static void answer_get(struct node *n, struct node__req *q,
                       const struct kv_result *res)
{
    const struct lease_arg *a = q->arg;
    http_reply_set_index(q->http, n->applied);
    struct kv_lease l;
    if (kv_lease_get(n->kv, a->id, &l) != 0) {
        http_reply_error(q->http, 404, "lease not found");
        return;
    }
    /* The clock knows every lease of the map (rebuilt with it, fed by
     * each apply); should it not, the full TTL is the honest bound. */
    int64_t left = lease_clock_remaining(n->leases, a->id, node__now(n));
    struct http_jbuf j;
    http_jbuf_init(&j);
    http_jbuf_lease_info_begin(&j, l.id, l.ttl_ms / 1000,
                               left < 0 ? l.ttl_ms : (uint64_t)left);
    struct key_page page = {.j = &j};
    size_t got;
    bool more = false;
    int rv = kv_lease_keys(n->kv, a->id, a->has_after ? a->after : NULL, a->alen,
                           a->limit, key_of_lease, &page, &got, &more);
    if (rv < 0) { /* CRAFT_ENOMEM sorting its keys (it exists: not ENOTFOUND) */
        http_jbuf_free(&j);
        http_reply_error(q->http, 503, "out of memory listing the lease's keys");
        return;
    }
    http_jbuf_lease_info_end(&j, more, page.last, page.llen);
    reply_jbuf(q, 200, &j);
}

static int lease_of_list(void *ud, const struct kv_lease *l)
{
    http_jbuf_leases_item(ud, l->id, l->ttl_ms / 1000);
    return 0;
}

/* 200 {"index":N,"leases":[{"id","ttl"},...],"more":bool} */
static void answer_list(struct node *n, struct node__req *q,
                        const struct kv_result *res)
{
    const struct lease_arg *a = q->arg;
    http_reply_set_index(q->http, n->applied);
    struct http_jbuf j;
    http_jbuf_init(&j);
    http_jbuf_leases_begin(&j, n->applied);
    bool more = false;
    (void)kv_lease_list(n->kv, a->list.after, a->list.limit, lease_of_list, &j,
                        &more);
    http_jbuf_leases_end(&j, more);
    reply_jbuf(q, 200, &j);
}

/* a: craft_malloc'd, taken (freed with q, or here). */
static void read_lease(struct node *n, struct http_req *req,
                       struct lease_arg *a, int level,
                       node__answer_fn answer)
{
    http_reply_set_index(req, n->applied); /* until a later index */
    if (a == NULL) {
        http_reply_error(req, 503, "out of memory");
        return;
    }
    struct node__req *q = node__req_open(n, NODE__GET, req);
    if (q == NULL) {
        craft_free(a);
        return;
    }
    q->level = level;
    q->answer = answer;
    q->arg = a;
    node__req_read(n, q); /* at q->level, as GET /key */
}

void node__lease_get(void *ud, struct http_req *req, const struct http_lease_query *lq)
{
    struct lease_arg *a = craft_calloc(1, sizeof *a + lq->alen);
    if (a != NULL) {
        a->id = lq->id;
        a->limit = lq->limit;
        a->has_after = lq->after != NULL;
        a->alen = lq->alen;
        if (lq->alen > 0)
            memcpy(a->after, lq->after, lq->alen);
    }
    read_lease(ud, req, a, lq->level, answer_get);
}

void node__lease_list(void *ud, struct http_req *req,
                      const struct http_leases_query *lq)
{
    struct lease_arg *a = craft_calloc(1, sizeof *a);
    if (a != NULL)
        a->list = *lq;
    read_lease(ud, req, a, lq->level, answer_list);
}
