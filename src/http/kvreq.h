/* Pure helpers of src/http for transactions, listing and leases (prefix
 * http__): base64, the JSON body of POST /txn, the query of /keys and the
 * parts of lease requests, with no h2o and no I/O, so the unit tests drive
 * them directly. Thread-safe (no state). The public side (struct
 * http_keys_query, struct http_leases_query, the encoders) is in
 * http/http.h. */
#ifndef CRAFT_HTTP_KVREQ_H
#define CRAFT_HTTP_KVREQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "http/http.h"
#include "http/parse.h"

/* --- b64.c: base64 decoding (encoding: http__b64_encode, parse.h, also
 * in b64.c) --- */
/* Decodes src (strict: the standard alphabet, padding to a multiple of 4,
 * no whitespace, zero unused bits) into dst (room for len / 4 * 3 bytes).
 * Returns the decoded length, or -1 if src is not canonical base64. */
long http__b64_decode(uint8_t *dst, const char *src, size_t len);

/* --- txn.c: the body of POST /txn --- */
struct http__txnbody {
    json_t *root;     /* owns the strings the arrays point into */
    uint8_t *arena;   /* owns the bytes decoded from *_b64 fields */
    struct kv_txn txn; /* points into the arrays below */
    struct kv_compare cmp[KV_TXN_MAX];
    struct kv_txn_op success[KV_TXN_MAX];
    struct kv_txn_op failure[KV_TXN_MAX];
};
/* Parses {"compare":[...],"success":[...],"failure":[...]} (each optional)
 * into out->txn. Keys are 1..max_key bytes (a delete_prefix too), values
 * at most max_value; at most KV_TXN_MAX compares and ops per branch.
 * 0, or -1 with a message for a 400 in err (out then holds nothing). On
 * success free with http__txnbody_free. out is large (~20 KiB): keep it
 * off small stacks. */
int http__parse_txn_body(const char *body, size_t len, size_t max_key, size_t max_value,
                         struct http__txnbody *out, char *err, size_t errcap);
void http__txnbody_free(struct http__txnbody *b);

/* --- keysq.c: the query of GET and DELETE /keys --- */
/* Parses q (without '?'; len may be 0) into *out: prefix=, or start= and
 * end= (half-open; an empty or absent end: no end), after=, limit=,
 * keys_only, count_only, level=; unknown parameters are refused. Values
 * are percent-decoded into buf (room for len bytes, the caller's; out
 * points into it). for_delete: only prefix= is allowed, and it must be
 * non-empty. Keys longer than max_key are refused. 0, or -1 with a message
 * for a 400 in err. */
int http__parse_keys_query(const char *q, size_t len, bool for_delete, size_t max_key,
                           char *buf, struct http_keys_query *out, char *err,
                           size_t errcap);

/* --- lease.c: lease requests --- */
/* The body of POST /lease: {"ttl":N}, N an integer 1..HTTP_LEASE_TTL_MAX
 * (seconds), no other field. */
int http__parse_lease_body(const char *body, size_t len, uint64_t *ttl_s, char *err,
                           size_t errcap);
/* The path after "/lease": "" (the collection: *id 0), "/<id>", or
 * "/<id>/keepalive" (*keepalive); ids are decimal, >= 1. */
int http__parse_lease_path(const char *rest, size_t rlen, uint64_t *id, bool *keepalive,
                           char *err, size_t errcap);
/* The query of GET /lease/<id> (without '?'): after=<key> (percent-decoded
 * into buf, len + 1 bytes, out->after points into it; at most max_key
 * bytes), limit=1..HTTP_LEASE_KEYS_MAX, level=; unknown parameters are
 * refused. */
int http__parse_lease_query(const char *q, size_t len, uint64_t id, size_t max_key, char *buf,
                            struct http_lease_query *out, char *err, size_t errcap);
/* The query of GET /leases (without '?'): after=<id>, limit=1..HTTP_LEASES_MAX,
 * level=; unknown parameters are refused. */
int http__parse_leases_query(const char *q, size_t len, struct http_leases_query *out,
                             char *err, size_t errcap);
/* --- watchq.c: the request of GET /watch --- */
/* Parses q (without '?') and the Last-Event-ID header value (last_id NULL
 * when absent) into *out: key= or prefix= (exactly one; a key non-empty,
 * either at most max_key bytes, percent-decoded into buf, room for len
 * bytes, which out points into), from= (a decimal index); from and
 * Last-Event-ID resume after that index, and when both are given they must
 * be equal. Unknown parameters are refused. 0, or -1 with a message for a
 * 400 in err. */
int http__parse_watch(const char *q, size_t len, const char *last_id, size_t lid_len,
                      size_t max_key, char *buf, struct http_watch_opts *out, char *err,
                      size_t errcap);

#endif
