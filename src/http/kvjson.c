/* JSON text of the answers to transactions, listings and prefix deletes
 * (docs/http-api.md): a growable buffer and the encoders of struct
 * kv_meta / kv_result (plain structs of kv/kv.h; nothing here calls kv).
 * Bytes that are valid UTF-8 go as JSON strings, others as base64 under
 * the field's name + "_b64". Indexes are JSON numbers (exact in a double
 * up to 2^53). */
#include "http/kvreq.h"
#include "http/parse.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"

void http_jbuf_init(struct http_jbuf *j)
{
    *j = (struct http_jbuf){0};
}

void http_jbuf_free(struct http_jbuf *j)
{
    craft_free(j->data);
    *j = (struct http_jbuf){0};
}

/* Room for n more bytes at data + len, or NULL (failed is then set). */
static char *room(struct http_jbuf *j, size_t n)
{
    if (j->failed)
        return NULL;
    if (j->cap - j->len < n) {
        size_t cap = j->cap ? j->cap : 256;
        while (cap - j->len < n) {
            if (cap > SIZE_MAX / 2) {
                j->failed = true;
                return NULL;
            }
            cap *= 2;
        }
        char *d = craft_realloc(j->data, cap);
        if (d == NULL) {
            j->failed = true;
            return NULL;
        }
        j->data = d;
        j->cap = cap;
    }
    return j->data + j->len;
}

static void raw(struct http_jbuf *j, const char *s, size_t n)
{
    char *o = room(j, n);
    if (o != NULL) {
        memcpy(o, s, n);
        j->len += n;
    }
}

static void lit(struct http_jbuf *j, const char *s)
{
    raw(j, s, strlen(s));
}

static void u64(struct http_jbuf *j, uint64_t v)
{
    char b[24];
    int n = snprintf(b, sizeof b, "%" PRIu64, v);
    raw(j, b, (size_t)n);
}

/* ,"name":"<bytes>" or ,"name_b64":"<base64>" (no comma when first). */
static void bytes_field(struct http_jbuf *j, bool first, const char *name, const uint8_t *p,
                        size_t n)
{
    bool text = craft_utf8_valid((const char *)p, n);
    lit(j, first ? "\"" : ",\"");
    lit(j, name);
    lit(j, text ? "\":" : "_b64\":\"");
    char *o = room(j, text ? CRAFT_JSON_QUOTED_MAX(n) : HTTP__B64_MAX(n) + 1);
    if (o == NULL)
        return;
    if (text) {
        j->len += craft_json_quote(o, (const char *)p, n);
    } else {
        j->len += http__b64_encode(o, p, n);
        j->data[j->len++] = '"';
    }
}

static void num_field(struct http_jbuf *j, const char *name, uint64_t v)
{
    raw(j, ",\"", 2);
    lit(j, name);
    raw(j, "\":", 2);
    u64(j, v);
}

void http_jbuf_meta(struct http_jbuf *j, const struct kv_meta *m)
{
    raw(j, "{", 1);
    bytes_field(j, true, "key", m->key, m->klen);
    bytes_field(j, false, "value", m->val, m->vlen);
    num_field(j, "create_index", m->create_index);
    num_field(j, "mod_index", m->mod_index);
    num_field(j, "version", m->version);
    lit(j, ",\"lease\":\"");
    u64(j, m->lease);
    raw(j, "\"}", 2);
}

static void op_result(struct http_jbuf *j, const struct kv_op_result *o)
{
    switch (o->type) {
    case KV_TOP_PUT:
        raw(j, "{}", 2);
        break;
    case KV_TOP_DEL:
    case KV_TOP_DEL_PREFIX:
        lit(j, "{\"deleted\":");
        u64(j, o->deleted);
        raw(j, "}", 1);
        break;
    default:
        if (o->found)
            http_jbuf_meta(j, &o->meta);
        else
            lit(j, "{\"found\":false}");
    }
}

void http_jbuf_txn(struct http_jbuf *j, const struct kv_result *r)
{
    lit(j, r->succeeded ? "{\"succeeded\":true" : "{\"succeeded\":false");
    num_field(j, "index", r->index);
    lit(j, ",\"results\":[");
    for (size_t i = 0; i < r->n_ops; i++) {
        if (i > 0)
            raw(j, ",", 1);
        op_result(j, &r->ops[i]);
    }
    raw(j, "]}", 2);
}

void http_jbuf_deleted(struct http_jbuf *j, uint64_t deleted, uint64_t index)
{
    lit(j, "{\"deleted\":");
    u64(j, deleted);
    num_field(j, "index", index);
    raw(j, "}", 1);
}

void http_jbuf_list_begin(struct http_jbuf *j, uint64_t index)
{
    lit(j, "{\"index\":");
    u64(j, index);
    lit(j, ",\"keys\":[");
}

void http_jbuf_list_key(struct http_jbuf *j, const struct kv_meta *m, bool keys_only)
{
    if (j->len > 0 && j->data[j->len - 1] == '}')
        raw(j, ",", 1);
    raw(j, "{", 1);
    bytes_field(j, true, "key", m->key, m->klen);
    if (!keys_only)
        bytes_field(j, false, "value", m->val, m->vlen);
    num_field(j, "mod_index", m->mod_index);
    raw(j, "}", 1);
}

void http_jbuf_list_end(struct http_jbuf *j, bool more, const struct kv_meta *last)
{
    lit(j, more ? "],\"more\":true" : "],\"more\":false");
    if (last != NULL && last->key != NULL)
        bytes_field(j, false, "next", last->key, last->klen);
    raw(j, "}", 1);
}

void http_jbuf_count(struct http_jbuf *j, uint64_t index, size_t count, bool more,
                     const struct kv_meta *last)
{
    lit(j, "{\"index\":");
    u64(j, index);
    num_field(j, "count", count);
    if (more) {
        lit(j, ",\"more\":true");
        if (last != NULL && last->key != NULL)
            bytes_field(j, false, "next", last->key, last->klen);
    }
    raw(j, "}", 1);
}

/* ---- leases ---- */

/* A separator before the next element of an array being written. */
static void next_elem(struct http_jbuf *j)
{
    if (j->len > 0 && j->data[j->len - 1] != '[')
        raw(j, ",", 1);
}

void http_jbuf_lease(struct http_jbuf *j, uint64_t id, uint64_t ttl_s)
{
    lit(j, "{\"id\":\"");
    u64(j, id);
    raw(j, "\"", 1);
    num_field(j, "ttl", ttl_s);
    raw(j, "}", 1);
}

void http_jbuf_lease_info_begin(struct http_jbuf *j, uint64_t id, uint64_t ttl_s,
                                uint64_t remaining_ms)
{
    lit(j, "{\"id\":\"");
    u64(j, id);
    raw(j, "\"", 1);
    num_field(j, "ttl", ttl_s);
    num_field(j, "remaining_ms", remaining_ms);
    lit(j, ",\"keys\":[");
}

void http_jbuf_lease_key(struct http_jbuf *j, const uint8_t *key, size_t klen)
{
    next_elem(j);
    if (craft_utf8_valid((const char *)key, klen)) {
        char *o = room(j, CRAFT_JSON_QUOTED_MAX(klen));
        if (o != NULL)
            j->len += craft_json_quote(o, (const char *)key, klen);
        return;
    }
    raw(j, "{", 1);
    bytes_field(j, true, "key", key, klen); /* not UTF-8: key_b64 */
    raw(j, "}", 1);
}

void http_jbuf_lease_info_end(struct http_jbuf *j, bool more, const uint8_t *last,
                              size_t llen)
{
    lit(j, more ? "],\"more\":true" : "],\"more\":false");
    if (last != NULL)
        bytes_field(j, false, "next", last, llen);
    raw(j, "}", 1);
}

void http_jbuf_leases_begin(struct http_jbuf *j, uint64_t index)
{
    lit(j, "{\"index\":");
    u64(j, index);
    lit(j, ",\"leases\":[");
}

void http_jbuf_leases_item(struct http_jbuf *j, uint64_t id, uint64_t ttl_s)
{
    next_elem(j);
    http_jbuf_lease(j, id, ttl_s);
}

void http_jbuf_leases_end(struct http_jbuf *j, bool more)
{
    lit(j, more ? "],\"more\":true}" : "],\"more\":false}");
}

/* --- Server-Sent Events of GET /watch --- */

static void sse_head(struct http_jbuf *j, uint64_t id, const char *event)
{
    lit(j, "id: ");
    u64(j, id);
    lit(j, "\nevent: ");
    lit(j, event);
    lit(j, "\ndata: ");
}

void http_jbuf_sse_put(struct http_jbuf *j, const struct kv_meta *m)
{
    sse_head(j, m->mod_index, "put");
    raw(j, "{", 1);
    bytes_field(j, true, "key", m->key, m->klen);
    bytes_field(j, false, "value", m->val, m->vlen);
    num_field(j, "create_index", m->create_index);
    num_field(j, "mod_index", m->mod_index);
    num_field(j, "version", m->version);
    if (m->lease != 0) {
        lit(j, ",\"lease\":\"");
        u64(j, m->lease);
        raw(j, "\"", 1);
    }
    raw(j, "}\n\n", 3);
}

void http_jbuf_sse_delete(struct http_jbuf *j, const uint8_t *key, size_t klen, uint64_t index)
{
    sse_head(j, index, "delete");
    raw(j, "{", 1);
    bytes_field(j, true, "key", key, klen);
    num_field(j, "mod_index", index);
    raw(j, "}\n\n", 3);
}

void http_jbuf_sse_progress(struct http_jbuf *j, uint64_t index)
{
    lit(j, "event: progress\ndata: {\"index\":");
    u64(j, index);
    raw(j, "}\n\n", 3);
}

void http_jbuf_sse_error(struct http_jbuf *j, const char *error, uint64_t index)
{
    size_t n = strlen(error);
    lit(j, "event: error\ndata: {\"error\":");
    char *o = room(j, CRAFT_JSON_QUOTED_MAX(n));
    if (o != NULL)
        j->len += craft_json_quote(o, error, n);
    num_field(j, "index", index);
    raw(j, "}\n\n", 3);
}
