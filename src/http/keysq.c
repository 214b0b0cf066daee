/* The query string of GET /keys and DELETE /keys (docs/http-api.md,
 * "GET /keys"): name[=value] parameters separated by '&', both halves
 * percent-decoded (so a key bound may hold any bytes), the last duplicate
 * winning. Unknown names are refused: a mistyped bound must not list or
 * delete the whole key space. */
#include "http/kvreq.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

struct param {
    const char *name;
    bool seen;
    const uint8_t *val; /* decoded, in the caller's buffer */
    size_t len;
};

enum {
    P_PREFIX, P_START, P_END, P_AFTER, P_LIMIT, P_KEYS_ONLY, P_COUNT_ONLY, P_LEVEL, P_INDEX,
    P_WAIT, P_N
};

static int split_params(const char *q, size_t len, char *buf, struct param *p, char *err,
                        size_t errcap)
{
    size_t used = 0;
    for (size_t i = 0; i < len;) {
        size_t end = i;
        while (end < len && q[end] != '&')
            end++;
        const char *eq = memchr(q + i, '=', end - i);
        size_t nlen = eq ? (size_t)(eq - (q + i)) : end - i;
        char name[16];
        ssize_t dn = nlen <= sizeof name ? http__pct_decode(q + i, nlen, name) : -1;
        int k = P_N;
        for (int j = 0; dn > 0 && j < P_N; j++)
            if (strlen(p[j].name) == (size_t)dn && memcmp(p[j].name, name, (size_t)dn) == 0)
                k = j;
        if (k == P_N && nlen > 0) {
            snprintf(err, errcap, "unknown parameter \"%.*s\": use prefix, start, end, after, "
                     "limit, keys_only, count_only, level, index or wait", (int)(nlen > 32 ? 32 : nlen),
                     q + i);
            return -1;
        }
        if (k < P_N) {
            size_t vlen = eq ? (size_t)(q + end - (eq + 1)) : 0;
            ssize_t dv = http__pct_decode(eq ? eq + 1 : "", vlen, buf + used);
            if (dv < 0) {
                snprintf(err, errcap, "invalid percent-encoding in \"%s\"", p[k].name);
                return -1;
            }
            p[k].seen = true;
            p[k].val = (const uint8_t *)buf + used;
            p[k].len = (size_t)dv;
            used += (size_t)dv;
        }
        i = end + 1;
    }
    return 0;
}

static int flag(const struct param *p, bool *out, char *err, size_t errcap)
{
    const char *v = (const char *)p->val;
    if (!p->seen)
        return 0;
    if (p->len == 0 || (p->len == 4 && strncasecmp(v, "true", 4) == 0) ||
        (p->len == 1 && v[0] == '1'))
        *out = true;
    else if ((p->len == 5 && strncasecmp(v, "false", 5) == 0) || (p->len == 1 && v[0] == '0'))
        *out = false;
    else {
        snprintf(err, errcap, "\"%s\" takes no value, or true/false", p->name);
        return -1;
    }
    return 0;
}

static int number(const struct param *p, size_t max, size_t *out, char *err, size_t errcap)
{
    size_t v = 0;
    bool ok = p->len > 0 && p->len <= 9;
    for (size_t i = 0; ok && i < p->len; i++) {
        ok = p->val[i] >= '0' && p->val[i] <= '9';
        v = v * 10 + (size_t)(p->val[i] - '0');
    }
    if (!ok || v == 0 || v > max) {
        snprintf(err, errcap, "\"%s\" must be a number from 1 to %zu", p->name, max);
        return -1;
    }
    *out = v;
    return 0;
}

static int check_keys(const struct param *p, size_t max_key, char *err, size_t errcap)
{
    for (int k = P_PREFIX; k <= P_AFTER; k++)
        if (p[k].seen && p[k].len > max_key) {
            snprintf(err, errcap, "\"%s\" too long: %zu bytes, the limit is %zu", p[k].name,
                     p[k].len, max_key);
            return -1;
        }
    return 0;
}

/* The fields of struct kv_range are filled here: src/http calls no kv
 * function. */
static void set_prefix(struct kv_range *r, const uint8_t *prefix, size_t len)
{
    *r = (struct kv_range){.start = prefix, .slen = len, .is_prefix = true};
}

static int parse_delete(const struct param *p, struct http_keys_query *out, char *err,
                        size_t errcap)
{
    for (int k = P_START; k < P_N; k++)
        if (p[k].seen) {
            snprintf(err, errcap, "DELETE /keys takes prefix= only, not \"%s\"", p[k].name);
            return -1;
        }
    if (!p[P_PREFIX].seen || p[P_PREFIX].len == 0) {
        snprintf(err, errcap, "DELETE /keys needs a non-empty prefix= (deleting every key "
                 "at once is refused)");
        return -1;
    }
    set_prefix(&out->range, p[P_PREFIX].val, p[P_PREFIX].len);
    return 0;
}

int http__parse_keys_query(const char *q, size_t len, bool for_delete, size_t max_key,
                           char *buf, struct http_keys_query *out, char *err, size_t errcap)
{
    struct param p[P_N] = {{"prefix"}, {"start"}, {"end"}, {"after"}, {"limit"},
                           {"keys_only"}, {"count_only"}, {"level"}, {"index"},
                           {"wait"}};
    memset(out, 0, sizeof *out);
    out->level = HTTP_READ_LINEARIZABLE;
    if (split_params(q, len, buf, p, err, errcap) != 0 ||
        check_keys(p, max_key, err, errcap) != 0)
        return -1;
    if (for_delete)
        return parse_delete(p, out, err, errcap);
    if (p[P_PREFIX].seen && (p[P_START].seen || p[P_END].seen)) {
        snprintf(err, errcap, "give prefix= or start=/end=, not both");
        return -1;
    }
    if (p[P_START].seen || p[P_END].seen) {
        out->range.start = p[P_START].seen ? p[P_START].val : (const uint8_t *)"";
        out->range.slen = p[P_START].len;
        out->range.has_end = p[P_END].len > 0; /* end= (empty): no end */
        out->range.end = out->range.has_end ? p[P_END].val : NULL;
        out->range.elen = p[P_END].len;
    } else {
        set_prefix(&out->range, p[P_PREFIX].seen ? p[P_PREFIX].val : (const uint8_t *)"",
                   p[P_PREFIX].len);
    }
    if (flag(&p[P_KEYS_ONLY], &out->keys_only, err, errcap) != 0 ||
        flag(&p[P_COUNT_ONLY], &out->count_only, err, errcap) != 0)
        return -1;
    if (out->keys_only && out->count_only) {
        snprintf(err, errcap, "give keys_only or count_only, not both");
        return -1;
    }
    out->limit = out->count_only ? HTTP_COUNT_MAX : HTTP_LIST_DEFAULT;
    if (p[P_LIMIT].seen &&
        number(&p[P_LIMIT], out->count_only ? HTTP_COUNT_MAX : HTTP_LIST_MAX, &out->limit, err,
               errcap) != 0)
        return -1;
    if (p[P_AFTER].seen) {
        out->after = p[P_AFTER].val;
        out->alen = p[P_AFTER].len;
    }
    if (http__parse_level(q, len, &out->level) != 0) {
        snprintf(err, errcap, "unknown read level: use level=linearizable, weak or none");
        return -1;
    }
    if (http__parse_block(q, len, &out->block, err, errcap) != 0)
        return -1;
    if (out->block.on && !out->range.is_prefix) {
        snprintf(err, errcap, "a blocking listing (index=) takes prefix=, not start=/end=");
        return -1;
    }
    return 0;
}
