/* JSON of key answers: a key or value as a string when it is valid UTF-8,
 * else as base64 under "<name>_b64"; the ?meta object of a key. */
#include "http/parse.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"

size_t http__b64_encode(char *dst, const void *src, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = src;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t g = (uint32_t)p[i] << 16;
        if (i + 1 < len)
            g |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < len)
            g |= p[i + 2];
        dst[o++] = tab[g >> 18 & 63];
        dst[o++] = tab[g >> 12 & 63];
        dst[o++] = i + 1 < len ? tab[g >> 6 & 63] : '=';
        dst[o++] = i + 2 < len ? tab[g & 63] : '=';
    }
    return o;
}

int http_json_set_bytes(json_t *obj, const char *name, const void *bytes, size_t len)
{
    json_t *v;
    char field[64];
    if (http__utf8_valid(bytes, len)) {
        /* jansson takes NUL inside a string and writes it as \u0000 */
        v = json_stringn(len ? bytes : "", len);
        snprintf(field, sizeof field, "%s", name);
    } else {
        char *b = craft_malloc(HTTP__B64_MAX(len) + 1);
        if (b == NULL)
            return CRAFT_ENOMEM;
        size_t n = http__b64_encode(b, bytes, len);
        v = json_stringn(b, n);
        craft_free(b);
        snprintf(field, sizeof field, "%s_b64", name);
    }
    if (v == NULL || json_object_set_new(obj, field, v) != 0)
        return CRAFT_ENOMEM; /* json_object_set_new released v */
    return 0;
}

static int set_index(json_t *obj, const char *name, uint64_t v)
{
    /* json_int_t is long long: indexes past 2^63 - 1 do not occur (a Raft
     * index grows by one per entry) */
    return json_object_set_new(obj, name, json_integer((json_int_t)v)) == 0 ? 0 : CRAFT_ENOMEM;
}

json_t *http_json_meta(const struct http_key_meta *m)
{
    json_t *o = json_object();
    char lease[24];
    snprintf(lease, sizeof lease, "%" PRIu64, m->lease);
    if (o == NULL || http_json_set_bytes(o, "key", m->key, m->klen) != 0 ||
        http_json_set_bytes(o, "value", m->val, m->vlen) != 0 ||
        set_index(o, "create_index", m->create_index) != 0 ||
        set_index(o, "mod_index", m->mod_index) != 0 ||
        set_index(o, "version", m->version) != 0 ||
        json_object_set_new(o, "lease", json_string(lease)) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}
