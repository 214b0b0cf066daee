/* Commands: the binary encoding of an atomic batch of SET/DELETE operations
 * (the payload of a Raft log entry), its builder, decoder and kv_apply.
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
#define MAX_UVAR 5  /* bytes of a uvar holding a uint32 */
#define STACK_ENTS 8

static size_t uvar_size(uint32_t v)
{
    size_t n = 1;
    for (; v >= 0x80; v >>= 7)
        n++;
    return n;
}

static size_t put_uvar(uint8_t *p, uint32_t v)
{
    size_t n = 0;
    for (; v >= 0x80; v >>= 7)
        p[n++] = (uint8_t)(v | 0x80);
    p[n++] = (uint8_t)v;
    return n;
}

/* Bytes read at p (avail of them), or 0 if malformed or cut short. */
static size_t get_uvar(const uint8_t *p, size_t avail, uint32_t *v)
{
    uint64_t x = 0;
    for (size_t i = 0; i < MAX_UVAR && i < avail; i++) {
        x |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (p[i] & 0x80)
            continue;
        if ((i > 0 && p[i] == 0) || x > UINT32_MAX)
            return 0;
        *v = (uint32_t)x;
        return i + 1;
    }
    return 0;
}

/* A length-prefixed byte string at *pp; advances past it. */
static bool get_bytes(const uint8_t **pp, const uint8_t *end,
                      const uint8_t **s, size_t *len)
{
    uint32_t n;
    size_t used = get_uvar(*pp, (size_t)(end - *pp), &n);
    if (used == 0 || n > (size_t)(end - *pp) - used)
        return false;
    *s = *pp + used;
    *len = n;
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
        return get_bytes(pp, end, &op->key, &op->klen) &&
               get_bytes(pp, end, &op->val, &op->vlen);
    case KV_OP_DEL:
        return get_bytes(pp, end, &op->key, &op->klen);
    default:
        return false;
    }
}

/* Check the whole command; count its operations and its SETs. */
static int validate(const uint8_t *data, size_t len, uint32_t *n_ops,
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
    size_t n = 1 + uvar_size((uint32_t)op->klen) + op->klen;
    switch (op->type) {
    case KV_OP_SET:
        return n + uvar_size((uint32_t)op->vlen) + op->vlen;
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
    n += put_uvar(p + n, (uint32_t)op->klen);
    if (op->klen)
        memcpy(p + n, op->key, op->klen);
    n += op->klen;
    if (op->type == KV_OP_SET) {
        n += put_uvar(p + n, (uint32_t)op->vlen);
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
static void iter_start(struct kv_cmd_iter *it, const uint8_t *data, size_t len,
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
    int err = validate(data, len, &n_ops, &n_sets);
    if (err) {
        it->p = it->end = NULL;
        it->left = 0;
        return err;
    }
    iter_start(it, data, len, n_ops);
    return 0;
}

bool kv_cmd_iter_next(struct kv_cmd_iter *it, struct kv_op *op)
{
    if (it->left == 0)
        return false;
    it->left--;
    return parse_op(&it->p, it->end, op); /* validated: always true */
}

static void free_ents(struct kv__ent **ents, size_t n, struct kv__ent **stack)
{
    for (size_t i = 0; i < n; i++)
        craft_free(ents[i]);
    if (ents != stack)
        craft_free(ents);
}

/* Allocate every SET's entry and the table room before changing anything,
 * so that the changes themselves cannot fail. */
int kv_apply(struct kv *kv, const uint8_t *data, size_t len)
{
    uint32_t n_ops;
    size_t n_sets;
    int err = validate(data, len, &n_ops, &n_sets);
    if (err)
        return err;

    struct kv__ent *stack[STACK_ENTS];
    struct kv__ent **ents = stack;
    if (n_sets > STACK_ENTS && !(ents = craft_calloc(n_sets, sizeof *ents)))
        return CRAFT_ENOMEM;
    struct kv_cmd_iter it;
    struct kv_op op;
    size_t k = 0;
    iter_start(&it, data, len, n_ops);
    while (kv_cmd_iter_next(&it, &op)) {
        if (op.type != KV_OP_SET)
            continue;
        ents[k] = kv__ent_new(op.key, op.klen, op.val, op.vlen);
        if (ents[k] == NULL) {
            free_ents(ents, k, stack);
            return CRAFT_ENOMEM;
        }
        k++;
    }
    err = kv__reserve(kv, kv->count + n_sets);
    if (err) {
        free_ents(ents, k, stack);
        return err;
    }

    bool deleted = false;
    k = 0;
    iter_start(&it, data, len, n_ops);
    while (kv_cmd_iter_next(&it, &op)) {
        uint32_t h = kv__hash(kv, op.key, op.klen);
        if (op.type == KV_OP_SET)
            kv__insert(kv, h, ents[k++]);
        else
            deleted |= kv__remove(kv, h, op.key, op.klen) == 0;
    }
    free_ents(ents, 0, stack);
    if (deleted)
        kv__maybe_shrink(kv);
    return 0;
}
