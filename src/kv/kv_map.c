/* The map's API over the tree (kv_tree.c): creation, point lookup with
 * revisions, direct put/delete, iteration in key order, ranges, paged
 * listing and counting. */
#include "kv/kv_internal.h"

#include <string.h>

#include "common/alloc.h"

struct kv *kv_new(uint64_t hash_seed)
{
    struct kv *kv = craft_calloc(1, sizeof *kv);
    if (kv == NULL)
        return NULL;
    if (kv__hash_init(kv, hash_seed) != 0) {
        craft_free(kv);
        return NULL;
    }
    if (kv__tree_init(kv) != 0) {
        kv__hash_free(kv);
        craft_free(kv);
        return NULL;
    }
    kv->res.pub.failed_cmp = -1;
    kv->res.pub.succeeded = true;
    return kv;
}

void kv_free(struct kv *kv)
{
    if (kv == NULL)
        return;
    kv__tree_free(kv);
    kv__hash_free(kv);
    craft_free(kv->res.ops);
    craft_free(kv->res.buf);
    kv__members_free(kv);
    kv__leases_free(kv);
    craft_free(kv);
}

size_t kv_count(const struct kv *kv)
{
    return kv->count;
}

uint64_t kv_bytes(const struct kv *kv)
{
    return kv->bytes;
}

uint64_t kv_index(const struct kv *kv)
{
    return kv->index;
}

static void to_meta(const struct kv__rec *r, struct kv_meta *m)
{
    m->key = r->key;
    m->klen = r->klen;
    m->val = r->val;
    m->vlen = r->vlen;
    m->create_index = r->create;
    m->mod_index = r->mod;
    m->version = r->version;
    m->lease = r->lease;
}

int kv_get_meta(const struct kv *kv, const void *key, size_t klen,
                struct kv_meta *m)
{
    struct kv__leaf *l;
    uint16_t off;
    if (!kv__hash_find(kv, key, klen, &l, &off)) {
        memset(m, 0, sizeof *m);
        return CRAFT_ENOTFOUND;
    }
    struct kv__rec r;
    kv__rec_decode_at(l, off, &r);
    to_meta(&r, m);
    return 0;
}

int kv_get(const struct kv *kv, const void *key, size_t klen,
           const uint8_t **val, size_t *vlen)
{
    struct kv_meta m;
    int err = kv_get_meta(kv, key, klen, &m);
    if (err)
        return err;
    if (val)
        *val = m.val;
    if (vlen)
        *vlen = m.vlen;
    return 0;
}

void kv__put_rev(struct kv *kv, const void *key, size_t klen, const void *val,
                 size_t vlen, uint64_t lease, uint64_t index,
                 struct kv__blob *blob, bool *created)
{
    struct kv__leaf *l;
    uint16_t off;
    struct kv__path p;
    uint64_t h = kv__hkey(kv, key, klen);
    /* the index slot and the lowest internal node on the way are fetched
     * together (the levels above stay in the cache): the descent, only
     * needed for a key that is new or does not fit in its leaf, finishes
     * after the index is read */
    __builtin_prefetch(&kv->hs[kv__hash_home(kv, h)]);
    unsigned up = kv->height ? kv->height - 1 : 0;
    void *n = kv__descend_part(kv, key, klen, &p, kv->root, 0, up);
    bool found = kv__hash_find_h(kv, h, key, klen, &l, &off);
    uint64_t create = index, version = 1;
    if (found) {
        struct kv__rec r;
        kv__rec_decode_at(l, off, &r);
        create = r.create;
        version = r.version + 1;
    }
    if (created)
        *created = !found;
    if (found && kv__overwrite(kv, l, off, h, key, klen, val, vlen, create,
                               index, version, lease, blob))
        return; /* it fit in its leaf: no need to find its place */
    kv__descend_part(kv, key, klen, &p, n, up, kv->height);
    kv__seek_leaf(&p, key, klen);
    kv__store(kv, &p, h, key, klen, val, vlen, create, index, version, lease,
              blob);
}

int kv_put(struct kv *kv, const void *key, size_t klen, const void *val,
           size_t vlen)
{
    if (klen > UINT32_MAX || vlen > UINT32_MAX)
        return CRAFT_ETOOBIG;
    int err;
    struct kv__blob *blob = kv__blob_for(key, klen, val, vlen, &err);
    err = err ? err : kv__reserve(kv, 1, klen, kv__rec_bound(klen, vlen));
    if (err) {
        craft_free(blob);
        return err;
    }
    struct kv_meta old = {0};
    if (kv->n_leases)
        kv_get_meta(kv, key, klen, &old);
    kv__put_rev(kv, key, klen, val, vlen, 0, kv->index, blob, NULL);
    kv__lease_detach(kv, old.lease, key, klen);
    return 0;
}

int kv_del(struct kv *kv, const void *key, size_t klen)
{
    struct kv__leaf *l;
    uint16_t off;
    if (!kv__hash_find(kv, key, klen, &l, &off))
        return CRAFT_ENOTFOUND;
    struct kv__path p;
    kv__seek(kv, key, klen, &p);
    struct kv__rec rec;
    kv__rec_decode(p.leaf, p.pos, &rec);
    kv__lease_detach(kv, rec.lease, key, klen);
    kv__remove(kv, &p);
    kv__hash_maybe_shrink(kv);
    return 0;
}

/* ---- iteration -------------------------------------------------------------- */

static const struct kv__leaf *first_leaf(const struct kv *kv)
{
    const void *n = kv->root;
    for (unsigned d = 0; d < kv->height; d++)
        n = ((const struct kv__inode *)n)->child[0];
    return n;
}

void kv_iter_init(struct kv_iter *it)
{
    it->leaf = NULL;
    it->pos = 0;
    it->started = false;
}

bool kv_iter_next(const struct kv *kv, struct kv_iter *it, const uint8_t **key,
                  size_t *klen, const uint8_t **val, size_t *vlen)
{
    if (!it->started) {
        it->leaf = first_leaf(kv);
        it->started = true;
    }
    const struct kv__leaf *l = it->leaf;
    while (l != NULL && it->pos >= l->n) {
        l = it->leaf = l->next;
        it->pos = 0;
    }
    if (l == NULL)
        return false;
    struct kv__rec r;
    kv__rec_decode(l, it->pos++, &r);
    *key = r.key;
    *klen = r.klen;
    *val = r.val;
    *vlen = r.vlen;
    return true;
}

int kv_foreach(const struct kv *kv, kv_visit_fn fn, void *ud)
{
    for (const struct kv__leaf *l = first_leaf(kv); l; l = l->next) {
        for (uint32_t i = 0; i < l->n; i++) {
            struct kv__rec r;
            kv__rec_decode(l, i, &r);
            int rc = fn(ud, r.key, r.klen, r.val, r.vlen);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* ---- ranges ------------------------------------------------------------------ */

void kv_range_prefix(struct kv_range *r, const void *prefix, size_t len)
{
    memset(r, 0, sizeof *r);
    r->start = prefix;
    r->slen = len;
    r->is_prefix = true;
}

void kv_range_span(struct kv_range *r, const void *start, size_t slen,
                   const void *end, size_t elen)
{
    memset(r, 0, sizeof *r);
    r->start = start;
    r->slen = slen;
    r->end = end;
    r->elen = elen;
    r->has_end = end != NULL;
}

/* Whether key, >= the range's start, is still inside it. */
static bool before_end(const struct kv_range *r, const uint8_t *key,
                       size_t klen)
{
    if (r->is_prefix)
        return klen >= r->slen &&
               (r->slen == 0 || memcmp(key, r->start, r->slen) == 0);
    return !r->has_end || kv__cmp(key, klen, r->end, r->elen) < 0;
}

/* A cursor at the first key of r after `after`: leaf and slot, leaf NULL at
 * the end of the map. */
struct cursor {
    const struct kv__leaf *leaf;
    uint32_t pos;
};

static void normalize(struct cursor *c)
{
    while (c->leaf && c->pos >= c->leaf->n) {
        c->leaf = c->leaf->next;
        c->pos = 0;
    }
}

static void range_start(const struct kv *kv, const struct kv_range *r,
                        const void *after, size_t alen, struct cursor *c)
{
    struct kv__path p;
    if (after && kv__cmp(after, alen, r->start, r->slen) >= 0) {
        kv__seek(kv, after, alen, &p);
        c->pos = p.pos + p.found;
    } else {
        kv__seek(kv, r->start, r->slen, &p);
        c->pos = p.pos;
    }
    c->leaf = p.leaf;
    normalize(c);
}

int kv_list(const struct kv *kv, const struct kv_range *r, const void *after,
            size_t alen, size_t limit, kv_list_fn fn, void *ud, size_t *n,
            bool *more)
{
    struct cursor c;
    range_start(kv, r, after, alen, &c);
    *n = 0;
    for (; c.leaf; c.pos++, normalize(&c)) {
        struct kv__rec rec;
        kv__rec_decode(c.leaf, c.pos, &rec);
        if (!before_end(r, rec.key, rec.klen))
            break;
        if (*n == limit) {
            *more = true;
            return 0;
        }
        struct kv_meta m;
        to_meta(&rec, &m);
        ++*n;
        int rc = fn(ud, &m);
        if (rc) {
            *more = true;
            return rc;
        }
    }
    *more = false;
    return 0;
}

void kv_count_range(const struct kv *kv, const struct kv_range *r,
                    const void *after, size_t alen, size_t limit,
                    size_t *count, bool *more, struct kv_meta *last)
{
    struct cursor c;
    range_start(kv, r, after, alen, &c);
    size_t k = 0;
    struct kv__rec rec;
    memset(last, 0, sizeof *last);
    *more = false;
    while (c.leaf) {
        uint32_t n = c.leaf->n;
        kv__rec_decode(c.leaf, n - 1, &rec);
        if (before_end(r, rec.key, rec.klen) && n - c.pos <= limit - k) {
            k += n - c.pos; /* the whole rest of the leaf is inside */
            to_meta(&rec, last);
            c.pos = n;
            normalize(&c);
            continue;
        }
        kv__rec_decode(c.leaf, c.pos, &rec);
        if (!before_end(r, rec.key, rec.klen))
            break;
        if (k == limit) {
            *more = true;
            break;
        }
        k++;
        to_meta(&rec, last);
        c.pos++;
        normalize(&c);
    }
    *count = k;
}

void kv_set_observer(struct kv *kv, kv_event_fn fn, void *ud)
{
    kv->obs = fn;
    kv->obs_ud = ud;
}

void kv__emit_put(struct kv *kv, uint64_t index, const void *key, size_t klen)
{
    if (kv->obs == NULL)
        return;
    struct kv_event ev = {.type = KV_EV_PUT};
    if (kv_get_meta(kv, key, klen, &ev.meta) == 0)
        kv->obs(kv->obs_ud, index, &ev);
}

void kv__emit_del(struct kv *kv, uint64_t index, const void *key, size_t klen,
                  uint64_t lease)
{
    if (kv->obs == NULL)
        return;
    struct kv_event ev = {.type = KV_EV_DELETE};
    ev.meta.key = key;
    ev.meta.klen = klen;
    ev.meta.mod_index = index;
    ev.meta.lease = lease;
    kv->obs(kv->obs_ud, index, &ev);
}

uint64_t kv__del_range(struct kv *kv, const struct kv_range *r, uint64_t index)
{
    uint64_t deleted = 0;
    for (;;) {
        struct kv__path p;
        kv__seek(kv, r->start, r->slen, &p);
        if (p.pos == p.leaf->n) {
            /* the lower bound is in a later leaf: find the way to it */
            const struct kv__leaf *next = p.leaf->next;
            while (next && next->n == 0)
                next = next->next;
            if (next == NULL)
                return deleted;
            struct kv__rec first;
            kv__rec_decode(next, 0, &first);
            if (!before_end(r, first.key, first.klen))
                return deleted;
            kv__seek(kv, first.key, first.klen, &p);
        }
        /* delete from p.pos while inside r, within this leaf */
        struct kv__leaf *l = p.leaf;
        for (;;) {
            struct kv__rec rec;
            kv__rec_decode(l, p.pos, &rec);
            if (!before_end(r, rec.key, rec.klen))
                return deleted;
            p.found = true;
            kv__emit_del(kv, index, rec.key, rec.klen, rec.lease);
            kv__lease_detach(kv, rec.lease, rec.key, rec.klen);
            bool changed = kv__remove(kv, &p);
            deleted++;
            if (changed || p.pos >= l->n)
                break; /* the tree changed, or this leaf is done: seek again */
        }
    }
}
