/* The JSON body of POST /txn (docs/http-api.md, "POST /txn"), parsed into
 * the plain structs of kv/kv.h:
 *   {"compare":[{"key":k, <target>, "cmp":"="|"!="|"<"|">"}...],
 *    "success":[op...], "failure":[op...]}
 * target: exactly one of "mod_index", "version", "create_index" (integers
 * >= 0), "value" (or "value_b64"), "exists" (a boolean); an op is
 * {"op":"put"|"delete"|"delete_prefix"|"get","key":k} with "value" (or
 * "value_b64") and an optional "lease" for a put. "key_b64" may stand for
 * "key". Unknown fields are refused (a typo must not change what runs). */
#include "http/kvreq.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"

struct ctx {
    size_t max_key, max_value;
    uint8_t *arena; /* base64 output goes here, at used */
    size_t used;
    char *err;
    size_t errcap;
    const char *where; /* "compare 3", "success op 2": for messages */
};

__attribute__((format(printf, 2, 3))) static int fail(struct ctx *c, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errcap, "%s%s%s", c->where ? c->where : "", c->where ? ": " : "", msg);
    return -1;
}

/* Bytes given as name (a JSON string) or name_b64 (base64 in a string);
 * exactly one of them must be present unless optional. 0 and *p, *len
 * (NULL when absent), or -1. */
static int bytes_field(struct ctx *c, json_t *obj, const char *name, bool optional,
                       const uint8_t **p, size_t *len)
{
    char b64name[32];
    snprintf(b64name, sizeof b64name, "%s_b64", name);
    json_t *plain = json_object_get(obj, name), *enc = json_object_get(obj, b64name);
    *p = NULL;
    *len = 0;
    if (plain && enc)
        return fail(c, "give \"%s\" or \"%s\", not both", name, b64name);
    json_t *v = plain ? plain : enc;
    if (v == NULL)
        return optional ? 0 : fail(c, "missing \"%s\" (or \"%s\")", name, b64name);
    if (!json_is_string(v))
        return fail(c, "\"%s\" must be a string", plain ? name : b64name);
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (plain) {
        *p = (const uint8_t *)s;
        *len = n;
        return 0;
    }
    long d = http__b64_decode(c->arena + c->used, s, n);
    if (d < 0)
        return fail(c, "\"%s\" is not valid base64", b64name);
    *p = c->arena + c->used;
    *len = (size_t)d;
    c->used += (size_t)d;
    return 0;
}

static int key_field(struct ctx *c, json_t *obj, const uint8_t **key, size_t *klen)
{
    if (bytes_field(c, obj, "key", false, key, klen) != 0)
        return -1;
    if (*klen == 0)
        return fail(c, "empty key");
    if (*klen > c->max_key)
        return fail(c, "key too long: %zu bytes, the limit is %zu", *klen, c->max_key);
    return 0;
}

static int value_field(struct ctx *c, json_t *obj, bool optional, const uint8_t **val,
                       size_t *vlen)
{
    if (bytes_field(c, obj, "value", optional, val, vlen) != 0)
        return -1;
    if (*vlen > c->max_value)
        return fail(c, "value too long: %zu bytes, the limit is %zu", *vlen, c->max_value);
    return 0;
}

/* Refuses any member of obj not in allowed (NULL-terminated). */
static int only_fields(struct ctx *c, json_t *obj, const char *const *allowed)
{
    const char *name;
    json_t *v;
    json_object_foreach(obj, name, v)
    {
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp(*a, name) == 0;
        if (!ok)
            return fail(c, "unknown field \"%.40s\"", name);
    }
    return 0;
}

static int uint_field(struct ctx *c, json_t *v, const char *name, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return fail(c, "\"%s\" must be an integer >= 0", name);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int cmp_op(struct ctx *c, json_t *obj, uint8_t *op)
{
    static const char *const names[] = {"=", "!=", "<", ">"};
    json_t *v = json_object_get(obj, "cmp");
    *op = KV_CMP_EQ;
    if (v == NULL)
        return 0;
    if (json_is_string(v))
        for (uint8_t i = 0; i < 4; i++)
            if (strcmp(json_string_value(v), names[i]) == 0) {
                *op = i;
                return 0;
            }
    return fail(c, "\"cmp\" must be \"=\", \"!=\", \"<\" or \">\"");
}

static int parse_compare(struct ctx *c, json_t *obj, struct kv_compare *k)
{
    static const char *const fields[] = {"key", "key_b64", "cmp", "mod_index", "version",
                                         "create_index", "value", "value_b64", "exists",
                                         NULL};
    static const struct {
        const char *name;
        uint8_t target;
    } nums[] = {{"mod_index", KV_CMP_MOD}, {"version", KV_CMP_VERSION},
                {"create_index", KV_CMP_CREATE}};
    if (!json_is_object(obj))
        return fail(c, "a compare is an object");
    if (only_fields(c, obj, fields) != 0 || key_field(c, obj, &k->key, &k->klen) != 0 ||
        cmp_op(c, obj, &k->op) != 0)
        return -1;
    int targets = 0;
    for (size_t i = 0; i < 3; i++) {
        json_t *v = json_object_get(obj, nums[i].name);
        if (v == NULL)
            continue;
        targets++;
        k->target = nums[i].target;
        if (uint_field(c, v, nums[i].name, &k->num) != 0)
            return -1;
    }
    json_t *ex = json_object_get(obj, "exists");
    if (ex != NULL) {
        targets++;
        k->target = KV_CMP_EXISTS;
        if (!json_is_boolean(ex))
            return fail(c, "\"exists\" must be true or false");
        k->num = json_is_true(ex);
    }
    if (json_object_get(obj, "value") || json_object_get(obj, "value_b64")) {
        targets++;
        k->target = KV_CMP_VALUE;
        if (value_field(c, obj, false, &k->val, &k->vlen) != 0)
            return -1;
    }
    if (targets != 1)
        return fail(c, "a compare names exactly one of \"mod_index\", \"version\", "
                       "\"create_index\", \"value\" and \"exists\"");
    if ((k->target == KV_CMP_VALUE || k->target == KV_CMP_EXISTS) && k->op > KV_CMP_NE)
        return fail(c, "\"%s\" compares with \"=\" or \"!=\" only",
                    k->target == KV_CMP_VALUE ? "value" : "exists");
    return 0;
}

static int parse_op(struct ctx *c, json_t *obj, struct kv_txn_op *o)
{
    static const char *const put_fields[] = {"op", "key", "key_b64", "value", "value_b64",
                                             "lease", NULL};
    static const char *const key_fields[] = {"op", "key", "key_b64", NULL};
    static const struct {
        const char *name;
        uint8_t type;
    } types[] = {{"put", KV_TOP_PUT}, {"delete", KV_TOP_DEL},
                 {"delete_prefix", KV_TOP_DEL_PREFIX}, {"get", KV_TOP_GET}};
    if (!json_is_object(obj))
        return fail(c, "an op is an object");
    json_t *t = json_object_get(obj, "op");
    o->type = 0;
    for (size_t i = 0; json_is_string(t) && i < 4; i++)
        if (strcmp(json_string_value(t), types[i].name) == 0)
            o->type = types[i].type;
    if (o->type == 0)
        return fail(c, "\"op\" must be \"put\", \"delete\", \"delete_prefix\" or \"get\"");
    if (only_fields(c, obj, o->type == KV_TOP_PUT ? put_fields : key_fields) != 0 ||
        key_field(c, obj, &o->key, &o->klen) != 0)
        return -1;
    if (o->type != KV_TOP_PUT)
        return 0;
    if (value_field(c, obj, false, &o->val, &o->vlen) != 0)
        return -1;
    json_t *lease = json_object_get(obj, "lease");
    o->lease = 0;
    if (lease == NULL || json_is_integer(lease))
        return lease ? uint_field(c, lease, "lease", &o->lease) : 0;
    const char *s = json_is_string(lease) ? json_string_value(lease) : "";
    char *end;
    errno = 0;
    unsigned long long id = strtoull(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno == ERANGE)
        return fail(c, "\"lease\" must be a lease id in decimal (\"0\" for none)");
    o->lease = id;
    return 0;
}

/* An optional array of at most KV_TXN_MAX items, each parsed by fn. */
static int parse_list(struct ctx *c, json_t *root, const char *name, void *items, size_t size,
                      size_t *n, int (*fn)(struct ctx *, json_t *, void *))
{
    json_t *a = json_object_get(root, name);
    *n = 0;
    if (a == NULL)
        return 0;
    if (!json_is_array(a))
        return fail(c, "\"%s\" must be an array", name);
    if (json_array_size(a) > KV_TXN_MAX)
        return fail(c, "\"%s\" holds %zu items, at most %d are allowed", name,
                    json_array_size(a), KV_TXN_MAX);
    char where[48];
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        snprintf(where, sizeof where, "%s[%zu]", name, i);
        c->where = where;
        if (fn(c, v, (char *)items + i * size) != 0)
            return -1;
        c->where = NULL;
    }
    *n = json_array_size(a);
    return 0;
}

static int compare_fn(struct ctx *c, json_t *v, void *item)
{
    return parse_compare(c, v, item);
}

static int op_fn(struct ctx *c, json_t *v, void *item)
{
    return parse_op(c, v, item);
}

int http__parse_txn_body(const char *body, size_t len, size_t max_key, size_t max_value,
                         struct http__txnbody *out, char *err, size_t errcap)
{
    static const char *const fields[] = {"compare", "success", "failure", NULL};
    memset(out, 0, sizeof *out);
    struct ctx c = {.max_key = max_key, .max_value = max_value, .err = err, .errcap = errcap};
    if (len == 0) {
        snprintf(err, errcap, "empty body: expected a JSON object");
        return -1;
    }
    json_error_t je;
    out->root = json_loadb(body, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (out->root == NULL) {
        snprintf(err, errcap, "invalid JSON at line %d, column %d: %s", je.line, je.column,
                 je.text);
        return -1;
    }
    /* decoded base64 is shorter than the body it came in */
    out->arena = craft_malloc(len);
    c.arena = out->arena;
    struct kv_txn *t = &out->txn;
    if (out->arena == NULL) {
        snprintf(err, errcap, "out of memory");
    } else if (!json_is_object(out->root)) {
        fail(&c, "expected a JSON object {\"compare\":[...],\"success\":[...],"
                 "\"failure\":[...]}");
    } else if (only_fields(&c, out->root, fields) == 0 &&
               parse_list(&c, out->root, "compare", out->cmp, sizeof out->cmp[0], &t->n_cmp,
                          compare_fn) == 0 &&
               parse_list(&c, out->root, "success", out->success, sizeof out->success[0],
                          &t->n_success, op_fn) == 0 &&
               parse_list(&c, out->root, "failure", out->failure, sizeof out->failure[0],
                          &t->n_failure, op_fn) == 0) {
        t->cmp = out->cmp;
        t->success = out->success;
        t->failure = out->failure;
        return 0;
    }
    http__txnbody_free(out);
    return -1;
}

void http__txnbody_free(struct http__txnbody *b)
{
    json_decref(b->root); /* NULL-safe */
    craft_free(b->arena);
    b->root = NULL;
    b->arena = NULL;
    memset(&b->txn, 0, sizeof b->txn);
}
