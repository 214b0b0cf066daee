/* Rewrites the plain-text errors h2o sends by itself, before any handler runs
 * (413 body too large, 400 broken chunked encoding or Content-Length, 417),
 * into craftd's {"error":"..."} JSON bodies. Registered on the host's
 * fallback path, which h2o uses only for those responses. */
#include "http/internal.h"

#include <stdio.h>
#include <string.h>

struct errfilter {
    h2o_filter_t super;
    struct http_server *srv;
};

struct errostream {
    h2o_ostream_t super;
    struct http_server *srv;
};

/* h2o sends these errors with h2o_send_inline: one final call carrying the
 * whole text (none for HEAD). It becomes the JSON error message. */
static void errostream_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs,
                            size_t bufcnt, h2o_send_state_t state)
{
    struct errostream *o = (struct errostream *)self;
    if (bufcnt == 0) {
        h2o_ostream_send_next(self, req, bufs, bufcnt, state);
        return;
    }
    char msg[256];
    size_t len;
    if (req->res.status == 413) {
        int n = snprintf(msg, sizeof msg, "request body too large: the limit is %zu bytes",
                         o->srv->max_body);
        len = n > 0 ? (size_t)n : 0;
    } else {
        len = 0;
        for (size_t i = 0; i < bufcnt && len < sizeof msg; i++) {
            size_t take = bufs[i].len < sizeof msg - len ? bufs[i].len : sizeof msg - len;
            memcpy(msg + len, bufs[i].base, take);
            len += take;
        }
        while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
            len--;
    }
    static const char pre[] = "{\"error\":";
    char *json = h2o_mem_alloc_pool(&req->pool, sizeof pre + CRAFT_JSON_QUOTED_MAX(len) + 1);
    size_t n = sizeof pre - 1;
    memcpy(json, pre, n);
    n += craft_json_quote(json + n, msg, len);
    json[n++] = '}';
    req->res.content_length = n; /* the headers are written after this */
    h2o_iovec_t out = h2o_iovec_init(json, n);
    h2o_ostream_send_next(self, req, &out, 1, state);
}

static void on_setup_ostream(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    if (req->res.status >= 400) {
        /* h2o closes the connection after these, maybe with a body unread. */
        if (!req->http1_is_persistent)
            http__linger_arm(((struct errfilter *)self)->srv, req);
        struct errostream *o = (struct errostream *)h2o_add_ostream(req, sizeof *o, slot);
        o->super.do_send = errostream_send;
        o->srv = ((struct errfilter *)self)->srv;
        h2o_set_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE,
                       H2O_STRLIT("application/json"), 1);
        slot = &o->super.next;
    }
    h2o_setup_next_ostream(req, slot);
}

void http__errfilter_register(struct http_server *srv, h2o_pathconf_t *fallback)
{
    struct errfilter *f = (struct errfilter *)h2o_create_filter(fallback, sizeof *f);
    f->super.on_setup_ostream = on_setup_ostream;
    f->srv = srv;
}
