/* The single-key requests (GET, PUT, POST, DELETE /key): the commands they
 * propose and the answers made from the map or from their entry's result.
 * A precondition (If-Match, If-None-Match) becomes the compare of a
 * transaction (kv command version 2), so the state machine decides it when
 * the entry applies; nothing is checked at request time. hraftd's POST and
 * DELETE without a precondition stay version-1 batches. Every answer to a
 * key request carries X-Craftd-Index: this node's applied index, or the
 * write's own entry index once it applied. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "node/internal.h"

static const char OCTETS[] = "application/octet-stream";

/* ---- GET ---- */

static bool not_modified(const struct http_get_opts *o, uint64_t mod_index)
{
    if (o->inm_any)
        return true;
    for (size_t i = 0; i < o->n_inm; i++)
        if (o->inm[i] == mod_index)
            return true;
    return false;
}

/* Reads the key from the map as it is now (applied >= the read index).
 * The index header is the applied index: what the answer reflects. */
static void answer_get(struct node *n, struct node__req *q,
                       const struct kv_result *res)
{
    const struct http_get_opts *o = q->arg;
    struct kv_meta m;
    http_reply_set_index(q->http, n->applied);
    if (kv_get_meta(n->kv, q->buf, q->len, &m) != 0) {
        http_reply_error(q->http, 404, "key not found");
        return;
    }
    http_reply_set_etag(q->http, m.mod_index);
    if (not_modified(o, m.mod_index)) {
        http_reply_not_modified(q->http);
    } else if (o->raw) {
        http_reply_body(q->http, 200, OCTETS, m.val, m.vlen);
    } else if (o->meta) {
        struct http_jbuf j;
        http_jbuf_init(&j);
        http_jbuf_meta(&j, &m);
        if (j.failed)
            http_reply_error(q->http, 503, "out of memory");
        else
            http_reply_json(q->http, 200, j.data, j.len);
        http_jbuf_free(&j);
    } else {
        http_reply_value(q->http, (const char *)q->buf, q->len,
                         (const char *)m.val, m.vlen);
    }
}

void node__key_get(void *ud, struct http_req *req, const char *key,
                   size_t klen, const struct http_get_opts *o)
{
    struct node *n = ud;
    http_reply_set_index(req, n->applied); /* until a later index */
    struct node__req *q = node__req_open(n, NODE__GET, req);
    if (q == NULL)
        return;
    q->buf = craft_memdup(key, klen);
    q->len = klen;
    q->level = o->level;
    q->arg = craft_memdup(o, sizeof *o);
    q->answer = answer_get;
    if (q->buf == NULL || q->arg == NULL) {
        node__req_error(n, q, 503, "out of memory");
        node__req_done(n, q);
        return;
    }
    if (o->block.on) { /* served from the applied state, now or on a change */
        struct kv_meta m;
        uint64_t mod = kv_get_meta(n->kv, key, klen, &m) == 0 ? m.mod_index : 0;
        if (!node__block(n, q, key, klen, false, &o->block, mod))
            node__req_serve(n, q);
        return;
    }
    node__req_read(n, q);
}

/* ---- writes: the answers ---- */

/* 412 with the key's mod_index when the compare was decided (0: absent). */
static void precondition_failed(struct node__req *q,
                                const struct kv_result *res)
{
    char body[96];
    int len = snprintf(body, sizeof body, "{\"error\":\"precondition failed\","
                       "\"mod_index\":%" PRIu64 "}", res->failed_mod_index);
    http_reply_json(q->http, 412, body, (size_t)len);
}

/* 404 {"error":"lease not found","lease":"<id>"}: a put named a lease the
 * map does not have when the entry applied, so it wrote nothing. Shared
 * with POST /txn (txnlist.c). */
void node__missing_lease(struct node__req *q, uint64_t lease)
{
    char body[80];
    int len = snprintf(body, sizeof body, "{\"error\":\"lease not found\","
                       "\"lease\":\"%" PRIu64 "\"}", lease);
    http_reply_json(q->http, 404, body, (size_t)len);
}

/* The write committed, but whether its precondition held is not known any
 * more (see node__answer_fn): say so rather than guess. */
static void outcome_unknown(struct node__req *q)
{
    http_reply_error(q->http, 504, "the write committed, but whether its "
                     "precondition held is no longer known here; read the "
                     "key to find out");
}

/* POST /key and DELETE /key/<k>: 200 with an empty body, as hraftd, or 412. */
static void answer_plain(struct node *n, struct node__req *q,
                         const struct kv_result *res)
{
    http_reply_set_index(q->http, q->index);
    if (q->precond && res == NULL)
        outcome_unknown(q);
    else if (q->precond && !res->succeeded)
        precondition_failed(q, res);
    else
        http_reply_ok(q->http);
}

/* PUT /key/<k>: 201 created or 200 replaced, {"mod_index":N}, or 412. */
static void answer_put(struct node *n, struct node__req *q,
                       const struct kv_result *res)
{
    http_reply_set_index(q->http, q->index);
    if (res == NULL && q->precond) {
        outcome_unknown(q);
        return;
    }
    if (res != NULL && res->missing_lease != 0) {
        node__missing_lease(q, res->missing_lease);
        return;
    }
    if (res != NULL && !res->succeeded) {
        precondition_failed(q, res);
        return;
    }
    /* Without the result (rare: see node__answer_fn) the put applied but
     * whether it created the key is unknown: 200. */
    bool created = res != NULL && res->n_ops == 1 && res->ops[0].created;
    char body[48];
    int len = snprintf(body, sizeof body, "{\"mod_index\":%" PRIu64 "}",
                       q->index);
    http_reply_set_etag(q->http, q->index);
    http_reply_json(q->http, created ? 201 : 200, body, (size_t)len);
}

/* ---- writes: the commands ---- */

/* The compares of a precondition on key (at most two); returns how many. */
static size_t compares_of(const struct http_precond *pre, const char *key,
                          size_t klen, struct kv_compare cmp[2])
{
    struct kv_compare c = {.op = KV_CMP_EQ, .key = (const uint8_t *)key,
                           .klen = klen};
    switch (pre->kind) {
    case HTTP_PRE_MOD_INDEX:
        if (pre->mod_index == 0) {
            /* mod_index reads 0 for an absent key, and no key has 0: the
             * key must exist first (this never succeeds, but the 412 then
             * says the key's mod_index) */
            cmp[0] = c;
            cmp[0].target = KV_CMP_EXISTS;
            cmp[0].num = 1;
            cmp[1] = c;
            cmp[1].target = KV_CMP_MOD;
            return 2;
        }
        cmp[0] = c;
        cmp[0].target = KV_CMP_MOD;
        cmp[0].num = pre->mod_index;
        return 1;
    case HTTP_PRE_EXISTS:
    case HTTP_PRE_ABSENT:
        cmp[0] = c;
        cmp[0].target = KV_CMP_EXISTS;
        cmp[0].num = pre->kind == HTTP_PRE_EXISTS;
        return 1;
    default:
        return 0;
    }
}

/* A transaction of one op under pre, proposed for req. It can fail when
 * it has compares, or names a lease (that may not exist). */
static void propose_one(struct node *n, struct http_req *req,
                        const struct http_precond *pre,
                        const struct kv_txn_op *op, node__answer_fn answer)
{
    struct kv_compare cmp[2];
    struct kv_txn t = {.cmp = cmp,
                       .n_cmp = compares_of(pre, (const char *)op->key,
                                            op->klen, cmp),
                       .success = op,
                       .n_success = 1};
    node__propose_txn(n, req, &t, t.n_cmp > 0 || op->lease != 0, answer);
}

/* A version-1 batch (hraftd's writes) in cmd, proposed for req. */
static void propose_batch(struct node *n, struct http_req *req,
                          struct kv_cmd *cmd)
{
    node__propose(n, req, cmd->data, cmd->len, false, answer_plain);
}

void node__key_set(void *ud, struct http_req *req, const struct http_kv *kvs,
                   size_t nkv, const struct http_precond *pre)
{
    struct node *n = ud;
    http_reply_set_index(req, n->applied); /* until a later index */
    if (pre->kind != HTTP_PRE_NONE) { /* one pair (checked by src/http) */
        struct kv_txn_op op = {.type = KV_TOP_PUT,
                               .key = (const uint8_t *)kvs[0].key,
                               .klen = kvs[0].klen,
                               .val = (const uint8_t *)kvs[0].val,
                               .vlen = kvs[0].vlen};
        propose_one(n, req, pre, &op, answer_plain);
        return;
    }
    struct kv_cmd cmd;
    if (kv_cmd_init(&cmd) != 0) {
        http_reply_error(req, 503, "out of memory");
        return;
    }
    for (size_t i = 0; i < nkv; i++) {
        int rv = kv_cmd_set(&cmd, kvs[i].key, kvs[i].klen, kvs[i].val,
                            kvs[i].vlen);
        if (rv) {
            kv_cmd_free(&cmd);
            http_reply_error(req, node__status_of(rv), "%s",
                             craft_strerror(rv));
            return;
        }
    }
    propose_batch(n, req, &cmd);
}

void node__key_del(void *ud, struct http_req *req, const char *key,
                   size_t klen, const struct http_precond *pre)
{
    struct node *n = ud;
    http_reply_set_index(req, n->applied); /* until a later index */
    if (pre->kind != HTTP_PRE_NONE) {
        struct kv_txn_op op = {.type = KV_TOP_DEL,
                               .key = (const uint8_t *)key, .klen = klen};
        propose_one(n, req, pre, &op, answer_plain);
        return;
    }
    struct kv_cmd cmd;
    if (kv_cmd_init(&cmd) != 0 || kv_cmd_del(&cmd, key, klen) != 0) {
        kv_cmd_free(&cmd);
        http_reply_error(req, 503, "out of memory");
        return;
    }
    propose_batch(n, req, &cmd);
}

/* Always a transaction, even without a precondition: its result says
 * whether the put created the key (201) or replaced it (200). */
void node__key_put(void *ud, struct http_req *req, const char *key,
                   size_t klen, const char *val, size_t vlen,
                   const struct http_put_opts *o)
{
    struct node *n = ud;
    http_reply_set_index(req, n->applied); /* until a later index */
    /* Whether the lease exists is decided when the entry applies. */
    struct kv_txn_op op = {.type = KV_TOP_PUT, .key = (const uint8_t *)key,
                           .klen = klen, .val = (const uint8_t *)val,
                           .vlen = vlen, .lease = o->lease};
    propose_one(n, req, &o->pre, &op, answer_put);
}
