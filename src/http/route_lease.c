/* Routing of the lease requests (docs/http-api.md, "Leases"): POST /lease,
 * POST /lease/<id>/keepalive, GET and DELETE /lease/<id>, GET /leases. The
 * path, body and query are checked here (400 with a JSON error otherwise,
 * lease.c parses) and handed to the node. */
#include "http/internal.h"
#include "http/kvreq.h"

#include <stdio.h>
#include <string.h>

static void fail(h2o_req_t *req, int status, const char *allow, const char *msg)
{
    http__send_error(req, status, allow, msg, strlen(msg));
}

static void query_of(const h2o_req_t *req, const char **q, size_t *len)
{
    *q = "";
    *len = 0;
    if (req->query_at != SIZE_MAX) {
        *q = req->path.base + req->query_at + 1;
        *len = req->path.len - req->query_at - 1;
    }
}

/* POST /lease {"ttl":N} */
static void route_grant(struct http_server *srv, h2o_req_t *req)
{
    uint64_t ttl;
    char err[256];
    if (http__parse_lease_body(req->entity.base, req->entity.len, &ttl, err, sizeof err) != 0) {
        fail(req, 400, NULL, err);
        return;
    }
    struct http_req *r = http__hand_over(srv, req, srv->handlers.lease_grant != NULL);
    if (r != NULL)
        srv->handlers.lease_grant(srv->ud, r, ttl);
}

/* GET /lease/<id>[?after=<key>&limit=N&level=] */
static void route_get(struct http_server *srv, h2o_req_t *req, uint64_t id)
{
    const char *q;
    size_t qlen;
    query_of(req, &q, &qlen);
    char *buf = h2o_mem_alloc_pool(&req->pool, qlen + 1); /* the decoded after= */
    struct http_lease_query lq;
    char err[256];
    if (http__parse_lease_query(q, qlen, id, srv->max_key, buf, &lq, err, sizeof err) != 0) {
        fail(req, 400, NULL, err);
        return;
    }
    struct http_req *r = http__hand_over(srv, req, srv->handlers.lease_get != NULL);
    if (r != NULL)
        srv->handlers.lease_get(srv->ud, r, &lq);
}

void http__route_lease(struct http_server *srv, h2o_req_t *req, const char *rest, size_t rlen)
{
    uint64_t id;
    bool keepalive;
    char err[256];
    if (http__parse_lease_path(rest, rlen, &id, &keepalive, err, sizeof err) != 0) {
        fail(req, 400, NULL, err);
        return;
    }
    struct http_req *r;
    if (id == 0) { /* /lease */
        if (http__method_is(req, "POST"))
            route_grant(srv, req);
        else
            http__not_allowed(req, "POST", "/lease");
    } else if (keepalive) {
        if (!http__method_is(req, "POST")) {
            http__not_allowed(req, "POST", "/lease/<id>/keepalive");
        } else if ((r = http__hand_over(srv, req, srv->handlers.lease_keepalive != NULL))) {
            srv->handlers.lease_keepalive(srv->ud, r, id);
        }
    } else if (http__method_is(req, "GET") || http__method_is(req, "HEAD")) {
        route_get(srv, req, id);
    } else if (http__method_is(req, "DELETE")) {
        if ((r = http__hand_over(srv, req, srv->handlers.lease_revoke != NULL)))
            srv->handlers.lease_revoke(srv->ud, r, id);
    } else {
        http__not_allowed(req, "GET, HEAD, DELETE", "/lease/<id>");
    }
}

/* GET /leases[?after=<id>&limit=N&level=] */
void http__route_leases(struct http_server *srv, h2o_req_t *req)
{
    if (!http__method_is(req, "GET") && !http__method_is(req, "HEAD")) {
        http__not_allowed(req, "GET, HEAD", "/leases");
        return;
    }
    const char *q;
    size_t qlen;
    query_of(req, &q, &qlen);
    struct http_leases_query lq;
    char err[256];
    if (http__parse_leases_query(q, qlen, &lq, err, sizeof err) != 0) {
        fail(req, 400, NULL, err);
        return;
    }
    struct http_req *r = http__hand_over(srv, req, srv->handlers.lease_list != NULL);
    if (r != NULL)
        srv->handlers.lease_list(srv->ud, r, &lq);
}
