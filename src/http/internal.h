/* Internals shared by the files of src/http (prefix http__) that use h2o;
 * not for other modules. The pure helpers are in http/parse.h. */
#ifndef CRAFT_HTTP_INTERNAL_H
#define CRAFT_HTTP_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <h2o.h>
#include <openssl/ssl.h>

#include "http/http.h"
#include "http/parse.h"
#include "common/ratelimit.h"

/* Intrusive doubly-linked list; an anchor points at itself when empty. */
struct http__link {
    struct http__link *prev, *next;
};

static inline void http__list_init(struct http__link *a)
{
    a->prev = a->next = a;
}

static inline bool http__list_empty(const struct http__link *a)
{
    return a->next == a;
}

static inline void http__list_push(struct http__link *a, struct http__link *l)
{
    l->prev = a->prev;
    l->next = a;
    a->prev->next = l;
    a->prev = l;
}

static inline void http__list_unlink(struct http__link *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = l->next = l;
}

#define HTTP__CONTAINER(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* One accepted TCP connection; h2o owns the HTTP state on top of it. */
struct http__conn {
    uv_tcp_t tcp;              /* first: uv close callbacks get &tcp; after h2o
                                  closed it, the lingering socket (linger.c) */
    struct http_server *srv;
    struct http__link link;    /* in srv->conns */
    int linger_fd;             /* -1, or a dup of the socket kept to drain it
                                  once h2o has answered and closed */
    bool lingering;            /* h2o is done; tcp and linger_timer drain */
    unsigned linger_handles;   /* of those, still closing */
    size_t drained;            /* bytes thrown away while lingering */
    uv_timer_t linger_timer;   /* initialized only while lingering */
    /* guard.c: limits and the idle reaper */
    int fd;                    /* the accepted socket (h2o's), -1 once closed */
    struct http__ip *ip;       /* its peer address entry, NULL if unknown */
    struct http__link idle;    /* in srv->idle while no request is in a handler */
    uint64_t idle_since;       /* uv_now() when it last became idle */
    bool busy;                 /* a request reached http__on_req, not yet disposed */
    bool reaped;               /* shut down by the reaper (counted in srv->ndoomed) */
    bool pipelined;            /* a request of it once had bytes read behind it */
};

struct http__ip; /* guard.c: open connections of one peer address */

/* ops.c: what observe is told about a request once its answer starts. */
struct http__obs {
    h2o_req_t *req;            /* the request; NULL: nothing to count */
    int route, method;         /* enum http_route, enum http_method */
    uint64_t t0;               /* uv_hrtime() when it reached routing */
};

struct http_server {
    uv_loop_t *loop;
    struct http_handlers handlers;
    void *ud;
    const struct craft_logger *log;
    size_t max_body, max_key, max_value;
    unsigned max_conns;
    unsigned linger_ms;        /* a refused client is drained this long at most */
    size_t linger_max_bytes;   /* ... and this many bytes */
    int port;
    struct auth_db *auth;      /* NULL: no users, all open (authz.c) */
    h2o_req_t *authz_passed;   /* authz.c: routing this one after its check */
    SSL_CTX *ssl;              /* NULL: plain HTTP (tls.c) */
    struct craft_ratelimit rl_auth; /* log lines of refused credentials */
    uint64_t auth_refused_total;

    uv_tcp_t listener;
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;

    unsigned nconns;           /* accepted and not yet closed (incl. refused) */
    /* guard.c */
    unsigned max_per_ip;       /* open connections of one address at most */
    unsigned idle_reap_ms;     /* idle this long: may be reaped near the limit */
    unsigned ndoomed;          /* reaped, not yet closed */
    struct http__link idle;    /* struct http__conn by idle, oldest first */
    struct http__ip **ip_tab;  /* hash of peer addresses, HTTP__IP_BUCKETS */
    struct http__conn **by_fd; /* h2o's socket fd -> connection */
    size_t by_fd_cap;
    uv_timer_t sweep_timer;    /* looks for clients gone while the node works */
    bool sweeping;
    struct craft_ratelimit rl_refuse, rl_bad, rl_gone; /* outsider-made log lines */
    uint64_t reaped_total, refused_total, cancelled_total, smuggle_total;
    struct http__obs obs;      /* ops.c: the request whose answer is counted next */
    struct http__link conns;   /* struct http__conn */
    struct http__link pending; /* struct http_req handed to the node, unanswered */
    struct http__link events;  /* struct http_events still streaming (events.c) */

    bool closing;
    bool listener_closed;
    uv_timer_t grace_timer;    /* forces lingering connections shut on close */
    uv_idle_t final_handle;    /* closed last: frees the server one loop pass
                                  after h2o's own handles have finished closing */
    void (*close_cb)(void *);
    void *close_ud;
    char drain[65536];         /* what lingering connections read, thrown away */
};

/* A request handed to the node. Freed when both the node has replied and
 * h2o has disposed of its request (whichever comes last). */
struct http_req {
    h2o_req_t *h2o;            /* NULL once h2o disposed of the request */
    struct http_server *srv;
    void *tag;                 /* the node's (http_req_set_tag) */
    bool cancelled;            /* handlers.cancel was called */
    struct http__link link;    /* in srv->pending while h2o && !answered */
    bool replied;              /* the node has called http_reply_* */
    bool answered;             /* a response was started (by node or close) */
    bool has_index, has_etag;  /* headers for the node's reply: */
    uint64_t index;            /* X-Craftd-Index */
    uint64_t etag;             /* ETag: "<etag>" */
    struct http__obs obs;      /* ops.c: for observe when the node answers */
};

/* --- route.c: the h2o handler for every path --- */
struct http__handler {
    h2o_handler_t super;
    struct http_server *srv;
};
int http__on_req(h2o_handler_t *self, h2o_req_t *req);
/* A request for the node, or NULL after answering 500 (out of memory), 501
 * (no handler) or 400 (the client went away). */
struct http_req *http__hand_over(struct http_server *srv, h2o_req_t *req, bool have_handler);

/* --- route_kv.c: POST /txn, GET and DELETE /keys, GET /watch --- */
void http__route_txn(struct http_server *srv, h2o_req_t *req);
void http__route_keys(struct http_server *srv, h2o_req_t *req);
void http__route_watch(struct http_server *srv, h2o_req_t *req);

/* --- route_lease.c: /lease..., GET /leases --- */
/* rest: the path after "/lease" (empty, or starting with '/'). */
void http__route_lease(struct http_server *srv, h2o_req_t *req, const char *rest, size_t rlen);
void http__route_leases(struct http_server *srv, h2o_req_t *req);

/* --- reply.c: sending --- */
/* Starts and finishes a response: status, optional Content-Type and Allow
 * headers, body (copied). Content-Length is always set. */
void http__send(h2o_req_t *req, int status, const char *ctype, const char *allow,
                const char *body, size_t len);
/* status with {"error":"<msg>"} (msg escaped), application/json. */
void http__send_error(h2o_req_t *req, int status, const char *allow, const char *msg,
                      size_t len);
void http__send_errorv(h2o_req_t *req, int status, const char *allow, const char *fmt,
                       va_list ap);
/* Whether req's method is m (e.g. "GET"). */
bool http__method_is(const h2o_req_t *req, const char *m);
/* 405 naming the method, the path and the allowed methods (also in Allow). */
void http__not_allowed(h2o_req_t *req, const char *allow, const char *path);
/* Wraps req for the node: registers the dispose hook, links it as pending. */
struct http_req *http__req_new(struct http_server *srv, h2o_req_t *req);
/* Marks the node's one reply to r: the h2o request to answer, with the
 * node's headers added, or NULL when the reply is to be discarded (r is
 * freed then if h2o is done). r may be freed once a response starts. */
h2o_req_t *http__claim(struct http_req *r);
/* Answers every pending request 503 (server closing). */
void http__answer_pending(struct http_server *srv);
const char *http__reason(int status);

/* --- events.c: open-ended streams --- */
/* The server closes: every event stream ends (after its piece in flight). */
void http__events_end_all(struct http_server *srv);

/* --- errfilter.c: turns h2o's own plain-text errors (413, 400, 417 sent
 * before routing) into JSON error bodies. --- */
void http__errfilter_register(struct http_server *srv, h2o_pathconf_t *fallback);

/* --- server.c --- */
/* Unlinks and frees a connection whose handles are closed. */
void http__conn_free(struct http__conn *c);

/* --- linger.c: lingering close after h2o refused a request body --- */
/* h2o is sending req its own error and will close the connection: keep the
 * socket to drain it afterwards (nothing happens if that is impossible). */
void http__linger_arm(struct http_server *s, h2o_req_t *req);
/* From the close callback of an armed connection: drain and free it later.
 * False if it is not lingering (the server closes): free it now. */
bool http__linger_start(struct http__conn *c);
/* Stops draining now; the connection is freed once its handles closed. */
void http__linger_close(struct http__conn *c);

/* --- guard.c: per-address cap, idle reaper, gone clients --- */
#define HTTP__IP_BUCKETS 1024
/* A fresh connection (counted in nconns, fd set): NULL to serve it, or the
 * message of the 503 it gets (near the limit idle ones are reaped first). */
const char *http__guard_admit(struct http_server *s, struct http__conn *c);
/* h2o closed c's socket: forget its fd, address and idleness. */
void http__guard_closed(struct http__conn *c);
/* The connection a request of h2o came on (NULL if unknown). */
struct http__conn *http__guard_conn_of(struct http_server *s, h2o_req_t *req);
/* A request reached the handler: c is busy until req is disposed of. */
void http__guard_busy(struct http_server *s, h2o_req_t *req);
/* True if the client of req has closed, reset or shut down its end. */
bool http__guard_req_gone(h2o_req_t *req);
/* The same check, made only where a client's leaving can hide behind work
 * queued on its connection: HTTP/2, or an HTTP/1 connection on which
 * requests were ever pipelined (bytes read behind a request). A sequential
 * keep-alive client costs no poll; its request waiting in the node is the
 * sweep's (http__guard_sweep_start). */
bool http__guard_req_left(struct http_server *s, h2o_req_t *req);
/* The node got a request: make sure gone clients are looked for. */
void http__guard_sweep_start(struct http_server *s);
/* The client of r is gone: no keep-alive, and tell the node (once). */
void http__guard_cancel(struct http_req *r);
/* Frees the tables (server closing, connections all gone). */
void http__guard_free(struct http_server *s);

/* --- ops.c: /livez, /readyz, /metrics, and counting answers --- */
/* A request reached routing: it is counted when its answer starts (a
 * request routed again after its password check keeps its first start). */
void http__observe_start(struct http_server *srv, h2o_req_t *req, const char *path,
                         size_t plen);
/* req waits for its password check on a worker (authz.c): what is observed
 * of it waits in *o, and is back in the server from resume on. */
void http__observe_park(struct http_server *srv, h2o_req_t *req, struct http__obs *o);
void http__observe_resume(struct http_server *srv, const struct http__obs *o);
/* The node got req (http__req_new): its answer comes through r. */
void http__observe_handed(struct http_server *srv, struct http_req *r);
/* r's answer is about to be sent (it is counted then). */
void http__observe_reply(struct http_req *r);
/* An answer to req starts now (http__send): counts it if it is the one
 * being observed. */
void http__observe_sent(h2o_req_t *req, int status);

/* --- authz.c: HTTP Basic against srv->auth --- */
/* True if req may go on to its route; false after answering it (401 with
 * WWW-Authenticate, 403 naming the role needed, 429 when password checks
 * are over their budget), or when its password is being checked on a
 * worker thread: the request is then answered, or routed by calling its
 * handler again, when the check is done. */
bool http__authorize(struct http_server *srv, h2o_req_t *req);

/* --- tls.c: client TLS --- */
/* The server's SSL_CTX from PEM files (client_ca may be NULL), TLS 1.2+;
 * NULL after logging why. */
SSL_CTX *http__tls_ctx(const char *cert, const char *key, const char *client_ca,
                       const struct craft_logger *log);

/* --- addr.c: "host:port" to a listening socket --- */
/* Parses addr ("host:port"), resolves it (blocking), binds and listens a non-blocking socket.
 * Returns the fd (>= 0) or a negative code; *port gets the bound port. */
int http__listen_fd(const char *addr, const struct craft_logger *log, int *port);

#endif
