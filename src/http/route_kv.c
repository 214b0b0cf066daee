/* Routing of POST /txn, GET / DELETE /keys (docs/http-api.md,
 * "Transactions and listing") and GET /watch ("Watch"): the body or
 * query is parsed and checked
 * here (400 with a JSON error otherwise) and handed to the node. */
#include "http/internal.h"
#include "http/kvreq.h"

#include <stdio.h>
#include <string.h>

#include "common/alloc.h"

static void fail(h2o_req_t *req, int status, const char *allow, const char *msg)
{
    http__send_error(req, status, allow, msg, strlen(msg));
}

void http__route_txn(struct http_server *srv, h2o_req_t *req)
{
    if (!http__method_is(req, "POST")) {
        http__not_allowed(req, "POST", "/txn");
        return;
    }
    struct http__txnbody *b = craft_malloc(sizeof *b);
    if (b == NULL) {
        fail(req, 500, NULL, "out of memory");
        return;
    }
    char err[256];
    if (http__parse_txn_body(req->entity.base, req->entity.len, srv->max_key, srv->max_value,
                             b, err, sizeof err) != 0) {
        fail(req, 400, NULL, err);
        craft_free(b);
        return;
    }
    struct http_req *r = http__hand_over(srv, req, srv->handlers.txn != NULL);
    if (r != NULL)
        srv->handlers.txn(srv->ud, r, &b->txn);
    http__txnbody_free(b);
    craft_free(b);
}

void http__route_keys(struct http_server *srv, h2o_req_t *req)
{
    bool del = http__method_is(req, "DELETE");
    if (!del && !http__method_is(req, "GET")) {
        http__not_allowed(req, "GET, DELETE", "/keys");
        return;
    }
    const char *q = "";
    size_t qlen = 0;
    if (req->query_at != SIZE_MAX) {
        q = req->path.base + req->query_at + 1;
        qlen = req->path.len - req->query_at - 1;
    }
    char *buf = h2o_mem_alloc_pool(&req->pool, qlen + 1);
    struct http_keys_query k;
    char err[256];
    if (http__parse_keys_query(q, qlen, del, srv->max_key, buf, &k, err, sizeof err) != 0) {
        fail(req, 400, NULL, err);
        return;
    }
    struct http_req *r =
        http__hand_over(srv, req, del ? srv->handlers.del_prefix != NULL
                                      : srv->handlers.list != NULL);
    if (r == NULL)
        return;
    if (del)
        srv->handlers.del_prefix(srv->ud, r, k.range.start, k.range.slen);
    else
        srv->handlers.list(srv->ud, r, &k);
}

void http__route_watch(struct http_server *srv, h2o_req_t *req)
{
    if (!http__method_is(req, "GET")) {
        http__not_allowed(req, "GET", "/watch");
        return;
    }
    const char *q = "";
    size_t qlen = 0;
    if (req->query_at != SIZE_MAX) {
        q = req->path.base + req->query_at + 1;
        qlen = req->path.len - req->query_at - 1;
    }
    const char *lid = NULL;
    size_t lid_len = 0;
    ssize_t h = h2o_find_header_by_str(&req->headers, H2O_STRLIT("last-event-id"), -1);
    if (h >= 0) {
        lid = req->headers.entries[h].value.base;
        lid_len = req->headers.entries[h].value.len;
        if (h2o_find_header_by_str(&req->headers, H2O_STRLIT("last-event-id"), h) >= 0) {
            fail(req, 400, NULL, "Last-Event-ID given twice");
            return;
        }
    }
    char *buf = h2o_mem_alloc_pool(&req->pool, qlen + 1);
    struct http_watch_opts w;
    char err[256];
    if (http__parse_watch(q, qlen, lid, lid_len, srv->max_key, buf, &w, err, sizeof err) != 0) {
        fail(req, 400, NULL, err);
        return;
    }
    struct http_req *r = http__hand_over(srv, req, srv->handlers.watch != NULL);
    if (r != NULL)
        srv->handlers.watch(srv->ud, r, &w);
}
