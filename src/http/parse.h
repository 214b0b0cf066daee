/* Pure helpers of src/http (prefix http__): request parsing and JSON text
 * output, with no h2o and no I/O, so the unit tests drive them directly.
 * Thread-safe (no state). Buffers are the caller's unless said otherwise. */
#ifndef CRAFT_HTTP_PARSE_H
#define CRAFT_HTTP_PARSE_H

#include "common/jsonstr.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "http/http.h"

/* --- addr.c --- */
/* Splits "host:port" / "[v6]:port" / ":port"; host is NUL-terminated into
 * hostbuf (empty = any address). 0 or CRAFT_EINVAL (no/bad port, host too
 * long, unbalanced brackets). */
int http__split_hostport(const char *s, char *hostbuf, size_t hostcap, unsigned *port);

/* --- parse.c: pure request parsing --- */
/* Percent-decodes src[0..len) into dst (room for len bytes). Returns the
 * decoded length, or -1 on a malformed escape ("%4", "%zz"). '+' stays '+'. */
ssize_t http__pct_decode(const char *src, size_t len, char *dst);
/* Finds level=... in a query string (without '?'); *level unchanged if the
 * parameter is absent. 0, or -1 if the value is unknown/malformed. */
int http__parse_level(const char *q, size_t len, int *level);
/* The last parameter name of query string q (without '?'): 1 if present,
 * with its value percent-decoded into val (room for cap bytes; *vlen; an
 * absent "=value" is empty); 0 if absent; -1 if its value is malformed or
 * longer than cap. Names are compared after percent-decoding. */
int http__query_param(const char *q, size_t len, const char *name, char *val, size_t cap,
                      size_t *vlen);
/* A flag parameter (?meta, ?raw): absent, no value, "", "1" or "true": 0
 * and *on (false only when absent, "0" or "false"); anything else: -1. */
int http__query_flag(const char *q, size_t len, const char *name, bool *on);
/* A decimal uint64 without sign, spaces or leading zeros ("0" itself is
 * fine): 0 and *out, or -1 (also past UINT64_MAX). */
int http__parse_u64(const char *s, size_t len, uint64_t *out);
/* A wait= duration: a number with a unit ms, s, m (bare: seconds), at most
 * HTTP_WAIT_MAX_MS: 0 and *ms, or -1. */
int http__parse_wait(const char *s, size_t len, uint64_t *ms);
/* index= and wait= of a query into *b: 0 (b->on false when index= is
 * absent), or -1 with a message for a 400 in err. */
int http__parse_block(const char *q, size_t len, struct http_block *b, char *err,
                      size_t errcap);

/* Entity tags of one If-Match / If-None-Match header line: "*" or a
 * comma-separated list of "<n>" (W/"<n>" too when weak_ok), n as for
 * http__parse_u64: craftd's ETags are mod_index values, so any other tag
 * is refused as malformed. Appends to out (several header lines add up):
 * 0, or -1 with a message for a 400 in err (malformed, "*" mixed with
 * tags, more than HTTP_INM_MAX tags). */
struct http__etags {
    bool any;                  /* "*" */
    size_t n;
    uint64_t tag[HTTP_INM_MAX];
};
int http__parse_etags(const char *v, size_t len, bool weak_ok, struct http__etags *out,
                      char *err, size_t errcap);
/* The precondition of a write from its If-Match (im, NULL when absent) and
 * If-None-Match (inm) header values (each the only line of its name: the
 * caller refuses repeats): If-Match "<n>" or *, If-None-Match *, at most
 * one of them. 0 and *out (HTTP_PRE_NONE when neither), or -1 with a
 * message for a 400 in err. */
int http__parse_precond(const char *im, size_t imlen, const char *inm, size_t inmlen,
                        struct http_precond *out, char *err, size_t errcap);

/* --- b64.c --- */
/* The most bytes http__b64_encode writes for len input bytes (no NUL). */
#define HTTP__B64_MAX(len) (((len) + 2) / 3 * 4)
/* RFC 4648 base64 with padding into dst; returns the length written. */
size_t http__b64_encode(char *dst, const void *src, size_t len);

/* The parsed body of POST /key. root owns the strings pairs point into. */
struct http__kvbody {
    json_t *root;
    struct http_kv *pairs; /* craft_malloc'd, n entries */
    size_t n;
};
/* 0 and *out filled (n == 0 for {} / null), or -1 with a message for a
 * 400 reply in err. On success free with http__kvbody_free. */
int http__parse_kv_body(const char *body, size_t len, size_t max_key, size_t max_value,
                        struct http__kvbody *out, char *err, size_t errcap);
void http__kvbody_free(struct http__kvbody *b);
/* The parsed body of POST /join: id and addr non-empty strings, http_addr
 * an optional string, other fields ignored; none may contain NUL. root owns
 * the strings. 0, or -1 with a message in err; free with http__joinbody_free. */
struct http__joinbody {
    json_t *root;
    const char *id, *addr, *http_addr; /* http_addr NULL when absent */
    struct http_join_ext ext;          /* each NULL when absent */
};
int http__parse_join_body(const char *body, size_t len, struct http__joinbody *out, char *err,
                          size_t errcap);
/* The body of POST /remove and POST /transfer: {"id": "<member>"}. */
int http__parse_id_body(const char *body, size_t len, struct http__joinbody *out, char *err,
                        size_t errcap);
void http__joinbody_free(struct http__joinbody *b);

/* JSON text output: common/jsonstr.h (craft_utf8_valid, craft_json_quote). */

#endif

/* --- framing.c: request smuggling guard --- */
/* Checks the framing headers of one raw HTTP/1 request head (buf starts at
 * the request line; it may run past the head, which ends at the first empty
 * line): at most one Content-Length, at most one Transfer-Encoding, never
 * both, and no obsolete line folding (a header line starting with a space
 * or tab). h2o 2.2 uses the first Content-Length and ignores the others, and
 * lets Transfer-Encoding override Content-Length, which a proxy in front may
 * read differently. 0 if the head is fine (or has no end within len), -1
 * with a message for a 400 in err otherwise. */
int http__check_framing(const char *buf, size_t len, char *err, size_t errcap);
