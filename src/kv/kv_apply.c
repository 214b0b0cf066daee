/* Applying commands to the map: a version-1 batch, a version-2
 * transaction or a version-3 lease command, atomically (everything that may fail is done before the
 * first change) and deterministically, at a log index that becomes the
 * revision of every write; and the result kept for the node to read. */
#include "kv/kv_internal.h"

#include <string.h>

#include "common/alloc.h"

#define STACK_BLOBS 8

const struct kv_result *kv_last_result(const struct kv *kv)
{
    return &kv->res.pub;
}

static void result_reset(struct kv *kv, uint64_t index)
{
    struct kv_result *r = &kv->res.pub;
    memset(r, 0, sizeof *r);
    r->index = index;
    r->succeeded = true;
    r->failed_cmp = -1;
    r->ops = kv->res.ops;
    kv->res.blen = 0;
}

/* Room for n op results (before any change). */
static int result_reserve(struct kv *kv, size_t n)
{
    if (n <= kv->res.cap)
        return 0;
    struct kv_op_result *p = craft_realloc(kv->res.ops, n * sizeof *p);
    if (p == NULL)
        return CRAFT_ENOMEM;
    kv->res.ops = p;
    kv->res.cap = n;
    return 0;
}

/* Room for bytes more bytes in the result buffer after what it holds (the
 * buffer exists afterwards, even for 0). 0 or CRAFT_ENOMEM. */
static int result_room(struct kv *kv, size_t bytes)
{
    struct kv__results *r = &kv->res;
    if (r->buf != NULL && bytes <= r->bcap - r->blen)
        return 0;
    size_t cap = r->bcap ? r->bcap : 256;
    while (bytes > cap - r->blen) {
        if (cap > SIZE_MAX / 2)
            return CRAFT_ENOMEM;
        cap *= 2;
    }
    uint8_t *b = craft_realloc(r->buf, cap);
    if (b == NULL)
        return CRAFT_ENOMEM;
    r->buf = b;
    r->bcap = cap;
    return 0;
}

/* Copy bytes into the result buffer: their offset, or SIZE_MAX. */
static size_t result_copy(struct kv *kv, const uint8_t *p, size_t len)
{
    struct kv__results *r = &kv->res;
    if (result_room(kv, len) != 0)
        return SIZE_MAX;
    size_t off = r->blen;
    if (len)
        memcpy(r->buf + off, p, len);
    r->blen += len;
    return off;
}

static void free_blobs(struct kv__blob **b, size_t n, struct kv__blob **stack)
{
    for (size_t i = 0; i < n; i++)
        craft_free(b[i]);
    if (b != stack)
        craft_free(b);
}

/* Delete key if present, at revision index (told to the observer): 1 if
 * it was there, else 0. */
static uint64_t del_key(struct kv *kv, uint64_t index, const uint8_t *key,
                        size_t klen)
{
    struct kv__path p;
    kv__seek(kv, key, klen, &p);
    if (!p.found)
        return 0;
    struct kv__rec rec;
    kv__rec_decode(p.leaf, p.pos, &rec);
    kv__emit_del(kv, index, key, klen, rec.lease);
    kv__lease_detach(kv, rec.lease, key, klen);
    kv__remove(kv, &p);
    return 1;
}

/* ---- version 1 ---- */

static int apply_batch(struct kv *kv, uint64_t index, const uint8_t *data,
                       size_t len)
{
    uint32_t n_ops;
    size_t n_sets;
    int err = kv__cmd_validate(data, len, &n_ops, &n_sets);
    if (err)
        return err;
    struct kv__blob *stack[STACK_BLOBS];
    struct kv__blob **blobs = stack;
    if (n_sets > STACK_BLOBS && !(blobs = craft_calloc(n_sets, sizeof *blobs)))
        return CRAFT_ENOMEM;
    struct kv_cmd_iter it;
    struct kv_op op;
    size_t k = 0, max_klen = 0, rec_bytes = 0;
    kv__cmd_iter_start(&it, data, len, n_ops);
    while (kv_cmd_iter_next(&it, &op)) {
        if (op.type != KV_OP_SET)
            continue;
        max_klen = op.klen > max_klen ? op.klen : max_klen;
        rec_bytes += kv__rec_bound(op.klen, op.vlen);
        blobs[k] = kv__blob_for(op.key, op.klen, op.val, op.vlen, &err);
        if (err) {
            free_blobs(blobs, k, stack);
            return err;
        }
        k++;
    }
    err = kv__reserve(kv, n_sets, max_klen, rec_bytes);
    if (err) {
        free_blobs(blobs, k, stack);
        return err;
    }
    result_reset(kv, index);
    k = 0;
    kv__cmd_iter_start(&it, data, len, n_ops);
    while (kv_cmd_iter_next(&it, &op)) {
        if (op.type == KV_OP_SET) {
            struct kv_meta old = {0};
            if (kv->n_leases)
                kv_get_meta(kv, op.key, op.klen, &old);
            kv__put_rev(kv, op.key, op.klen, op.val, op.vlen, 0, index,
                        blobs[k++], NULL);
            kv__lease_detach(kv, old.lease, op.key, op.klen);
            kv__emit_put(kv, index, op.key, op.klen);
            continue;
        }
        del_key(kv, index, op.key, op.klen);
    }
    free_blobs(blobs, 0, stack);
    return 0;
}

/* ---- version 2 ---- */

static bool compare(const struct kv *kv, const struct kv_compare *c,
                    uint64_t *mod)
{
    struct kv_meta m;
    bool exists = kv_get_meta(kv, c->key, c->klen, &m) == 0;
    *mod = m.mod_index;
    uint64_t x;
    switch (c->target) {
    case KV_CMP_MOD:
        x = m.mod_index;
        break;
    case KV_CMP_VERSION:
        x = m.version;
        break;
    case KV_CMP_CREATE:
        x = m.create_index;
        break;
    case KV_CMP_VALUE: {
        if (!exists)
            return false;
        bool eq = m.vlen == c->vlen &&
                  (c->vlen == 0 || memcmp(m.val, c->val, c->vlen) == 0);
        return c->op == KV_CMP_EQ ? eq : !eq;
    }
    default: /* KV_CMP_EXISTS */
        return c->op == KV_CMP_EQ ? exists == (c->num == 1)
                                  : exists != (c->num == 1);
    }
    switch (c->op) {
    case KV_CMP_EQ:
        return x == c->num;
    case KV_CMP_NE:
        return x != c->num;
    case KV_CMP_LT:
        return x < c->num;
    default:
        return x > c->num;
    }
}

/* An upper bound on the bytes the gets among ops[0..n) copy into the
 * result: each get's key, and the longest value its key may have when the
 * get runs (the one before the branch, or one an earlier put of the branch
 * writes; deletes only shorten). SIZE_MAX if the sum does not fit; 0 and
 * *any false if there is no get. */
static size_t gets_bound(const struct kv *kv, const struct kv_txn_op *ops, size_t n,
                         bool *any)
{
    size_t total = 0;
    *any = false;
    for (size_t i = 0; i < n; i++) {
        const struct kv_txn_op *o = &ops[i];
        if (o->type != KV_TOP_GET)
            continue;
        *any = true;
        struct kv_meta m;
        size_t vmax = kv_get_meta(kv, o->key, o->klen, &m) == 0 ? m.vlen : 0;
        for (size_t j = 0; j < i; j++)
            if (ops[j].type == KV_TOP_PUT && ops[j].klen == o->klen && ops[j].vlen > vmax &&
                (o->klen == 0 || memcmp(ops[j].key, o->key, o->klen) == 0))
                vmax = ops[j].vlen;
        if (o->klen > SIZE_MAX - total || vmax > SIZE_MAX - total - o->klen)
            return SIZE_MAX;
        total += o->klen + vmax;
    }
    return total;
}

/* Room for the result of the transaction branch ops[0..n) before any
 * change: n op results and the copies its gets make. Until the result is
 * reset, the previous one stays readable (a failed command leaves it): it
 * follows the arrays if they move. 0 or CRAFT_ENOMEM. */
static int result_reserve_txn(struct kv *kv, const struct kv_txn_op *ops, size_t n)
{
    struct kv__results *r = &kv->res;
    uintptr_t old_buf = (uintptr_t)r->buf;
    bool any_get;
    size_t bytes = gets_bound(kv, ops, n, &any_get);
    int err = result_reserve(kv, n);
    if (err == 0 && bytes == SIZE_MAX)
        err = CRAFT_ENOMEM;
    /* result_reset empties the buffer: room from its start */
    if (err == 0 && any_get)
        err = result_room(kv, bytes > r->blen ? bytes - r->blen : 0);
    struct kv_result *prev = &r->pub;
    if (prev->ops != NULL)
        prev->ops = r->ops;
    if ((uintptr_t)r->buf != old_buf && old_buf != 0) {
        for (size_t i = 0; i < prev->n_ops; i++) {
            struct kv_op_result *o = &r->ops[i];
            if (!o->found)
                continue;
            o->meta.key = r->buf + ((uintptr_t)o->meta.key - old_buf);
            o->meta.val = r->buf + ((uintptr_t)o->meta.val - old_buf);
        }
    }
    return err;
}

/* A get's result: copies of key and value (offsets until fixed up; the
 * room was reserved by apply_txn, so the copies cannot fail). */
static void txn_get(struct kv *kv, const struct kv_txn_op *o,
                    struct kv_op_result *r)
{
    struct kv_meta m;
    if (kv_get_meta(kv, o->key, o->klen, &m) != 0)
        return;
    size_t ko = result_copy(kv, m.key, m.klen);
    size_t vo = ko == SIZE_MAX ? SIZE_MAX : result_copy(kv, m.val, m.vlen);
    if (vo == SIZE_MAX) {
        kv->res.pub.err = CRAFT_ENOMEM;
        return;
    }
    r->found = true;
    r->meta = m;
    r->meta.key = (const uint8_t *)(uintptr_t)ko;
    r->meta.val = (const uint8_t *)(uintptr_t)vo;
}

/* The first lease a put of ops[0..n) names that does not exist, or 0. */
static uint64_t missing_lease(const struct kv *kv, const struct kv_txn_op *ops,
                              size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ops[i].type == KV_TOP_PUT && ops[i].lease != 0 &&
            kv__lease_find(kv, ops[i].lease) == NULL)
            return ops[i].lease;
    return 0;
}

static void free_spare(struct kv__lkey **spare, size_t n)
{
    for (size_t i = 0; i < n; i++)
        craft_free(spare[i]);
}

/* For each put with a lease: a key copy in spare[i] (else NULL) and room
 * in that lease's set for every put naming it, so attaching cannot fail.
 * 0, or CRAFT_ENOMEM with nothing held (grown sets are not a change). */
static int reserve_attach(struct kv *kv, const struct kv_txn_op *ops,
                          size_t n, struct kv__lkey **spare)
{
    for (size_t i = 0; i < n; i++)
        spare[i] = NULL;
    for (size_t i = 0; i < n; i++) {
        if (ops[i].type != KV_TOP_PUT || ops[i].lease == 0)
            continue;
        size_t same = 0;
        for (size_t j = 0; j < n; j++)
            same += ops[j].type == KV_TOP_PUT && ops[j].lease == ops[i].lease;
        struct kv__lease *l = kv__lease_find(kv, ops[i].lease);
        spare[i] = kv__lkey_new(kv, ops[i].key, ops[i].klen);
        if (spare[i] == NULL || kv__lease_room(l, same) != 0) {
            free_spare(spare, i + 1);
            return CRAFT_ENOMEM;
        }
    }
    return 0;
}

static int apply_txn(struct kv *kv, uint64_t index, const uint8_t *data,
                     size_t len)
{
    struct kv_compare cmp[KV_TXN_MAX];
    struct kv_txn_op succ[KV_TXN_MAX], fail[KV_TXN_MAX];
    struct kv_txn t;
    int err = kv_txn_decode(data, len, &t, cmp, succ, fail);
    if (err)
        return err;

    bool ok = true;
    int failed = -1;
    uint64_t failed_mod = 0;
    for (size_t i = 0; i < t.n_cmp && ok; i++) {
        ok = compare(kv, &cmp[i], &failed_mod);
        failed = ok ? -1 : (int)i;
    }
    const struct kv_txn_op *ops = ok ? t.success : t.failure;
    size_t n = ok ? t.n_success : t.n_failure;
    uint64_t missing = missing_lease(kv, ops, n);
    if (missing) {
        result_reset(kv, index);
        kv->res.pub.succeeded = false;
        kv->res.pub.missing_lease = missing;
        return 0;
    }

    /* everything that may fail, before the first change */
    struct kv__lkey *spare[KV_TXN_MAX];
    err = reserve_attach(kv, ops, n, spare);
    if (err)
        return err;
    struct kv__blob *blobs[KV_TXN_MAX];
    size_t n_puts = 0, max_klen = 0, rec_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        blobs[i] = NULL;
        if (ops[i].type != KV_TOP_PUT)
            continue;
        n_puts++;
        rec_bytes += kv__rec_bound(ops[i].klen, ops[i].vlen);
        max_klen = ops[i].klen > max_klen ? ops[i].klen : max_klen;
        blobs[i] = kv__blob_for(ops[i].key, ops[i].klen, ops[i].val,
                                ops[i].vlen, &err);
        if (err) {
            free_blobs(blobs, i, blobs);
            free_spare(spare, n);
            return err;
        }
    }
    err = kv__reserve(kv, n_puts, max_klen, rec_bytes);
    err = err ? err : result_reserve_txn(kv, ops, n);
    if (err) {
        free_blobs(blobs, n, blobs);
        free_spare(spare, n);
        return err;
    }

    result_reset(kv, index);
    struct kv_result *res = &kv->res.pub;
    res->succeeded = ok;
    res->failed_cmp = failed;
    res->failed_mod_index = ok ? 0 : failed_mod;
    for (size_t i = 0; i < n; i++) {
        const struct kv_txn_op *o = &ops[i];
        struct kv_op_result *r = &kv->res.ops[i];
        memset(r, 0, sizeof *r);
        r->type = o->type;
        switch (o->type) {
        case KV_TOP_PUT: {
            struct kv_meta old = {0};
            if (kv->n_leases)
                kv_get_meta(kv, o->key, o->klen, &old);
            kv__put_rev(kv, o->key, o->klen, o->val, o->vlen, o->lease,
                        index, blobs[i], &r->created);
            kv__lease_move(kv, old.lease, o->lease, o->key, o->klen,
                           &spare[i]);
            kv__emit_put(kv, index, o->key, o->klen);
            break;
        }
        case KV_TOP_DEL:
            r->deleted = del_key(kv, index, o->key, o->klen);
            break;
        case KV_TOP_DEL_PREFIX: {
            struct kv_range rg;
            kv_range_prefix(&rg, o->key, o->klen);
            r->deleted = kv__del_range(kv, &rg, index);
            break;
        }
        default:
            txn_get(kv, o, r);
        }
    }
    res->n_ops = n;
    free_spare(spare, n);
    for (size_t i = 0; i < n; i++) { /* the buffer moved no more: point */
        struct kv_op_result *r = &kv->res.ops[i];
        if (!r->found)
            continue;
        r->meta.key = kv->res.buf + (uintptr_t)r->meta.key;
        r->meta.val = kv->res.buf + (uintptr_t)r->meta.val;
    }
    return 0;
}

/* ---- version 3 ---- */

/* Delete every key of lease l (in key order, each told to the observer),
 * then drop it. */
static int lease_delete_all(struct kv *kv, uint64_t index,
                            struct kv__lease *l, uint64_t *deleted)
{
    struct kv__lkey **v;
    size_t n;
    int err = kv__lease_sorted(l, NULL, 0, &v, &n);
    if (err)
        return err;
    uint64_t id = l->id;
    *deleted = 0;
    for (size_t i = 0; i < n; i++) {
        struct kv__path p;
        kv__seek(kv, v[i]->key, v[i]->klen, &p);
        if (!p.found)
            continue; /* cannot happen: an attached key is in the map */
        kv__emit_del(kv, index, v[i]->key, v[i]->klen, id);
        kv__remove(kv, &p);
        ++*deleted;
    }
    craft_free(v);
    kv__lease_drop(kv, id); /* frees the key copies */
    if (n)
        kv__hash_maybe_shrink(kv);
    return 0;
}

static int apply_lease(struct kv *kv, uint64_t index, const uint8_t *data,
                       size_t len)
{
    uint8_t op;
    uint64_t id, ttl;
    int err = kv__lease_cmd_decode(data, len, &op, &id, &ttl);
    if (err)
        return err;
    struct kv_result r = {0};
    r.index = index;
    r.succeeded = true;
    r.failed_cmp = -1;
    r.lease_op = op;
    r.lease_id = op == KV_LEASE_GRANT ? index : id;
    struct kv__lease *l = kv__lease_find(kv, r.lease_id);
    switch (op) {
    case KV_LEASE_GRANT:
        err = kv__lease_grant(kv, index, ttl);
        r.lease_found = true;
        r.lease_ttl_ms = ttl;
        break;
    case KV_LEASE_KEEPALIVE:
        r.lease_found = l != NULL;
        r.lease_ttl_ms = l ? l->ttl_ms : 0;
        break;
    default: /* REVOKE, EXPIRE */
        r.lease_found = l != NULL;
        r.lease_ttl_ms = l ? l->ttl_ms : 0;
        if (l != NULL)
            err = lease_delete_all(kv, index, l, &r.lease_deleted);
    }
    if (err)
        return err;
    result_reset(kv, index);
    r.ops = kv->res.pub.ops;
    kv->res.pub = r;
    return 0;
}

int kv_apply_at(struct kv *kv, uint64_t index, const uint8_t *data,
                size_t len)
{
    if (data == NULL || len == 0)
        return CRAFT_ECORRUPT;
    int err = data[0] == KV_TXN_VERSION     ? apply_txn(kv, index, data, len)
              : data[0] == KV_LEASE_VERSION ? apply_lease(kv, index, data, len)
                                            : apply_batch(kv, index, data, len);
    kv__trim(kv);
    if (err)
        return err;
    kv->index = index;
    return 0;
}

int kv_apply(struct kv *kv, const uint8_t *data, size_t len)
{
    return kv_apply_at(kv, kv->index + 1, data, len);
}
