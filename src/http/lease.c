/* The parts of lease requests (docs/http-api.md, "Leases") that need no
 * h2o: the body of POST /lease, the path under /lease, and the queries of
 * GET /lease/<id> and GET /leases. Each returns 0, or -1 with a message for
 * a 400 in err. */
#include "http/kvreq.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

int http__parse_lease_body(const char *body, size_t len, uint64_t *ttl_s, char *err,
                           size_t errcap)
{
    static const char want[] = "the body must be {\"ttl\":N}, N seconds from 1 to 1000000000";
    json_error_t je;
    json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL) {
        snprintf(err, errcap, "invalid JSON (%s): %s", je.text, want);
        return -1;
    }
    int rv = -1;
    json_t *ttl = json_is_object(root) ? json_object_get(root, "ttl") : NULL;
    if (!json_is_object(root) || json_object_size(root) != 1 || ttl == NULL) {
        snprintf(err, errcap, "%s", want);
    } else if (!json_is_integer(ttl) || json_integer_value(ttl) < 1 ||
               (uint64_t)json_integer_value(ttl) > HTTP_LEASE_TTL_MAX) {
        snprintf(err, errcap, "\"ttl\" must be a whole number of seconds from 1 to %llu",
                 (unsigned long long)HTTP_LEASE_TTL_MAX);
    } else {
        *ttl_s = (uint64_t)json_integer_value(ttl);
        rv = 0;
    }
    json_decref(root);
    return rv;
}

/* A lease id: a decimal number >= 1. */
static int lease_id(const char *s, size_t len, uint64_t *id, char *err, size_t errcap)
{
    if (http__parse_u64(s, len, id) != 0 || *id == 0) {
        snprintf(err, errcap, "a lease id is a decimal number from 1 to 18446744073709551615, "
                 "not \"%.*s\"", (int)(len > 32 ? 32 : len), s);
        return -1;
    }
    return 0;
}

int http__parse_lease_path(const char *rest, size_t rlen, uint64_t *id, bool *keepalive,
                           char *err, size_t errcap)
{
    static const char ka[] = "/keepalive";
    *id = 0;
    *keepalive = false;
    if (rlen == 0)
        return 0; /* /lease itself */
    if (rest[0] != '/' || rlen == 1) {
        snprintf(err, errcap, "use /lease, /lease/<id> or /lease/<id>/keepalive");
        return -1;
    }
    const char *seg = rest + 1;
    size_t slen = rlen - 1;
    const char *slash = memchr(seg, '/', slen);
    if (slash != NULL) {
        size_t tail = slen - (size_t)(slash - seg);
        if (tail != sizeof ka - 1 || memcmp(slash, ka, tail) != 0) {
            snprintf(err, errcap, "use /lease, /lease/<id> or /lease/<id>/keepalive");
            return -1;
        }
        *keepalive = true;
        slen = (size_t)(slash - seg);
    }
    return lease_id(seg, slen, id, err, errcap);
}

/* Every name must be after, limit or level: a mistyped one must not go
 * unnoticed. */
static int known_names(const char *q, size_t len, char *err, size_t errcap)
{
    for (size_t i = 0; i < len;) {
        size_t end = i;
        while (end < len && q[end] != '&')
            end++;
        const char *eq = memchr(q + i, '=', end - i);
        size_t nlen = eq ? (size_t)(eq - (q + i)) : end - i;
        char name[8];
        ssize_t dn = nlen <= sizeof name ? http__pct_decode(q + i, nlen, name) : -1;
        bool known = (dn == 5 && (memcmp(name, "after", 5) == 0 ||
                                  memcmp(name, "limit", 5) == 0 ||
                                  memcmp(name, "level", 5) == 0));
        if (!known && nlen > 0) {
            snprintf(err, errcap, "unknown parameter \"%.*s\": use after, limit or level",
                     (int)(nlen > 32 ? 32 : nlen), q + i);
            return -1;
        }
        i = end + 1;
    }
    return 0;
}

/* limit= (absent: *limit unchanged), from 1 to max; and level=. */
static int limit_and_level(const char *q, size_t len, size_t max, size_t *limit, int *level,
                           char *err, size_t errcap)
{
    char v[24];
    size_t vlen;
    uint64_t n;
    int rv = http__query_param(q, len, "limit", v, sizeof v, &vlen);
    if (rv < 0 || (rv == 1 && (http__parse_u64(v, vlen, &n) != 0 || n == 0 || n > max))) {
        snprintf(err, errcap, "\"limit\" must be a number from 1 to %zu", max);
        return -1;
    }
    if (rv == 1)
        *limit = (size_t)n;
    if (http__parse_level(q, len, level) != 0) {
        snprintf(err, errcap, "unknown read level: use level=linearizable, weak or none");
        return -1;
    }
    return 0;
}

int http__parse_lease_query(const char *q, size_t len, uint64_t id, size_t max_key, char *buf,
                            struct http_lease_query *out, char *err, size_t errcap)
{
    *out = (struct http_lease_query){.id = id, .limit = HTTP_LEASE_KEYS_DEFAULT,
                                     .level = HTTP_READ_LINEARIZABLE};
    if (known_names(q, len, err, errcap) != 0)
        return -1;
    size_t alen;
    int rv = http__query_param(q, len, "after", buf, len + 1, &alen);
    if (rv < 0) {
        snprintf(err, errcap, "invalid percent-encoding in \"after\"");
        return -1;
    }
    if (rv == 1 && alen > max_key) {
        snprintf(err, errcap, "\"after\" too long: %zu bytes, the limit is %zu", alen,
                 max_key);
        return -1;
    }
    if (rv == 1) {
        out->after = (const uint8_t *)buf;
        out->alen = alen;
    }
    return limit_and_level(q, len, HTTP_LEASE_KEYS_MAX, &out->limit, &out->level, err,
                           errcap);
}

int http__parse_leases_query(const char *q, size_t len, struct http_leases_query *out,
                             char *err, size_t errcap)
{
    *out = (struct http_leases_query){.limit = HTTP_LEASES_DEFAULT,
                                      .level = HTTP_READ_LINEARIZABLE};
    if (known_names(q, len, err, errcap) != 0)
        return -1;
    char v[24];
    size_t vlen;
    int rv = http__query_param(q, len, "after", v, sizeof v, &vlen);
    if (rv < 0 || (rv == 1 && http__parse_u64(v, vlen, &out->after) != 0)) {
        snprintf(err, errcap, "\"after\" takes a lease id (a decimal number)");
        return -1;
    }
    return limit_and_level(q, len, HTTP_LEASES_MAX, &out->limit, &out->level, err, errcap);
}
