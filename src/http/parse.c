/* Pure request parsing: percent-decoding, the read level of a query string,
 * and the JSON bodies of POST /key and POST /join (jansson, strict). */
#include "http/parse.h"

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
 * percent-decoded. The last level= wins, as the last duplicate key does. */
int http__parse_level(const char *q, size_t len, int *level)
{
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && q[end] != '&')
            end++;
        const char *eq = memchr(q + i, '=', end - i);
        size_t nlen = eq ? (size_t)(eq - (q + i)) : end - i;
        char name[16], val[32];
        if (nlen <= sizeof name) {
            ssize_t dn = http__pct_decode(q + i, nlen, name);
            if (dn == 5 && memcmp(name, "level", 5) == 0) {
                size_t vlen = eq ? (size_t)(q + end - (eq + 1)) : 0;
                if (vlen > sizeof val)
                    return -1;
                ssize_t dv = http__pct_decode(eq ? eq + 1 : "", vlen, val);
                if (dv < 0 || level_from_name(val, (size_t)dv, level) != 0)
                    return -1;
            }
        }
        i = end + 1;
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
