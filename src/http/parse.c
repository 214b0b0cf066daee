/* Pure request parsing: percent-decoding, query parameters (read level,
 * flags, numbers), entity tags and the preconditions of writes, and the
 * JSON bodies of POST /key and POST /join (jansson, strict). */
#include "http/parse.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/alloc.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

ssize_t http__pct_decode(const char *src, size_t len, char *dst)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] != '%') {
            dst[o++] = src[i];
            continue;
        }
        if (len - i < 3)
            return -1;
        int hi = hexval(src[i + 1]), lo = hexval(src[i + 2]);
        if (hi < 0 || lo < 0)
            return -1;
        dst[o++] = (char)(hi << 4 | lo);
        i += 2;
    }
    return (ssize_t)o;
}

static int level_from_name(const char *v, size_t len, int *level)
{
    static const struct {
        const char *name;
        int level;
    } names[] = {
        {"linearizable", HTTP_READ_LINEARIZABLE},
        {"weak", HTTP_READ_WEAK},
        {"none", HTTP_READ_NONE},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strlen(names[i].name) == len && strncasecmp(names[i].name, v, len) == 0) {
            *level = names[i].level;
            return 0;
        }
    }
    return -1;
}

/* Query parameters are name[=value] separated by '&'; both halves are
 * percent-decoded. The last one of a name wins, as the last duplicate key
 * does. */
int http__query_param(const char *q, size_t len, const char *name, char *val, size_t cap,
                      size_t *vlen)
{
    size_t want = strlen(name);
    int found = 0;
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && q[end] != '&')
            end++;
        const char *eq = memchr(q + i, '=', end - i);
        size_t nlen = eq ? (size_t)(eq - (q + i)) : end - i;
        char nb[64];
        if (nlen <= sizeof nb) {
            ssize_t dn = http__pct_decode(q + i, nlen, nb);
            if (dn >= 0 && (size_t)dn == want && memcmp(nb, name, want) == 0) {
                size_t enc = eq ? (size_t)(q + end - (eq + 1)) : 0;
                if (enc > cap)
                    return -1;
                ssize_t dv = http__pct_decode(eq ? eq + 1 : "", enc, val);
                if (dv < 0)
                    return -1;
                *vlen = (size_t)dv;
                found = 1;
            }
        }
        i = end + 1;
    }
    return found;
}

int http__parse_level(const char *q, size_t len, int *level)
{
    char val[32];
    size_t vlen;
    int rv = http__query_param(q, len, "level", val, sizeof val, &vlen);
    if (rv <= 0)
        return rv;
    return level_from_name(val, vlen, level);
}

int http__query_flag(const char *q, size_t len, const char *name, bool *on)
{
    char val[8];
    size_t vlen;
    int rv = http__query_param(q, len, name, val, sizeof val, &vlen);
    *on = false;
    if (rv < 0)
        return -1;
    if (rv == 0 || (vlen == 1 && val[0] == '0') ||
        (vlen == 5 && strncasecmp(val, "false", 5) == 0))
        return 0;
    if (vlen == 0 || (vlen == 1 && val[0] == '1') ||
        (vlen == 4 && strncasecmp(val, "true", 4) == 0)) {
        *on = true;
        return 0;
    }
    return -1;
}

int http__parse_u64(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20 || (s[0] == '0' && len > 1))
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static bool ows(char c)
{
    return c == ' ' || c == '\t';
}

/* One entity tag at v[*i..len): W/ (when weak_ok) then "<n>". */
static int parse_one_etag(const char *v, size_t len, size_t *i, bool weak_ok, uint64_t *tag,
                          char *err, size_t errcap)
{
    size_t p = *i;
    if (len - p >= 2 && v[p] == 'W' && v[p + 1] == '/') {
        if (!weak_ok) {
            snprintf(err, errcap, "If-Match compares strongly: a weak entity tag (W/...) "
                     "never matches; send \"<mod_index>\"");
            return -1;
        }
        p += 2;
    }
    if (p >= len || v[p] != '"')
        goto bad;
    const char *close = memchr(v + p + 1, '"', len - p - 1);
    if (close == NULL || http__parse_u64(v + p + 1, (size_t)(close - (v + p + 1)), tag) != 0)
        goto bad;
    *i = (size_t)(close - v) + 1;
    return 0;
bad:
    snprintf(err, errcap, "malformed entity tag: craftd's ETags are \"<mod_index>\", a "
             "decimal number in double quotes, or *");
    return -1;
}

int http__parse_etags(const char *v, size_t len, bool weak_ok, struct http__etags *out,
                      char *err, size_t errcap)
{
    size_t i = 0;
    while (i < len && ows(v[i]))
        i++;
    while (len > i && ows(v[len - 1]))
        len--;
    if (i == len) {
        snprintf(err, errcap, "empty entity tag list: use \"<mod_index>\" or *");
        return -1;
    }
    if (len - i == 1 && v[i] == '*') {
        if (out->n > 0)
            goto mixed;
        out->any = true;
        return 0;
    }
    if (out->any)
        goto mixed;
    for (;;) {
        uint64_t tag;
        if (parse_one_etag(v, len, &i, weak_ok, &tag, err, errcap) != 0)
            return -1;
        if (out->n == HTTP_INM_MAX) {
            snprintf(err, errcap, "more than %d entity tags", HTTP_INM_MAX);
            return -1;
        }
        out->tag[out->n++] = tag;
        while (i < len && ows(v[i]))
            i++;
        if (i == len)
            return 0;
        if (v[i] != ',') {
            snprintf(err, errcap, "entity tags are separated by commas");
            return -1;
        }
        i++;
        while (i < len && ows(v[i]))
            i++;
    }
mixed:
    snprintf(err, errcap, "* cannot be combined with entity tags");
    return -1;
}

int http__parse_precond(const char *im, size_t imlen, const char *inm, size_t inmlen,
                        struct http_precond *out, char *err, size_t errcap)
{
    *out = (struct http_precond){.kind = HTTP_PRE_NONE};
    if (im != NULL && inm != NULL) {
        snprintf(err, errcap, "a write takes one precondition: If-Match or If-None-Match, "
                 "not both");
        return -1;
    }
    struct http__etags t = {0};
    if (im != NULL) {
        if (http__parse_etags(im, imlen, false, &t, err, errcap) != 0)
            return -1;
        if (t.n > 1) {
            snprintf(err, errcap, "If-Match on a write takes one entity tag (\"<mod_index>\") "
                     "or *");
            return -1;
        }
        out->kind = t.any ? HTTP_PRE_EXISTS : HTTP_PRE_MOD_INDEX;
        out->mod_index = t.any ? 0 : t.tag[0];
        return 0;
    }
    if (inm != NULL) {
        size_t i = 0;
        while (i < inmlen && ows(inm[i]))
            i++;
        while (inmlen > i && ows(inm[inmlen - 1]))
            inmlen--;
        if (inmlen - i != 1 || inm[i] != '*') {
            snprintf(err, errcap, "If-None-Match on a write takes only * (the key must not "
                     "exist); use If-Match: \"<mod_index>\" to compare a revision");
            return -1;
        }
        out->kind = HTTP_PRE_ABSENT;
    }
    return 0;
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* Decodes a whole body: any JSON value, NUL allowed in strings, nothing but
 * whitespace after it; duplicate object keys: the last wins. */
static json_t *load(const char *body, size_t len, char *err, size_t errcap)
{
    if (len == 0) {
        snprintf(err, errcap, "empty body: expected a JSON object");
        return NULL;
    }
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (root == NULL)
        snprintf(err, errcap, "invalid JSON at line %d, column %d: %s", je.line, je.column,
                 je.text);
    return root;
}

int http__parse_kv_body(const char *body, size_t len, size_t max_key, size_t max_value,
                        struct http__kvbody *out, char *err, size_t errcap)
{
    memset(out, 0, sizeof *out);
    json_t *root = load(body, len, err, errcap);
    if (root == NULL)
        return -1;
    if (json_is_null(root)) {
        json_decref(root);
        return 0;
    }
    if (!json_is_object(root)) {
        snprintf(err, errcap, "expected a JSON object of strings, got %s", json_kind(root));
        goto fail;
    }
    size_t n = json_object_size(root);
    if (n == 0) {
        json_decref(root);
        return 0;
    }
    out->pairs = craft_calloc(n, sizeof *out->pairs);
    if (out->pairs == NULL) {
        snprintf(err, errcap, "out of memory");
        goto fail;
    }
    const char *key;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach(root, key, klen, v)
    {
        if (!json_is_string(v)) {
            snprintf(err, errcap, "value of key \"%.*s\" is %s, expected a string",
                     (int)(klen > 64 ? 64 : klen), key, json_kind(v));
            goto fail;
        }
        if (klen == 0) {
            snprintf(err, errcap, "empty key");
            goto fail;
        }
        if (klen > max_key) {
            snprintf(err, errcap, "key too long: %zu bytes, the limit is %zu", klen, max_key);
            goto fail;
        }
        size_t vlen = json_string_length(v);
        if (vlen > max_value) {
            snprintf(err, errcap, "value too long: %zu bytes, the limit is %zu", vlen,
                     max_value);
            goto fail;
        }
        out->pairs[out->n++] = (struct http_kv){key, klen, json_string_value(v), vlen};
    }
    out->root = root;
    return 0;
fail:
    craft_free(out->pairs);
    json_decref(root);
    memset(out, 0, sizeof *out);
    return -1;
}

void http__kvbody_free(struct http__kvbody *b)
{
    craft_free(b->pairs);
    json_decref(b->root); /* NULL-safe */
    memset(b, 0, sizeof *b);
}

/* The string field name of obj: 0 and *out set (NULL if absent and
 * optional), -1 with a message otherwise. */
static int join_field(json_t *obj, const char *name, bool required, const char **out, char *err,
                      size_t errcap)
{
    json_t *v = json_object_get(obj, name);
    *out = NULL;
    if (v == NULL) {
        if (!required)
            return 0;
        snprintf(err, errcap, "missing field \"%s\"", name);
        return -1;
    }
    if (!json_is_string(v)) {
        snprintf(err, errcap, "field \"%s\" is %s, expected a string", name, json_kind(v));
        return -1;
    }
    size_t len = json_string_length(v);
    if (len == 0 || memchr(json_string_value(v), '\0', len) != NULL) {
        snprintf(err, errcap, "field \"%s\" must be a non-empty string without NUL", name);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

static int parse_member_body(const char *body, size_t len, bool need_addr,
                             struct http__joinbody *out, char *err, size_t errcap)
{
    memset(out, 0, sizeof *out);
    json_t *root = load(body, len, err, errcap);
    if (root == NULL)
        return -1;
    if (!json_is_object(root)) {
        snprintf(err, errcap, "expected a JSON object {\"id\":...%s}, got %s",
                 need_addr ? ",\"addr\":..." : "", json_kind(root));
        goto fail;
    }
    if (join_field(root, "id", true, &out->id, err, errcap) != 0 ||
        join_field(root, "addr", need_addr, &out->addr, err, errcap) != 0 ||
        join_field(root, "http_addr", false, &out->http_addr, err, errcap) != 0 ||
        join_field(root, "incarnation", false, &out->ext.incarnation, err, errcap) != 0 ||
        join_field(root, "raft_id", false, &out->ext.raft_id, err, errcap) != 0 ||
        join_field(root, "cluster_id", false, &out->ext.cluster_id, err, errcap) != 0)
        goto fail;
    out->root = root;
    return 0;
fail:
    json_decref(root);
    memset(out, 0, sizeof *out);
    return -1;
}

int http__parse_join_body(const char *body, size_t len, struct http__joinbody *out, char *err,
                          size_t errcap)
{
    return parse_member_body(body, len, true, out, err, errcap);
}

int http__parse_id_body(const char *body, size_t len, struct http__joinbody *out, char *err,
                        size_t errcap)
{
    return parse_member_body(body, len, false, out, err, errcap);
}

void http__joinbody_free(struct http__joinbody *b)
{
    json_decref(b->root);
    memset(b, 0, sizeof *b);
}

int http__parse_wait(const char *s, size_t len, uint64_t *ms)
{
    size_t digits = 0;
    while (digits < len && s[digits] >= '0' && s[digits] <= '9')
        digits++;
    uint64_t n;
    if (digits == 0 || digits > 9 || http__parse_u64(s, digits, &n) != 0)
        return -1;
    const char *u = s + digits;
    size_t ulen = len - digits;
    uint64_t scale;
    if (ulen == 0 || (ulen == 1 && u[0] == 's'))
        scale = 1000;
    else if (ulen == 2 && memcmp(u, "ms", 2) == 0)
        scale = 1;
    else if (ulen == 1 && u[0] == 'm')
        scale = 60000;
    else
        return -1;
    if (n * scale > HTTP_WAIT_MAX_MS)
        return -1;
    *ms = n * scale;
    return 0;
}

int http__parse_block(const char *q, size_t len, struct http_block *b, char *err,
                      size_t errcap)
{
    char val[32];
    size_t vlen;
    *b = (struct http_block){.wait_ms = HTTP_WAIT_DEFAULT_MS};
    int rv = http__query_param(q, len, "index", val, sizeof val, &vlen);
    if (rv < 0 || (rv == 1 && http__parse_u64(val, vlen, &b->index) != 0)) {
        snprintf(err, errcap, "index takes a log index: a decimal number");
        return -1;
    }
    b->on = rv == 1;
    rv = http__query_param(q, len, "wait", val, sizeof val, &vlen);
    if (rv < 0 || (rv == 1 && http__parse_wait(val, vlen, &b->wait_ms) != 0)) {
        snprintf(err, errcap, "wait takes a duration of at most 600s: e.g. 30s, 1500ms, 5m "
                 "(a bare number is seconds)");
        return -1;
    }
    if (rv == 1 && !b->on) {
        snprintf(err, errcap, "wait needs index=: the index to wait past");
        return -1;
    }
    return 0;
}
