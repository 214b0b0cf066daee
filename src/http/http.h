/* The HTTP front end of craftd: hraftd's HTTP API on h2o 2.2 (HTTP/1.1).
 *
 * Owns the listening socket, the client connections and everything h2o
 * allocates. It parses and validates each request (routing, percent-decoding
 * of keys, read levels, JSON bodies, size limits) and hands valid ones to
 * the node through struct http_handlers: with the options of a key request
 * (read level, ?meta, ?raw, If-None-Match) and the precondition of a write
 * (If-Match, If-None-Match) already parsed. The node answers with one of the
 * http_reply_* calls, at once or later (after a Raft commit) on the same
 * loop, after http_reply_set_index / _etag for the headers it wants.
 * With an auth_db (auth/auth.h) every request is checked first (HTTP Basic,
 * the route's role); with TLS files the port speaks HTTPS only. It also
 * holds the TLS side of the node's own requests to members (http_tls_*).
 * Only src/http includes h2o and OpenSSL headers; nothing of either leaks
 * through this one. The HTTP API as users see it is in docs/http-api.md.
 *
 * Threading: every function here, and every handler, runs on the thread of
 * the uv loop given in http_opts (the node's loop). Nothing is locked. The
 * process must ignore SIGPIPE: h2o writes to clients that went away.
 *
 * Ownership:
 *  - struct http_req is owned by this module. A handler that receives one
 *    must answer it exactly once with http_reply_*; the handle stays valid
 *    until that reply, even if the client has gone away meanwhile (the reply
 *    is then discarded) and even after http_server_close() (the server then
 *    has already answered 503; the node's reply only frees the handle).
 *    After the reply the handle is invalid.
 *  - The strings given to a handler (key, pairs, val, id, addr, http_addr) belong
 *    to the request and are valid only during the handler call: copy them.
 *    Keys and values may contain NUL bytes (use the lengths); id, addr and
 *    http_addr are NUL-terminated and contain no NUL.
 *  - Reply arguments are copied before the reply returns.
 *  - struct http_server is freed by http_server_close() (when its callback
 *    runs), never by the caller.
 */
#ifndef CRAFT_HTTP_H
#define CRAFT_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "common/log.h"
#include "kv/kv.h"

/* Read levels of GET /key/<k>?level=... (names as in rqlite). */
enum http_read_level {
    HTTP_READ_LINEARIZABLE = 0, /* default: read-index, confirmed by a quorum */
    HTTP_READ_WEAK,             /* the leader answers while its lease holds */
    HTTP_READ_NONE,             /* whichever node got it answers, maybe stale */
};

/* One key/value pair of a POST /key body. Not NUL-terminated. */
struct http_kv {
    const char *key;
    size_t klen; /* >= 1 */
    const char *val;
    size_t vlen; /* may be 0 */
};

/* Preconditions of a single-key write (RFC 9110 conditional requests),
 * from If-Match / If-None-Match. They are never checked here nor by the
 * node at request time: the node compiles them into the compare of a
 * transaction (kv command version 2) that the state machine checks when
 * the entry applies. */
enum http_precond_kind {
    HTTP_PRE_NONE = 0,  /* no precondition */
    HTTP_PRE_MOD_INDEX, /* If-Match: "<n>": the key exists with mod_index n */
    HTTP_PRE_EXISTS,    /* If-Match: *: the key exists */
    HTTP_PRE_ABSENT,    /* If-None-Match: *: the key does not exist */
};
struct http_precond {
    int kind;           /* enum http_precond_kind */
    uint64_t mod_index; /* HTTP_PRE_MOD_INDEX only */
};

/* Entity tags one If-None-Match of a GET may list (more: 400). */
#define HTTP_INM_MAX 16

/* A blocking query (?index=N[&wait=D], Consul style): answer once what is
 * read has changed after index N, or when wait_ms have passed. */
#define HTTP_WAIT_DEFAULT_MS 60000u
#define HTTP_WAIT_MAX_MS 600000u
struct http_block {
    bool on;          /* index= was given */
    uint64_t index;   /* N */
    uint64_t wait_ms; /* wait=, HTTP_WAIT_DEFAULT_MS if absent; <= MAX */
};

/* What a GET /key/<k> asks for. */
struct http_get_opts {
    struct http_block block;
    int level; /* enum http_read_level (?level=) */
    bool meta; /* ?meta: the meta object instead of {"k":"v"} */
    bool raw;  /* ?raw: the value's bytes; never together with meta */
    /* If-None-Match: answer 304 when the key exists and inm_any is set
     * (If-None-Match: *), or its mod_index is one of inm[0..n_inm). */
    bool inm_any;
    size_t n_inm;
    uint64_t inm[HTTP_INM_MAX];
};

/* What a PUT /key/<k> asks for besides the value. */
struct http_put_opts {
    struct http_precond pre;
    uint64_t lease; /* ?lease=<id>; 0: none */
};

/* What a GET /watch asks for (docs/http-api.md, "Watch"). */
struct http_watch_opts {
    const uint8_t *key;  /* the key (prefix false) or the prefix (true); any
                            bytes, percent-decoded; owned by the request */
    size_t klen;         /* >= 1 for a key; 0 with prefix: every key */
    bool prefix;
    bool has_from;       /* from= or Last-Event-ID given: resume after from */
    uint64_t from;       /* every event with an index > from */
};

struct http_req; /* one request handed to the node; opaque */
struct http_keys_query; /* below */
struct http_leases_query; /* below */
struct http_lease_query;  /* below */
struct auth_db;  /* auth/auth.h */
struct http_server;

/* Optional fields of POST /join that a craftd joiner adds; NULL when
 * absent. Non-empty strings without NUL; the node checks their content
 * (16 hex digits each). */
struct http_join_ext {
    const char *incarnation; /* the joiner's data directory incarnation */
    const char *raft_id;     /* the Raft id it derives from it and the id */
    const char *cluster_id;  /* the cluster it learned from the member */
    /* For the cluster-token check of a join (docs/security.md): */
    const char *body;        /* the request body as received ... */
    size_t body_len;
    const char *proof;       /* ... and its X-Craftd-Join-Proof header, */
    size_t proof_len;        /* NULL and 0 when absent */
    bool by_user;            /* the caller passed the admin role check of
                                the server's users (with -auth-file) */
};

/* The header a joining node vouches for its /join body with, under the
 * cluster token (peer_join_proof). */
#define HTTP_JOIN_PROOF_HEADER "x-craftd-join-proof"

/* What the node does with valid requests. Every pointer must be set (a NULL
 * one is answered 501). Each call must be followed, now or later, by exactly
 * one http_reply_* on req. */
struct http_handlers {
    /* GET /key/<k>[?level=linearizable|weak|none][&meta|&raw], with
     * If-None-Match; klen >= 1; o is valid during the call. */
    void (*get)(void *ud, struct http_req *req, const char *key, size_t klen,
                const struct http_get_opts *o);
    /* POST /key with a JSON object of strings: all pairs (n >= 1, keys
     * unique, last duplicate won), to be written atomically. {} and null
     * are answered 200 here without calling. pre is never NULL; a
     * precondition comes only with one pair (with several: 400 here). */
    void (*set)(void *ud, struct http_req *req, const struct http_kv *pairs, size_t n,
                const struct http_precond *pre);
    /* DELETE /key/<k>; klen >= 1; pre never NULL. */
    void (*del)(void *ud, struct http_req *req, const char *key, size_t klen,
                const struct http_precond *pre);
    /* POST /join {"id":..., "addr":..., "http_addr":... (optional), and the
     * optional fields of struct http_join_ext}; id and addr are non-empty,
     * http_addr is NULL when absent; ext is never NULL. */
    void (*join)(void *ud, struct http_req *req, const char *id, const char *addr,
                 const char *http_addr, const struct http_join_ext *ext);
    /* GET /status. */
    void (*status)(void *ud, struct http_req *req);
    /* POST /remove {"id": ...}: take a member out of the cluster. */
    void (*remove)(void *ud, struct http_req *req, const char *id);
    /* POST /transfer {"id": ...}: hand leadership to that member. */
    void (*transfer)(void *ud, struct http_req *req, const char *id);
    /* Optional (may be NULL, unlike the others): the client of req went
     * away (closed, reset or shut down its end) before the reply. Called
     * at most once per request, on the loop. The node may drop whatever it
     * has not started for req; it must still reply to it (the reply is
     * discarded or goes nowhere), now or later. */
    void (*cancel)(void *ud, struct http_req *req);
    /* PUT /key/<k> with the value as the raw body (any bytes, vlen may be
     * 0, at most max_value); klen >= 1; o is valid during the call. */
    void (*put)(void *ud, struct http_req *req, const char *key, size_t klen, const char *val,
                size_t vlen, const struct http_put_opts *o);
    /* POST /txn: the parsed transaction (docs/http-api.md), valid during
     * the call (copy or encode it); at most KV_TXN_MAX compares and ops
     * per branch, keys non-empty. */
    void (*txn)(void *ud, struct http_req *req, const struct kv_txn *t);
    /* GET /keys?...: q valid during the call. */
    void (*list)(void *ud, struct http_req *req, const struct http_keys_query *q);
    /* DELETE /keys?prefix=<p>: every key starting with prefix, in one
     * entry; plen >= 1. */
    void (*del_prefix)(void *ud, struct http_req *req, const uint8_t *prefix, size_t plen);
    /* --- operations (docs/operations.md); NULL ones are answered 501 --- */
    void (*livez)(void *ud, struct http_req *req);   /* GET /livez */
    void (*readyz)(void *ud, struct http_req *req);  /* GET /readyz */
    void (*metrics)(void *ud, struct http_req *req); /* GET /metrics */
    /* Optional (may be NULL): one call per request that reached routing,
     * when its answer starts (whoever gives it: this module, or the node
     * through http_reply_*): its enum http_route, enum http_method, the
     * status, and the nanoseconds from the moment the whole request was
     * in to that answer. Not called for what h2o refuses before routing
     * (a head it cannot parse, a body over max_body), for connections
     * refused at the limits, nor for a request whose client left before
     * its answer. Runs on the loop; must not reply to anything. */
    void (*observe)(void *ud, int route, int method, int status, uint64_t ns);
    /* GET /backup: a snapshot of the whole store, answered with
     * http_reply_stream (or an error). */
    void (*backup)(void *ud, struct http_req *req);
    /* --- leases (docs/http-api.md, "Leases"); NULL ones are answered 501.
     * Ids are >= 1 (0 and non-decimal ids are refused with 400 here). --- */
    /* POST /lease {"ttl":N}: N seconds, 1..HTTP_LEASE_TTL_MAX. */
    void (*lease_grant)(void *ud, struct http_req *req, uint64_t ttl_s);
    /* POST /lease/<id>/keepalive */
    void (*lease_keepalive)(void *ud, struct http_req *req, uint64_t id);
    /* DELETE /lease/<id> */
    void (*lease_revoke)(void *ud, struct http_req *req, uint64_t id);
    /* GET /lease/<id>[?after=&limit=&level=]: q valid during the call. */
    void (*lease_get)(void *ud, struct http_req *req, const struct http_lease_query *q);
    /* GET /leases[?after=<id>&limit=N&level=]: q valid during the call. */
    void (*lease_list)(void *ud, struct http_req *req, const struct http_leases_query *q);
    /* GET /watch?key=<k> | ?prefix=<p> [&from=<index>] (or Last-Event-ID):
     * w is valid during the call. Answered with http_reply_events (or an
     * error: 410 compacted, 503 too many watchers, ...). */
    void (*watch)(void *ud, struct http_req *req, const struct http_watch_opts *w);
};

struct http_opts {
    uv_loop_t *loop;        /* required; the server runs on it */
    const char *listen;     /* required: "host:port", "[v6]:port", ":port" =
                               every interface; host names are resolved
                               (getaddrinfo, blocking, at start)
                               (IPv4 preferred, as Go's net.Listen does) */
    size_t max_body;        /* request body limit, 0: 1 MiB; above it: 413 */
    size_t max_key;         /* key limit in bytes, 0: 4096; above it: 400 */
    size_t max_value;       /* value limit in bytes, 0: max_body; above: 400 */
    uint32_t req_timeout_ms; /* to receive a whole request, and idle time of a
                                kept-alive connection; 0: 10000 */
    unsigned max_conns;     /* open connections; 0: 1024. Above 7/8 of it,
                               connections idle for idle_reap_ms are closed,
                               oldest first (at the limit: idle for a quarter
                               of that); one that still finds the server full
                               gets a 503 and is closed at once */
    unsigned max_conns_per_ip; /* open connections of one peer address
                               (IPv6: per /128); 0: 256. Excess: 503 */
    unsigned idle_reap_ms;  /* see max_conns; 0: 1000 */
    unsigned linger_ms;     /* after a 413 (or a 400 for broken framing) the
                               rest of the body is read and thrown away so
                               that the client can read the answer: at most
                               this long (0: 5000) ... */
    size_t linger_max_bytes; /* ... and at most this many bytes (0: 64 MiB) */
    struct auth_db *auth;   /* users and roles (HTTP Basic, docs/security.md);
                               NULL: every route is open. Not owned: it must
                               outlive the server */
    const char *tls_cert;   /* PEM certificate chain; with tls_key: HTTPS
                               only (TLS 1.2 and 1.3); NULL: plain HTTP */
    const char *tls_key;    /* PEM private key matching tls_cert */
    const char *tls_client_ca; /* PEM CAs: every client must present a
                                  certificate one of them signed; NULL: none
                                  asked for. Needs tls_cert */
    const struct craft_logger *log; /* NULL: silent */
    const struct http_handlers *handlers; /* required; copied */
    void *ud;               /* first argument of every handler */
};

/* Binds, listens and starts serving. On success *out is the server; on
 * error (negative code: CRAFT_EINVAL for a bad address, or for TLS files
 * that are missing, do not load or do not match (logged), negative errno from
 * resolving, binding or listening) *out is NULL and nothing needs freeing. */
int http_server_start(struct http_server **out, const struct http_opts *o);

/* The port actually bound (useful with port 0). */
int http_server_port(const struct http_server *s);

/* Stops accepting, answers every request still waiting for the node with
 * 503 {"error":"shutting down"}, closes every connection (at once when idle,
 * after the response being written otherwise, forcibly after one second),
 * releases everything, then calls cb(ud) (cb may be NULL) from the loop. The
 * loop must keep running until then. s is invalid after the call. */
void http_server_close(struct http_server *s, void (*cb)(void *), void *ud);

/* Headers of the reply to come: call them before the http_reply_* of req
 * (they apply to whichever reply follows, errors included; a second call
 * replaces the first). X-Craftd-Index: <index> (decimal) and ETag:
 * "<mod_index>" (a strong entity tag). */
void http_reply_set_index(struct http_req *req, uint64_t index);
void http_reply_set_etag(struct http_req *req, uint64_t mod_index);

/* 200 {"<key>":"<val>"} (Content-Type: application/json). key and val may
 * hold any bytes; invalid UTF-8 is sent as U+FFFD. */
void http_reply_value(struct http_req *req, const char *key, size_t klen, const char *val,
                      size_t vlen);
/* 200 with an empty body, as hraftd answers writes and joins. */
void http_reply_ok(struct http_req *req);
/* status with json (len bytes, sent as is) as an application/json body. */
void http_reply_json(struct http_req *req, int status, const char *json, size_t len);
/* status with body (len bytes, any) and Content-Type ctype (e.g.
 * "application/octet-stream"); ctype NULL: no Content-Type. */
void http_reply_body(struct http_req *req, int status, const char *ctype, const void *body,
                     size_t len);
/* 304 Not Modified: no body, no Content-Type (the headers set before it,
 * such as ETag, are sent). */
void http_reply_not_modified(struct http_req *req);
/* status with {"error":"<message>"}; the message is printf-formatted (at
 * most 1023 bytes) and JSON-escaped. */
void http_reply_error(struct http_req *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* --- streamed replies (stream.c) ---
 * A 200 body of a length known in advance that is too large to hold in
 * memory: this module pulls it from the node piece by piece, each piece
 * only once the client has taken the previous one (one buffer per stream,
 * whatever the client's speed). */
struct http_stream_src {
    /* Fill buf with 1..cap bytes of the body, in order, and return how many;
     * 0 or a negative error cuts the response (the client sees a short body
     * and a closed connection). Called on the loop: keep it quick (e.g. a
     * pread of a local file). */
    ssize_t (*read)(void *ud, void *buf, size_t cap);
    /* The stream is over, called exactly once and never from within
     * http_reply_stream: ok true when every byte was handed to the
     * connection; false when the client went away, was cut for stalling,
     * the server closed, or read failed. ud is not used after it. */
    void (*done)(void *ud, bool ok);
};
/* Answers req 200 with Content-Type ctype (NULL: none), Content-Length
 * len and the headers set before (http_reply_set_index), and a body pulled
 * from src. A client that takes nothing for stall_ms (0: 30000) while a
 * piece waits for it is disconnected. 0: src->done follows. Else req is
 * answered all the same (503 when out of memory, or discarded: the client
 * had gone) and src is never called. src is copied. */
int http_reply_stream(struct http_req *req, const char *ctype, uint64_t len, unsigned stall_ms,
                      const struct http_stream_src *src, void *ud);

/* --- open-ended streamed replies (events.c), for Server-Sent Events ---
 * A 200 with Content-Type: text/event-stream, Cache-Control: no-cache and
 * no Content-Length (chunked), made of pieces of text the node hands over
 * as it has them. One piece is in flight per stream: next is called only
 * once h2o has written the previous piece to the socket (and after a wake
 * when it last had nothing), so a slow client costs the node one piece.
 * A piece that waits for the client for stall_ms (0: 30000) gets the
 * client disconnected. A client that goes away is noticed at the next
 * write (the node should send something now and then, e.g. a progress
 * event). */
struct http_events; /* one stream; owned by this module */
struct http_events_src {
    /* The next piece: 1 with *buf and *len (len >= 1; the node's memory, left
     * unchanged until the next call of next or done), 0 if there is none
     * now (the node calls http_events_wake when there is), -1 to end the
     * stream now (after the pieces sent before). Called on the loop, never
     * from within http_reply_events, http_events_wake or _end. */
    int (*next)(void *ud, const char **buf, size_t *len);
    /* The stream is over (ended by next or http_events_end, the client
     * gone or cut, the server closing): called exactly once, on the loop,
     * never from within http_reply_events, _wake or _end. The stream
     * handle is invalid from then on, and ud is not used after it. */
    void (*done)(void *ud);
};
/* Answers req 200 (with the headers set before, e.g. X-Craftd-Index) and
 * starts the stream: 0 and *out, after which src->done always follows. Else
 * (negative) req is answered all the same (503 when out of memory or the
 * server is closing, or discarded: the client had gone), *out is NULL and
 * src is never called. src is copied. */
int http_reply_events(struct http_req *req, unsigned stall_ms, const struct http_events_src *src,
                      void *ud, struct http_events **out);
/* The node has more for s: next is called on the next loop turn if no
 * piece is in flight, else once the one in flight is written. */
void http_events_wake(struct http_events *s);
/* Ends s once the piece in flight (if any) is written; done follows. */
void http_events_end(struct http_events *s);

/* True if no reply can reach the client any more: its connection is closed
 * or was reset, it shut down its side (even with requests of it still
 * unread), or the server is closing. A node may
 * use it to skip work; it must still reply to req. */
bool http_req_gone(struct http_req *req);

/* A pointer the node keeps with req (for handlers.cancel); NULL at first. */
void http_req_set_tag(struct http_req *req, void *tag);
void *http_req_tag(const struct http_req *req);

/* --- TLS for the node's own HTTPS requests to members (tlsclient.c) ---
 * The node does the socket I/O; this module only turns bytes into TLS
 * records and back over memory buffers, so that OpenSSL stays here. */
struct http_tls_client; /* what every connection trusts and presents */
struct http_tls_conn;   /* one connection's TLS state */

/* ca_file: PEM CAs that must have signed the member's certificate (NULL:
 * the system's CAs). cert and key (both or neither): PEM certificate and
 * key presented when a member asks for a client certificate. 0, or
 * CRAFT_EINVAL after logging why (a file that does not load or match). */
int http_tls_client_new(struct http_tls_client **out, const char *ca_file, const char *cert,
                        const char *key, const struct craft_logger *log);
void http_tls_client_free(struct http_tls_client *c); /* NULL is fine */

/* A client connection to host (a name, sent as SNI, or an IP address),
 * whose certificate must name host and be signed by one of c's CAs.
 * c must outlive it. 0 or CRAFT_ENOMEM. */
int http_tls_conn_new(struct http_tls_conn **out, struct http_tls_client *c, const char *host);
void http_tls_conn_free(struct http_tls_conn *t); /* NULL is fine */
/* Plaintext to send once the handshake is done (copied). 0 or -1. */
int http_tls_conn_write(struct http_tls_conn *t, const char *buf, size_t len);
/* Advances the connection with in (ciphertext received, may be empty):
 * handshake, sending, receiving. Decrypted bytes go to out (up to cap;
 * *got says how many; call again with no input while *got == cap).
 * Returns 0 (more to come), 1 (the server closed the TLS session), or -1
 * (failed: http_tls_conn_error says why, e.g. an unverified certificate). */
int http_tls_conn_pump(struct http_tls_conn *t, const char *in, size_t inlen, char *out,
                       size_t cap, size_t *got);
/* Ciphertext waiting to be sent, in a buffer the caller now owns (free
 * with craft_free), or NULL with *len 0 when there is none (or no memory:
 * then http_tls_conn_pump fails next). */
char *http_tls_conn_output(struct http_tls_conn *t, size_t *len);
const char *http_tls_conn_error(const struct http_tls_conn *t); /* never NULL */

/* The routes and methods requests are counted by (observe above). A route
 * is a path (its family, for /key/<k> and /lease/<id>); anything else is
 * HTTP_ROUTE_OTHER. */
enum http_route {
    HTTP_ROUTE_KEY = 0, HTTP_ROUTE_KEYS, HTTP_ROUTE_TXN, HTTP_ROUTE_WATCH, HTTP_ROUTE_LEASE,
    HTTP_ROUTE_LEASES, HTTP_ROUTE_JOIN, HTTP_ROUTE_REMOVE, HTTP_ROUTE_TRANSFER,
    HTTP_ROUTE_STATUS, HTTP_ROUTE_BACKUP, HTTP_ROUTE_LIVEZ, HTTP_ROUTE_READYZ,
    HTTP_ROUTE_METRICS, HTTP_ROUTE_OTHER,
    HTTP_ROUTE_COUNT
};
enum http_method {
    HTTP_METHOD_GET = 0, HTTP_METHOD_HEAD, HTTP_METHOD_POST, HTTP_METHOD_PUT,
    HTTP_METHOD_DELETE, HTTP_METHOD_OTHER,
    HTTP_METHOD_COUNT
};
/* The route of a path (without its query) and the method of a request
 * line's method; pure. */
int http_route_of(const char *path, size_t len);
int http_method_of(const char *method, size_t len);
/* "/key", "/keys", ... "other"; "GET", ... "other" (never NULL). */
const char *http_route_name(int route);
const char *http_method_name(int method);

/* "linearizable", "weak", "none" ("?" for anything else). */
const char *http_read_level_name(int level);

/* --- transactions, ordered listing, prefix deletes (docs/http-api.md,
 *     "Transactions and listing"): the parsed requests handed to the node
 *     and the JSON encoders of their answers (kvjson.c) ---
 * The parsed structures use the plain struct types of kv/kv.h; src/http
 * itself never calls a kv function. */
/* The most keys one GET /keys page holds (limit=), its default, and the
 * most keys one count_only request counts (its limit=, default the same). */
#define HTTP_LIST_MAX 10000
#define HTTP_LIST_DEFAULT 1000
#define HTTP_COUNT_MAX 1000000
/* A listing page stops after the key that takes its JSON past this many
 * bytes (a page holds at least one key), with "more":true. */
#define HTTP_LIST_MAX_BYTES (4u << 20)

/* GET /keys?... (and DELETE /keys?prefix=..., which uses prefix only).
 * All strings are percent-decoded bytes (any bytes, NUL included), owned
 * by the request, valid during the handler call only. */
struct http_keys_query {
    struct kv_range range;  /* prefix, or [start, end); pointers into the
                               request (the whole key space when no
                               parameter is given) */
    const uint8_t *after;   /* list strictly after this key; NULL: from the
                               start of range */
    size_t alen;
    size_t limit;           /* keys per page (count_only: keys counted) */
    bool keys_only;         /* no values */
    bool count_only;        /* {"index","count"} only */
    int level;              /* enum http_read_level */
    struct http_block block; /* index= / wait= (prefix listings only) */
};

/* A growable JSON text owned by its user: init, append, take data/len,
 * http_jbuf_free. An allocation failure makes every later append a no-op
 * and sets failed: check it before sending. */
struct http_jbuf {
    char *data;  /* not NUL-terminated; len bytes */
    size_t len;
    size_t cap;  /* private */
    bool failed; /* out of memory: data is incomplete */
};
void http_jbuf_init(struct http_jbuf *j);
void http_jbuf_free(struct http_jbuf *j);

/* A key with its revisions, as GET /key/<k>?meta and a txn get show it:
 * {"key","value","create_index","mod_index","version","lease"} (key_b64 /
 * value_b64 for bytes that are not valid UTF-8; lease as a decimal
 * string, "0" for none), written into j. */
void http_jbuf_meta(struct http_jbuf *j, const struct kv_meta *m);
/* {"succeeded":bool,"index":N,"results":[...]}: one result per executed
 * op ({} put, {"deleted":n} deletes, the meta object or {"found":false}
 * for a get). */
void http_jbuf_txn(struct http_jbuf *j, const struct kv_result *r);
/* {"deleted":n,"index":N} */
void http_jbuf_deleted(struct http_jbuf *j, uint64_t deleted, uint64_t index);

/* A listing page, in three steps: begin ({"index":N,"keys":[), one key
 * per kv_list callback ({"key","value","mod_index"}, no value with
 * keys_only), end (],"more":bool and "next":<the last key of the page>
 * when it holds any). */
void http_jbuf_list_begin(struct http_jbuf *j, uint64_t index);
void http_jbuf_list_key(struct http_jbuf *j, const struct kv_meta *m, bool keys_only);
void http_jbuf_list_end(struct http_jbuf *j, bool more, const struct kv_meta *last);
/* count_only: {"index":N,"count":n}, and "more":true,"next":<last key
 * counted> when the count stopped at its cap (continue with after=next
 * and add up). */
void http_jbuf_count(struct http_jbuf *j, uint64_t index, size_t count, bool more,
                     const struct kv_meta *last);

/* --- leases (docs/http-api.md, "Leases"): the query of GET /leases and
 *     the JSON encoders of the answers (kvjson.c) --- */
#define HTTP_LEASE_TTL_MAX 1000000000ull /* seconds a POST /lease may ask */
#define HTTP_LEASES_MAX 10000            /* leases one GET /leases page holds */
#define HTTP_LEASES_DEFAULT 1000
#define HTTP_LEASE_KEYS_MAX 10000        /* keys one GET /lease/<id> page holds */
#define HTTP_LEASE_KEYS_DEFAULT 1000

/* GET /lease/<id>[?after=<key>&limit=N&level=]: a page of the lease's keys,
 * in key order, as GET /keys pages (the page also ends after the key that
 * takes its JSON past HTTP_LIST_MAX_BYTES). */
struct http_lease_query {
    uint64_t id;
    const uint8_t *after; /* keys strictly after it (decoded; valid during
                             the handler's call); NULL: from the first */
    size_t alen;
    size_t limit;         /* 1..HTTP_LEASE_KEYS_MAX */
    int level;            /* enum http_read_level */
};

struct http_leases_query {
    uint64_t after; /* leases with a greater id; 0: from the first */
    size_t limit;   /* 1..HTTP_LEASES_MAX */
    int level;      /* enum http_read_level */
};

/* {"id":"<id>","ttl":N} (id as a decimal string, ttl in seconds) */
void http_jbuf_lease(struct http_jbuf *j, uint64_t id, uint64_t ttl_s);
/* GET /lease/<id> in three steps: begin ({"id","ttl","remaining_ms","keys":[),
 * one key at a time (a JSON string, or {"key_b64":...} for bytes that are
 * not valid UTF-8), end (],"more":bool,"next":<last key>}: next, or next_b64,
 * is the page's last key, absent when last is NULL: an empty page). */
void http_jbuf_lease_info_begin(struct http_jbuf *j, uint64_t id, uint64_t ttl_s,
                                uint64_t remaining_ms);
void http_jbuf_lease_key(struct http_jbuf *j, const uint8_t *key, size_t klen);
void http_jbuf_lease_info_end(struct http_jbuf *j, bool more, const uint8_t *last,
                              size_t llen);
/* GET /leases: begin ({"index":N,"leases":[), one {"id","ttl"} per lease,
 * end (],"more":bool}). */
void http_jbuf_leases_begin(struct http_jbuf *j, uint64_t index);
void http_jbuf_leases_item(struct http_jbuf *j, uint64_t id, uint64_t ttl_s);
void http_jbuf_leases_end(struct http_jbuf *j, bool more);
/* Server-Sent Events of GET /watch, appended to j (docs/http-api.md,
 * "Watch"); the data line is JSON without newlines. A put:
 * id: <mod_index>\nevent: put\ndata: {"key","value","create_index",
 * "mod_index","version"[,"lease":"<id>" when not 0]}\n\n (key_b64 /
 * value_b64 for bytes that are not UTF-8). A delete at index:
 * id: <index>\nevent: delete\ndata: {"key","mod_index"}\n\n. Progress:
 * event: progress\ndata: {"index":N}\n\n (no id: it moves no cursor). An
 * error: event: error\ndata: {"error":"<error>","index":N}\n\n. */
void http_jbuf_sse_put(struct http_jbuf *j, const struct kv_meta *m);
void http_jbuf_sse_delete(struct http_jbuf *j, const uint8_t *key, size_t klen, uint64_t index);
void http_jbuf_sse_progress(struct http_jbuf *j, uint64_t index);
void http_jbuf_sse_error(struct http_jbuf *j, const char *error, uint64_t index);

#endif
