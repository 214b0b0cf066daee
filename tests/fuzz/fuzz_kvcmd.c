/* libFuzzer target for the kv command decoder (src/kv/kv_cmd.c): a command
 * that decodes must re-encode to exactly its bytes, through kv_cmd_encode
 * and through the builder, and apply atomically to what its operations say
 * (the last operation on a key wins); one that does not decode must be
 * refused by kv_apply, leaving the map as it was. Built and run by
 * `make fuzz`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kv/kv.h"

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond))                                                         \
            __builtin_trap();                                                \
    } while (0)

static bool bytes_eq(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    return al == bl && (al == 0 || memcmp(a, b, al) == 0);
}

/* A map that is there before every command: "a" = "1", "b" = "". */
static struct kv *base_map(void)
{
    struct kv *kv = kv_new(1);
    CHECK(kv != NULL);
    CHECK(kv_put(kv, "a", 1, "1", 1) == 0 && kv_put(kv, "b", 1, "", 0) == 0);
    return kv;
}

/* What the map must hold for key after the ops: the last op on it wins;
 * untouched keys keep their base value. */
static void check_key(const struct kv *kv, const struct kv_op *ops, size_t n,
                      const uint8_t *key, size_t klen)
{
    const struct kv_op *last = NULL;
    for (size_t i = 0; i < n; i++)
        if (bytes_eq(ops[i].key, ops[i].klen, key, klen))
            last = &ops[i];
    const uint8_t *v;
    size_t vl;
    int err = kv_get(kv, key, klen, &v, &vl);
    if (last == NULL && bytes_eq(key, klen, (const uint8_t *)"a", 1))
        CHECK(err == 0 && bytes_eq(v, vl, (const uint8_t *)"1", 1));
    if (last == NULL && bytes_eq(key, klen, (const uint8_t *)"b", 1))
        CHECK(err == 0 && vl == 0);
    if (last == NULL)
        return;
    if (last->type == KV_OP_DEL) {
        CHECK(err == CRAFT_ENOTFOUND);
    } else {
        CHECK(err == 0 && bytes_eq(v, vl, last->val, last->vlen));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kv *kv = base_map();
    struct kv_cmd_iter it;
    if (kv_cmd_iter_init(&it, data, size) != 0) {
        CHECK(kv_apply(kv, data, size) == CRAFT_ECORRUPT);
        CHECK(kv_count(kv) == 2 && kv_bytes(kv) == 3);
        kv_free(kv);
        return 0;
    }
    size_t n = it.left;
    CHECK(n <= size);
    struct kv_op *ops = calloc(n + 1, sizeof *ops);
    CHECK(ops != NULL);
    size_t k = 0;
    while (kv_cmd_iter_next(&it, &ops[k]))
        CHECK(++k <= n);
    CHECK(k == n);

    /* One encoding per command. */
    CHECK(kv_cmd_size(ops, n) == size);
    uint8_t *buf = malloc(size);
    CHECK(buf != NULL);
    CHECK(kv_cmd_encode(ops, n, buf) == size && memcmp(buf, data, size) == 0);
    free(buf);
    struct kv_cmd c;
    CHECK(kv_cmd_init(&c) == 0);
    for (size_t i = 0; i < n; i++)
        CHECK((ops[i].type == KV_OP_SET
                   ? kv_cmd_set(&c, ops[i].key, ops[i].klen, ops[i].val,
                                ops[i].vlen)
                   : kv_cmd_del(&c, ops[i].key, ops[i].klen)) == 0);
    CHECK(c.n_ops == n && bytes_eq(c.data, c.len, data, size));
    kv_cmd_free(&c);

    /* Applied: the last op on each key wins, the rest is untouched. */
    CHECK(kv_apply(kv, data, size) == 0);
    for (size_t i = 0; i < n; i++)
        check_key(kv, ops, n, ops[i].key, ops[i].klen);
    check_key(kv, ops, n, (const uint8_t *)"a", 1);
    check_key(kv, ops, n, (const uint8_t *)"b", 1);
    free(ops);
    kv_free(kv);
    return 0;
}
