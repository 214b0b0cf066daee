/* The request of GET /watch (docs/http-api.md, "Watch"): key= or prefix=
 * (exactly one; percent-decoded, any bytes), from= and the Last-Event-ID
 * header. Unknown parameters are refused, as for /keys: a mistyped name
 * must not silently watch everything. Pure: no h2o, no I/O. */
#include "http/kvreq.h"

#include <stdio.h>
#include <string.h>

/* Each of key, prefix and from at most once (the last would win, but two
 * different values of one name are more likely a mistake). */
static int param_once(const char *q, size_t len, const char *name, char *buf, size_t cap,
                      size_t *vlen, char *err, size_t errcap)
{
    int rv = http__query_param(q, len, name, buf, cap, vlen);
    if (rv < 0)
        snprintf(err, errcap, "invalid percent-encoding in \"%s\"", name);
    return rv;
}

static int known_names(const char *q, size_t len, char *err, size_t errcap)
{
    static const char *const names[] = {"key", "prefix", "from"};
    for (size_t i = 0; i < len;) {
        size_t end = i;
        while (end < len && q[end] != '&')
            end++;
        const char *eq = memchr(q + i, '=', end - i);
        size_t nlen = eq ? (size_t)(eq - (q + i)) : end - i;
        char name[16];
        ssize_t dn = nlen <= sizeof name ? http__pct_decode(q + i, nlen, name) : -1;
        bool ok = nlen == 0;
        for (size_t j = 0; dn > 0 && j < sizeof names / sizeof names[0]; j++)
            ok |= strlen(names[j]) == (size_t)dn && memcmp(names[j], name, (size_t)dn) == 0;
        if (!ok) {
            snprintf(err, errcap, "unknown parameter \"%.*s\": use key or prefix, and from",
                     (int)(nlen > 32 ? 32 : nlen), q + i);
            return -1;
        }
        i = end + 1;
    }
    return 0;
}

int http__parse_watch(const char *q, size_t len, const char *last_id, size_t lid_len,
                      size_t max_key, char *buf, struct http_watch_opts *out, char *err,
                      size_t errcap)
{
    *out = (struct http_watch_opts){0};
    if (known_names(q, len, err, errcap) != 0)
        return -1;
    size_t klen = 0, plen = 0, flen = 0;
    int hk = param_once(q, len, "key", buf, len, &klen, err, errcap);
    if (hk < 0)
        return -1;
    int hp = param_once(q, len, "prefix", buf, len, &plen, err, errcap);
    if (hp < 0)
        return -1;
    if (hk == hp) {
        snprintf(err, errcap, "%s", hk ? "key and prefix exclude each other: give one"
                                       : "missing key= or prefix= (prefix= with nothing "
                                         "after it watches every key)");
        return -1;
    }
    if (hk == 1 && klen == 0) {
        snprintf(err, errcap, "empty key: use key=<key>, or prefix= to watch every key");
        return -1;
    }
    /* Only the one given was decoded into buf. */
    out->key = (const uint8_t *)buf;
    out->klen = hk ? klen : plen;
    out->prefix = hp == 1;
    if (out->klen > max_key) {
        snprintf(err, errcap, "%s too long: %zu bytes, the limit is %zu", hk ? "key" : "prefix",
                 out->klen, max_key);
        return -1;
    }
    char fb[24];
    int hf = http__query_param(q, len, "from", fb, sizeof fb, &flen);
    uint64_t from = 0;
    if (hf < 0 || (hf == 1 && http__parse_u64(fb, flen, &from) != 0)) {
        snprintf(err, errcap, "from takes an index: a decimal number");
        return -1;
    }
    uint64_t lid = 0;
    if (last_id != NULL && http__parse_u64(last_id, lid_len, &lid) != 0) {
        snprintf(err, errcap, "Last-Event-ID must be an event id: a decimal index");
        return -1;
    }
    if (hf == 1 && last_id != NULL && from != lid) {
        snprintf(err, errcap, "from=%llu and Last-Event-ID: %llu disagree: give one, or the "
                 "same index in both", (unsigned long long)from, (unsigned long long)lid);
        return -1;
    }
    out->has_from = hf == 1 || last_id != NULL;
    out->from = hf == 1 ? from : lid;
    return 0;
}
