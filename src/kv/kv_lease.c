/* The lease table of the state machine: lease id -> {ttl_ms, the set of
 * keys attached to it}, the version-3 command encoding (GRANT, REVOKE,
 * EXPIRE, KEEPALIVE) and the lease queries. Applying lease commands is in
 * kv_apply.c; attach/detach are called from there and from kv_map.c.
 *
 * Command format, version 3 (KV_LEASE_VERSION):
 *   u8 version 3, u8 op (enum kv_lease_op), uvar id, uvar arg
 *   GRANT: id 0, arg = ttl_ms >= 1; EXPIRE: id >= 1, arg = the refresh
 *   index it counted from (>= 1); REVOKE, KEEPALIVE: id >= 1, arg 0;
 *   nothing after. uvar as elsewhere (LEB128, canonical, up to 10 bytes).
 *
 * Structure, and why:
 * - The leases are an array of pointers sorted by id. Ids are GRANT log
 *   indexes, so a grant appends at the end (O(1) amortized); lookup is a
 *   binary search; dropping one moves the pointers after it (O(leases),
 *   a memmove of 8 bytes per lease, independent of keys). Listing in id
 *   order is a walk of the array.
 * - Each lease's keys are an open-addressing hash set (linear probing,
 *   backward-shift deletion, load <= 1/2) of owned key copies, hashed with
 *   the map's SipHash key. Attach and detach are O(1) expected, whatever
 *   the number of keys of the lease or of the map, and never allocate: the
 *   key copy and the room in the set are reserved before a command changes
 *   anything (kv__lkey_new, kv__lease_room), so a command stays all or
 *   nothing. Revoke walks the set: O(keys of the lease), plus a sort of
 *   those keys so that every node deletes them (and tells the observer) in
 *   the same, key, order whatever its hash seed: O(k log k).
 * - The record of each key also carries its lease id (kv_meta.lease), so a
 *   delete or overwrite knows which set to detach the key from without a
 *   search. */
#include "kv/kv_internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"

/* ---- commands ---------------------------------------------------------- */

/* Whether (op, id, arg) is a lease command as the format above says. */
static bool cmd_valid(uint8_t op, uint64_t id, uint64_t arg)
{
    switch (op) {
    case KV_LEASE_GRANT:
        return id == 0 && arg != 0;
    case KV_LEASE_EXPIRE:
        return id != 0 && arg != 0;
    case KV_LEASE_REVOKE:
    case KV_LEASE_KEEPALIVE:
        return id != 0 && arg == 0;
    default:
        return false;
    }
}

size_t kv_lease_cmd_encode(uint8_t op, uint64_t id, uint64_t arg,
                           uint8_t buf[KV_LEASE_CMD_MAX])
{
    if (!cmd_valid(op, id, arg))
        return 0;
    size_t n = 0;
    buf[n++] = KV_LEASE_VERSION;
    buf[n++] = op;
    n += craft_put_uvar(buf + n, id);
    n += craft_put_uvar(buf + n, arg);
    return n;
}

int kv__lease_cmd_decode(const uint8_t *data, size_t len, uint8_t *op,
                         uint64_t *id, uint64_t *ttl_ms)
{
    if (data == NULL || len < 4 || data[0] != KV_LEASE_VERSION)
        return CRAFT_ECORRUPT;
    *op = data[1];
    size_t p = 2, used;
    used = craft_get_uvar(data + p, len - p, UINT64_MAX, id);
    if (used == 0)
        return CRAFT_ECORRUPT;
    p += used;
    used = craft_get_uvar(data + p, len - p, UINT64_MAX, ttl_ms);
    if (used == 0 || p + used != len)
        return CRAFT_ECORRUPT;
    return cmd_valid(*op, *id, *ttl_ms) ? 0 : CRAFT_ECORRUPT;
}

/* ---- the table ----------------------------------------------------------- */

/* The position of the first lease with id >= id. */
static size_t lower_bound(const struct kv *kv, uint64_t id)
{
    size_t lo = 0, hi = kv->n_leases;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (kv->leases[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

struct kv__lease *kv__lease_find(const struct kv *kv, uint64_t id)
{
    size_t i = lower_bound(kv, id);
    return i < kv->n_leases && kv->leases[i]->id == id ? kv->leases[i] : NULL;
}

static void lease_free(struct kv__lease *l)
{
    for (size_t i = 0; i < l->cap; i++)
        craft_free(l->slots[i]);
    craft_free(l->slots);
    craft_free(l);
}

int kv__lease_grant(struct kv *kv, uint64_t id, uint64_t ttl_ms,
                    uint64_t refreshed)
{
    struct kv__lease *old = kv__lease_find(kv, id);
    if (old != NULL) { /* only if indexes went back (tests): a new TTL */
        old->ttl_ms = ttl_ms;
        old->refreshed = refreshed;
        return 0;
    }
    if (kv->n_leases == kv->leases_cap) {
        size_t cap = kv->leases_cap ? 2 * kv->leases_cap : 8;
        struct kv__lease **p = craft_realloc(kv->leases, cap * sizeof *p);
        if (p == NULL)
            return CRAFT_ENOMEM;
        kv->leases = p;
        kv->leases_cap = cap;
    }
    struct kv__lease *l = craft_calloc(1, sizeof *l);
    if (l == NULL)
        return CRAFT_ENOMEM;
    l->id = id;
    l->ttl_ms = ttl_ms;
    l->refreshed = refreshed;
    size_t i = lower_bound(kv, id);
    memmove(&kv->leases[i + 1], &kv->leases[i],
            (kv->n_leases - i) * sizeof *kv->leases);
    kv->leases[i] = l;
    kv->n_leases++;
    return 0;
}

void kv__lease_drop(struct kv *kv, uint64_t id)
{
    size_t i = lower_bound(kv, id);
    if (i == kv->n_leases || kv->leases[i]->id != id)
        return;
    lease_free(kv->leases[i]);
    memmove(&kv->leases[i], &kv->leases[i + 1],
            (kv->n_leases - i - 1) * sizeof *kv->leases);
    kv->n_leases--;
}

void kv__leases_free(struct kv *kv)
{
    for (size_t i = 0; i < kv->n_leases; i++)
        lease_free(kv->leases[i]);
    craft_free(kv->leases);
    kv->leases = NULL;
    kv->n_leases = kv->leases_cap = 0;
}

/* ---- key sets -------------------------------------------------------------- */

struct kv__lkey *kv__lkey_new(const struct kv *kv, const void *key,
                              size_t klen)
{
    struct kv__lkey *k = craft_malloc(sizeof *k + klen);
    if (k == NULL)
        return NULL;
    k->h = kv__hkey(kv, key, klen);
    k->klen = (uint32_t)klen;
    if (klen)
        memcpy(k->key, key, klen);
    return k;
}

static void set_insert(struct kv__lease *l, struct kv__lkey *k)
{
    size_t mask = l->cap - 1, i = (size_t)k->h & mask;
    while (l->slots[i] != NULL)
        i = (i + 1) & mask;
    l->slots[i] = k;
}

int kv__lease_room(struct kv__lease *l, size_t n_more)
{
    size_t need = l->n + n_more;
    if (need <= l->cap / 2)
        return 0;
    size_t cap = l->cap ? l->cap : 8;
    while (need > cap / 2)
        cap *= 2;
    struct kv__lkey **slots = craft_calloc(cap, sizeof *slots);
    if (slots == NULL)
        return CRAFT_ENOMEM;
    struct kv__lkey **old = l->slots;
    size_t old_cap = l->cap;
    l->slots = slots;
    l->cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i] != NULL)
            set_insert(l, old[i]);
    craft_free(old);
    return 0;
}

void kv__lease_attach(struct kv__lease *l, struct kv__lkey *k)
{
    set_insert(l, k);
    l->n++;
}

/* The slot holding key in l, or SIZE_MAX. */
static size_t set_find(const struct kv__lease *l, uint64_t h, const void *key,
                       size_t klen)
{
    if (l->cap == 0)
        return SIZE_MAX;
    size_t mask = l->cap - 1;
    for (size_t i = (size_t)h & mask; l->slots[i] != NULL; i = (i + 1) & mask) {
        const struct kv__lkey *k = l->slots[i];
        if (k->h == h && k->klen == klen &&
            (klen == 0 || memcmp(k->key, key, klen) == 0))
            return i;
    }
    return SIZE_MAX;
}

void kv__lease_detach(struct kv *kv, uint64_t id, const void *key, size_t klen)
{
    if (id == 0)
        return;
    struct kv__lease *l = kv__lease_find(kv, id);
    if (l == NULL)
        return;
    size_t i = set_find(l, kv__hkey(kv, key, klen), key, klen);
    if (i == SIZE_MAX)
        return;
    craft_free(l->slots[i]);
    l->slots[i] = NULL;
    l->n--;
    /* backward shift: move up every later entry of the run that may now
     * be unreachable from its home slot */
    size_t mask = l->cap - 1;
    for (size_t j = (i + 1) & mask; l->slots[j] != NULL; j = (j + 1) & mask) {
        size_t home = (size_t)l->slots[j]->h & mask;
        /* j's entry may move to the hole i unless home lies in (i, j] */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays)
            continue;
        l->slots[i] = l->slots[j];
        l->slots[j] = NULL;
        i = j;
    }
}

void kv__lease_move(struct kv *kv, uint64_t old, uint64_t new_id,
                    const void *key, size_t klen, struct kv__lkey **spare)
{
    if (old == new_id)
        return;
    kv__lease_detach(kv, old, key, klen);
    struct kv__lease *l = new_id ? kv__lease_find(kv, new_id) : NULL;
    if (l != NULL && *spare != NULL) {
        kv__lease_attach(l, *spare);
        *spare = NULL;
    }
}

static int lkey_cmp(const void *a, const void *b)
{
    const struct kv__lkey *x = *(struct kv__lkey *const *)a;
    const struct kv__lkey *y = *(struct kv__lkey *const *)b;
    return kv__cmp(x->key, x->klen, y->key, y->klen);
}

int kv__lease_sorted(const struct kv__lease *l, const void *after, size_t alen,
                     struct kv__lkey ***out, size_t *n)
{
    struct kv__lkey **v = craft_malloc((l->n ? l->n : 1) * sizeof *v);
    if (v == NULL)
        return CRAFT_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < l->cap; i++) {
        struct kv__lkey *e = l->slots[i];
        if (e != NULL &&
            (after == NULL || kv__cmp(e->key, e->klen, after, alen) > 0))
            v[k++] = e;
    }
    qsort(v, k, sizeof *v, lkey_cmp);
    *out = v;
    *n = k;
    return 0;
}

/* ---- queries ----------------------------------------------------------------- */

static void to_pub(const struct kv__lease *l, struct kv_lease *out)
{
    out->id = l->id;
    out->ttl_ms = l->ttl_ms;
    out->n_keys = l->n;
    out->refreshed = l->refreshed;
}

int kv_lease_get(const struct kv *kv, uint64_t id, struct kv_lease *l)
{
    const struct kv__lease *x = kv__lease_find(kv, id);
    if (x == NULL)
        return CRAFT_ENOTFOUND;
    to_pub(x, l);
    return 0;
}

size_t kv_lease_count(const struct kv *kv)
{
    return kv->n_leases;
}

int kv_lease_list(const struct kv *kv, uint64_t after, size_t limit,
                  kv_lease_fn fn, void *ud, bool *more)
{
    size_t i = after == UINT64_MAX ? kv->n_leases : lower_bound(kv, after + 1);
    *more = false;
    for (size_t k = 0; i < kv->n_leases; i++, k++) {
        if (k == limit) {
            *more = true;
            return 0;
        }
        struct kv_lease l;
        to_pub(kv->leases[i], &l);
        int rc = fn(ud, &l);
        if (rc) {
            *more = i + 1 < kv->n_leases;
            return rc;
        }
    }
    return 0;
}

int kv_lease_keys(const struct kv *kv, uint64_t id, const void *after,
                  size_t alen, size_t limit, kv_list_fn fn, void *ud,
                  size_t *n, bool *more)
{
    *n = 0;
    *more = false;
    const struct kv__lease *l = kv__lease_find(kv, id);
    if (l == NULL)
        return CRAFT_ENOTFOUND;
    struct kv__lkey **v;
    size_t k;
    int err = kv__lease_sorted(l, after, alen, &v, &k);
    if (err)
        return err;
    int rc = 0;
    for (size_t i = 0; i < k; i++) {
        if (*n == limit) {
            *more = true;
            break;
        }
        struct kv_meta m;
        if (kv_get_meta(kv, v[i]->key, v[i]->klen, &m) != 0)
            continue; /* cannot happen: an attached key is in the map */
        ++*n;
        rc = fn(ud, &m);
        if (rc) {
            *more = true;
            break;
        }
    }
    craft_free(v);
    return rc;
}
