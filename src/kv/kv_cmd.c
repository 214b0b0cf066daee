/* Commands, version 1: the binary encoding of an atomic batch of SET/DELETE
 * operations (the payload of a Raft log entry), its builder and decoder.
 * Version 2 (transactions) is in kv_txn.c, applying both in kv_apply.c.
 *
 * Format, version 1 (integers little-endian):
 *   offset 0   u8    version, 1
 *   offset 1   u32   n_ops, the number of operations that follow
 *   then n_ops operations, back to back:
 *              u8    type: 1 = SET, 2 = DELETE
 *              uvar  klen, then klen bytes of key
 *              SET only: uvar vlen, then vlen bytes of value
 *   and nothing after the last operation.
 * uvar is LEB128 (7 bits a byte, low bits first, high bit = more follows):
 * at most 5 bytes, value <= UINT32_MAX, canonical (a multi-byte varint does
 * not end in a zero byte). Anything else is CRAFT_ECORRUPT, and since n_ops
 * is fixed up front, every strict prefix of a command is malformed. */
#include "kv/kv_internal.h"

#include <string.h>

#include "common/alloc.h"
#include "common/endian.h"

#define HDR 5       /* version + n_ops */


bool kv__get_bytes(const uint8_t **pp, const uint8_t *end, const uint8_t **s,
                   size_t *len)
{
    uint64_t n;
    size_t used = craft_get_uvar(*pp, (size_t)(end - *pp), UINT32_MAX, &n);
    if (used == 0 || n > (size_t)(end - *pp) - used)
        return false;
    *s = *pp + used;
    *len = (size_t)n;
    *pp += used + n;
    return true;
}

/* One operation at *pp; advances past it. false if malformed. */
static bool parse_op(const uint8_t **pp, const uint8_t *end, struct kv_op *op)
{
    if (*pp >= end)
        return false;
    op->type = *(*pp)++;
    op->val = NULL;
    op->vlen = 0;
    switch (op->type) {
    case KV_OP_SET:
        return kv__get_bytes(pp, end, &op->key, &op->klen) &&
               kv__get_bytes(pp, end, &op->val, &op->vlen);
    case KV_OP_DEL:
        return kv__get_bytes(pp, end, &op->key, &op->klen);
    default:
        return false;
    }
}

/* Check the whole command; count its operations and its SETs. */
int kv__cmd_validate(const uint8_t *data, size_t len, uint32_t *n_ops,
                    size_t *n_sets)
{
    if (data == NULL || len < HDR || data[0] != KV_CMD_VERSION)
        return CRAFT_ECORRUPT;
    const uint8_t *p = data + HDR, *end = data + len;
    uint32_t n = craft_get32(data + 1);
    size_t sets = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct kv_op op;
        if (!parse_op(&p, end, &op))
            return CRAFT_ECORRUPT;
        sets += op.type == KV_OP_SET;
    }
    if (p != end)
        return CRAFT_ECORRUPT;
    *n_ops = n;
    *n_sets = sets;
    return 0;
}

/* Encoded size of one op, 0 if it cannot be encoded. */
static size_t op_size(const struct kv_op *op)
{
    if (op->klen > UINT32_MAX || op->vlen > UINT32_MAX)
        return 0;
    size_t n = 1 + craft_uvar_size((uint32_t)op->klen) + op->klen;
    switch (op->type) {
    case KV_OP_SET:
        return n + craft_uvar_size((uint32_t)op->vlen) + op->vlen;
    case KV_OP_DEL:
        return n;
    default:
        return 0;
    }
}

static size_t put_op(uint8_t *p, const struct kv_op *op)
{
    size_t n = 0;
    p[n++] = op->type;
    n += craft_put_uvar(p + n, (uint32_t)op->klen);
    if (op->klen)
        memcpy(p + n, op->key, op->klen);
    n += op->klen;
    if (op->type == KV_OP_SET) {
        n += craft_put_uvar(p + n, (uint32_t)op->vlen);
        if (op->vlen)
            memcpy(p + n, op->val, op->vlen);
        n += op->vlen;
    }
    return n;
}

size_t kv_cmd_size(const struct kv_op *ops, size_t n)
{
    if (n > UINT32_MAX)
        return 0;
    size_t total = HDR;
    for (size_t i = 0; i < n; i++) {
        size_t s = op_size(&ops[i]);
        if (s == 0)
            return 0;
        total += s;
    }
    return total;
}

size_t kv_cmd_encode(const struct kv_op *ops, size_t n, uint8_t *buf)
{
    buf[0] = KV_CMD_VERSION;
    craft_put32(buf + 1, (uint32_t)n);
    size_t len = HDR;
    for (size_t i = 0; i < n; i++)
        len += put_op(buf + len, &ops[i]);
    return len;
}

/* ---- the builder --------------------------------------------------------- */

int kv_cmd_init(struct kv_cmd *c)
{
    c->cap = 64;
    c->data = craft_malloc(c->cap);
    if (c->data == NULL) {
        c->cap = 0;
        return CRAFT_ENOMEM;
    }
    kv_cmd_reset(c);
    return 0;
}

void kv_cmd_reset(struct kv_cmd *c)
{
    c->len = kv_cmd_encode(NULL, 0, c->data);
    c->n_ops = 0;
}

void kv_cmd_free(struct kv_cmd *c)
{
    craft_free(c->data);
    c->data = NULL;
    c->len = c->cap = 0;
    c->n_ops = 0;
}

static int append(struct kv_cmd *c, const struct kv_op *op)
{
    if (c->data == NULL) /* never initialized, or freed */
        return CRAFT_EINVAL;
    size_t need = op_size(op);
    if (need == 0 || c->n_ops == UINT32_MAX)
        return CRAFT_ETOOBIG;
    if (need > c->cap - c->len) {
        size_t cap = c->cap;
        while (need > cap - c->len)
            cap *= 2;
        uint8_t *p = craft_realloc(c->data, cap);
        if (p == NULL)
            return CRAFT_ENOMEM;
        c->data = p;
        c->cap = cap;
    }
    c->len += put_op(c->data + c->len, op);
    craft_put32(c->data + 1, ++c->n_ops);
    return 0;
}

int kv_cmd_set(struct kv_cmd *c, const void *key, size_t klen, const void *val,
               size_t vlen)
{
    struct kv_op op = {KV_OP_SET, key, klen, val, vlen};
    return append(c, &op);
}

int kv_cmd_del(struct kv_cmd *c, const void *key, size_t klen)
{
    struct kv_op op = {KV_OP_DEL, key, klen, NULL, 0};
    return append(c, &op);
}

/* ---- decoding and applying ----------------------------------------------- */

/* Start at the first op of a command already validated. */
void kv__cmd_iter_start(struct kv_cmd_iter *it, const uint8_t *data, size_t len,
                       uint32_t n_ops)
{
    it->p = data + HDR;
    it->end = data + len;
    it->left = n_ops;
}

int kv_cmd_iter_init(struct kv_cmd_iter *it, const uint8_t *data, size_t len)
{
    uint32_t n_ops;
    size_t n_sets;
    int err = kv__cmd_validate(data, len, &n_ops, &n_sets);
    if (err) {
        it->p = it->end = NULL;
        it->left = 0;
        return err;
    }
    kv__cmd_iter_start(it, data, len, n_ops);
    return 0;
}

bool kv_cmd_iter_next(struct kv_cmd_iter *it, struct kv_op *op)
{
    if (it->left == 0)
        return false;
    it->left--;
    return parse_op(&it->p, it->end, op); /* validated: always true */
}

