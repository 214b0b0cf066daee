/* Responses: the lifetime of a request handed to the node (struct http_req),
 * the public http_reply_* calls, and the low-level senders route.c uses. */
#include "http/internal.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"

static const char JSON_TYPE[] = "application/json";

const char *http__reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 201: return "Created";
    case 301: return "Moved Permanently";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status < 400 ? "OK" : "Error";
    }
}

/* h2o_send_inline, but an empty body is no buffer at all: h2o's writev
 * leaves a zero-length buffer unsent, and then waits for the socket to be
 * writable to "send" it, a second loop iteration and four more system
 * calls for every answer without a body (a write's 200, a 304). */
static void send_inline(h2o_req_t *req, const char *body, size_t len)
{
    static h2o_generator_t generator = {NULL, NULL}; /* h2o never writes it */
    if (len == 0) {
        h2o_start_response(req, &generator);
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
        return;
    }
    h2o_send_inline(req, body, len); /* copies the body; sends none for HEAD */
}

void http__send(h2o_req_t *req, int status, const char *ctype, const char *allow,
                const char *body, size_t len)
{
    http__observe_sent(req, status);
    req->res.status = status;
    req->res.reason = http__reason(status);
    req->res.content_length = len; /* h2o_send_inline does not set it */
    if (ctype != NULL)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype,
                       strlen(ctype));
    if (allow != NULL)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow,
                       strlen(allow));
    send_inline(req, body, len);
}

void http__send_error(h2o_req_t *req, int status, const char *allow, const char *msg,
                      size_t len)
{
    static const char pre[] = "{\"error\":";
    char *buf = h2o_mem_alloc_pool(&req->pool, sizeof pre + CRAFT_JSON_QUOTED_MAX(len) + 1);
    size_t n = sizeof pre - 1;
    memcpy(buf, pre, n);
    n += craft_json_quote(buf + n, msg, len);
    buf[n++] = '}';
    http__send(req, status, JSON_TYPE, allow, buf, n);
}

/* Called when h2o frees the request's pool: after the response was written,
 * or when the connection closed first. */
static void on_h2o_dispose(void *p)
{
    struct http_req *r = *(struct http_req **)p;
    r->h2o = NULL;
    http__list_unlink(&r->link);
    if (r->replied)
        craft_free(r);
    else
        http__guard_cancel(r); /* the connection closed first; r may be freed */
}

struct http_req *http__req_new(struct http_server *srv, h2o_req_t *req)
{
    struct http_req *r = craft_malloc(sizeof *r);
    if (r == NULL)
        return NULL;
    *r = (struct http_req){.h2o = req, .srv = srv};
    struct http_req **hook = h2o_mem_alloc_shared(&req->pool, sizeof *hook, on_h2o_dispose);
    *hook = r;
    http__list_push(&srv->pending, &r->link);
    http__guard_sweep_start(srv);
    http__observe_handed(srv, r);
    return r;
}

void http__answer_pending(struct http_server *srv)
{
    static const char msg[] = "shutting down";
    while (!http__list_empty(&srv->pending)) {
        struct http_req *r = HTTP__CONTAINER(srv->pending.next, struct http_req, link);
        http__list_unlink(&r->link);
        r->answered = true;
        r->h2o->http1_is_persistent = 0;
        http__observe_reply(r);
        http__send_error(r->h2o, 503, NULL, msg, sizeof msg - 1);
    }
}

void http_reply_set_index(struct http_req *req, uint64_t index)
{
    req->has_index = true;
    req->index = index;
}

void http_reply_set_etag(struct http_req *req, uint64_t mod_index)
{
    req->has_etag = true;
    req->etag = mod_index;
}

/* v in decimal at the end of buf[0..20), with nothing after: returns where
 * it starts (snprintf's locale and format parsing cost more than the
 * header itself on a small read). */
static char *u64_dec(char *end, uint64_t v)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return end;
}

/* The headers the node set for its reply, added to h's response. */
static void add_node_headers(const struct http_req *r, h2o_req_t *h)
{
    if (r->has_index) {
        char *v = h2o_mem_alloc_pool(&h->pool, 20);
        char *d = u64_dec(v + 20, r->index);
        h2o_add_header_by_str(&h->pool, &h->res.headers, H2O_STRLIT("x-craftd-index"), 0,
                              "X-Craftd-Index", d, (size_t)(v + 20 - d));
    }
    if (r->has_etag) {
        char *v = h2o_mem_alloc_pool(&h->pool, 22);
        v[21] = '"';
        char *d = u64_dec(v + 21, r->etag);
        *--d = '"';
        h2o_add_header(&h->pool, &h->res.headers, H2O_TOKEN_ETAG, NULL, d, (size_t)(v + 22 - d));
    }
}

/* Marks the node's one reply. Returns the h2o request to answer, with the
 * node's headers added, or NULL when the reply is to be discarded (r is
 * freed here if h2o is done). */
h2o_req_t *http__claim(struct http_req *r)
{
    assert(!r->replied && "a request was answered twice");
    r->replied = true;
    h2o_req_t *h = r->h2o;
    if (h == NULL) {
        craft_free(r);
        return NULL;
    }
    if (r->answered) /* by http_server_close; freed on dispose */
        return NULL;
    r->answered = true;
    http__list_unlink(&r->link);
    add_node_headers(r, h);
    http__observe_reply(r);
    return h; /* r may be freed as soon as a response starts: not used again */
}

void http_reply_value(struct http_req *req, const char *key, size_t klen, const char *val,
                      size_t vlen)
{
    h2o_req_t *h = http__claim(req);
    if (h == NULL)
        return;
    char *buf = h2o_mem_alloc_pool(&h->pool, CRAFT_JSON_QUOTED_MAX(klen) + CRAFT_JSON_QUOTED_MAX(vlen) + 3);
    size_t n = 0;
    buf[n++] = '{';
    n += craft_json_quote(buf + n, key, klen);
    buf[n++] = ':';
    n += craft_json_quote(buf + n, val, vlen);
    buf[n++] = '}';
    http__send(h, 200, JSON_TYPE, NULL, buf, n);
}

void http_reply_ok(struct http_req *req)
{
    h2o_req_t *h = http__claim(req);
    if (h != NULL)
        http__send(h, 200, NULL, NULL, "", 0);
}

void http_reply_json(struct http_req *req, int status, const char *json, size_t len)
{
    h2o_req_t *h = http__claim(req);
    if (h != NULL)
        http__send(h, status, JSON_TYPE, NULL, json, len);
}

void http_reply_body(struct http_req *req, int status, const char *ctype, const void *body,
                     size_t len)
{
    h2o_req_t *h = http__claim(req);
    if (h != NULL)
        http__send(h, status, ctype, NULL, body, len);
}

void http_reply_not_modified(struct http_req *req)
{
    h2o_req_t *h = http__claim(req);
    if (h == NULL)
        return;
    http__observe_sent(h, 304);
    h->res.status = 304;
    h->res.reason = "Not Modified";
    send_inline(h, NULL, 0);
}

void http_reply_error(struct http_req *req, int status, const char *fmt, ...)
{
    h2o_req_t *h = http__claim(req);
    if (h == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    http__send_errorv(h, status, NULL, fmt, ap);
    va_end(ap);
}

/* http__send_error with a printf-formatted message (at most 1023 bytes). */
void http__send_errorv(h2o_req_t *req, int status, const char *allow, const char *fmt,
                       va_list ap)
{
    char msg[1024];
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    if (n < 0)
        n = 0;
    http__send_error(req, status, allow, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
}

bool http__method_is(const h2o_req_t *req, const char *m)
{
    return h2o_memis(req->method.base, req->method.len, m, strlen(m));
}

void http__not_allowed(h2o_req_t *req, const char *allow, const char *path)
{
    char msg[160];
    int n = snprintf(msg, sizeof msg, "method %.*s not allowed on %s (allowed: %s)",
                     (int)(req->method.len > 32 ? 32 : req->method.len), req->method.base,
                     path, allow);
    http__send_error(req, 405, allow, msg,
                     n < 0 ? 0 : (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
}

bool http_req_gone(struct http_req *req)
{
    h2o_req_t *h = req->h2o;
    if (h == NULL || req->answered || req->cancelled)
        return true;
    /* h2o stops reading while a request is processed, so a peer's FIN or
     * RST waits unread in the kernel, maybe behind pipelined requests:
     * poll(POLLRDHUP) sees it anyway. */
    return http__guard_req_gone(h);
}

void http_req_set_tag(struct http_req *req, void *tag)
{
    req->tag = tag;
}

void *http_req_tag(const struct http_req *req)
{
    return req->tag;
}

const char *http_read_level_name(int level)
{
    switch (level) {
    case HTTP_READ_LINEARIZABLE: return "linearizable";
    case HTTP_READ_WEAK: return "weak";
    case HTTP_READ_NONE: return "none";
    default: return "?";
    }
}
