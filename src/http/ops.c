/* Counting answers for the node's metrics: every request that reaches
 * routing is remembered (route, method, start time) and reported through
 * handlers.observe when its answer starts, whether this module answers it
 * at once or the node does later through http_reply_*. No allocation: the
 * one request being routed is kept in the server, a request handed to the
 * node carries its own copy, and so does a password check that runs on a
 * worker (authz.c), so that the hashing counts in the duration. Also the
 * route and method names the counts are labelled with. */
#include "http/internal.h"

#include <string.h>

static bool is(const char *p, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(p, want, len) == 0;
}

/* p is want, or want followed by '/' and more. */
static bool under(const char *p, size_t len, const char *want)
{
    size_t w = strlen(want);
    return len >= w && memcmp(p, want, w) == 0 && (len == w || p[w] == '/');
}

static const char *const ROUTE_NAMES[HTTP_ROUTE_COUNT] = {
    [HTTP_ROUTE_KEY] = "/key",         [HTTP_ROUTE_KEYS] = "/keys",
    [HTTP_ROUTE_TXN] = "/txn",         [HTTP_ROUTE_WATCH] = "/watch",
    [HTTP_ROUTE_LEASE] = "/lease",     [HTTP_ROUTE_LEASES] = "/leases",
    [HTTP_ROUTE_JOIN] = "/join",       [HTTP_ROUTE_REMOVE] = "/remove",
    [HTTP_ROUTE_TRANSFER] = "/transfer", [HTTP_ROUTE_STATUS] = "/status",
    [HTTP_ROUTE_BACKUP] = "/backup",   [HTTP_ROUTE_LIVEZ] = "/livez",
    [HTTP_ROUTE_READYZ] = "/readyz",   [HTTP_ROUTE_METRICS] = "/metrics",
    [HTTP_ROUTE_OTHER] = "other",
};

int http_route_of(const char *path, size_t len)
{
    if (under(path, len, "/key"))
        return HTTP_ROUTE_KEY;
    if (under(path, len, "/lease"))
        return HTTP_ROUTE_LEASE;
    for (int r = 0; r < HTTP_ROUTE_OTHER; r++)
        if (r != HTTP_ROUTE_KEY && r != HTTP_ROUTE_LEASE && is(path, len, ROUTE_NAMES[r]))
            return r;
    return HTTP_ROUTE_OTHER;
}

const char *http_route_name(int route)
{
    return route >= 0 && route < HTTP_ROUTE_COUNT ? ROUTE_NAMES[route] : "other";
}

static const char *const METHOD_NAMES[HTTP_METHOD_COUNT] = {
    [HTTP_METHOD_GET] = "GET",       [HTTP_METHOD_HEAD] = "HEAD", [HTTP_METHOD_POST] = "POST",
    [HTTP_METHOD_PUT] = "PUT",       [HTTP_METHOD_DELETE] = "DELETE",
    [HTTP_METHOD_OTHER] = "other",
};

int http_method_of(const char *method, size_t len)
{
    for (int m = 0; m < HTTP_METHOD_OTHER; m++)
        if (is(method, len, METHOD_NAMES[m]))
            return m;
    return HTTP_METHOD_OTHER;
}

const char *http_method_name(int method)
{
    return method >= 0 && method < HTTP_METHOD_COUNT ? METHOD_NAMES[method] : "other";
}

void http__observe_start(struct http_server *srv, h2o_req_t *req, const char *path,
                         size_t plen)
{
    if (srv->handlers.observe == NULL || srv->obs.req == req)
        return; /* (the same request: back from its password check) */
    srv->obs = (struct http__obs){.req = req,
                                  .route = http_route_of(path, plen),
                                  .method = http_method_of(req->method.base, req->method.len),
                                  .t0 = uv_hrtime()};
}

void http__observe_park(struct http_server *srv, h2o_req_t *req, struct http__obs *o)
{
    o->req = NULL;
    if (srv->obs.req == req) {
        *o = srv->obs;
        srv->obs.req = NULL;
    }
}

void http__observe_resume(struct http_server *srv, const struct http__obs *o)
{
    if (o->req != NULL)
        srv->obs = *o;
}

void http__observe_handed(struct http_server *srv, struct http_req *r)
{
    if (srv->obs.req != r->h2o)
        return;
    r->obs = srv->obs; /* the node answers it, now or later */
    srv->obs.req = NULL;
}

void http__observe_reply(struct http_req *r)
{
    if (r->obs.req != NULL && r->obs.req == r->h2o)
        r->srv->obs = r->obs; /* http__send counts it next */
    r->obs.req = NULL;
}

void http__observe_sent(h2o_req_t *req, int status)
{
    if (req->conn == NULL)
        return;
    struct http_server *srv = HTTP__CONTAINER(req->conn->ctx, struct http_server, ctx);
    if (srv->obs.req != req)
        return;
    struct http__obs o = srv->obs;
    srv->obs.req = NULL;
    if (srv->handlers.observe != NULL)
        srv->handlers.observe(srv->ud, o.route, o.method, status, uv_hrtime() - o.t0);
}
