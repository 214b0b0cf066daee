/* POST /txn, GET /keys and DELETE /keys?prefix= (docs/http-api.md,
 * "Transactions and listing"). A transaction, and a prefix delete, is one
 * log entry (kv command version 2) proposed like any write and answered
 * from the result of its own entry (kv_last_result, read right after it
 * applied). A listing is a read: served from this node's applied state
 * once it has reached the read index (level as for GET /key), with the
 * work of one answer capped (limit keys, HTTP_LIST_MAX_BYTES of JSON,
 * HTTP_COUNT_MAX keys counted). Every answer carries X-Craftd-Index: this
 * node's applied index, or the entry's own index once it applied. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "node/internal.h"

/* ---- transactions and prefix deletes ---- */

/* The entry committed but its result is gone (see node__answer_fn). */
static void outcome_unknown(struct node__req *q)
{
    http_reply_error(q->http, 504, "the transaction committed at index %" PRIu64
                     ", but its result is no longer known here; read the keys "
                     "to find out", q->index);
}

static void reply_jbuf(struct node__req *q, struct http_jbuf *j)
{
    if (j->failed)
        http_reply_error(q->http, 503, "out of memory writing the answer%s",
                         q->kind == NODE__WRITE ? " (the write itself applied)"
                                                : "");
    else
        http_reply_json(q->http, 200, j->data, j->len);
    http_jbuf_free(j);
}

/* 200 {"succeeded":bool,"index":N,"results":[...]} */
static void answer_txn(struct node *n, struct node__req *q,
                       const struct kv_result *res)
{
    http_reply_set_index(q->http, q->index);
    if (res == NULL) {
        outcome_unknown(q);
        return;
    }
    if (res->missing_lease != 0) {
        node__missing_lease(q, res->missing_lease);
        return;
    }
    if (res->err != 0) {
        http_reply_error(q->http, 503, "the transaction applied at index %"
                         PRIu64 " (succeeded: %s), but its results did not fit "
                         "in memory", q->index,
                         res->succeeded ? "true" : "false");
        return;
    }
    struct http_jbuf j;
    http_jbuf_init(&j);
    http_jbuf_txn(&j, res);
    reply_jbuf(q, &j);
}

/* 200 {"deleted":n,"index":N} */
static void answer_deleted(struct node *n, struct node__req *q,
                           const struct kv_result *res)
{
    http_reply_set_index(q->http, q->index);
    if (res == NULL || res->n_ops != 1) {
        outcome_unknown(q);
        return;
    }
    struct http_jbuf j;
    http_jbuf_init(&j);
    http_jbuf_deleted(&j, res->ops[0].deleted, q->index);
    reply_jbuf(q, &j);
}

/* Whether a put's lease exists is decided when the entry applies (a
 * missing one: 404, nothing written; answer_txn). */
void node__txn(void *ud, struct http_req *req, const struct kv_txn *t)
{
    struct node *n = ud;
    http_reply_set_index(req, n->applied); /* until a later index */
    node__propose_txn(n, req, t, true, answer_txn);
}

void node__del_prefix(void *ud, struct http_req *req, const uint8_t *prefix,
                      size_t plen)
{
    struct node *n = ud;
    http_reply_set_index(req, n->applied); /* until a later index */
    struct kv_txn_op op = {.type = KV_TOP_DEL_PREFIX, .key = prefix,
                           .klen = plen};
    struct kv_txn t = {.success = &op, .n_success = 1};
    node__propose_txn(n, req, &t, true, answer_deleted);
}

/* ---- listing ---- */

/* A copy of the query, owned by its request (q->arg, one block). */
struct list_arg {
    struct kv_range range; /* points into bytes */
    const uint8_t *after;  /* NULL: none */
    size_t alen;
    size_t limit;
    bool keys_only, count_only;
    uint8_t bytes[];       /* start, end, after */
};

static struct list_arg *list_arg_new(const struct http_keys_query *k)
{
    const struct kv_range *r = &k->range;
    size_t elen = r->has_end ? r->elen : 0;
    struct list_arg *a = craft_malloc(sizeof *a + r->slen + elen + k->alen);
    if (a == NULL)
        return NULL;
    uint8_t *p = a->bytes;
    if (r->slen)
        memcpy(p, r->start, r->slen);
    a->range = *r;
    a->range.start = p;
    p += r->slen;
    if (elen)
        memcpy(p, r->end, elen);
    a->range.end = r->has_end ? p : NULL;
    p += elen;
    if (k->alen)
        memcpy(p, k->after, k->alen);
    a->after = k->after ? p : NULL;
    a->alen = k->alen;
    a->limit = k->limit;
    a->keys_only = k->keys_only;
    a->count_only = k->count_only;
    return a;
}

struct page {
    struct http_jbuf *j;
    bool keys_only;
    struct kv_meta last; /* the last key put on the page */
};

/* One key onto the page; a non-zero return ends the page (it is full). */
static int page_key(void *ud, const struct kv_meta *m)
{
    struct page *p = ud;
    http_jbuf_list_key(p->j, m, p->keys_only);
    p->last = *m;
    return p->j->failed || p->j->len >= HTTP_LIST_MAX_BYTES;
}

/* Served from the map as it is now (applied >= the read index): one
 * consistent state, as nothing changes the map during the call. */
static void answer_list(struct node *n, struct node__req *q,
                        const struct kv_result *res)
{
    const struct list_arg *a = q->arg;
    struct http_jbuf j;
    http_jbuf_init(&j);
    http_reply_set_index(q->http, n->applied);
    bool more;
    if (a->count_only) {
        size_t count;
        struct kv_meta last;
        kv_count_range(n->kv, &a->range, a->after, a->alen, a->limit, &count,
                       &more, &last);
        http_jbuf_count(&j, n->applied, count, more, &last);
    } else {
        struct page p = {.j = &j, .keys_only = a->keys_only};
        size_t got;
        http_jbuf_list_begin(&j, n->applied);
        kv_list(n->kv, &a->range, a->after, a->alen, a->limit, page_key, &p,
                &got, &more);
        http_jbuf_list_end(&j, more, got > 0 ? &p.last : NULL);
    }
    reply_jbuf(q, &j);
}

void node__list(void *ud, struct http_req *req,
                const struct http_keys_query *k)
{
    struct node *n = ud;
    http_reply_set_index(req, n->applied); /* until a later index */
    struct node__req *q = node__req_open(n, NODE__GET, req);
    if (q == NULL)
        return;
    q->level = k->level;
    q->arg = list_arg_new(k);
    q->answer = answer_list;
    if (q->arg == NULL) {
        node__req_error(n, q, 503, "out of memory");
        node__req_done(n, q);
        return;
    }
    if (k->block.on) { /* served from the applied state, now or on a change */
        if (!node__block(n, q, k->range.start, k->range.slen, true, &k->block, 0))
            node__req_serve(n, q);
        return;
    }
    node__req_read(n, q); /* at q->level, as GET /key */
}
