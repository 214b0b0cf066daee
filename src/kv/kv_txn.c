/* Commands, version 2: the binary encoding of a transaction (compares, then
 * one of two branches of put/delete/delete_prefix/get), encoder and decoder.
 * Single-key writes with a precondition are transactions of one compare and
 * one op; kv_apply.c executes them.
 *
 * Format, version 2 (uvar: LEB128 as in version 1; lengths <= UINT32_MAX,
 * counts <= KV_TXN_MAX, numbers up to 64 bits, all canonical):
 *   u8    version, 2
 *   uvar  n_cmp, then n_cmp compares:
 *           u8 target (enum kv_cmp_target), u8 op (enum kv_cmp_op)
 *           uvar klen, key
 *           target VALUE: uvar vlen, value; else uvar num
 *   uvar  n_success, then n_success ops
 *   uvar  n_failure, then n_failure ops; each op:
 *           u8 type (enum kv_txn_op_type), uvar klen, key
 *           PUT only: uvar vlen, value, uvar lease
 *   and nothing after the last op.
 * VALUE and EXISTS compares take = and != only, EXISTS a num of 0 or 1.
 * Anything else is CRAFT_ECORRUPT. */
#include "kv/kv_internal.h"

#include <string.h>

static bool cmp_valid(const struct kv_compare *c)
{
    if (c->target < KV_CMP_MOD || c->target > KV_CMP_EXISTS ||
        c->op > KV_CMP_GT || c->klen > UINT32_MAX || c->vlen > UINT32_MAX)
        return false;
    if ((c->target == KV_CMP_VALUE || c->target == KV_CMP_EXISTS) &&
        c->op > KV_CMP_NE)
        return false;
    return c->target != KV_CMP_EXISTS || c->num <= 1;
}

static bool op_valid(const struct kv_txn_op *o)
{
    return o->type >= KV_TOP_PUT && o->type <= KV_TOP_GET &&
           o->klen <= UINT32_MAX && o->vlen <= UINT32_MAX;
}

static size_t bytes_size(size_t len)
{
    return craft_uvar_size(len) + len;
}

static size_t cmp_size(const struct kv_compare *c)
{
    return 2 + bytes_size(c->klen) +
           (c->target == KV_CMP_VALUE ? bytes_size(c->vlen)
                                      : craft_uvar_size(c->num));
}

static size_t top_size(const struct kv_txn_op *o)
{
    size_t n = 1 + bytes_size(o->klen);
    if (o->type == KV_TOP_PUT)
        n += bytes_size(o->vlen) + craft_uvar_size(o->lease);
    return n;
}

size_t kv_txn_size(const struct kv_txn *t)
{
    if (t->n_cmp > KV_TXN_MAX || t->n_success > KV_TXN_MAX ||
        t->n_failure > KV_TXN_MAX)
        return 0;
    size_t n = 1 + craft_uvar_size(t->n_cmp) + craft_uvar_size(t->n_success) +
               craft_uvar_size(t->n_failure);
    for (size_t i = 0; i < t->n_cmp; i++) {
        if (!cmp_valid(&t->cmp[i]))
            return 0;
        n += cmp_size(&t->cmp[i]);
    }
    for (size_t i = 0; i < t->n_success + t->n_failure; i++) {
        const struct kv_txn_op *o = i < t->n_success
                                        ? &t->success[i]
                                        : &t->failure[i - t->n_success];
        if (!op_valid(o))
            return 0;
        n += top_size(o);
    }
    return n;
}

static size_t put_bytes(uint8_t *p, const uint8_t *s, size_t len)
{
    size_t n = craft_put_uvar(p, len);
    if (len)
        memcpy(p + n, s, len);
    return n + len;
}

static size_t put_ops(uint8_t *p, const struct kv_txn_op *ops, size_t count)
{
    size_t n = craft_put_uvar(p, count);
    for (size_t i = 0; i < count; i++) {
        const struct kv_txn_op *o = &ops[i];
        p[n++] = o->type;
        n += put_bytes(p + n, o->key, o->klen);
        if (o->type == KV_TOP_PUT) {
            n += put_bytes(p + n, o->val, o->vlen);
            n += craft_put_uvar(p + n, o->lease);
        }
    }
    return n;
}

size_t kv_txn_encode(const struct kv_txn *t, uint8_t *buf)
{
    size_t n = 0;
    buf[n++] = KV_TXN_VERSION;
    n += craft_put_uvar(buf + n, t->n_cmp);
    for (size_t i = 0; i < t->n_cmp; i++) {
        const struct kv_compare *c = &t->cmp[i];
        buf[n++] = c->target;
        buf[n++] = c->op;
        n += put_bytes(buf + n, c->key, c->klen);
        if (c->target == KV_CMP_VALUE)
            n += put_bytes(buf + n, c->val, c->vlen);
        else
            n += craft_put_uvar(buf + n, c->num);
    }
    n += put_ops(buf + n, t->success, t->n_success);
    n += put_ops(buf + n, t->failure, t->n_failure);
    return n;
}

static bool get_count(const uint8_t **pp, const uint8_t *end, size_t *count)
{
    uint64_t v = 0;
    size_t used = craft_get_uvar(*pp, (size_t)(end - *pp), KV_TXN_MAX, &v);
    *pp += used;
    *count = (size_t)v;
    return used > 0;
}

static bool get_ops(const uint8_t **pp, const uint8_t *end,
                    struct kv_txn_op *ops, size_t *count)
{
    if (!get_count(pp, end, count))
        return false;
    for (size_t i = 0; i < *count; i++) {
        struct kv_txn_op *o = &ops[i];
        memset(o, 0, sizeof *o);
        if (*pp >= end)
            return false;
        o->type = *(*pp)++;
        if (!op_valid(o) || !kv__get_bytes(pp, end, &o->key, &o->klen))
            return false;
        if (o->type != KV_TOP_PUT)
            continue;
        if (!kv__get_bytes(pp, end, &o->val, &o->vlen))
            return false;
        size_t used =
            craft_get_uvar(*pp, (size_t)(end - *pp), UINT64_MAX, &o->lease);
        if (used == 0)
            return false;
        *pp += used;
    }
    return true;
}

int kv_txn_decode(const uint8_t *data, size_t len, struct kv_txn *t,
                  struct kv_compare *cmp, struct kv_txn_op *success,
                  struct kv_txn_op *failure)
{
    if (data == NULL || len < 1 || data[0] != KV_TXN_VERSION)
        return CRAFT_ECORRUPT;
    const uint8_t *p = data + 1, *end = data + len;
    memset(t, 0, sizeof *t);
    t->cmp = cmp;
    t->success = success;
    t->failure = failure;
    if (!get_count(&p, end, &t->n_cmp))
        return CRAFT_ECORRUPT;
    for (size_t i = 0; i < t->n_cmp; i++) {
        struct kv_compare *c = &cmp[i];
        memset(c, 0, sizeof *c);
        if (end - p < 2)
            return CRAFT_ECORRUPT;
        c->target = *p++;
        c->op = *p++;
        if (!kv__get_bytes(&p, end, &c->key, &c->klen))
            return CRAFT_ECORRUPT;
        if (c->target == KV_CMP_VALUE) {
            if (!kv__get_bytes(&p, end, &c->val, &c->vlen))
                return CRAFT_ECORRUPT;
        } else {
            size_t used =
                craft_get_uvar(p, (size_t)(end - p), UINT64_MAX, &c->num);
            if (used == 0)
                return CRAFT_ECORRUPT;
            p += used;
        }
        if (!cmp_valid(c))
            return CRAFT_ECORRUPT;
    }
    if (!get_ops(&p, end, success, &t->n_success) ||
        !get_ops(&p, end, failure, &t->n_failure) || p != end)
        return CRAFT_ECORRUPT;
    return 0;
}
