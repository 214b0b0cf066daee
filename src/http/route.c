/* Routing and validation: every request h2o parsed lands here, is checked
 * against the rules of docs/http-api.md, and is either answered at once
 * (errors, empty writes) or handed to the node's handlers. */
#include "http/internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char KEY_ALLOW[] = "GET, HEAD, PUT, POST, DELETE";

static bool path_is(const char *p, size_t len, const char *want)
{
    return h2o_memis(p, len, want, strlen(want));
}

/* Answers status with {"error": printf(fmt, ...)}. */
__attribute__((format(printf, 4, 5))) static void fail(h2o_req_t *req, int status,
                                                        const char *allow, const char *fmt,
                                                        ...)
{
    va_list ap;
    va_start(ap, fmt);
    http__send_errorv(req, status, allow, fmt, ap);
    va_end(ap);
}

static void method_not_allowed(h2o_req_t *req, const char *allow, const char *what)
{
    fail(req, 405, allow, "method %.*s not allowed on %s (allowed: %s)",
         (int)(req->method.len > 32 ? 32 : req->method.len), req->method.base, what, allow);
}

/* A request for the node, or NULL after answering 500 (out of memory) or 501
 * (the node has no handler for it). */
static struct http_req *hand_over(struct http_server *srv, h2o_req_t *req, bool have_handler)
{
    if (http__guard_req_left(srv, req)) {
        /* The client left (e.g. after pipelining many requests): nothing of
         * it is executed any more, and the connection closes after this. */
        req->http1_is_persistent = 0;
        srv->cancelled_total++;
        fail(req, 400, NULL, "the client went away");
        return NULL;
    }
    if (!have_handler) {
        fail(req, 501, NULL, "not implemented");
        return NULL;
    }
    struct http_req *r = http__req_new(srv, req);
    if (r == NULL)
        fail(req, 500, NULL, "out of memory");
    return r;
}

struct http_req *http__hand_over(struct http_server *srv, h2o_req_t *req, bool have_handler)
{
    return hand_over(srv, req, have_handler);
}

/* The key of GET/PUT/DELETE /key/<k>: the rest of the path, percent-decoded.
 * Returns its length (>= 1) with *key in the request's pool, or 0 after
 * answering 400. */
static size_t decode_key(struct http_server *srv, h2o_req_t *req, const char *rest, size_t rlen,
                         char **key)
{
    if (rlen <= 1) {
        fail(req, 400, NULL, "missing key: use /key/<key>");
        return 0;
    }
    const char *seg = rest + 1;
    size_t slen = rlen - 1;
    if (memchr(seg, '/', slen) != NULL) {
        fail(req, 400, NULL, "a key is one path segment: encode '/' in a key as %%2F");
        return 0;
    }
    *key = h2o_mem_alloc_pool(&req->pool, slen);
    ssize_t klen = http__pct_decode(seg, slen, *key);
    if (klen < 0) {
        fail(req, 400, NULL, "invalid percent-encoding in the key");
        return 0;
    }
    if ((size_t)klen > srv->max_key) {
        fail(req, 400, NULL, "key too long: %zd bytes, the limit is %zu", klen, srv->max_key);
        return 0;
    }
    if (!craft_utf8_valid(*key, (size_t)klen)) {
        fail(req, 400, NULL, "the key is not valid UTF-8");
        return 0;
    }
    return (size_t)klen;
}

/* The query string of req (without '?'), empty when there is none. */
static const char *query_of(const h2o_req_t *req, size_t *len)
{
    if (req->query_at == SIZE_MAX) {
        *len = 0;
        return "";
    }
    *len = req->path.len - req->query_at - 1;
    return req->path.base + req->query_at + 1;
}

/* The value of the one header line tok of req: 1 and *v, *vlen; 0 when
 * absent; -1 after answering 400 when it appears more than once. */
static int one_header(h2o_req_t *req, const h2o_token_t *tok, const char *what,
                      const char **v, size_t *vlen)
{
    ssize_t h = h2o_find_header(&req->headers, tok, -1);
    if (h < 0)
        return 0;
    if (h2o_find_header(&req->headers, tok, h) >= 0) {
        fail(req, 400, NULL, "%s given twice: a write takes one precondition", what);
        return -1;
    }
    *v = req->headers.entries[h].value.base;
    *vlen = req->headers.entries[h].value.len;
    return 1;
}

/* The precondition of a write (If-Match / If-None-Match): 0, or -1 after
 * answering 400. */
static int write_precond(h2o_req_t *req, struct http_precond *pre)
{
    const char *im = NULL, *inm = NULL;
    size_t imlen = 0, inmlen = 0;
    if (one_header(req, H2O_TOKEN_IF_MATCH, "If-Match", &im, &imlen) < 0 ||
        one_header(req, H2O_TOKEN_IF_NONE_MATCH, "If-None-Match", &inm, &inmlen) < 0)
        return -1;
    char err[256];
    if (http__parse_precond(im, imlen, inm, inmlen, pre, err, sizeof err) != 0) {
        fail(req, 400, NULL, "%s", err);
        return -1;
    }
    return 0;
}

/* The options of GET /key/<k>: 0, or -1 after answering 400. */
static int get_opts(h2o_req_t *req, struct http_get_opts *o)
{
    size_t qlen;
    const char *q = query_of(req, &qlen);
    *o = (struct http_get_opts){.level = HTTP_READ_LINEARIZABLE};
    if (http__parse_level(q, qlen, &o->level) != 0) {
        fail(req, 400, NULL, "unknown read level: use level=linearizable, weak or none");
        return -1;
    }
    if (http__query_flag(q, qlen, "meta", &o->meta) != 0 ||
        http__query_flag(q, qlen, "raw", &o->raw) != 0) {
        fail(req, 400, NULL, "meta and raw take no value (or 1, true, 0, false)");
        return -1;
    }
    if (o->meta && o->raw) {
        fail(req, 400, NULL, "meta and raw exclude each other: ask for one");
        return -1;
    }
    struct http__etags t = {0};
    char err[256];
    for (ssize_t h = -1; (h = h2o_find_header(&req->headers, H2O_TOKEN_IF_NONE_MATCH, h)) >= 0;) {
        const h2o_iovec_t *v = &req->headers.entries[h].value;
        if (http__parse_etags(v->base, v->len, true, &t, err, sizeof err) != 0) {
            fail(req, 400, NULL, "If-None-Match: %s", err);
            return -1;
        }
    }
    if (h2o_find_header(&req->headers, H2O_TOKEN_IF_MATCH, -1) >= 0) {
        fail(req, 400, NULL, "If-Match is for writes (PUT, DELETE, POST); a read takes "
             "If-None-Match");
        return -1;
    }
    o->inm_any = t.any;
    o->n_inm = t.n;
    memcpy(o->inm, t.tag, t.n * sizeof t.tag[0]);
    if (http__parse_block(q, qlen, &o->block, err, sizeof err) != 0) {
        fail(req, 400, NULL, "%s", err);
        return -1;
    }
    return 0;
}

static void route_get(struct http_server *srv, h2o_req_t *req, const char *rest, size_t rlen)
{
    char *key;
    size_t klen = decode_key(srv, req, rest, rlen, &key);
    if (klen == 0)
        return;
    struct http_get_opts o;
    if (get_opts(req, &o) != 0)
        return;
    struct http_req *r = hand_over(srv, req, srv->handlers.get != NULL);
    if (r != NULL)
        srv->handlers.get(srv->ud, r, key, klen, &o);
}

static void route_del(struct http_server *srv, h2o_req_t *req, const char *rest, size_t rlen)
{
    char *key;
    size_t klen = decode_key(srv, req, rest, rlen, &key);
    if (klen == 0)
        return;
    struct http_precond pre;
    if (write_precond(req, &pre) != 0)
        return;
    struct http_req *r = hand_over(srv, req, srv->handlers.del != NULL);
    if (r != NULL)
        srv->handlers.del(srv->ud, r, key, klen, &pre);
}

/* PUT /key/<k>[?lease=<id>]: the body is the value, as it is. */
static void route_put(struct http_server *srv, h2o_req_t *req, const char *rest, size_t rlen)
{
    char *key;
    size_t klen = decode_key(srv, req, rest, rlen, &key);
    if (klen == 0)
        return;
    struct http_put_opts o = {0};
    if (write_precond(req, &o.pre) != 0)
        return;
    size_t qlen;
    const char *q = query_of(req, &qlen);
    char val[24];
    size_t vlen;
    int rv = http__query_param(q, qlen, "lease", val, sizeof val, &vlen);
    if (rv < 0 || (rv == 1 && http__parse_u64(val, vlen, &o.lease) != 0)) {
        fail(req, 400, NULL, "lease takes a lease id: a decimal number (0: none)");
        return;
    }
    if (req->entity.len > srv->max_value) {
        fail(req, 400, NULL, "value too long: %zu bytes, the limit is %zu", req->entity.len,
             srv->max_value);
        return;
    }
    struct http_req *r = hand_over(srv, req, srv->handlers.put != NULL);
    if (r != NULL)
        srv->handlers.put(srv->ud, r, key, klen, req->entity.base ? req->entity.base : "",
                          req->entity.len, &o);
}

/* POST /key (like hraftd, whatever follows /key is ignored: the pairs are
 * in the body). A precondition needs exactly one pair. */
static void route_set(struct http_server *srv, h2o_req_t *req)
{
    struct http_precond pre;
    if (write_precond(req, &pre) != 0)
        return;
    struct http__kvbody b;
    char err[256];
    if (http__parse_kv_body(req->entity.base, req->entity.len, srv->max_key, srv->max_value, &b,
                            err, sizeof err) != 0) {
        fail(req, 400, NULL, "%s", err);
        return;
    }
    if (pre.kind != HTTP_PRE_NONE && b.n != 1) {
        fail(req, 400, NULL, "a precondition (If-Match, If-None-Match) applies to one key: "
             "this body holds %zu; send one pair, or use POST /txn", b.n);
        http__kvbody_free(&b);
        return;
    }
    if (b.n == 0) { /* {} or null: nothing to do, as hraftd */
        http__send(req, 200, NULL, NULL, "", 0);
        return;
    }
    struct http_req *r = hand_over(srv, req, srv->handlers.set != NULL);
    if (r != NULL)
        srv->handlers.set(srv->ud, r, b.pairs, b.n, &pre);
    http__kvbody_free(&b);
}

static void route_key(struct http_server *srv, h2o_req_t *req, const char *rest, size_t rlen)
{
    if (http__method_is(req, "GET") || http__method_is(req, "HEAD")) /* HEAD: h2o drops the body */
        route_get(srv, req, rest, rlen);
    else if (http__method_is(req, "POST"))
        route_set(srv, req);
    else if (http__method_is(req, "PUT"))
        route_put(srv, req, rest, rlen);
    else if (http__method_is(req, "DELETE"))
        route_del(srv, req, rest, rlen);
    else
        method_not_allowed(req, KEY_ALLOW, "/key");
}

static void route_join(struct http_server *srv, h2o_req_t *req)
{
    if (!http__method_is(req, "POST")) {
        method_not_allowed(req, "POST", "/join");
        return;
    }
    struct http__joinbody b;
    char err[256];
    if (http__parse_join_body(req->entity.base, req->entity.len, &b, err, sizeof err) != 0) {
        fail(req, 400, NULL, "%s", err);
        return;
    }
    b.ext.body = req->entity.base;
    b.ext.body_len = req->entity.len;
    ssize_t h = h2o_find_header_by_str(&req->headers, H2O_STRLIT(HTTP_JOIN_PROOF_HEADER), -1);
    if (h >= 0) {
        b.ext.proof = req->headers.entries[h].value.base;
        b.ext.proof_len = req->headers.entries[h].value.len;
    }
    b.ext.by_user = srv->auth != NULL; /* it got here: it had the role */
    struct http_req *r = hand_over(srv, req, srv->handlers.join != NULL);
    if (r != NULL)
        srv->handlers.join(srv->ud, r, b.id, b.addr, b.http_addr, &b.ext);
    http__joinbody_free(&b);
}

/* POST /remove and POST /transfer: {"id": "<member>"}. */
static void route_member_op(struct http_server *srv, h2o_req_t *req, const char *path,
                            void (*fn)(void *, struct http_req *, const char *))
{
    if (!http__method_is(req, "POST")) {
        method_not_allowed(req, "POST", path);
        return;
    }
    struct http__joinbody b;
    char err[256];
    if (http__parse_id_body(req->entity.base, req->entity.len, &b, err, sizeof err) != 0) {
        fail(req, 400, NULL, "%s", err);
        return;
    }
    struct http_req *r = hand_over(srv, req, fn != NULL);
    if (r != NULL)
        fn(srv->ud, r, b.id);
    http__joinbody_free(&b);
}

static void route_status(struct http_server *srv, h2o_req_t *req)
{
    if (!http__method_is(req, "GET")) {
        /* hraftd sends no body; every error here has the JSON one (a
         * client of hraftd reads only the status). */
        method_not_allowed(req, "GET", "/status");
        return;
    }
    struct http_req *r = hand_over(srv, req, srv->handlers.status != NULL);
    if (r != NULL)
        srv->handlers.status(srv->ud, r);
}

/* GET /livez, /readyz, /metrics and /backup (docs/operations.md). */
static void route_ops(struct http_server *srv, h2o_req_t *req, const char *path,
                      void (*fn)(void *, struct http_req *))
{
    if (!http__method_is(req, "GET")) {
        method_not_allowed(req, "GET", path);
        return;
    }
    struct http_req *r = hand_over(srv, req, fn != NULL);
    if (r != NULL)
        fn(srv->ud, r);
}

/* h2o 2.2 takes the first of two Content-Length headers and lets
 * Transfer-Encoding override Content-Length: a proxy in front that reads
 * them otherwise would see another request boundary (request smuggling).
 * The raw head is still at the start of the socket's input buffer (h2o
 * consumes a request only after its response): checked there, and refused
 * with 400 and no keep-alive, so that nothing after it is read as a
 * request. */
static bool framing_ok(struct http_server *srv, h2o_req_t *req)
{
    if (req->conn == NULL || req->conn->callbacks->get_socket == NULL)
        return true;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    if (sock == NULL || sock->input == NULL)
        return true;
    char err[128];
    if (http__check_framing(sock->input->bytes, sock->input->size, err, sizeof err) == 0)
        return true;
    srv->smuggle_total++;
    uint64_t dropped;
    if (craft_ratelimit_allow(&srv->rl_bad, uv_now(srv->loop), &dropped))
        CRAFT_WARN(srv->log, "http: refused a request with ambiguous framing (%s); %" PRIu64
                   " in all (%" PRIu64 " similar lines suppressed)", err, srv->smuggle_total,
                   dropped);
    req->http1_is_persistent = 0;
    http__linger_arm(srv, req);
    fail(req, 400, NULL, "%s", err);
    return false;
}

int http__on_req(h2o_handler_t *self, h2o_req_t *req)
{
    struct http_server *srv = ((struct http__handler *)self)->srv;
    const char *path = req->path.base;
    size_t plen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    http__observe_start(srv, req, path, plen);
    http__guard_busy(srv, req);
    if (!framing_ok(srv, req))
        return 0;
    if (srv->auth != NULL && !http__authorize(srv, req))
        return 0;

    if (plen >= 4 && memcmp(path, "/key", 4) == 0 && (plen == 4 || path[4] == '/'))
        route_key(srv, req, path + 4, plen - 4);
    else if (path_is(path, plen, "/keys"))
        http__route_keys(srv, req);
    else if (path_is(path, plen, "/txn"))
        http__route_txn(srv, req);
    else if (plen >= 6 && memcmp(path, "/lease", 6) == 0 && (plen == 6 || path[6] == '/'))
        http__route_lease(srv, req, path + 6, plen - 6);
    else if (path_is(path, plen, "/leases"))
        http__route_leases(srv, req);
    else if (path_is(path, plen, "/watch"))
        http__route_watch(srv, req);
    else if (path_is(path, plen, "/join"))
        route_join(srv, req);
    else if (path_is(path, plen, "/status"))
        route_status(srv, req);
    else if (path_is(path, plen, "/remove"))
        route_member_op(srv, req, "/remove", srv->handlers.remove);
    else if (path_is(path, plen, "/transfer"))
        route_member_op(srv, req, "/transfer", srv->handlers.transfer);
    else if (path_is(path, plen, "/livez"))
        route_ops(srv, req, "/livez", srv->handlers.livez);
    else if (path_is(path, plen, "/readyz"))
        route_ops(srv, req, "/readyz", srv->handlers.readyz);
    else if (path_is(path, plen, "/metrics"))
        route_ops(srv, req, "/metrics", srv->handlers.metrics);
    else if (path_is(path, plen, "/backup"))
        route_ops(srv, req, "/backup", srv->handlers.backup);
    else
        fail(req, 404, NULL, "not found: use /key/<key>, /keys, /txn, /watch, /lease, /leases, "
             "/join, /remove, /transfer, /status or /backup");
    srv->obs.req = NULL; /* answered, or handed to the node */
    return 0;
}
