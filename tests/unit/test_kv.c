/* Tests of the replicated state machine (src/kv): the map and its tree
 * invariants, revisions, ordered listing, commands, transactions and
 * their atomicity, the member directory, snapshots and their corruption,
 * allocation failure, and the 1M-key memory budget. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <valgrind/valgrind.h>

#include "unit/count_alloc.h"
#include "common/alloc.h"
#include "common/crc32c.h"
#include "common/endian.h"
#include "kv/kv.h"
#include "kv/kv_internal.h"

#define SEED 42

/* ---- helpers ------------------------------------------------------------ */

static bool slow_env(void)
{
    return RUNNING_ON_VALGRIND;
}

static void assert_val(const struct kv *kv, const void *key, size_t klen,
                       const void *val, size_t vlen)
{
    const uint8_t *v;
    size_t n;
    assert_int_equal(kv_get(kv, key, klen, &v, &n), 0);
    assert_int_equal(n, vlen);
    assert_memory_equal(v, val, vlen);
}

static void assert_absent(const struct kv *kv, const void *key, size_t klen)
{
    assert_int_equal(kv_get(kv, key, klen, NULL, NULL), CRAFT_ENOTFOUND);
}

/* Exactly 16-byte keys and values: "key-000000000042". */
static void key16(char *buf, unsigned i, const char *prefix)
{
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%s-%012u", prefix, i);
    memcpy(buf, tmp, 16);
}

static struct kv *fill(size_t n, uint64_t seed)
{
    struct kv *kv = kv_new(seed);
    assert_non_null(kv);
    char k[16], v[16];
    for (unsigned i = 0; i < n; i++) {
        key16(k, i, "key");
        key16(v, i, "val");
        assert_int_equal(kv_put(kv, k, 16, v, 16), 0);
    }
    return kv;
}

static int sum_visit(void *ud, const uint8_t *key, size_t klen,
                     const uint8_t *val, size_t vlen)
{
    (void)key;
    (void)val;
    *(uint64_t *)ud += klen + vlen;
    return 0;
}

/* Two maps hold the same pairs (and the same members). */
static void assert_same(const struct kv *a, const struct kv *b)
{
    assert_int_equal(kv_count(a), kv_count(b));
    assert_int_equal(kv_bytes(a), kv_bytes(b));
    struct kv_iter it;
    const uint8_t *k, *v;
    size_t kl, vl;
    kv_iter_init(&it);
    while (kv_iter_next(a, &it, &k, &kl, &v, &vl))
        assert_val(b, k, kl, v, vl);
    assert_int_equal(kv_member_count(a), kv_member_count(b));
    for (size_t i = 0; i < kv_member_count(a); i++) {
        const struct kv_member *m = kv_member_at(a, i);
        const struct kv_member *n = kv_member_get(b, m->id);
        assert_non_null(n);
        assert_int_equal(m->raft_id, n->raft_id);
        assert_string_equal(m->raft_addr, n->raft_addr);
        assert_string_equal(m->http_addr, n->http_addr);
    }
}

static uint8_t *snapshot(const struct kv *kv, uint64_t applied, size_t *len)
{
    uint8_t *buf;
    assert_int_equal(kv_snapshot_write_mem(kv, applied, &buf, len), 0);
    return buf;
}

/* ---- the map ------------------------------------------------------------- */

static void test_put_get_del(void **state)
{
    (void)state;
    struct kv *kv = kv_new(SEED);
    assert_non_null(kv);
    assert_int_equal(kv_count(kv), 0);
    assert_absent(kv, "a", 1);

    assert_int_equal(kv_put(kv, "user1", 5, "batman", 6), 0);
    assert_val(kv, "user1", 5, "batman", 6);
    assert_int_equal(kv_count(kv), 1);
    assert_int_equal(kv_bytes(kv), 11);

    /* overwrite, same size (in place) and different sizes */
    assert_int_equal(kv_put(kv, "user1", 5, "robin!", 6), 0);
    assert_val(kv, "user1", 5, "robin!", 6);
    assert_int_equal(kv_put(kv, "user1", 5, "alfred pennyworth", 17), 0);
    assert_val(kv, "user1", 5, "alfred pennyworth", 17);
    assert_int_equal(kv_put(kv, "user1", 5, "", 0), 0);
    assert_val(kv, "user1", 5, "", 0);
    assert_int_equal(kv_count(kv), 1);
    assert_int_equal(kv_bytes(kv), 5);

    /* the empty key is a key like any other */
    assert_int_equal(kv_put(kv, NULL, 0, "empty", 5), 0);
    assert_val(kv, "", 0, "empty", 5);
    assert_int_equal(kv_count(kv), 2);

    assert_int_equal(kv_del(kv, "user1", 5), 0);
    assert_absent(kv, "user1", 5);
    assert_int_equal(kv_del(kv, "user1", 5), CRAFT_ENOTFOUND);
    assert_int_equal(kv_del(kv, "", 0), 0);
    assert_int_equal(kv_count(kv), 0);
    assert_int_equal(kv_bytes(kv), 0);
    kv_free(kv);
    kv_free(NULL);
}

static void test_binary_keys(void **state)
{
    (void)state;
    struct kv *kv = kv_new(0); /* random seed */
    static const char k1[] = {'a', 0, 'b'}, k2[] = {'a', 0, 'c'};
    static const char k3[] = {0}, k4[] = {0, 0};
    assert_int_equal(kv_put(kv, k1, 3, "1", 1), 0);
    assert_int_equal(kv_put(kv, k2, 3, "2\0two", 5), 0);
    assert_int_equal(kv_put(kv, "a", 1, "3", 1), 0);
    assert_int_equal(kv_put(kv, k3, 1, "4", 1), 0);
    assert_int_equal(kv_put(kv, k4, 2, "5", 1), 0);
    assert_int_equal(kv_count(kv), 5);
    assert_val(kv, k1, 3, "1", 1);
    assert_val(kv, k2, 3, "2\0two", 5);
    assert_val(kv, "a", 1, "3", 1);
    assert_val(kv, k3, 1, "4", 1);
    assert_val(kv, k4, 2, "5", 1);
    assert_absent(kv, "a\0", 2);
    assert_absent(kv, "", 0);
    assert_int_equal(kv_del(kv, k1, 3), 0);
    assert_absent(kv, k1, 3);
    assert_val(kv, k2, 3, "2\0two", 5);
    kv_free(kv);
}

static int stop_at_third(void *ud, const uint8_t *key, size_t klen,
                         const uint8_t *val, size_t vlen)
{
    (void)key, (void)klen, (void)val, (void)vlen;
    return ++*(int *)ud == 3 ? 77 : 0;
}

/* Growth, deletes that shift runs back, shrinking, iteration. */
static void test_grow_delete_iterate(void **state)
{
    (void)state;
    const unsigned n = 50000;
    struct kv *kv = fill(n, SEED);
    assert_int_equal(kv_count(kv), n);
    char k[16], v[16];
    for (unsigned i = 0; i < n; i += 2) {
        key16(k, i, "key");
        assert_int_equal(kv_del(kv, k, 16), 0);
    }
    assert_int_equal(kv_count(kv), n / 2);
    for (unsigned i = 0; i < n; i++) {
        key16(k, i, "key");
        key16(v, i, "val");
        if (i % 2)
            assert_val(kv, k, 16, v, 16);
        else
            assert_absent(kv, k, 16);
    }
    /* iteration sees each remaining pair once */
    struct kv_iter it;
    const uint8_t *key, *val;
    size_t kl, vl, seen = 0;
    kv_iter_init(&it);
    while (kv_iter_next(kv, &it, &key, &kl, &val, &vl)) {
        assert_int_equal(kl, 16);
        assert_memory_equal(key + 4, val + 4, 12);
        seen++;
    }
    assert_int_equal(seen, n / 2);
    uint64_t sum = 0;
    assert_int_equal(kv_foreach(kv, sum_visit, &sum), 0);
    assert_int_equal(sum, kv_bytes(kv));
    int calls = 0;
    assert_int_equal(kv_foreach(kv, stop_at_third, &calls), 77);
    assert_int_equal(calls, 3);

    /* delete everything: the tree shrinks back */
    for (unsigned i = 1; i < n; i += 2) {
        key16(k, i, "key");
        assert_int_equal(kv_del(kv, k, 16), 0);
    }
    assert_int_equal(kv_count(kv), 0);
    assert_int_equal(kv->height, 0); /* back to one leaf */
    kv_free(kv);
}

static long rss_bytes(void)
{
    long size, resident;
    FILE *f = fopen("/proc/self/statm", "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%ld %ld", &size, &resident), 2);
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* 1M 16-byte keys with 16-byte values: time and memory. */
static void test_million_keys(void **state)
{
    (void)state;
    craft_set_allocator(NULL); /* measure the real allocator */
    unsigned n = slow_env() ? 100000 : 1000000;
    long rss0 = rss_bytes();
    struct kv *kv = kv_new(0);
    assert_non_null(kv);
    char k[16], v[16];
    double t0 = now(), worst = 0;
    for (unsigned i = 0; i < n; i++) {
        key16(k, i, "key");
        key16(v, i, "val");
        double t = now();
        assert_int_equal(kv_put(kv, k, 16, v, 16), 0);
        t = now() - t;
        worst = t > worst ? t : worst;
    }
    double t1 = now();
    long rss1 = rss_bytes();
    assert_int_equal(kv_count(kv), n);
    for (unsigned i = 0; i < n; i++) {
        key16(k, i, "key");
        key16(v, i, "val");
        assert_val(kv, k, 16, v, 16);
    }
    double t2 = now();
    double per_key = (double)(rss1 - rss0) / n;
    printf("kv: %u keys: put %.0f ns/key (slowest put, a table doubling: "
           "%.1f ms), get %.0f ns/key, RSS +%.1f MB = %.1f bytes/key "
           "(tree height %u)\n",
           n, (t1 - t0) / n * 1e9, worst * 1e3, (t2 - t1) / n * 1e9,
           (rss1 - rss0) / 1e6, per_key, kv->height);
#if !defined(__SANITIZE_ADDRESS__)
    if (!slow_env())
        assert_true(rss1 - rss0 < 80L * 1024 * 1024); /* the budget */
#endif

    /* snapshot and restore of the whole map */
    uint8_t *buf;
    size_t len;
    struct kv *back;
    uint64_t applied;
    t0 = now();
    assert_int_equal(kv_snapshot_write_mem(kv, 1, &buf, &len), 0);
    t1 = now();
    assert_int_equal(kv_restore_mem(buf, len, 0, &back, &applied), 0);
    t2 = now();
    assert_int_equal(kv_count(back), n);
    printf("kv: snapshot %.1f MB written in %.0f ms, restored in %.0f ms\n",
           len / 1e6, (t1 - t0) * 1e3, (t2 - t1) * 1e3);
    craft_free(buf);
    kv_free(back);
    kv_free(kv);
}

/* ---- commands ------------------------------------------------------------ */

static const struct kv_op sample_ops[] = {
    {KV_OP_SET, (const uint8_t *)"user1", 5, (const uint8_t *)"batman", 6},
    {KV_OP_DEL, (const uint8_t *)"gone", 4, NULL, 0},
    {KV_OP_SET, (const uint8_t *)"a\0b", 3, (const uint8_t *)"\0\1\2", 3},
    {KV_OP_SET, (const uint8_t *)"", 0, (const uint8_t *)"", 0},
};
#define N_SAMPLE (sizeof sample_ops / sizeof sample_ops[0])

static void test_cmd_round_trip(void **state)
{
    (void)state;
    /* a value long enough for a multi-byte length */
    static uint8_t big[300];
    memset(big, 'x', sizeof big);
    struct kv_op ops[N_SAMPLE + 1];
    memcpy(ops, sample_ops, sizeof sample_ops);
    ops[N_SAMPLE] = (struct kv_op){KV_OP_SET, (const uint8_t *)"big", 3, big,
                                   sizeof big};
    size_t n = N_SAMPLE + 1;

    size_t size = kv_cmd_size(ops, n);
    assert_int_equal(size, 5 + (1 + 1 + 5 + 1 + 6) + (1 + 1 + 4) +
                               (1 + 1 + 3 + 1 + 3) + (1 + 1 + 1) +
                               (1 + 1 + 3 + 2 + 300));
    uint8_t *buf = malloc(size);
    assert_int_equal(kv_cmd_encode(ops, n, buf), size);
    assert_int_equal(buf[0], KV_CMD_VERSION);

    /* the builder makes the same bytes */
    struct kv_cmd c;
    assert_int_equal(kv_cmd_init(&c), 0);
    for (size_t i = 0; i < n; i++) {
        if (ops[i].type == KV_OP_SET)
            assert_int_equal(kv_cmd_set(&c, ops[i].key, ops[i].klen,
                                        ops[i].val, ops[i].vlen), 0);
        else
            assert_int_equal(kv_cmd_del(&c, ops[i].key, ops[i].klen), 0);
    }
    assert_int_equal(c.n_ops, n);
    assert_int_equal(c.len, size);
    assert_memory_equal(c.data, buf, size);

    struct kv_cmd_iter it;
    struct kv_op op;
    assert_int_equal(kv_cmd_iter_init(&it, buf, size), 0);
    for (size_t i = 0; i < n; i++) {
        assert_true(kv_cmd_iter_next(&it, &op));
        assert_int_equal(op.type, ops[i].type);
        assert_int_equal(op.klen, ops[i].klen);
        assert_memory_equal(op.key, ops[i].key, op.klen);
        assert_int_equal(op.vlen, ops[i].vlen);
        if (op.vlen)
            assert_memory_equal(op.val, ops[i].val, op.vlen);
    }
    assert_false(kv_cmd_iter_next(&it, &op));

    /* reset: an empty batch, still a valid command that changes nothing */
    kv_cmd_reset(&c);
    assert_int_equal(c.len, 5);
    assert_int_equal(kv_cmd_iter_init(&it, c.data, c.len), 0);
    assert_false(kv_cmd_iter_next(&it, &op));
    kv_cmd_free(&c);
    kv_cmd_free(&c); /* idempotent */
    assert_int_equal(kv_cmd_del(&c, "k", 1), CRAFT_EINVAL);

    /* ops that cannot be encoded */
    struct kv_op bad = {9, (const uint8_t *)"k", 1, NULL, 0};
    assert_int_equal(kv_cmd_size(&bad, 1), 0);
    assert_int_equal(kv_cmd_size(NULL, 0), 5);
    free(buf);
}

/* Every strict prefix, and the command plus a trailing byte, is malformed:
 * rejected by the decoder and by kv_apply, which changes nothing. */
static void test_cmd_truncation(void **state)
{
    (void)state;
    size_t size = kv_cmd_size(sample_ops, N_SAMPLE);
    uint8_t *buf = malloc(size + 1);
    kv_cmd_encode(sample_ops, N_SAMPLE, buf);
    buf[size] = 0;
    struct kv *kv = kv_new(SEED);
    assert_int_equal(kv_put(kv, "gone", 4, "here", 4), 0);
    struct kv_cmd_iter it;
    for (size_t len = 0; len < size; len++) {
        /* a copy of exactly len bytes, so a read past it is caught */
        uint8_t *cut = malloc(len ? len : 1);
        memcpy(cut, buf, len);
        assert_int_equal(kv_cmd_iter_init(&it, cut, len), CRAFT_ECORRUPT);
        assert_int_equal(kv_apply(kv, cut, len), CRAFT_ECORRUPT);
        free(cut);
    }
    assert_int_equal(kv_cmd_iter_init(&it, buf, size + 1), CRAFT_ECORRUPT);
    assert_int_equal(kv_apply(kv, buf, size + 1), CRAFT_ECORRUPT);
    assert_int_equal(kv_apply(kv, NULL, 0), CRAFT_ECORRUPT);
    assert_int_equal(kv_count(kv), 1);
    assert_val(kv, "gone", 4, "here", 4);

    assert_int_equal(kv_apply(kv, buf, size), 0);
    assert_int_equal(kv_count(kv), 3);
    assert_absent(kv, "gone", 4);
    assert_val(kv, "user1", 5, "batman", 6);
    assert_val(kv, "a\0b", 3, "\0\1\2", 3);
    assert_val(kv, "", 0, "", 0);
    free(buf);
    kv_free(kv);
}

static void expect_corrupt(const uint8_t *cmd, size_t len)
{
    struct kv_cmd_iter it;
    assert_int_equal(kv_cmd_iter_init(&it, cmd, len), CRAFT_ECORRUPT);
}

static void test_cmd_malformed(void **state)
{
    (void)state;
    /* version 2 */
    const uint8_t v2[] = {2, 1, 0, 0, 0, KV_OP_DEL, 1, 'k'};
    expect_corrupt(v2, sizeof v2);
    const uint8_t ok[] = {1, 1, 0, 0, 0, KV_OP_DEL, 1, 'k'};
    struct kv_cmd_iter it;
    assert_int_equal(kv_cmd_iter_init(&it, ok, sizeof ok), 0);
    /* unknown op type */
    const uint8_t type0[] = {1, 1, 0, 0, 0, 0, 1, 'k'};
    expect_corrupt(type0, sizeof type0);
    const uint8_t type3[] = {1, 1, 0, 0, 0, 3, 1, 'k'};
    expect_corrupt(type3, sizeof type3);
    /* non-canonical varint (1 written in two bytes) */
    const uint8_t longvar[] = {1, 1, 0, 0, 0, KV_OP_DEL, 0x81, 0x00, 'k'};
    expect_corrupt(longvar, sizeof longvar);
    /* varint over 5 bytes, and over UINT32_MAX */
    const uint8_t var6[] = {1, 1, 0, 0, 0, KV_OP_DEL,
                            0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
    expect_corrupt(var6, sizeof var6);
    const uint8_t var33[] = {1, 1, 0, 0, 0, KV_OP_DEL,
                             0xff, 0xff, 0xff, 0xff, 0x1f};
    expect_corrupt(var33, sizeof var33);
    /* length running past the end */
    const uint8_t past[] = {1, 1, 0, 0, 0, KV_OP_SET, 1, 'k', 5, 'v'};
    expect_corrupt(past, sizeof past);
    /* op count larger / smaller than the ops present */
    const uint8_t more[] = {1, 2, 0, 0, 0, KV_OP_DEL, 1, 'k'};
    expect_corrupt(more, sizeof more);
    const uint8_t fewer[] = {1, 0, 0, 0, 0, KV_OP_DEL, 1, 'k'};
    expect_corrupt(fewer, sizeof fewer);
    const uint8_t huge[] = {1, 0xff, 0xff, 0xff, 0xff, KV_OP_DEL, 1, 'k'};
    expect_corrupt(huge, sizeof huge);
}

/* A batch with a malformed op in the middle changes nothing at all. */
static void test_batch_atomicity(void **state)
{
    (void)state;
    struct kv *kv = fill(100, SEED);
    size_t len0;
    uint8_t *snap0 = snapshot(kv, 1, &len0);

    struct kv_cmd c;
    assert_int_equal(kv_cmd_init(&c), 0);
    assert_int_equal(kv_cmd_set(&c, "new1", 4, "x", 1), 0);
    assert_int_equal(kv_cmd_del(&c, "key-000000000001", 16), 0);
    size_t mid = c.len;
    assert_int_equal(kv_cmd_set(&c, "key-000000000002", 16, "changed", 7), 0);
    assert_int_equal(kv_cmd_del(&c, "key-000000000003", 16), 0);
    assert_int_equal(kv_cmd_set(&c, "new2", 4, "y", 1), 0);
    c.data[mid] = 7; /* the third op's type */
    assert_int_equal(kv_apply(kv, c.data, c.len), CRAFT_ECORRUPT);

    size_t len1;
    uint8_t *snap1 = snapshot(kv, 1, &len1);
    assert_int_equal(len0, len1);
    assert_memory_equal(snap0, snap1, len0); /* byte for byte the same */
    assert_absent(kv, "new1", 4);

    c.data[mid] = KV_OP_SET; /* repaired: applies whole */
    assert_int_equal(kv_apply(kv, c.data, c.len), 0);
    assert_int_equal(kv_count(kv), 100 + 2 - 2);
    assert_val(kv, "new1", 4, "x", 1);
    assert_val(kv, "new2", 4, "y", 1);
    assert_val(kv, "key-000000000002", 16, "changed", 7);
    assert_absent(kv, "key-000000000001", 16);
    assert_absent(kv, "key-000000000003", 16);
    craft_free(snap0);
    craft_free(snap1);
    kv_cmd_free(&c);
    kv_free(kv);
}

/* Order within a batch; deleting an absent key; batches over the stack
 * reserve of entries. */
static void test_apply_semantics(void **state)
{
    (void)state;
    struct kv *kv = kv_new(SEED);
    struct kv_cmd c;
    assert_int_equal(kv_cmd_init(&c), 0);
    assert_int_equal(kv_cmd_set(&c, "k", 1, "1", 1), 0);
    assert_int_equal(kv_cmd_set(&c, "k", 1, "22", 2), 0);
    assert_int_equal(kv_cmd_del(&c, "absent", 6), 0);
    assert_int_equal(kv_cmd_set(&c, "d", 1, "x", 1), 0);
    assert_int_equal(kv_cmd_del(&c, "d", 1), 0);
    assert_int_equal(kv_apply(kv, c.data, c.len), 0);
    assert_int_equal(kv_count(kv), 1);
    assert_val(kv, "k", 1, "22", 2);
    assert_absent(kv, "d", 1);

    kv_cmd_reset(&c);
    char k[16];
    for (unsigned i = 0; i < 1000; i++) {
        key16(k, i, "bat");
        assert_int_equal(kv_cmd_set(&c, k, 16, k, 16), 0);
    }
    assert_int_equal(kv_apply(kv, c.data, c.len), 0);
    assert_int_equal(kv_count(kv), 1001);
    key16(k, 999, "bat");
    assert_val(kv, k, 16, k, 16);
    kv_cmd_free(&c);
    kv_free(kv);
}

/* Every allocation kv_apply makes, failed in turn: CRAFT_ENOMEM and the map
 * unchanged, until it succeeds. */
static int apply_failing_each_allocation(struct kv *kv, uint64_t index,
                                         const uint8_t *cmd, size_t len);

static void test_apply_nomem(void **state)
{
    (void)state;
    struct kv *kv = fill(11, SEED); /* next insert grows 16 -> 32 slots */
    struct kv_cmd c;
    assert_int_equal(kv_cmd_init(&c), 0);
    char k[16];
    for (unsigned i = 0; i < 12; i++) { /* over the stack reserve */
        key16(k, i, "new");
        assert_int_equal(kv_cmd_set(&c, k, 16, "v", 1), 0);
    }
    assert_int_equal(kv_cmd_del(&c, "key-000000000000", 16), 0);
    int fails = apply_failing_each_allocation(kv, kv_index(kv) + 1, c.data, c.len);
    assert_true(fails >= 2); /* blocks array, index (leaves come from a
                              * chunk already there: test_pages) */
    assert_int_equal(kv_count(kv), 11 + 12 - 1);

    /* kv_put and the builder fail cleanly too (a small put takes its room
     * from the pool kept after the last change; a big value needs its own
     * block) */
    static uint8_t bigv[2 * KV__INLINE_MAX];
    count_alloc_countdown = 1;
    assert_int_equal(kv_put(kv, "p", 1, bigv, sizeof bigv), CRAFT_ENOMEM);
    assert_absent(kv, "p", 1);
    count_alloc_countdown = 1;
    assert_int_equal(kv_put(kv, "p", 1, "q", 1), 0);
    assert_int_equal(count_alloc_countdown, 1); /* allocated nothing */
    count_alloc_countdown = 0;
    assert_val(kv, "p", 1, "q", 1);
    for (unsigned i = 0; i < 10; i++) { /* fill up the builder's buffer */
        key16(k, i, "more");
        assert_int_equal(kv_cmd_set(&c, k, 16, k, 16), 0);
    }
    size_t len = c.len;
    uint32_t n = c.n_ops;
    static uint8_t big[4096];
    count_alloc_countdown = 1;
    assert_int_equal(kv_cmd_set(&c, "b", 1, big, sizeof big), CRAFT_ENOMEM);
    assert_int_equal(c.len, len);
    assert_int_equal(c.n_ops, n);
    struct kv_cmd_iter it;
    assert_int_equal(kv_cmd_iter_init(&it, c.data, c.len), 0);
    kv_cmd_free(&c);
    count_alloc_countdown = 1;
    assert_int_equal(kv_cmd_init(&c), CRAFT_ENOMEM);
    count_alloc_countdown = 1;
    assert_null(kv_new(SEED));
    count_alloc_countdown = 2;
    assert_null(kv_new(SEED));
    kv_free(kv);
}

/* ---- members ------------------------------------------------------------- */

static void add_members(struct kv *kv)
{
    assert_int_equal(kv_member_set(kv, "node0", 1, "localhost:12000",
                                   "localhost:11000"), 0);
    assert_int_equal(kv_member_set(kv, "node1", 2, "localhost:12001",
                                   "localhost:11001"), 0);
    assert_int_equal(kv_member_set(kv, "node2", 3, "localhost:12002", NULL),
                     0);
}

static void test_members(void **state)
{
    (void)state;
    struct kv *kv = kv_new(SEED);
    assert_int_equal(kv_member_count(kv), 0);
    assert_null(kv_member_get(kv, "node0"));
    add_members(kv);
    assert_int_equal(kv_member_count(kv), 3);
    const struct kv_member *m = kv_member_get(kv, "node1");
    assert_non_null(m);
    assert_int_equal(m->raft_id, 2);
    assert_string_equal(m->raft_addr, "localhost:12001");
    assert_string_equal(kv_member_get(kv, "node2")->http_addr, "");
    assert_string_equal(kv_member_by_raft_id(kv, 3)->id, "node2");
    assert_null(kv_member_by_raft_id(kv, 9));

    /* replace keeps the position */
    assert_int_equal(kv_member_set(kv, "node1", 5, "h:1", "h:2"), 0);
    assert_int_equal(kv_member_count(kv), 3);
    assert_string_equal(kv_member_at(kv, 1)->raft_addr, "h:1");
    assert_int_equal(kv_member_at(kv, 1)->raft_id, 5);

    assert_int_equal(kv_member_del(kv, "node0"), 0);
    assert_int_equal(kv_member_del(kv, "node0"), CRAFT_ENOTFOUND);
    assert_int_equal(kv_member_del(kv, NULL), CRAFT_ENOTFOUND);
    assert_int_equal(kv_member_count(kv), 2);
    assert_string_equal(kv_member_at(kv, 0)->id, "node1");
    assert_null(kv_member_at(kv, 2));
    assert_int_equal(kv_member_set(kv, NULL, 1, "a", "b"), CRAFT_EINVAL);

    /* allocation failure at each step leaves the directory as it was */
    assert_int_equal(kv_member_set(kv, "node3", 4, "x", "y"), 0);
    assert_int_equal(kv_member_set(kv, "node4", 6, "x", "y"), 0);
    for (long at = 1; at <= 5; at++) {
        count_alloc_countdown = at;
        int err = kv_member_set(kv, "node5", 7, "x", "y");
        count_alloc_countdown = 0;
        if (err == 0) {
            assert_int_equal(at, 5); /* 3 strings, then the array growth */
            break;
        }
        assert_int_equal(err, CRAFT_ENOMEM);
        assert_int_equal(kv_member_count(kv), 4);
        assert_null(kv_member_get(kv, "node5"));
    }
    assert_int_equal(kv_member_count(kv), 5);
    assert_int_equal(kv_member_at(kv, 4)->raft_id, 7);
    kv_free(kv);
}

/* ---- snapshots ----------------------------------------------------------- */

static struct kv *sample_state(size_t n)
{
    struct kv *kv = fill(n, SEED);
    assert_int_equal(kv_put(kv, "a\0b", 3, "", 0), 0);
    assert_int_equal(kv_put(kv, "", 0, "\0\0", 2), 0);
    add_members(kv);
    return kv;
}

static void test_snapshot_mem(void **state)
{
    (void)state;
    struct kv *kv = sample_state(100000);
    size_t len;
    uint8_t *buf = snapshot(kv, 123456789012ULL, &len);
    assert_int_equal(len, kv_snapshot_size(kv));
    assert_memory_equal(buf, "CRAFTKVS", 8);

    struct kv *back;
    uint64_t applied = 0;
    assert_int_equal(kv_restore_mem(buf, len, 7, &back, &applied), 0);
    assert_int_equal(applied, 123456789012ULL);
    assert_same(kv, back);
    assert_same(back, kv);
    kv_free(back);

    /* corrupt the big one in the middle, at the end, and cut it short */
    struct kv *bad = NULL;
    buf[len / 2] ^= 0x10;
    assert_int_equal(kv_restore_mem(buf, len, 7, &bad, &applied),
                     CRAFT_ECORRUPT);
    buf[len / 2] ^= 0x10;
    buf[len - 1] ^= 0x01;
    assert_int_equal(kv_restore_mem(buf, len, 7, &bad, &applied),
                     CRAFT_ECORRUPT);
    buf[len - 1] ^= 0x01;
    assert_int_equal(kv_restore_mem(buf, len - 1, 7, &bad, &applied),
                     CRAFT_ECORRUPT);
    assert_null(bad);
    craft_free(buf);

    /* an empty state round-trips too */
    struct kv *empty = kv_new(SEED);
    buf = snapshot(empty, 0, &len);
    assert_int_equal(len, 36 + 8 + 4); /* header, no leases, trailer */
    assert_int_equal(kv_restore_mem(buf, len, 0, &back, &applied), 0);
    assert_int_equal(kv_count(back), 0);
    assert_int_equal(applied, 0);
    kv_free(back);
    kv_free(empty);
    craft_free(buf);
    kv_free(kv);
}

static void test_snapshot_file(void **state)
{
    (void)state;
    struct kv *kv = sample_state(100000);
    char path[] = "/tmp/test_kv_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(kv_snapshot_write_fd(kv, fd, 99), 0);
    assert_int_equal(lseek(fd, 0, SEEK_CUR), (off_t)kv_snapshot_size(kv));
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    struct kv *back;
    uint64_t applied;
    assert_int_equal(kv_restore_fd(fd, SEED, &back, &applied), 0);
    assert_int_equal(applied, 99);
    assert_same(kv, back);
    kv_free(back);

    /* truncated file */
    assert_int_equal(ftruncate(fd, 1000), 0);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    assert_int_equal(kv_restore_fd(fd, SEED, &back, &applied),
                     CRAFT_ECORRUPT);
    close(fd);

    /* I/O errors: a closed descriptor, a full disk */
    assert_int_equal(kv_snapshot_write_fd(kv, fd, 1), -EBADF);
    assert_int_equal(kv_restore_fd(fd, SEED, &back, &applied), -EBADF);
    int full = open("/dev/full", O_WRONLY);
    if (full >= 0) {
        assert_int_equal(kv_snapshot_write_fd(kv, full, 1), CRAFT_ENOSPACE);
        close(full);
    }
    kv_free(kv);
}

/* The way the node does it: a fork()ed child writes into a pipe. */
static void test_snapshot_pipe_fork(void **state)
{
    (void)state;
    struct kv *kv = sample_state(100000);
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        int err = kv_snapshot_write_fd(kv, p[1], 4242);
        kv_free(kv); /* so that a leak checker in the child stays quiet */
        _exit(err == 0 ? 0 : 1);
    }
    close(p[1]);
    struct kv *back;
    uint64_t applied;
    assert_int_equal(kv_restore_fd(p[0], 0, &back, &applied), 0);
    close(p[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(applied, 4242);
    assert_same(kv, back);
    kv_free(back);
    kv_free(kv);
}

/* Resident KiB of a process, from /proc/<pid>/smaps_rollup (-1 if none). */
static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Rss: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* The node's writer: a child that gives each leaf's page back once written
 * (kv_snapshot_write_child) still writes the whole map, leaves the
 * parent's map as it was, and no longer holds the leaves once done: its
 * resident set fell by at least most of them while it wrote. */
static void test_snapshot_child_gives_pages_back(void **state)
{
    (void)state;
    struct kv *kv = sample_state(100000);
    long leaf_kib = (long)kv->pages.used * (KV__PAGE / 1024);
    int p[2], rss[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(pipe(rss), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        close(rss[0]);
        long kib[2];
        kib[0] = rss_kib(getpid());
        int err = kv_snapshot_write_child(kv, p[1], 77);
        kib[1] = rss_kib(getpid());
        close(p[1]);
        err |= write(rss[1], kib, sizeof kib) != (ssize_t)sizeof kib;
        _exit(err == 0 ? 0 : 1);
    }
    close(p[1]);
    close(rss[1]);
    struct kv *back;
    uint64_t applied;
    assert_int_equal(kv_restore_fd(p[0], 0, &back, &applied), 0);
    close(p[0]);
    long kib[2];
    assert_int_equal(read(rss[0], kib, sizeof kib), sizeof kib);
    close(rss[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(applied, 77);
    assert_same(kv, back);
    if (!slow_env() && kib[0] > 0 && kib[1] > 0) {
        printf("kv: writer child resident %ld -> %ld KiB, leaves %ld KiB\n",
               kib[0], kib[1], leaf_kib);
        assert_true(kib[0] - kib[1] >= leaf_kib * 3 / 4);
    }
    kv_free(back);
    kv_free(kv);
}

/* The leaves' page allocator: aligned pages, reused lowest first, chunks
 * given back once empty but one, a failed chunk allocation leaving
 * everything as it was. */
static void test_pages(void **state)
{
    (void)state;
    struct kv *kv = kv_new(SEED); /* its root leaf holds one page */
    assert_int_equal(kv->pages.used, 1);
    enum { N = 4 * KV__CHUNK_PAGES - 1 }; /* 4 chunks, full */
    void *pg[N];
    for (int i = 0; i < N; i++) {
        pg[i] = kv__page_alloc(kv);
        assert_non_null(pg[i]);
        assert_int_equal((uintptr_t)pg[i] % KV__PAGE, 0);
        memset(pg[i], 0xa5, KV__PAGE); /* the whole page is ours */
        for (int j = 0; j < i; j++)
            assert_true(pg[j] != pg[i]);
    }
    assert_int_equal(kv->pages.used, N + 1);
    assert_int_equal(kv->pages.n, 4);
    for (size_t i = 1; i < kv->pages.n; i++)
        assert_true(kv->pages.chunks[i - 1].base < kv->pages.chunks[i].base);

    /* a freed page is the next one handed out */
    void *again = pg[N / 2];
    kv__page_free(kv, again);
    pg[N / 2] = kv__page_alloc(kv);
    assert_ptr_equal(pg[N / 2], again);

    /* every chunk full: the next page needs a chunk, and that fails */
    long live = count_alloc_live;
    count_alloc_countdown = 1;
    assert_null(kv__page_alloc(kv));
    count_alloc_countdown = 0;
    assert_int_equal(count_alloc_live, live);
    assert_int_equal(kv->pages.used, N + 1);

    /* freed pages leave memory on kv__pages_release (they read as zeros),
     * and come back usable */
    kv__page_free(kv, pg[5]);
    kv__page_free(kv, pg[6]);
    kv__pages_release(kv);
    for (int i = 5; i <= 6; i++)
        for (size_t b = 0; b < KV__PAGE; b += 512)
            assert_int_equal(((const uint8_t *)pg[i])[b], 0);
    assert_ptr_equal(kv__page_alloc(kv), pg[5]);
    assert_ptr_equal(kv__page_alloc(kv), pg[6]);
    memset(pg[5], 1, KV__PAGE);

    /* free all but the root: the empty chunks go, but one */
    for (int i = N - 1; i >= 0; i -= 2)
        kv__page_free(kv, pg[i]);
    for (int i = N - 2; i >= 0; i -= 2)
        kv__page_free(kv, pg[i]);
    assert_int_equal(kv->pages.used, 1);
    assert_int_equal(kv->pages.n_empty, 1);
    assert_true(kv->pages.n <= 2);
    kv__page_free(kv, NULL);
    kv_free(kv);
}

/* A small snapshot: every single-bit flip and every truncation is caught,
 * and so is a trailing byte. */
static void test_snapshot_corruption(void **state)
{
    (void)state;
    struct kv *kv = sample_state(4);
    size_t len;
    uint8_t *buf = snapshot(kv, 5, &len);
    struct kv *back = NULL;
    uint64_t applied;
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (uint8_t)(1 << bit);
            assert_int_equal(kv_restore_mem(buf, len, SEED, &back, &applied),
                             CRAFT_ECORRUPT);
            buf[i] ^= (uint8_t)(1 << bit);
        }
    }
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *part = malloc(cut ? cut : 1);
        memcpy(part, buf, cut);
        assert_int_equal(kv_restore_mem(part, cut, SEED, &back, &applied),
                         CRAFT_ECORRUPT);
        free(part);
    }
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = 0;
    assert_int_equal(kv_restore_mem(longer, len + 1, SEED, &back, &applied),
                     CRAFT_ECORRUPT);
    free(longer);
    assert_null(back);
    assert_int_equal(kv_restore_mem(buf, len, SEED, &back, &applied), 0);
    kv_free(back);
    craft_free(buf);
    kv_free(kv);
}

/* Re-seal a hand-edited snapshot with a correct CRC. */
static void reseal(uint8_t *buf, size_t len)
{
    craft_put32(buf + len - 4, crc32c(0, buf, len - 4));
}

/* Structurally wrong snapshots with a valid checksum are still refused. */
static void test_snapshot_structure(void **state)
{
    (void)state;
    struct kv *kv = kv_new(SEED);
    assert_int_equal(kv_put(kv, "k1", 2, "v", 1), 0);
    assert_int_equal(kv_put(kv, "k2", 2, "v", 1), 0);
    size_t len;
    uint8_t *buf = snapshot(kv, 1, &len);
    struct kv *back = NULL;
    uint64_t applied;

    craft_put32(buf + 8, 4); /* version 4 */
    reseal(buf, len);
    assert_int_equal(kv_restore_mem(buf, len, SEED, &back, &applied),
                     CRAFT_ECORRUPT);
    craft_put32(buf + 8, 3);
    craft_put32(buf + 12, 1); /* unknown flag */
    reseal(buf, len);
    assert_int_equal(kv_restore_mem(buf, len, SEED, &back, &applied),
                     CRAFT_ECORRUPT);
    craft_put32(buf + 12, 0);
    /* the same key twice: the two records are k1/k2, make both k1; then
     * out of order: k1, k0 */
    /* (key records start after the header and the empty lease table) */
    uint8_t *rec2 = buf + 44 + 40 + 2 + 1 + 40;
    assert_true(rec2[0] == 'k' && rec2[1] == '2');
    rec2[1] = '1';
    reseal(buf, len);
    assert_int_equal(kv_restore_mem(buf, len, SEED, &back, &applied),
                     CRAFT_ECORRUPT);
    rec2[1] = '0';
    reseal(buf, len);
    assert_int_equal(kv_restore_mem(buf, len, SEED, &back, &applied),
                     CRAFT_ECORRUPT);
    rec2[1] = '2';
    /* impossible revisions: version 0, create after mod, mod after the
     * snapshot's applied index */
    uint8_t *rev = buf + 44 + 8;
    uint64_t create = craft_get64(rev), mod = craft_get64(rev + 8);
    craft_put64(rev + 16, 0);
    reseal(buf, len);
    assert_int_equal(kv_restore_mem(buf, len, SEED, &back, &applied),
                     CRAFT_ECORRUPT);
    craft_put64(rev + 16, 1);
    craft_put64(rev, mod + 1);
    reseal(buf, len);
    assert_int_equal(kv_restore_mem(buf, len, SEED, &back, &applied),
                     CRAFT_ECORRUPT);
    craft_put64(rev, create);
    craft_put64(rev + 8, 2); /* applied is 1 */
    reseal(buf, len);
    assert_int_equal(kv_restore_mem(buf, len, SEED, &back, &applied),
                     CRAFT_ECORRUPT);
    craft_put64(rev + 8, mod);
    /* a key length claiming far more than the stream holds */
    craft_put32(buf + 44, 0x7fffffff);
    reseal(buf, len);
    assert_int_equal(kv_restore_mem(buf, len, SEED, &back, &applied),
                     CRAFT_ECORRUPT);
    craft_put32(buf + 44, 2);
    /* a key count larger than the records present */
    craft_put64(buf + 28, 1000000000000ULL);
    reseal(buf, len);
    assert_int_equal(kv_restore_mem(buf, len, SEED, &back, &applied),
                     CRAFT_ECORRUPT);
    craft_put64(buf + 28, 2);
    reseal(buf, len);
    assert_int_equal(kv_restore_mem(buf, len, SEED, &back, &applied), 0);
    assert_same(kv, back);
    kv_free(back);
    craft_free(buf);

    /* a member id holding a NUL */
    struct kv *m = kv_new(SEED);
    assert_int_equal(kv_member_set(m, "ab", 1, "r", "h"), 0);
    buf = snapshot(m, 1, &len);
    buf[36 + 8 + 4 + 1] = 0; /* "a\0" */
    reseal(buf, len);
    assert_int_equal(kv_restore_mem(buf, len, SEED, &back, &applied),
                     CRAFT_ECORRUPT);
    craft_free(buf);
    kv_free(m);
    kv_free(kv);
}

/* Serves a real snapshot, but the call that brings calls_left to 0 fails. */
struct failing_src {
    const uint8_t *buf;
    size_t off;
    int calls_left;
};

static int failing_read(void *ud, void *buf, size_t len)
{
    struct failing_src *s = ud;
    if (--s->calls_left <= 0)
        return CRAFT_EIO;
    memcpy(buf, s->buf + s->off, len);
    s->off += len;
    return 0;
}

static int failing_write(void *ud, const void *buf, size_t len)
{
    (void)buf, (void)len;
    return --*(int *)ud > 0 ? 0 : CRAFT_EIO;
}

/* The source's and sink's own errors come back unchanged; allocation
 * failures during restore leave nothing behind. */
static void test_snapshot_errors(void **state)
{
    (void)state;
    struct kv *kv = sample_state(2000);
    struct kv *back = NULL;
    uint64_t applied;
    size_t len;
    uint8_t *buf = snapshot(kv, 8, &len);
    for (int at = 1; at <= 3; at++) {
        int n = at;
        assert_int_equal(kv_snapshot_write(kv, 1, failing_write, &n),
                         CRAFT_EIO);
    }
    for (int at = 1; at <= 2000; at += 97) {
        struct failing_src src = {buf, 0, at};
        assert_int_equal(kv_restore(failing_read, &src, SEED, &back,
                                    &applied), CRAFT_EIO);
    }
    assert_null(back);
    int ok = 0;
    for (long at = 1; at < 100000 && !ok; at++) {
        count_alloc_countdown = at;
        int err = kv_restore_mem(buf, len, SEED, &back, &applied);
        count_alloc_countdown = 0;
        if (err == 0) {
            ok = 1;
            assert_same(kv, back);
            kv_free(back);
        } else {
            assert_int_equal(err, CRAFT_ENOMEM);
        }
        at += at / 8; /* every early one, then a sparser sample */
    }
    assert_true(ok);
    count_alloc_countdown = 1;
    uint8_t *b2;
    assert_int_equal(kv_snapshot_write_mem(kv, 1, &b2, &len), CRAFT_ENOMEM);
    count_alloc_countdown = 1;
    int fd = open("/dev/null", O_RDONLY);
    assert_int_equal(kv_restore_fd(fd, SEED, &back, &applied), CRAFT_ENOMEM);
    assert_int_equal(kv_restore_fd(fd, SEED, &back, &applied),
                     CRAFT_ECORRUPT); /* empty */
    close(fd);
    craft_free(buf);
    kv_free(kv);
}

/* ---- the tree's invariants ------------------------------------------------ */

struct walk {
    const struct kv *kv;
    const struct kv__leaf *prev_leaf; /* the leaf before, in walk order */
    const uint8_t *last;              /* the last key seen, and its length */
    size_t last_len;
    bool any;
    size_t leaves;
    size_t inodes_at[KV__MAX_DEPTH + 1]; /* by level above the leaves */
    size_t count;
    uint64_t bytes;
};

/* Every key of node lies in [lo, hi) (NULL: unbounded); every leaf is at
 * depth height; keys increase along the leaf chain. */
static void walk_node(const void *node, unsigned height, const uint8_t *lo,
                      size_t lolen, const uint8_t *hi, size_t hilen,
                      struct walk *w)
{
    if (height == 0) {
        const struct kv__leaf *l = node;
        assert_ptr_equal(l->prev, w->prev_leaf);
        if (w->prev_leaf)
            assert_ptr_equal(w->prev_leaf->next, l);
        w->prev_leaf = l;
        w->leaves++;
        size_t used = 0;
        struct kv__rec r0;
        if (l->n)
            kv__rec_decode(l, 0, &r0);
        for (uint32_t i = 0; i < l->n; i++) {
            struct kv__rec r;
            kv__rec_decode(l, i, &r);
            /* the common prefix and the hints */
            assert_true(r.klen >= l->cp || l->n == 1);
            if (l->n > 1)
                assert_memory_equal(r.key, r0.key, l->cp);
            if (l->cp <= KV__PFX && l->cp)
                assert_memory_equal(r.key, l->pfx, l->cp);
            assert_int_equal(kv__hint(l, i),
                             kv__hint_of(r.key, r.klen, l->cp, l->hbase));
            used += r.size;
            assert_true(kv__slot(l, i) >= l->top);
            if (lo)
                assert_true(kv__cmp(r.key, r.klen, lo, lolen) >= 0);
            if (hi)
                assert_true(kv__cmp(r.key, r.klen, hi, hilen) < 0);
            if (w->any)
                assert_true(kv__cmp(w->last, w->last_len, r.key, r.klen) < 0);
            assert_true(r.version >= 1 && r.create <= r.mod);
            struct kv__leaf *hl;
            uint16_t hoff;
            assert_true(kv__hash_find(w->kv, r.key, r.klen, &hl, &hoff));
            assert_ptr_equal(hl, l);
            assert_int_equal(hoff, kv__slot(l, i));
            assert_ptr_equal(w->kv->leaf_ids[l->id], l);
            w->last = r.key;
            w->last_len = r.klen;
            w->any = true;
            w->count++;
            w->bytes += r.klen + r.vlen;
        }
        assert_int_equal(used + l->garbage, KV__LEAF_DATA - l->top);
        return;
    }
    const struct kv__inode *in = node;
    assert_true(in->n >= 1 && in->n <= KV__FAN);
    w->inodes_at[height]++;
    for (uint32_t i = 0; i < in->n; i++) {
        const uint8_t *clo = i ? kv__sep_key(&in->sep[i - 1]) : lo;
        size_t clolen = i ? in->sep[i - 1].len : lolen;
        const uint8_t *chi = i + 1 < in->n ? kv__sep_key(&in->sep[i]) : hi;
        size_t chilen = i + 1 < in->n ? in->sep[i].len : hilen;
        walk_node(in->child[i], height - 1, clo, clolen, chi, chilen, w);
    }
}

static size_t check_tree(const struct kv *kv)
{
    struct walk w = {0};
    w.kv = kv;
    walk_node(kv->root, kv->height, NULL, 0, NULL, 0, &w);
    assert_null(w.prev_leaf->next);
    assert_int_equal(w.count, kv_count(kv));
    for (unsigned lvl = 0; lvl <= KV__MAX_DEPTH; lvl++)
        assert_int_equal(w.inodes_at[lvl], kv->n_inodes_at[lvl]);
    size_t used = 0;
    for (size_t i = 0; i < kv->hcap; i++)
        used += kv->hs[i] != 0;
    for (size_t i = 0; i < kv->hcap_old; i++) { /* a resize under way */
        uint64_t slot = kv->hs_old[i];
        if (slot == 0)
            continue;
        used++;
        /* nothing behind the cursor, nor reached from a home behind it */
        assert_true(i >= kv->hs_next);
        assert_true(kv->hs_next == 0 ||
                    (kv__hslot_h(slot) & (kv->hcap_old - 1)) >= kv->hs_next);
    }
    assert_int_equal(used, kv_count(kv)); /* nothing in it twice */
    assert_int_equal(w.bytes, kv_bytes(kv));
    return w.leaves;
}

/* kv's snapshot (at index 1) read back: a sound tree, the same map. */
static struct kv *restored(const struct kv *kv)
{
    size_t len;
    uint8_t *buf = snapshot(kv, 1, &len);
    struct kv *back;
    uint64_t applied;
    assert_int_equal(kv_restore_mem(buf, len, SEED, &back, &applied), 0);
    check_tree(back);
    assert_same(kv, back);
    craft_free(buf);
    return back;
}

/* Apply cmd at index with the first, second, ... allocation failing until
 * it succeeds: each failure must be CRAFT_ENOMEM and leave the map as it
 * was (the same snapshot, a sound tree). Returns how many failed. */
static int apply_failing_each_allocation(struct kv *kv, uint64_t index,
                                         const uint8_t *cmd, size_t len)
{
    size_t len0;
    uint8_t *snap0 = snapshot(kv, 0, &len0);
    int fails = 0;
    for (long at = 1;; at++) {
        count_alloc_countdown = at;
        int err = kv_apply_at(kv, index, cmd, len);
        count_alloc_countdown = 0;
        if (err == 0) {
            /* applied: every result is there too (a get's copy is reserved
             * before the first change, never made short after it) */
            assert_int_equal(kv_last_result(kv)->err, 0);
            break;
        }
        assert_int_equal(err, CRAFT_ENOMEM);
        fails++;
        size_t len1;
        uint8_t *snap1 = snapshot(kv, 0, &len1);
        assert_int_equal(len0, len1);
        assert_memory_equal(snap0, snap1, len0);
        craft_free(snap1);
        check_tree(kv);
    }
    craft_free(snap0);
    return fails;
}

/* A record whose key and value both claim 4 GiB - 1 (their sum does not
 * fit 32 bits, nor a 32-bit size_t: it is summed in 64 bits) fails as a
 * short stream, having allocated no more than what the stream holds. */
static void test_snapshot_huge_lengths(void **state)
{
    (void)state;
    struct kv *kv = kv_new(SEED);
    assert_int_equal(kv_put(kv, "k", 1, "v", 1), 0);
    size_t len;
    uint8_t *buf = snapshot(kv, 5, &len);
    craft_put32(buf + KV__SNAP_HDR + 8, UINT32_MAX);     /* klen */
    craft_put32(buf + KV__SNAP_HDR + 8 + 4, UINT32_MAX); /* vlen */
    struct kv *back = NULL;
    uint64_t applied = 0;
    long live = count_alloc_live;
    assert_int_equal(kv_restore_mem(buf, len, SEED, &back, &applied), CRAFT_ECORRUPT);
    assert_null(back);
    assert_int_equal(count_alloc_live, live);
    craft_free(buf);
    kv_free(kv);
}

/* ---- revisions, transactions ---------------------------------------------- */

static void apply_ok(struct kv *kv, uint64_t index, const struct kv_txn *t)
{
    size_t len = kv_txn_size(t);
    assert_true(len > 0);
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    assert_int_equal(kv_txn_encode(t, buf), len);
    assert_int_equal(kv_apply_at(kv, index, buf, len), 0);
    free(buf);
}

static void batch_set(struct kv *kv, uint64_t index, const char *k,
                      const char *v)
{
    struct kv_op op = {KV_OP_SET, (const uint8_t *)k, strlen(k),
                       (const uint8_t *)v, strlen(v)};
    uint8_t buf[256];
    size_t len = kv_cmd_encode(&op, 1, buf);
    assert_int_equal(kv_apply_at(kv, index, buf, len), 0);
}

static void batch_del(struct kv *kv, uint64_t index, const char *k)
{
    struct kv_op op = {KV_OP_DEL, (const uint8_t *)k, strlen(k), NULL, 0};
    uint8_t buf[256];
    size_t len = kv_cmd_encode(&op, 1, buf);
    assert_int_equal(kv_apply_at(kv, index, buf, len), 0);
}

static void assert_meta(const struct kv *kv, const char *k, uint64_t create,
                        uint64_t mod, uint64_t version)
{
    struct kv_meta m;
    assert_int_equal(kv_get_meta(kv, k, strlen(k), &m), 0);
    assert_int_equal(m.create_index, create);
    assert_int_equal(m.mod_index, mod);
    assert_int_equal(m.version, version);
}

#define OP_PUT(k, v) {KV_TOP_PUT, (const uint8_t *)(k), sizeof(k) - 1, \
                      (const uint8_t *)(v), sizeof(v) - 1, 0}
#define OP_DEL(k) {KV_TOP_DEL, (const uint8_t *)(k), sizeof(k) - 1, NULL, 0, 0}
#define OP_DELP(k) {KV_TOP_DEL_PREFIX, (const uint8_t *)(k), sizeof(k) - 1, \
                    NULL, 0, 0}
#define OP_GET(k) {KV_TOP_GET, (const uint8_t *)(k), sizeof(k) - 1, NULL, 0, 0}
#define CMP_NUM(t, o, k, n) {t, o, (const uint8_t *)(k), sizeof(k) - 1, n, \
                             NULL, 0}

static void test_revisions(void **state)
{
    (void)state;
    struct kv *kv = kv_new(SEED);
    assert_int_equal(kv_index(kv), 0);
    batch_set(kv, 5, "a", "1");
    assert_meta(kv, "a", 5, 5, 1);
    assert_int_equal(kv_index(kv), 5);
    batch_set(kv, 7, "a", "22");
    batch_set(kv, 7 + 1, "b", "x");
    assert_meta(kv, "a", 5, 7, 2);
    assert_meta(kv, "b", 8, 8, 1);
    batch_set(kv, 9, "a", "22"); /* same value: still a write */
    assert_meta(kv, "a", 5, 9, 3);
    /* deleted and re-created: starts over */
    batch_del(kv, 10, "a");
    struct kv_meta m;
    assert_int_equal(kv_get_meta(kv, "a", 1, &m), CRAFT_ENOTFOUND);
    assert_int_equal(m.mod_index, 0);
    batch_set(kv, 11, "a", "3");
    assert_meta(kv, "a", 11, 11, 1);
    assert_int_equal(kv_index(kv), 11);
    /* a malformed command changes nothing, not even the index */
    uint8_t junk[] = {1, 9, 0, 0, 0};
    assert_int_equal(kv_apply_at(kv, 12, junk, sizeof junk), CRAFT_ECORRUPT);
    assert_int_equal(kv_index(kv), 11);
    /* the lease given with a put is kept */
    uint8_t grant[KV_LEASE_CMD_MAX];
    size_t glen = kv_lease_cmd_encode(KV_LEASE_GRANT, 0, 1000, grant);
    assert_int_equal(kv_apply_at(kv, 0x1234567890ULL, grant, glen), 0);
    struct kv_txn_op put = {KV_TOP_PUT, (const uint8_t *)"l", 1,
                            (const uint8_t *)"v", 1, 0x1234567890ULL};
    struct kv_txn t = {.success = &put, .n_success = 1};
    apply_ok(kv, 0x1234567891ULL, &t);
    assert_int_equal(kv_get_meta(kv, "l", 1, &m), 0);
    assert_int_equal(m.lease, 0x1234567890ULL);
    const struct kv_result *r = kv_last_result(kv);
    assert_true(r->succeeded && r->n_ops == 1 && r->ops[0].created);
    assert_int_equal(r->index, 0x1234567891ULL);
    check_tree(kv);
    kv_free(kv);
}

/* Two puts conditioned on the same mod_index: exactly one wins. */
static void test_cas_race(void **state)
{
    (void)state;
    struct kv *kv = kv_new(SEED);
    batch_set(kv, 5, "a", "0");
    struct kv_compare c = CMP_NUM(KV_CMP_MOD, KV_CMP_EQ, "a", 5);
    struct kv_txn_op px = OP_PUT("a", "x"), py = OP_PUT("a", "y");
    struct kv_txn tx = {&c, 1, &px, 1, NULL, 0};
    struct kv_txn ty = {&c, 1, &py, 1, NULL, 0};
    apply_ok(kv, 6, &tx);
    const struct kv_result *r = kv_last_result(kv);
    assert_true(r->succeeded);
    assert_int_equal(r->failed_cmp, -1);
    assert_false(r->ops[0].created);
    apply_ok(kv, 7, &ty);
    r = kv_last_result(kv);
    assert_false(r->succeeded);
    assert_int_equal(r->failed_cmp, 0);
    assert_int_equal(r->failed_mod_index, 6); /* the winner's write */
    assert_int_equal(r->n_ops, 0);
    assert_val(kv, "a", 1, "x", 1);
    assert_meta(kv, "a", 5, 6, 2);
    assert_int_equal(kv_index(kv), 7);

    /* If-None-Match: * twice: the second finds it */
    struct kv_compare absent = CMP_NUM(KV_CMP_EXISTS, KV_CMP_EQ, "b", 0);
    struct kv_txn_op pb = OP_PUT("b", "1");
    struct kv_txn tb = {&absent, 1, &pb, 1, NULL, 0};
    apply_ok(kv, 8, &tb);
    assert_true(kv_last_result(kv)->succeeded);
    assert_true(kv_last_result(kv)->ops[0].created);
    apply_ok(kv, 9, &tb);
    assert_false(kv_last_result(kv)->succeeded);
    assert_int_equal(kv_last_result(kv)->failed_mod_index, 8);
    assert_meta(kv, "b", 8, 8, 1);
    /* If-Match: * on an absent key fails with mod_index 0 */
    struct kv_compare exists = CMP_NUM(KV_CMP_EXISTS, KV_CMP_EQ, "c", 1);
    struct kv_txn_op dc = OP_DEL("c");
    struct kv_txn td = {&exists, 1, &dc, 1, NULL, 0};
    apply_ok(kv, 10, &td);
    assert_false(kv_last_result(kv)->succeeded);
    assert_int_equal(kv_last_result(kv)->failed_mod_index, 0);
    /* a delete conditioned on the right mod_index goes through */
    struct kv_compare mb = CMP_NUM(KV_CMP_MOD, KV_CMP_EQ, "b", 8);
    struct kv_txn_op db = OP_DEL("b");
    struct kv_txn tdb = {&mb, 1, &db, 1, NULL, 0};
    apply_ok(kv, 11, &tdb);
    assert_true(kv_last_result(kv)->succeeded);
    assert_int_equal(kv_last_result(kv)->ops[0].deleted, 1);
    assert_absent(kv, "b", 1);
    kv_free(kv);
}

static void test_txn_compares(void **state)
{
    (void)state;
    struct kv *kv = kv_new(SEED);
    batch_set(kv, 3, "k", "val");
    batch_set(kv, 4, "k", "val2"); /* create 3, mod 4, version 2 */
    struct {
        struct kv_compare c;
        bool holds;
    } cases[] = {
        {CMP_NUM(KV_CMP_MOD, KV_CMP_EQ, "k", 4), true},
        {CMP_NUM(KV_CMP_MOD, KV_CMP_NE, "k", 4), false},
        {CMP_NUM(KV_CMP_MOD, KV_CMP_LT, "k", 5), true},
        {CMP_NUM(KV_CMP_MOD, KV_CMP_GT, "k", 4), false},
        {CMP_NUM(KV_CMP_VERSION, KV_CMP_EQ, "k", 2), true},
        {CMP_NUM(KV_CMP_VERSION, KV_CMP_GT, "k", 1), true},
        {CMP_NUM(KV_CMP_CREATE, KV_CMP_EQ, "k", 3), true},
        {CMP_NUM(KV_CMP_CREATE, KV_CMP_LT, "k", 3), false},
        {CMP_NUM(KV_CMP_EXISTS, KV_CMP_EQ, "k", 1), true},
        {CMP_NUM(KV_CMP_EXISTS, KV_CMP_NE, "k", 1), false},
        {CMP_NUM(KV_CMP_MOD, KV_CMP_EQ, "nope", 0), true},
        {CMP_NUM(KV_CMP_VERSION, KV_CMP_LT, "nope", 1), true},
        {{KV_CMP_VALUE, KV_CMP_EQ, (const uint8_t *)"k", 1, 0,
          (const uint8_t *)"val2", 4}, true},
        {{KV_CMP_VALUE, KV_CMP_NE, (const uint8_t *)"k", 1, 0,
          (const uint8_t *)"val", 3}, true},
        {{KV_CMP_VALUE, KV_CMP_EQ, (const uint8_t *)"k", 1, 0,
          (const uint8_t *)"val", 3}, false},
        {{KV_CMP_VALUE, KV_CMP_NE, (const uint8_t *)"nope", 4, 0,
          (const uint8_t *)"x", 1}, false}, /* absent: false */
    };
    uint64_t index = 10;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct kv_txn t = {&cases[i].c, 1, NULL, 0, NULL, 0};
        apply_ok(kv, index++, &t);
        assert_int_equal(kv_last_result(kv)->succeeded, cases[i].holds);
    }
    /* the first failing compare is reported, later ones not evaluated */
    struct kv_compare three[] = {
        CMP_NUM(KV_CMP_EXISTS, KV_CMP_EQ, "k", 1),
        CMP_NUM(KV_CMP_MOD, KV_CMP_EQ, "k", 99),
        CMP_NUM(KV_CMP_MOD, KV_CMP_EQ, "k", 98),
    };
    struct kv_txn t = {three, 3, NULL, 0, NULL, 0};
    apply_ok(kv, index++, &t);
    assert_int_equal(kv_last_result(kv)->failed_cmp, 1);
    assert_int_equal(kv_last_result(kv)->failed_mod_index, 4);
    kv_free(kv);
}

/* One branch runs entirely, the other not at all; results per op. */
static void test_txn_branches(void **state)
{
    (void)state;
    struct kv *kv = kv_new(SEED);
    batch_set(kv, 1, "a", "1");
    batch_set(kv, 2, "tmp/x", "x");
    batch_set(kv, 3, "tmp/y", "y");
    batch_set(kv, 4, "tmq", "q");
    struct kv_compare c = CMP_NUM(KV_CMP_MOD, KV_CMP_EQ, "a", 1);
    struct kv_txn_op succ[] = {
        OP_PUT("a", "2"), OP_GET("a"), OP_DEL("a"), OP_GET("a"),
        OP_PUT("a", "3"), OP_DELP("tmp/"), OP_DEL("never"), OP_GET("tmq"),
    };
    struct kv_txn_op fail[] = {OP_PUT("failed", "1"), OP_GET("a")};
    struct kv_txn t = {&c, 1, succ, 8, fail, 2};
    apply_ok(kv, 5, &t);
    const struct kv_result *r = kv_last_result(kv);
    assert_true(r->succeeded);
    assert_int_equal(r->err, 0);
    assert_int_equal(r->n_ops, 8);
    assert_false(r->ops[0].created);
    assert_true(r->ops[1].found); /* sees the put before it */
    assert_int_equal(r->ops[1].meta.vlen, 1);
    assert_memory_equal(r->ops[1].meta.val, "2", 1);
    assert_memory_equal(r->ops[1].meta.key, "a", 1);
    assert_int_equal(r->ops[1].meta.mod_index, 5);
    assert_int_equal(r->ops[1].meta.version, 2);
    assert_int_equal(r->ops[2].deleted, 1);
    assert_false(r->ops[3].found);
    assert_true(r->ops[4].created); /* re-created */
    assert_int_equal(r->ops[5].deleted, 2);
    assert_int_equal(r->ops[6].deleted, 0);
    assert_true(r->ops[7].found);
    assert_memory_equal(r->ops[7].meta.val, "q", 1);
    assert_meta(kv, "a", 5, 5, 1);
    assert_absent(kv, "tmp/x", 5);
    assert_absent(kv, "tmp/y", 5);
    assert_absent(kv, "failed", 6);
    assert_int_equal(kv_count(kv), 2);

    /* now the compare fails: only the failure branch runs */
    apply_ok(kv, 6, &t);
    r = kv_last_result(kv);
    assert_false(r->succeeded);
    assert_int_equal(r->n_ops, 2);
    assert_true(r->ops[0].created);
    assert_true(r->ops[1].found);
    assert_memory_equal(r->ops[1].meta.val, "3", 1);
    assert_meta(kv, "a", 5, 5, 1);
    assert_meta(kv, "failed", 6, 6, 1);
    check_tree(kv);
    kv_free(kv);
}

/* Every allocation a transaction makes, failed in turn: ENOMEM and the map
 * unchanged, until it succeeds. */
static void test_txn_nomem(void **state)
{
    (void)state;
    struct kv *kv = fill(2000, SEED); /* a few leaves */
    static uint8_t big[3 * KV__INLINE_MAX];
    struct kv_txn_op ops[KV_TXN_MAX];
    char keys[KV_TXN_MAX][16];
    for (unsigned i = 0; i < KV_TXN_MAX; i++) {
        key16(keys[i], i * 15, i % 3 ? "key" : "new");
        ops[i] = (struct kv_txn_op){KV_TOP_PUT, (const uint8_t *)keys[i], 16,
                                    big, i % 7 ? 100 : sizeof big, 0};
    }
    ops[5].type = KV_TOP_GET;
    ops[9].type = KV_TOP_DEL_PREFIX;
    ops[9].klen = 8;
    /* the get reads a key an earlier put of the branch made longer */
    ops[5].key = ops[0].key;
    struct kv_txn t = {NULL, 0, ops, KV_TXN_MAX, NULL, 0};
    size_t len = kv_txn_size(&t);
    uint8_t *cmd = malloc(len);
    kv_txn_encode(&t, cmd);
    int fails = apply_failing_each_allocation(kv, 9, cmd, len);
    assert_true(fails > 19); /* at least the 19 big values */
    check_tree(kv);
    assert_int_equal(kv_index(kv), 9);
    const struct kv_result *r = kv_last_result(kv);
    assert_int_equal(r->index, 9);
    assert_int_equal(r->n_ops, KV_TXN_MAX);
    assert_true(r->ops[5].found);
    assert_int_equal(r->ops[5].meta.vlen, sizeof big);
    assert_memory_equal(r->ops[5].meta.key, keys[0], 16);

    /* a failed command leaves the previous result readable, even when the
     * room for its own result moved the buffers */
    struct kv_txn_op get1[KV_TXN_MAX];
    for (unsigned i = 0; i < KV_TXN_MAX; i++)
        get1[i] = (struct kv_txn_op){KV_TOP_GET, (const uint8_t *)"fresh", 5, NULL, 0, 0};
    get1[0] = (struct kv_txn_op){KV_TOP_PUT, (const uint8_t *)"fresh", 5, big, sizeof big, 0};
    struct kv_txn t2 = {NULL, 0, get1, KV_TXN_MAX, NULL, 0};
    size_t len2 = kv_txn_size(&t2);
    uint8_t *cmd2 = malloc(len2);
    kv_txn_encode(&t2, cmd2);
    for (long at = 1;; at++) {
        count_alloc_countdown = at;
        int err = kv_apply_at(kv, 10, cmd2, len2);
        count_alloc_countdown = 0;
        if (err == 0)
            break;
        assert_int_equal(err, CRAFT_ENOMEM);
        r = kv_last_result(kv);
        assert_int_equal(r->index, 9);
        assert_true(r->ops[5].found);
        assert_memory_equal(r->ops[5].meta.key, keys[0], 16);
        assert_memory_equal(r->ops[5].meta.val, big, sizeof big);
    }
    r = kv_last_result(kv);
    assert_int_equal(r->index, 10);
    assert_int_equal(r->err, 0);
    for (unsigned i = 1; i < KV_TXN_MAX; i++)
        assert_true(r->ops[i].found && r->ops[i].meta.vlen == sizeof big);
    free(cmd2);
    free(cmd);
    kv_free(kv);
}

static void test_txn_encoding(void **state)
{
    (void)state;
    struct kv_compare c[] = {
        CMP_NUM(KV_CMP_MOD, KV_CMP_GT, "a\0b", 1ULL << 63),
        {KV_CMP_VALUE, KV_CMP_NE, (const uint8_t *)"", 0, 0,
         (const uint8_t *)"\0\xff", 2},
    };
    struct kv_txn_op s[] = {OP_PUT("k\0", "\0v"), OP_DELP("")};
    struct kv_txn_op f[] = {OP_GET("g")};
    struct kv_txn t = {c, 2, s, 2, f, 1};
    size_t len = kv_txn_size(&t);
    uint8_t buf[128];
    assert_true(len > 0 && len <= sizeof buf);
    assert_int_equal(kv_txn_encode(&t, buf), len);
    struct kv_compare dc[KV_TXN_MAX];
    struct kv_txn_op ds[KV_TXN_MAX], df[KV_TXN_MAX];
    struct kv_txn d;
    assert_int_equal(kv_txn_decode(buf, len, &d, dc, ds, df), 0);
    assert_int_equal(d.n_cmp, 2);
    assert_int_equal(dc[0].num, 1ULL << 63);
    assert_int_equal(dc[0].klen, 3);
    assert_memory_equal(dc[1].val, "\0\xff", 2);
    assert_int_equal(d.n_success, 2);
    assert_int_equal(ds[0].vlen, 2);
    assert_int_equal(d.n_failure, 1);
    assert_int_equal(df[0].type, KV_TOP_GET);
    /* every strict prefix is malformed, and so is a byte more */
    for (size_t i = 0; i < len; i++)
        assert_int_equal(kv_txn_decode(buf, i, &d, dc, ds, df),
                         CRAFT_ECORRUPT);
    buf[len] = 0;
    assert_int_equal(kv_txn_decode(buf, len + 1, &d, dc, ds, df),
                     CRAFT_ECORRUPT);
    struct kv *kv = kv_new(SEED);
    assert_int_equal(kv_apply_at(kv, 1, buf, len - 1), CRAFT_ECORRUPT);
    /* invalid compares and ops do not encode */
    struct kv_compare bad[] = {
        CMP_NUM(KV_CMP_EXISTS, KV_CMP_EQ, "a", 2),
        CMP_NUM(KV_CMP_EXISTS, KV_CMP_LT, "a", 1),
        {KV_CMP_VALUE, KV_CMP_GT, (const uint8_t *)"a", 1, 0, NULL, 0},
        CMP_NUM(9, KV_CMP_EQ, "a", 1),
        CMP_NUM(KV_CMP_MOD, 4, "a", 1),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct kv_txn b = {&bad[i], 1, NULL, 0, NULL, 0};
        assert_int_equal(kv_txn_size(&b), 0);
    }
    struct kv_txn_op badop = {7, (const uint8_t *)"a", 1, NULL, 0, 0};
    struct kv_txn b = {NULL, 0, &badop, 1, NULL, 0};
    assert_int_equal(kv_txn_size(&b), 0);
    /* the limits: 128 of each, not 129 */
    static struct kv_compare many[KV_TXN_MAX + 1];
    static struct kv_txn_op mops[KV_TXN_MAX + 1];
    for (size_t i = 0; i <= KV_TXN_MAX; i++) {
        many[i] = (struct kv_compare)CMP_NUM(KV_CMP_MOD, KV_CMP_EQ, "m", 0);
        mops[i] = (struct kv_txn_op)OP_GET("m");
    }
    struct kv_txn lim = {many, KV_TXN_MAX, mops, KV_TXN_MAX, mops, KV_TXN_MAX};
    len = kv_txn_size(&lim);
    assert_true(len > 0);
    uint8_t *lb = malloc(len + 16);
    kv_txn_encode(&lim, lb);
    assert_int_equal(kv_apply_at(kv, 2, lb, len), 0);
    assert_true(kv_last_result(kv)->succeeded);
    assert_int_equal(kv_last_result(kv)->n_ops, KV_TXN_MAX);
    lim.n_cmp = KV_TXN_MAX + 1;
    assert_int_equal(kv_txn_size(&lim), 0);
    lim.n_cmp = 0;
    lim.n_failure = KV_TXN_MAX + 1;
    assert_int_equal(kv_txn_size(&lim), 0);
    /* a hand-made count of 129 is refused by the decoder */
    uint8_t over[] = {KV_TXN_VERSION, 0x81, 0x01};
    assert_int_equal(kv_apply_at(kv, 3, over, sizeof over), CRAFT_ECORRUPT);
    free(lb);
    kv_free(kv);
}

/* ---- ordered listing -------------------------------------------------------- */

struct collect {
    char keys[64][8];
    size_t lens[64];
    size_t n;
    size_t stop_at; /* non-zero: return -1 at that many */
};

static int collect_cb(void *ud, const struct kv_meta *m)
{
    struct collect *c = ud;
    assert_true(m->klen < 8 && c->n < 64);
    memcpy(c->keys[c->n], m->key, m->klen);
    c->lens[c->n++] = m->klen;
    return c->stop_at && c->n == c->stop_at ? -1 : 0;
}

static void test_list_binary_order(void **state)
{
    (void)state;
    struct kv *kv = kv_new(SEED);
    /* byte-wise order, shortest first on a shared prefix */
    static const struct {
        const char *k;
        size_t len;
    } order[] = {
        {"", 0},        {"\x00", 1},  {"\x00\x00", 2}, {"\x00\x01", 2},
        {"a", 1},       {"a\x00", 2}, {"ab", 2},        {"a\xff", 2},
        {"\x7f", 1},    {"\x80", 1},  {"\xff", 1},     {"\xff\x00", 2},
        {"\xff\xff", 2}, {"\xff\xff\xff", 3},
    };
    size_t n = sizeof order / sizeof order[0];
    for (size_t i = n; i-- > 0;) /* inserted backwards */
        assert_int_equal(kv_put(kv, order[i].k, order[i].len, "v", 1), 0);
    struct kv_range all;
    kv_range_span(&all, NULL, 0, NULL, 0);
    struct collect c = {0};
    size_t got;
    bool more;
    assert_int_equal(kv_list(kv, &all, NULL, 0, 100, collect_cb, &c, &got,
                             &more), 0);
    assert_int_equal(got, n);
    assert_false(more);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(c.lens[i], order[i].len);
        assert_memory_equal(c.keys[i], order[i].k, order[i].len);
    }
    /* prefixes: 0xff, 0x00, "a", "" */
    struct {
        const char *p;
        size_t plen, first, count;
    } pre[] = {
        {"\xff", 1, 10, 4}, {"\xff\xff", 2, 12, 2}, {"\x00", 1, 1, 3},
        {"a", 1, 4, 4},     {"", 0, 0, n},          {"b", 1, 0, 0},
    };
    for (size_t i = 0; i < sizeof pre / sizeof pre[0]; i++) {
        struct kv_range r;
        kv_range_prefix(&r, pre[i].p, pre[i].plen);
        memset(&c, 0, sizeof c);
        assert_int_equal(kv_list(kv, &r, NULL, 0, 100, collect_cb, &c, &got,
                                 &more), 0);
        assert_int_equal(got, pre[i].count);
        for (size_t j = 0; j < got; j++)
            assert_memory_equal(c.keys[j], order[pre[i].first + j].k,
                                order[pre[i].first + j].len);
        size_t cnt;
        struct kv_meta last;
        kv_count_range(kv, &r, NULL, 0, 1000, &cnt, &more, &last);
        assert_int_equal(cnt, pre[i].count);
        assert_false(more);
    }
    /* half-open [a, a\xff\xff): a, a\0, ab, a\xff; [a, ab): a, a\0 */
    struct kv_range span;
    kv_range_span(&span, "a", 1, "a\xff\xff", 3);
    memset(&c, 0, sizeof c);
    kv_list(kv, &span, NULL, 0, 100, collect_cb, &c, &got, &more);
    assert_int_equal(got, 4);
    assert_false(more);
    assert_memory_equal(c.keys[3], "a\xff", 2);
    struct kv_range span2;
    kv_range_span(&span2, "a", 1, "ab", 2);
    memset(&c, 0, sizeof c);
    kv_list(kv, &span2, NULL, 0, 100, collect_cb, &c, &got, &more);
    assert_int_equal(got, 2);
    assert_memory_equal(c.keys[1], "a\x00", 2);
    /* after: continue strictly after that key, even if it is absent */
    memset(&c, 0, sizeof c);
    kv_list(kv, &span, "a\x00\x00", 3, 100, collect_cb, &c, &got, &more);
    assert_int_equal(got, 2);
    assert_memory_equal(c.keys[0], "ab", 2);
    memset(&c, 0, sizeof c);
    kv_list(kv, &span, "ab", 2, 100, collect_cb, &c, &got, &more);
    assert_int_equal(got, 1);
    assert_memory_equal(c.keys[0], "a\xff", 2);
    /* after before start: from the start */
    memset(&c, 0, sizeof c);
    kv_list(kv, &span, "\x00", 1, 100, collect_cb, &c, &got, &more);
    assert_int_equal(got, 4);
    /* limit and a callback that stops */
    memset(&c, 0, sizeof c);
    kv_list(kv, &all, NULL, 0, 2, collect_cb, &c, &got, &more);
    assert_int_equal(got, 2);
    assert_true(more);
    memset(&c, 0, sizeof c);
    kv_list(kv, &all, NULL, 0, 0, collect_cb, &c, &got, &more);
    assert_int_equal(got, 0);
    assert_true(more);
    memset(&c, 0, sizeof c);
    c.stop_at = 3;
    assert_int_equal(kv_list(kv, &all, NULL, 0, 100, collect_cb, &c, &got,
                             &more), -1);
    assert_int_equal(got, 3);
    /* the iterator goes in the same order */
    struct kv_iter it;
    const uint8_t *k, *v;
    size_t kl, vl, i = 0;
    kv_iter_init(&it);
    while (kv_iter_next(kv, &it, &k, &kl, &v, &vl)) {
        assert_int_equal(kl, order[i].len);
        assert_memory_equal(k, order[i].k, kl);
        i++;
    }
    assert_int_equal(i, n);
    kv_free(kv);
}

struct page_ud {
    unsigned next; /* the key number expected next */
    char last[16];
};

static int page_cb(void *ud, const struct kv_meta *m)
{
    struct page_ud *p = ud;
    char want[16];
    key16(want, p->next, "key");
    assert_int_equal(m->klen, 16);
    assert_memory_equal(m->key, want, 16);
    memcpy(p->last, m->key, 16);
    p->next++;
    return 0;
}

/* Pages of 100 with `after` walk a prefix exactly once; counting with a cap
 * comes back in bounded steps and adds up. */
static void test_list_paging(void **state)
{
    (void)state;
    const unsigned n = 30000;
    struct kv *kv = fill(n, SEED);
    check_tree(kv);
    /* "key-0000000012" holds keys 1200..1299, "key-000000001" 1000..1999 */
    struct kv_range r;
    kv_range_prefix(&r, "key-000000001", 13);
    struct page_ud p = {1000, {0}};
    bool more = true;
    size_t got, pages = 0;
    const char *after = NULL;
    while (more) {
        assert_int_equal(kv_list(kv, &r, after, 16, 100, page_cb, &p, &got,
                                 &more), 0);
        assert_true(got == 100 || (!more && got == 0));
        after = p.last;
        pages++;
    }
    assert_int_equal(p.next, 2000);
    assert_true(pages == 10 || pages == 11);
    /* count with a cap of 150 keys a call */
    size_t total = 0, cnt, calls = 0;
    struct kv_meta last;
    char cursor[16];
    const void *ca = NULL;
    do {
        kv_count_range(kv, &r, ca, 16, 150, &cnt, &more, &last);
        assert_true(cnt <= 150);
        total += cnt;
        calls++;
        if (more) {
            assert_int_equal(last.klen, 16);
            memcpy(cursor, last.key, 16);
            ca = cursor;
        }
    } while (more);
    assert_int_equal(total, 1000);
    assert_true(calls >= 7 && calls <= 8);
    /* the whole map under "key-" */
    kv_range_prefix(&r, "key-", 4);
    kv_count_range(kv, &r, NULL, 0, SIZE_MAX, &cnt, &more, &last);
    assert_int_equal(cnt, n);
    assert_false(more);
    kv_free(kv);
}

/* ---- a random walk against a plain model ------------------------------------ */

struct model_ent {
    char key[4];
    size_t klen;
    size_t vlen;
    uint8_t vbyte;
    uint64_t create, mod, version;
};

static int model_find(const struct model_ent *m, size_t n, const char *k,
                      size_t kl)
{
    for (size_t i = 0; i < n; i++)
        if (kv__cmp(m[i].key, m[i].klen, k, kl) == 0)
            return (int)i;
    return -1;
}

static int model_cmp(const void *a, const void *b)
{
    const struct model_ent *x = a, *y = b;
    return kv__cmp(x->key, x->klen, y->key, y->klen);
}

/* Random puts (values of 0 to 3x the inline limit), deletes and prefix
 * deletes on 3-byte keys over a small alphabet, through kv_apply_at;
 * after each step some checks, and the whole tree and listing often. */
static void test_model_walk(void **state)
{
    (void)state;
    const size_t cap = 4 * 4 * 4 + 4 * 4 + 4 + 1;
    struct model_ent *m = calloc(cap, sizeof *m);
    size_t n = 0;
    struct kv *kv = kv_new(SEED);
    static uint8_t val[3 * KV__INLINE_MAX];
    uint64_t x = 12345;
    const unsigned steps = slow_env() ? 3000 : 30000;
    for (unsigned step = 1; step <= steps; step++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        char k[3];
        size_t kl = 1 + x % 3;
        for (size_t i = 0; i < kl; i++)
            k[i] = "\x00\x01\x7f\xff"[(x >> (8 + 2 * i)) & 3];
        unsigned what = (x >> 20) % 10;
        int at = model_find(m, n, k, kl);
        struct kv_txn_op op = {KV_TOP_PUT, (const uint8_t *)k, kl, val, 0, 0};
        if (what < 6) {
            op.vlen = (x >> 24) % 8 == 0 ? (x >> 28) % sizeof val
                                         : (x >> 28) % 300;
            memset(val, (uint8_t)step, op.vlen);
            if (at < 0) {
                at = (int)n++;
                memcpy(m[at].key, k, kl);
                m[at].klen = kl;
                m[at].create = step;
                m[at].version = 0;
            }
            m[at].vlen = op.vlen;
            m[at].vbyte = (uint8_t)step;
            m[at].mod = step;
            m[at].version++;
        } else if (what < 9) {
            op.type = KV_TOP_DEL;
            if (at >= 0)
                m[at] = m[--n];
        } else {
            op.type = KV_TOP_DEL_PREFIX;
            op.klen = kl - 1;
            for (size_t i = 0; i < n;)
                if (m[i].klen >= op.klen &&
                    memcmp(m[i].key, k, op.klen) == 0)
                    m[i] = m[--n];
                else
                    i++;
        }
        struct kv_txn t = {NULL, 0, &op, 1, NULL, 0};
        apply_ok(kv, step, &t);
        assert_int_equal(kv_count(kv), n);
        if (step % 97 != 0 && step != steps)
            continue;
        check_tree(kv);
        qsort(m, n, sizeof *m, model_cmp);
        struct kv_iter it;
        const uint8_t *ik, *iv;
        size_t ikl, ivl, i = 0;
        kv_iter_init(&it);
        while (kv_iter_next(kv, &it, &ik, &ikl, &iv, &ivl)) {
            assert_true(i < n);
            assert_int_equal(ikl, m[i].klen);
            assert_memory_equal(ik, m[i].key, ikl);
            assert_int_equal(ivl, m[i].vlen);
            for (size_t j = 0; j < ivl; j++)
                assert_int_equal(iv[j], m[i].vbyte);
            struct kv_meta meta;
            assert_int_equal(kv_get_meta(kv, ik, ikl, &meta), 0);
            assert_int_equal(meta.create_index, m[i].create);
            assert_int_equal(meta.mod_index, m[i].mod);
            assert_int_equal(meta.version, m[i].version);
            i++;
        }
        assert_int_equal(i, n);
    }
    kv_free(kv);
    free(m);
}

static size_t old_slots_used(const struct kv *kv)
{
    size_t n = 0;
    for (size_t i = 0; i < kv->hcap_old; i++)
        n += kv->hs_old[i] != 0;
    return n;
}

/* The point index past KV__HASH_SYNC_MAX slots grows and shrinks a few
 * slots per write (a rebuild at once stalled the node for 50-100 ms at
 * millions of keys): a resize leaves the old table in place, each put
 * moves at most KV__HASH_STEP of its slots, and meanwhile every key is
 * found, overwritten (its record moving in its leaf, so its slot in the
 * old table changes), deleted and put back, with the tree and both tables
 * consistent. Then deletes shrink it the same way. */
/* The next put needs a bigger table, and it is a mapping of its own. */
static bool next_put_maps(const struct kv *kv)
{
    return kv->count + 1 > kv->hcap / 4 * 3 && 2 * kv->hcap > KV__HASH_SYNC_MAX;
}

/* Tables past KV__HASH_SYNC_MAX slots are mappings (craft_map): when one
 * cannot be made, the put that needed it fails with nothing changed, and
 * the next one tries again; each is counted and given back (the teardown
 * checks), with the old table of a resize by steps; a failing allocation
 * at each delete of a shrinking map loses nothing either. */
static void test_hash_table_map_fails(void **state)
{
    (void)state;
    struct kv *kv = kv_new(SEED);
    assert_non_null(kv);
    char k[16], v[16];
    unsigned n = 0, failed = 0;
    while (failed < 2) {
        key16(k, n, "key");
        key16(v, n, "val");
        if (next_put_maps(kv)) {
            long maps = count_alloc_maps, live = count_alloc_live;
            size_t cap = kv->hcap, count = kv->count;
            count_alloc_countdown = 1;
            assert_int_equal(kv_put(kv, k, 16, v, 16), CRAFT_ENOMEM);
            count_alloc_countdown = 0;
            assert_int_equal(count_alloc_maps, maps + 1); /* the one failed */
            assert_int_equal(count_alloc_live, live);
            assert_int_equal(kv->hcap, cap);
            assert_int_equal(kv->count, count);
            assert_null(kv->hs_old);
            assert_absent(kv, k, 16);
            check_tree(kv);
            failed++;
        }
        assert_int_equal(kv_put(kv, k, 16, v, 16), 0);
        n++;
    }
    assert_non_null(kv->hs_old); /* the second one is under way */
    assert_true(count_alloc_maps >= 4);
    for (unsigned i = 0; i < n; i++) {
        key16(k, i, "key");
        key16(v, i, "val");
        assert_val(kv, k, 16, v, 16);
    }
    /* Down to an eighth, the first allocation of each delete failing. */
    unsigned refused = 0;
    long maps_before_deletes = count_alloc_maps;
    for (unsigned i = 0; i < n; i++) {
        if (i % 8 == 0)
            continue;
        key16(k, i, "key");
        count_alloc_countdown = 1;
        int err = kv_del(kv, k, 16);
        count_alloc_countdown = 0;
        if (err != 0) {
            assert_int_equal(err, CRAFT_ENOMEM);
            key16(v, i, "val");
            assert_val(kv, k, 16, v, 16);
            refused++;
            assert_int_equal(kv_del(kv, k, 16), 0);
        }
        assert_absent(kv, k, 16);
    }
    check_tree(kv);
    /* The shrinks' new tables were asked for, and each was refused. */
    assert_true(count_alloc_maps > maps_before_deletes);
    for (unsigned i = 0; i < n; i += 8) {
        key16(k, i, "key");
        key16(v, i, "val");
        assert_val(kv, k, 16, v, 16);
    }
    print_message("%u keys, %ld maps made or refused, %u deletes refused\n",
                  n, count_alloc_maps, refused);
    kv_free(kv);
}

static void test_hash_resize_in_steps(void **state)
{
    (void)state;
    const unsigned n = slow_env() ? 60000 : 200000;
    struct kv *kv = kv_new(SEED);
    assert_non_null(kv);
    char k[16], v[16];
    char big[40];
    memset(big, 'B', sizeof big);
    unsigned stepped = 0, checked = 0;
    size_t moved = 0;
    uint64_t resizes = kv->hash_resizes;
    for (unsigned i = 0; i < n; i++) {
        bool was_old = kv->hs_old != NULL;
        size_t before = was_old && i % 7 == 0 ? old_slots_used(kv) : 0;
        size_t cap_before = kv->hcap;
        key16(k, i, "key");
        key16(v, i, "val");
        assert_int_equal(kv_put(kv, k, 16, v, 16), 0);
        if (kv->hcap != cap_before && cap_before > KV__HASH_SYNC_MAX) {
            assert_non_null(kv->hs_old); /* not rebuilt at once */
            assert_int_equal(kv->hcap_old, cap_before);
        }
        if (was_old && kv->hs_old != NULL && i % 7 == 0) {
            size_t after = old_slots_used(kv);
            assert_true(after <= before); /* new keys go to the new table */
            assert_true(before - after <= KV__HASH_STEP); /* a few a put */
            moved += before - after;
            stepped++;
        }
        if (kv->hs_old == NULL)
            continue;
        if (!was_old || i % 1024 == 0) { /* a resize begins, and on */
            check_tree(kv);
            checked++;
        }
        if (i % 64 != 0)
            continue;
        /* a key put before the resize: longer, back, gone, back again
         * (the delete moves 4,096 steps, so not too often) */
        unsigned j = (unsigned)(((uint64_t)i * 7919) % (i + 1));
        key16(k, j, "key");
        key16(v, j, "val");
        assert_int_equal(kv_put(kv, k, 16, big, sizeof big), 0);
        assert_val(kv, k, 16, big, sizeof big);
        assert_int_equal(kv_del(kv, k, 16), 0);
        assert_absent(kv, k, 16);
        assert_int_equal(kv_put(kv, k, 16, v, 16), 0);
    }
    assert_true(kv->hash_resizes - resizes >= 3);
    assert_true(stepped > 10);
    assert_true(moved > stepped); /* moving on, more than a slot a put */
    assert_true(checked >= 2);
    check_tree(kv);
    for (unsigned i = 0; i < n; i++) {
        key16(k, i, "key");
        key16(v, i, "val");
        assert_val(kv, k, 16, v, 16);
    }
    /* down to a sixteenth: the table halves, by steps too */
    size_t cap = kv->hcap;
    unsigned shrunk_midway = 0;
    for (unsigned i = 0; i < n; i++) {
        if (i % 16 == 0)
            continue;
        key16(k, i, "key");
        assert_int_equal(kv_del(kv, k, 16), 0);
        if (kv->hs_old != NULL && kv->hcap < kv->hcap_old &&
            shrunk_midway++ % 16 == 0) {
            for (unsigned q = 0; q < n; q += 16) { /* all still there */
                key16(k, q, "key");
                key16(v, q, "val");
                assert_val(kv, k, 16, v, 16);
            }
            check_tree(kv);
        }
    }
    assert_true(kv->hcap < cap);
    assert_true(shrunk_midway > 0);
    check_tree(kv);
    for (unsigned i = 0; i < n; i++) {
        key16(k, i, "key");
        if (i % 16 == 0) {
            key16(v, i, "val");
            assert_val(kv, k, 16, v, 16);
        } else {
            assert_absent(kv, k, 16);
        }
    }
    kv_free(kv);
}

/* A resize under way goes on without writes at kv_tidy (the node's tick):
 * a growth, then the halving one batch of deletes starts, end within a
 * bounded number of calls, nothing lost. */
static void test_hash_tidy(void **state)
{
    (void)state;
    const unsigned n = 100000;
    struct kv *kv = fill(n, SEED);
    assert_non_null(kv->hs_old); /* the last growth is under way */
    unsigned calls = 0;
    while (kv_tidy(kv))
        assert_true(++calls < 100);
    assert_true(calls > 0);
    assert_null(kv->hs_old);
    assert_false(kv_tidy(kv)); /* nothing to do */
    size_t cap = kv->hcap;
    struct kv_cmd c;
    assert_int_equal(kv_cmd_init(&c), 0);
    char k[16], v[16];
    for (unsigned i = 0; i < n; i++) {
        key16(k, i, "key");
        if (i % 16 != 0)
            assert_int_equal(kv_cmd_del(&c, k, 16), 0);
    }
    assert_int_equal(kv_apply_at(kv, 1, c.data, c.len), 0);
    kv_cmd_free(&c);
    assert_non_null(kv->hs_old); /* halving, begun at the batch's trim */
    assert_true(kv->hcap < cap);
    calls = 0;
    while (kv_tidy(kv))
        assert_true(++calls < 100);
    assert_null(kv->hs_old);
    check_tree(kv);
    for (unsigned i = 0; i < n; i++) {
        key16(k, i, "key");
        key16(v, i, "val");
        if (i % 16 == 0)
            assert_val(kv, k, 16, v, 16);
        else
            assert_absent(kv, k, 16);
    }
    kv_free(kv);
}

/* Random puts, deletes and batches of values of 7 sizes against a model,
 * through five growths and shrinks of the point index (ten resizes): the
 * tree and both tables are checked every 50 operations while a resize is
 * under way and at its start and end, and four snapshots taken during
 * resizes (a forked writer while the parent goes on migrating, and one in
 * memory) read back as the model says. Old-table slots go through every
 * path of kv_tree.c that moves one (splits, redistributions, merges,
 * overwrites that grow, batches). */
static uint64_t rv_rng = 88172645463325252ULL;
static uint64_t rv_next(void)
{
    rv_rng ^= rv_rng << 13;
    rv_rng ^= rv_rng >> 7;
    rv_rng ^= rv_rng << 17;
    return rv_rng;
}
static void rv_val(uint8_t *v, unsigned i, unsigned ver, size_t len)
{
    for (size_t b = 0; b < len; b++)
        v[b] = (uint8_t)(i * 31 + ver * 7 + b);
}

/* kv holds exactly the model's keys (len < 0: absent) with their values. */
static void rv_assert_model(const struct kv *kv, const int *len,
                            const unsigned *ver, unsigned K)
{
    size_t live = 0;
    for (unsigned i = 0; i < K; i++) {
        char k[16];
        uint8_t v[600];
        key16(k, i, "key");
        if (len[i] < 0) {
            assert_absent(kv, k, 16);
            continue;
        }
        live++;
        rv_val(v, i, ver[i], (size_t)len[i]);
        assert_val(kv, k, 16, v, (size_t)len[i]);
    }
    assert_int_equal(kv_count(kv), live);
}

static unsigned rv_snaps;
/* While a resize is under way: a forked writer's snapshot (the parent
 * going on meanwhile) and one in memory read back as the model says. */
static void rv_snap_check(struct kv *kv, const int *len, const unsigned *ver,
                          unsigned K)
{
    int *len0 = malloc(K * sizeof *len0);
    unsigned *ver0 = malloc(K * sizeof *ver0);
    memcpy(len0, len, K * sizeof *len0);
    memcpy(ver0, ver, K * sizeof *ver0);
    char path[] = "/tmp/rv-snap-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int err = kv_snapshot_write_child(kv, fd, kv_index(kv));
        _exit(err == 0 ? 0 : 1);
    }
    /* the parent goes on: migrate (and give back) old slots */
    for (unsigned q = 0; q < 200u && kv->hs_old != NULL; q++) {
        char k[16];
        key16(k, K + q, "tmp");
        assert_int_equal(kv_put(kv, k, 16, "x", 1), 0);
        assert_int_equal(kv_del(kv, k, 16), 0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    struct kv *back;
    uint64_t applied;
    assert_int_equal(kv_restore_fd(fd, SEED, &back, &applied), 0);
    close(fd);
    uint8_t *buf;
    size_t blen;
    assert_int_equal(kv_snapshot_write_mem(kv, kv_index(kv), &buf, &blen), 0);
    struct kv *back2;
    assert_int_equal(kv_restore_mem(buf, blen, SEED, &back2, &applied), 0);
    craft_free(buf);
    check_tree(back);
    check_tree(back2);
    rv_assert_model(back, len0, ver0, K);
    rv_assert_model(back2, len0, ver0, K);
    kv_free(back);
    kv_free(back2);
    free(len0);
    free(ver0);
    rv_snaps++;
}
static void test_hash_resize_model(void **state)
{
    (void)state;
    rv_rng = 88172645463325252ULL;
    rv_snaps = 0;
    const unsigned K = slow_env() ? 40000 : 160000;
    int *len = malloc(K * sizeof *len);
    unsigned *ver = calloc(K, sizeof *ver);
    for (unsigned i = 0; i < K; i++)
        len[i] = -1;
    static const size_t lens[] = {0, 3, 16, 40, 100, 250, 600};
    struct kv *kv = kv_new(SEED);
    size_t live = 0, checks = 0, old_ops = 0;
    struct kv_cmd c;
    assert_int_equal(kv_cmd_init(&c), 0);
    /* targets: grow, shrink, grow, shrink */
    const size_t targets[] = {K * 7 / 10, K / 10, K * 6 / 10, K * 8 / 100, K / 2};
    bool was_old = false;
    for (unsigned ph = 0; ph < sizeof targets / sizeof targets[0]; ph++) {
        size_t target = targets[ph];
        unsigned long ops = 0;
        while ((live < target ? target - live : live - target) > target / 50 + 10 ||
               ops < 20000) {
            assert_true(ops < 50u * K);
            ops++;
            bool grow = live < target;
            unsigned r = (unsigned)(rv_next() % 100);
            char k[16];
            uint8_t v[600];
            if (kv->hs_old != NULL)
                old_ops++;
            if (kv->hs_old != NULL && old_ops % 7 == 3 && rv_snaps < 4)
                rv_snap_check(kv, len, ver, K);
            if (r < 3) { /* a batch */
                kv_cmd_reset(&c);
                unsigned nb = 1 + (unsigned)(rv_next() % 40);
                unsigned ids[40];
                bool set[40];
                size_t bl[40];
                for (unsigned b = 0; b < nb; b++) {
                    ids[b] = (unsigned)(rv_next() % K);
                    set[b] = (rv_next() % 100) < (grow ? 92u : 4u);
                    key16(k, ids[b], "key");
                    if (set[b]) {
                        bl[b] = lens[rv_next() % 7];
                        rv_val(v, ids[b], ver[ids[b]] + 1 + b, bl[b]);
                        assert_int_equal(kv_cmd_set(&c, k, 16, v, bl[b]), 0);
                    } else {
                        assert_int_equal(kv_cmd_del(&c, k, 16), 0);
                    }
                }
                assert_int_equal(kv_apply(kv, c.data, c.len), 0);
                for (unsigned b = 0; b < nb; b++) {
                    unsigned i = ids[b];
                    if (set[b]) {
                        if (len[i] < 0)
                            live++;
                        len[i] = (int)bl[b];
                        ver[i] = ver[i] + 1 + b; /* last write wins */
                        /* recompute as the last set of i in the batch */
                    } else if (len[i] >= 0) {
                        len[i] = -1;
                        live--;
                    }
                }
                /* fix up versions: the last set of each id decides */
                for (unsigned b = 0; b < nb; b++) {
                    unsigned i = ids[b];
                    key16(k, i, "key");
                    if (len[i] < 0) {
                        assert_absent(kv, k, 16);
                        continue;
                    }
                    const uint8_t *got;
                    size_t n;
                    assert_int_equal(kv_get(kv, k, 16, &got, &n), 0);
                    assert_int_equal(n, (size_t)len[i]);
                }
                /* re-put each touched live key so the model knows its bytes */
                for (unsigned b = 0; b < nb; b++) {
                    unsigned i = ids[b];
                    if (len[i] < 0)
                        continue;
                    key16(k, i, "key");
                    rv_val(v, i, ++ver[i], (size_t)len[i]);
                    assert_int_equal(kv_put(kv, k, 16, v, (size_t)len[i]), 0);
                }
            } else {
                unsigned i = (unsigned)(rv_next() % K);
                key16(k, i, "key");
                bool put = (rv_next() % 1000) < (grow ? 920u : 40u);
                if (put) {
                    size_t l = lens[rv_next() % 7];
                    rv_val(v, i, ++ver[i], l);
                    assert_int_equal(kv_put(kv, k, 16, v, l), 0);
                    if (len[i] < 0)
                        live++;
                    len[i] = (int)l;
                    assert_val(kv, k, 16, v, l);
                } else if (len[i] >= 0) {
                    assert_int_equal(kv_del(kv, k, 16), 0);
                    len[i] = -1;
                    live--;
                    assert_absent(kv, k, 16);
                } else {
                    assert_int_equal(kv_del(kv, k, 16), CRAFT_ENOTFOUND);
                }
            }
            assert_int_equal(kv_count(kv), live);
            bool is_old = kv->hs_old != NULL;
            if (is_old != was_old || ops % (is_old ? 50 : 5000) == 0) {
                check_tree(kv);
                checks++;
            }
            was_old = is_old;
        }
        rv_assert_model(kv, len, ver, K); /* every key */
        check_tree(kv);
    }
    assert_true(kv->hash_resizes >= 10);
    /* (the same seed, the same run: 1,372 operations under way natively,
     * 24 with the smaller map under valgrind) */
    assert_true(old_ops > (slow_env() ? 10u : 1000u));
    assert_true(checks > (slow_env() ? 20u : 100u));
    assert_int_equal(rv_snaps, 4);
    kv_cmd_free(&c);
    kv_free(kv);
    free(len);
    free(ver);
}

static double fill_of(const struct kv *kv)
{
    struct kv__fill f;
    kv__tree_fill(kv, &f);
    assert_int_equal(f.leaves, kv->n_leaves);
    return (double)f.used / (double)f.capacity;
}

/* Keys put in order fill each leaf before the next, all but the room left
 * for rewrites (an append past the end starts a new last leaf and moves
 * a few records at most), and a snapshot read back
 * (in order too) is the same map, as full; one whose records deep inside a
 * tree of several levels are out of order or repeated is refused. */
static void test_fill_in_order(void **state)
{
    (void)state;
    const unsigned n = 50000;
    struct kv *kv = fill(n, SEED);
    check_tree(kv);
    assert_true(kv->height >= 2);
    /* full but for the room left for revisions to grow (EDGE_SLACK, 1/16) */
    double f = fill_of(kv);
    printf("kv: %u keys in order: %.1f%% full\n", n, 100 * f);
    assert_true(f >= 0.91 && f <= 0.95);
    struct kv *back = restored(kv);
    assert_int_equal(back->n_leaves, kv->n_leaves);
    kv_free(back);
    size_t len;
    uint8_t *buf = snapshot(kv, 1, &len);
    uint64_t applied;
    /* fixed-size records (40-byte header, 16-byte key and value) from byte
     * 44: swap two in the middle, then make the second a copy of the first */
    const size_t rec = 40 + 16 + 16;
    uint8_t *a = buf + 44 + rec * (n / 2), *b = a + rec, tmp[40 + 16 + 16];
    assert_memory_equal(a + 40, "key-000000025000", 16);
    memcpy(tmp, a, rec);
    memcpy(a, b, rec);
    memcpy(b, tmp, rec);
    reseal(buf, len);
    assert_int_equal(kv_restore_mem(buf, len, SEED, &back, &applied), CRAFT_ECORRUPT);
    memcpy(a, b, rec);
    reseal(buf, len);
    assert_int_equal(kv_restore_mem(buf, len, SEED, &back, &applied), CRAFT_ECORRUPT);
    craft_free(buf);
    kv_free(kv);
}

/* Keys in random order: an overflowing leaf shares its records with a
 * sibling or two full leaves become three, so leaves end well above the
 * ~69% of splitting in halves; random deletes and inserts after that keep
 * the order and contents of a model (a bitmap of which numbers are in). */
static void test_fill_random(void **state)
{
    (void)state;
    const unsigned n = slow_env() ? 10000 : 30000;
    bool *in = calloc(n, 1);
    struct kv *kv = kv_new(SEED);
    char k[16];
    uint64_t x = 99;
    for (unsigned i = 0; i < n; i++) {
        unsigned j = (unsigned)(((uint64_t)i * 48271u) % n);
        key16(k, j, "key");
        assert_int_equal(kv_put(kv, k, 16, k, 16), 0);
        in[j] = true;
    }
    check_tree(kv);
    double f = fill_of(kv);
    printf("kv: %u keys in random order: %zu leaves, %.1f%% full\n", n,
           kv->n_leaves, 100 * f);
    assert_true(f > 0.80);
    for (unsigned step = 0; step < 3 * n; step++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        unsigned j = (unsigned)(x % n);
        key16(k, j, "key");
        if ((x >> 40) % 3 == 0) {
            assert_int_equal(kv_del(kv, k, 16), in[j] ? 0 : CRAFT_ENOTFOUND);
            in[j] = false;
        } else {
            assert_int_equal(kv_put(kv, k, 16, k, 16), 0);
            in[j] = true;
        }
        if (step % 20011 == 0)
            check_tree(kv);
    }
    check_tree(kv);
    struct kv_iter it;
    const uint8_t *ik, *iv;
    size_t ikl, ivl, count = 0;
    unsigned j = 0;
    kv_iter_init(&it);
    while (kv_iter_next(kv, &it, &ik, &ikl, &iv, &ivl)) {
        while (j < n && !in[j])
            j++;
        assert_true(j < n);
        key16(k, j, "key");
        assert_int_equal(ikl, 16);
        assert_memory_equal(ik, k, 16);
        assert_memory_equal(iv, k, 16);
        j++;
        count++;
    }
    while (j < n)
        assert_false(in[j++]);
    assert_int_equal(count, kv_count(kv));
    kv_free(kv);
    free(in);
}

/* Batches of keys in order, each inside the key space (four streams taking
 * turns, the way parallel clients load): the run splits where it goes on
 * and leaves full leaves behind. Then one batch more applied under failing
 * allocations: every failure leaves the map as it was. */
static void test_fill_runs(void **state)
{
    (void)state;
    const unsigned streams = 4, per = 10000, b = 100;
    struct kv *kv = kv_new(SEED);
    char k[16];
    uint64_t index = 1;
    for (unsigned done = 0; done < per; done += b) {
        for (unsigned s = 0; s < streams; s++) {
            struct kv_cmd c;
            assert_int_equal(kv_cmd_init(&c), 0);
            for (unsigned i = done; i < done + b; i++) {
                key16(k, s * per + i, "key");
                assert_int_equal(kv_cmd_set(&c, k, 16, k, 16), 0);
            }
            assert_int_equal(kv_apply_at(kv, index++, c.data, c.len), 0);
            kv_cmd_free(&c);
        }
    }
    check_tree(kv);
    assert_int_equal(kv_count(kv), streams * per);
    double f = fill_of(kv);
    printf("kv: %u streams of %u keys: %zu leaves, %.1f%% full\n", streams,
           per, kv->n_leaves, 100 * f);
    assert_true(f > 0.85);
    /* one key in every 7th place of stream 1, then a run inside stream 2 */
    struct kv_cmd c;
    assert_int_equal(kv_cmd_init(&c), 0);
    for (unsigned i = 0; i < 100; i++) {
        char k2[32];
        key16(k2, per + 7 * i, "key");
        k2[16] = 'x';
        assert_int_equal(kv_cmd_set(&c, k2, 17, "v", 1), 0);
        key16(k2, 2 * per + 100, "key");
        snprintf(k2 + 16, sizeof k2 - 16, "-%05u", i);
        assert_int_equal(kv_cmd_set(&c, k2, 22, "w", 1), 0);
    }
    assert_true(apply_failing_each_allocation(kv, index, c.data, c.len) > 0);
    assert_int_equal(kv_count(kv), streams * per + 200);
    check_tree(kv);
    kv_cmd_free(&c);
    kv_free(kv);
}

/* A big batch reserves room by its bytes, not a leaf per key, and applies. */
static void test_big_batch(void **state)
{
    (void)state;
    struct kv *kv = kv_new(SEED);
    struct kv_cmd c;
    assert_int_equal(kv_cmd_init(&c), 0);
    const unsigned n = 20000;
    char k[16];
    for (unsigned i = 0; i < n; i++) {
        key16(k, (i * 7919u) % n, "key");
        assert_int_equal(kv_cmd_set(&c, k, 16, k, 16), 0);
    }
    assert_int_equal(kv__reserve(kv, n, 16, n * kv__rec_bound(16, 16)), 0);
    assert_true(kv->n_free_leaves < n / 2); /* a pessimistic bound still */
    assert_int_equal(kv_apply_at(kv, 3, c.data, c.len), 0);
    assert_int_equal(kv_count(kv), n);
    size_t leaves = check_tree(kv);
    printf("kv: a batch of %u keys: %zu leaves, %zu reserved\n", n, leaves,
           kv->n_free_leaves);
    kv_cmd_free(&c);
    kv_free(kv);
}

/* Rewrites whose records grow (a log index as mod_index, a longer value)
 * go to their leaf's free space, or compact or split it: the map stays
 * sound and whole under failing allocations, and a full leaf splits once
 * when its records grow (they no longer fit in one), not again. */
static void test_rewrites_grow(void **state)
{
    (void)state;
    const unsigned n = 20000, batch = 300;
    struct kv *kv = fill(n, SEED); /* in order: full leaves */
    size_t before = check_tree(kv);
    struct kv_cmd c;
    assert_int_equal(kv_cmd_init(&c), 0);
    char k[17] = {0}, v[24];
    for (unsigned i = 0; i < batch; i++) { /* scattered keys, longer values */
        key16(k, (i * 7919u) % n, "key");
        memset(v, 'a' + i % 26, sizeof v);
        assert_int_equal(kv_cmd_set(&c, k, 16, v, sizeof v), 0);
    }
    assert_true(apply_failing_each_allocation(kv, 1000000, c.data, c.len) > 0);
    kv_cmd_free(&c);
    check_tree(kv);
    for (unsigned i = 0; i < n; i++) { /* every key once more, one by one */
        key16(k, (i * 7919u) % n, "key");
        batch_set(kv, 1000001 + i, k, "0123456789abcdef");
    }
    size_t after = check_tree(kv);
    printf("kv: %zu leaves, %zu after rewriting every key once\n", before,
           after);
    assert_int_equal(kv_count(kv), n);
    assert_true(after <= 2 * before + 2);
    for (unsigned i = 0; i < n; i++) {
        key16(k, (i * 7919u) % n, "key");
        assert_meta(kv, k, 0, 1000001 + i, 2 + (i < batch));
        const uint8_t *got;
        size_t glen;
        assert_int_equal(kv_get(kv, k, 16, &got, &glen), 0);
        assert_int_equal(glen, 16);
        assert_memory_equal(got, "0123456789abcdef", 16);
    }
    kv_free(kv);
}

/* A map loaded in key order (batches, the way a node is loaded) keeps
 * room in its leaves (EDGE_SLACK) for revisions that grow when keys are
 * rewritten: every key rewritten once at a longer mod index (a 3-byte
 * varint instead of 2) splits next to no leaf. Left full, they split at
 * the first rewrite reaching them: the map grew by a quarter. */
static void test_load_leaves_room_for_rewrites(void **state)
{
    (void)state;
    const unsigned n = 20000, b = 1000;
    struct kv *kv = kv_new(SEED);
    char k[16];
    for (unsigned done = 0; done < n; done += b) {
        struct kv_cmd c;
        assert_int_equal(kv_cmd_init(&c), 0);
        for (unsigned i = done; i < done + b; i++) {
            key16(k, i, "key");
            assert_int_equal(kv_cmd_set(&c, k, 16, k, 16), 0);
        }
        assert_int_equal(kv_apply_at(kv, 200 + done / b, c.data, c.len), 0);
        kv_cmd_free(&c);
    }
    size_t before = check_tree(kv);
    for (unsigned i = 0; i < n; i++) {
        key16(k, (i * 7919u) % n, "key");
        char key[17];
        memcpy(key, k, 16);
        key[16] = 0;
        batch_set(kv, 20000 + i, key, "0123456789abcdef");
    }
    size_t after = check_tree(kv);
    printf("kv: loaded in order: %zu leaves, %zu after rewriting every key "
           "once\n", before, after);
    assert_int_equal(kv_count(kv), n);
    assert_true(after <= before + before / 20);
    kv_free(kv);
}

/* Deleting most keys gives leaves back: sparse neighbours merge. */
static void test_delete_merges(void **state)
{
    (void)state;
    const unsigned n = 50000;
    struct kv *kv = fill(n, SEED);
    size_t before = check_tree(kv);
    char k[16];
    for (unsigned i = 0; i < n; i++) { /* a scrambled order */
        unsigned j = (i * 7919u) % n;
        key16(k, j, "key");
        if (j % 10 != 3)
            assert_int_equal(kv_del(kv, k, 16), 0);
    }
    size_t after = check_tree(kv);
    assert_int_equal(kv_count(kv), n / 10);
    printf("kv: %zu leaves, %zu after deleting 90%% of the keys\n", before,
           after);
    assert_true(after * 2 < before); /* a tenth of the keys, < 1/2 leaves */
    for (unsigned i = 3; i < n; i += 10) {
        char v[16];
        key16(k, i, "key");
        key16(v, i, "val");
        assert_val(kv, k, 16, v, 16);
    }
    /* a prefix delete across many leaves merges too */
    struct kv_txn_op op = OP_DELP("key-00000000"); /* keys 0..9999 */
    struct kv_txn t = {NULL, 0, &op, 1, NULL, 0};
    apply_ok(kv, 1, &t);
    assert_int_equal(kv_last_result(kv)->ops[0].deleted, 1000);
    check_tree(kv);
    kv_free(kv);
}

/* Keys longer than an inline separator, with a long shared prefix, in a
 * scrambled order: separators out of line, splits, deletes, a snapshot. */
static void test_long_keys(void **state)
{
    (void)state;
    struct kv *kv = kv_new(SEED);
    const unsigned n = slow_env() ? 2000 : 20000;
    char k[48];
    memset(k, 'p', sizeof k);
    for (unsigned i = 0; i < n; i++) {
        unsigned j = (i * 7919u) % n;
        snprintf(k + 30, sizeof k - 30, "%08u-%08u", j, j * 3);
        static const char val[64] = "value";
        assert_int_equal(kv_put(kv, k, 47, val, 10 + j % 50), 0);
    }
    check_tree(kv);
    for (unsigned j = 0; j < n; j += 3) {
        snprintf(k + 30, sizeof k - 30, "%08u-%08u", j, j * 3);
        assert_int_equal(kv_del(kv, k, 47), 0);
    }
    check_tree(kv);
    struct kv_range r;
    kv_range_prefix(&r, k, 30);
    size_t cnt;
    bool more;
    struct kv_meta last;
    kv_count_range(kv, &r, NULL, 0, SIZE_MAX, &cnt, &more, &last);
    assert_int_equal(cnt, n - (n + 2) / 3);
    kv_free(restored(kv));
    kv_free(kv);
}

/* ---- snapshots with revisions --------------------------------------------- */

#include "unit/kv_snap_v1.h"

static void test_snapshot_revisions(void **state)
{
    (void)state;
    struct kv *kv = fill(5000, SEED);
    batch_set(kv, 40, "key-000000000007", "new");
    batch_set(kv, 41, "key-000000000007", "newer");
    batch_del(kv, 42, "key-000000000008");
    batch_set(kv, 43, "key-000000000008", "again");
    static uint8_t big[5000];
    assert_int_equal(kv_put(kv, "big", 3, big, sizeof big), 0);
    size_t len;
    uint8_t *buf = snapshot(kv, 50, &len);
    struct kv *back;
    uint64_t applied;
    assert_int_equal(kv_restore_mem(buf, len, SEED, &back, &applied), 0);
    assert_int_equal(applied, 50);
    assert_int_equal(kv_index(back), 50);
    check_tree(back);
    assert_same(kv, back);
    assert_meta(back, "key-000000000007", 0, 41, 3);
    assert_meta(back, "key-000000000008", 43, 43, 1);
    assert_meta(back, "big", 43, 43, 1); /* kv_put takes kv_index() */
    /* every key's revisions came back */
    struct kv_range all;
    kv_range_span(&all, NULL, 0, NULL, 0);
    struct kv_iter it;
    const uint8_t *k, *v;
    size_t kl, vl;
    kv_iter_init(&it);
    while (kv_iter_next(kv, &it, &k, &kl, &v, &vl)) {
        struct kv_meta a, b;
        assert_int_equal(kv_get_meta(kv, k, kl, &a), 0);
        assert_int_equal(kv_get_meta(back, k, kl, &b), 0);
        assert_int_equal(a.create_index, b.create_index);
        assert_int_equal(a.mod_index, b.mod_index);
        assert_int_equal(a.version, b.version);
        assert_int_equal(a.lease, b.lease);
    }
    /* written again, the same bytes */
    size_t len2;
    uint8_t *buf2 = snapshot(back, 50, &len2);
    assert_int_equal(len, len2);
    assert_memory_equal(buf, buf2, len);
    craft_free(buf2);
    craft_free(buf);
    kv_free(back);
    kv_free(kv);
}

/* A snapshot from the version-1 writer loads, with revisions at its index. */
static void test_snapshot_v1(void **state)
{
    (void)state;
    struct kv *kv;
    uint64_t applied;
    assert_int_equal(kv_restore_mem(kv_snap_v1, sizeof kv_snap_v1, SEED, &kv,
                                    &applied), 0);
    assert_int_equal(applied, 77);
    assert_int_equal(kv_index(kv), 77);
    assert_int_equal(kv_count(kv), 6);
    check_tree(kv);
    assert_val(kv, "alpha", 5, "1", 1);
    assert_val(kv, "", 0, "empty key", 9);
    assert_val(kv, "k\0bin", 5, "v\0\xff", 3);
    assert_val(kv, "\xff\xff", 2, "", 0);
    assert_meta(kv, "dir/a", 77, 77, 1);
    assert_meta(kv, "alpha", 77, 77, 1);
    assert_non_null(kv_member_get(kv, "n1"));
    assert_int_equal(kv_member_get(kv, "n1")->raft_id, 11);
    /* listing works on what was loaded in hash order */
    struct kv_range r;
    kv_range_prefix(&r, "dir/", 4);
    size_t cnt;
    bool more;
    struct kv_meta last;
    kv_count_range(kv, &r, NULL, 0, 10, &cnt, &more, &last);
    assert_int_equal(cnt, 2);
    /* the next write goes on from the snapshot's index */
    batch_set(kv, 78, "alpha", "2");
    assert_meta(kv, "alpha", 77, 78, 2);
    /* and it is written back as version 3 */
    size_t len;
    uint8_t *buf = snapshot(kv, 78, &len);
    assert_int_equal(craft_get32(buf + 8), 3);
    craft_free(buf);
    kv_free(kv);
}

/* ---- change events -------------------------------------------------------- */

struct ev_log {
    char text[4096]; /* "index:P|D:key:value:create:mod:version;" per event */
    size_t len;
};

static void ev_record(void *ud, uint64_t index, const struct kv_event *ev)
{
    struct ev_log *log = ud;
    const struct kv_meta *m = &ev->meta;
    int n = snprintf(log->text + log->len, sizeof log->text - log->len,
                     "%llu:%c:%.*s:%.*s:%llu:%llu:%llu;", (unsigned long long)index,
                     ev->type == KV_EV_PUT ? 'P' : 'D', (int)m->klen,
                     (const char *)m->key, (int)m->vlen,
                     m->vlen ? (const char *)m->val : "",
                     (unsigned long long)m->create_index,
                     (unsigned long long)m->mod_index, (unsigned long long)m->version);
    assert_true(n > 0 && (size_t)n < sizeof log->text - log->len);
    log->len += (size_t)n;
}

static void test_events(void **state)
{
    (void)state;
    struct kv *kv = kv_new(SEED);
    assert_non_null(kv);
    struct ev_log log = {.len = 0};
    kv_set_observer(kv, ev_record, &log);
    batch_set(kv, 1, "a", "1");
    batch_set(kv, 2, "a", "2");
    batch_del(kv, 3, "zz"); /* absent: no event */
    struct kv_txn_op ops[] = {OP_PUT("p/1", "x"), OP_PUT("p/2", "y"), OP_GET("a")};
    struct kv_txn t = {.success = ops, .n_success = 3};
    apply_ok(kv, 4, &t);
    /* a compare that fails runs the (empty) failure branch: no event */
    struct kv_compare c[] = {CMP_NUM(KV_CMP_MOD, KV_CMP_EQ, "a", 99)};
    struct kv_txn f = {.cmp = c, .n_cmp = 1, .success = ops, .n_success = 2};
    apply_ok(kv, 5, &f);
    struct kv_txn_op dp[] = {OP_DELP("p/"), OP_DEL("a"), OP_PUT("a", "3")};
    struct kv_txn d = {.success = dp, .n_success = 3};
    apply_ok(kv, 6, &d);
    assert_string_equal(log.text,
                        "1:P:a:1:1:1:1;2:P:a:2:1:2:2;4:P:p/1:x:4:4:1;4:P:p/2:y:4:4:1;"
                        "6:D:p/1::0:6:0;6:D:p/2::0:6:0;6:D:a::0:6:0;6:P:a:3:6:6:1;");

    /* a malformed command and one that runs out of memory tell nothing */
    log.len = 0;
    log.text[0] = 0;
    uint8_t bad[] = {KV_TXN_VERSION, 0xff};
    assert_int_equal(kv_apply_at(kv, 7, bad, sizeof bad), CRAFT_ECORRUPT);
    struct kv_cmd cmd;
    assert_int_equal(kv_cmd_init(&cmd), 0);
    char k[16];
    for (unsigned i = 0; i < 40; i++) {
        key16(k, i, "ev");
        assert_int_equal(kv_cmd_set(&cmd, k, 16, "v", 1), 0);
    }
    int fails = apply_failing_each_allocation(kv, 7, cmd.data, cmd.len);
    assert_true(fails >= 1);
    /* only the apply that succeeded told its 40 puts, once each */
    size_t puts = 0;
    for (const char *p = log.text; (p = strstr(p, ":P:")) != NULL; p++)
        puts++;
    assert_int_equal(puts, 40);
    kv_cmd_free(&cmd);

    /* direct changes and a cleared observer tell nothing */
    log.len = 0;
    log.text[0] = 0;
    assert_int_equal(kv_put(kv, "q", 1, "1", 1), 0);
    kv_set_observer(kv, NULL, NULL);
    batch_set(kv, 8, "q", "2");
    assert_int_equal(log.len, 0);
    kv_free(kv);
}

/* ---- leases --------------------------------------------------------------- */

#define OP_PUTL(k, v, l) {KV_TOP_PUT, (const uint8_t *)(k), sizeof(k) - 1, \
                          (const uint8_t *)(v), sizeof(v) - 1, l}

static void lease_cmd(struct kv *kv, uint64_t index, uint8_t op, uint64_t id,
                      uint64_t ttl)
{
    uint8_t buf[KV_LEASE_CMD_MAX];
    size_t len = kv_lease_cmd_encode(op, id, ttl, buf);
    assert_true(len > 0 && len <= KV_LEASE_CMD_MAX);
    assert_int_equal(kv_apply_at(kv, index, buf, len), 0);
}

static int count_key(void *ud, const struct kv_meta *m)
{
    (void)m;
    ++*(size_t *)ud;
    return 0;
}

struct lease_walk {
    const struct kv *kv;
    uint64_t attached; /* keys summed over the leases */
};

/* Each key listed for a lease is in the map with that lease id. */
static int check_attached(void *ud, const struct kv_meta *m)
{
    assert_int_equal(m->lease, *(const uint64_t *)ud);
    return 0;
}

static int walk_lease(void *ud, const struct kv_lease *l)
{
    struct lease_walk *w = ud;
    size_t n;
    bool more;
    uint64_t id = l->id;
    assert_int_equal(kv_lease_keys(w->kv, l->id, NULL, 0, SIZE_MAX,
                                   check_attached, &id, &n, &more), 0);
    assert_false(more);
    assert_int_equal(n, l->n_keys);
    w->attached += n;
    return 0;
}

/* The lease table agrees with the keys' lease ids: every key with a lease
 * names an existing lease and is in its set; the sets hold nothing else. */
static void check_leases(const struct kv *kv)
{
    struct kv_iter it;
    const uint8_t *k, *v;
    size_t kl, vl;
    uint64_t with_lease = 0;
    kv_iter_init(&it);
    while (kv_iter_next(kv, &it, &k, &kl, &v, &vl)) {
        struct kv_meta m;
        assert_int_equal(kv_get_meta(kv, k, kl, &m), 0);
        if (m.lease == 0)
            continue;
        with_lease++;
        struct kv__lease *l = kv__lease_find(kv, m.lease);
        assert_non_null(l);
        bool found = false;
        for (size_t i = 0; i < l->cap && !found; i++)
            found = l->slots[i] && l->slots[i]->klen == kl &&
                    (kl == 0 || memcmp(l->slots[i]->key, k, kl) == 0);
        assert_true(found);
    }
    struct lease_walk w = {kv, 0};
    bool more;
    assert_int_equal(kv_lease_list(kv, 0, SIZE_MAX, walk_lease, &w, &more), 0);
    assert_false(more);
    assert_int_equal(w.attached, with_lease);
}

static void test_lease_cmd_encoding(void **state)
{
    (void)state;
    uint8_t buf[KV_LEASE_CMD_MAX];
    assert_int_equal(kv_lease_cmd_encode(KV_LEASE_GRANT, 0, 0, buf), 0);
    assert_int_equal(kv_lease_cmd_encode(KV_LEASE_GRANT, 5, 10, buf), 0);
    assert_int_equal(kv_lease_cmd_encode(KV_LEASE_REVOKE, 0, 0, buf), 0);
    assert_int_equal(kv_lease_cmd_encode(KV_LEASE_EXPIRE, 5, 0, buf), 0);
    assert_true(kv_lease_cmd_encode(KV_LEASE_EXPIRE, 5, 10, buf) > 0);
    assert_int_equal(kv_lease_cmd_encode(KV_LEASE_KEEPALIVE, 5, 10, buf), 0);
    assert_int_equal(kv_lease_cmd_encode(0, 5, 0, buf), 0);
    assert_int_equal(kv_lease_cmd_encode(5, 5, 0, buf), 0);
    size_t len = kv_lease_cmd_encode(KV_LEASE_GRANT, 0, UINT64_MAX, buf);
    assert_int_equal(len, 2 + 1 + 10);
    assert_int_equal(buf[0], KV_LEASE_VERSION);
    len = kv_lease_cmd_encode(KV_LEASE_KEEPALIVE, UINT64_MAX, 0, buf);
    assert_int_equal(len, 2 + 10 + 1);

    /* every strict prefix, a byte more, or a bad field: corrupt, unchanged */
    struct kv *kv = kv_new(SEED);
    lease_cmd(kv, 3, KV_LEASE_GRANT, 0, 500);
    len = kv_lease_cmd_encode(KV_LEASE_GRANT, 0, 300, buf);
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(kv_apply_at(kv, 9, buf, cut), CRAFT_ECORRUPT);
    uint8_t longer[KV_LEASE_CMD_MAX + 1];
    memcpy(longer, buf, len);
    longer[len] = 0;
    assert_int_equal(kv_apply_at(kv, 9, longer, len + 1), CRAFT_ECORRUPT);
    uint8_t bad_op[] = {KV_LEASE_VERSION, 9, 3, 0};
    uint8_t grant_id[] = {KV_LEASE_VERSION, KV_LEASE_GRANT, 3, 5};
    uint8_t grant_ttl0[] = {KV_LEASE_VERSION, KV_LEASE_GRANT, 0, 0};
    uint8_t revoke_ttl[] = {KV_LEASE_VERSION, KV_LEASE_REVOKE, 3, 1};
    uint8_t revoke_0[] = {KV_LEASE_VERSION, KV_LEASE_REVOKE, 0, 0};
    uint8_t noncanon[] = {KV_LEASE_VERSION, KV_LEASE_REVOKE, 0x83, 0x00, 0};
    const uint8_t *bad[] = {bad_op, grant_id, grant_ttl0, revoke_ttl,
                            revoke_0, noncanon};
    size_t bad_len[] = {4, 4, 4, 4, 4, 5};
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(kv_apply_at(kv, 9, bad[i], bad_len[i]),
                         CRAFT_ECORRUPT);
    assert_int_equal(kv_index(kv), 3);
    assert_int_equal(kv_lease_count(kv), 1);
    struct kv_lease l;
    assert_int_equal(kv_lease_get(kv, 3, &l), 0);
    assert_int_equal(l.ttl_ms, 500);
    kv_free(kv);
}

static void test_lease_grant_keepalive_revoke(void **state)
{
    (void)state;
    struct kv *kv = kv_new(SEED);
    lease_cmd(kv, 10, KV_LEASE_GRANT, 0, 5000);
    const struct kv_result *r = kv_last_result(kv);
    assert_int_equal(r->lease_op, KV_LEASE_GRANT);
    assert_int_equal(r->lease_id, 10);
    assert_true(r->lease_found && r->succeeded);
    assert_int_equal(r->lease_ttl_ms, 5000);
    assert_int_equal(r->missing_lease, 0);
    assert_int_equal(kv_index(kv), 10);
    lease_cmd(kv, 11, KV_LEASE_GRANT, 0, 7000);
    assert_int_equal(kv_last_result(kv)->lease_id, 11);
    assert_int_equal(kv_lease_count(kv), 2);

    struct kv_txn_op puts[] = {OP_PUTL("a", "1", 10), OP_PUTL("b", "2", 10),
                               OP_PUTL("c", "3", 11), OP_PUT("d", "4")};
    struct kv_txn t = {.success = puts, .n_success = 4};
    apply_ok(kv, 12, &t);
    check_leases(kv);
    struct kv_lease l;
    assert_int_equal(kv_lease_get(kv, 10, &l), 0);
    assert_int_equal(l.id, 10);
    assert_int_equal(l.ttl_ms, 5000);
    assert_int_equal(l.n_keys, 2);

    /* keepalive changes nothing, says found and the TTL */
    size_t len0;
    uint8_t *snap0 = snapshot(kv, kv_index(kv), &len0);
    lease_cmd(kv, 13, KV_LEASE_KEEPALIVE, 10, 0);
    r = kv_last_result(kv);
    assert_int_equal(r->lease_op, KV_LEASE_KEEPALIVE);
    assert_true(r->lease_found);
    assert_int_equal(r->lease_id, 10);
    assert_int_equal(r->lease_ttl_ms, 5000);
    assert_int_equal(r->lease_deleted, 0);
    /* a keepalive changes the lease's refresh index only */
    assert_int_equal(r->lease_refreshed, 13);
    size_t len1;
    uint8_t *snap1 = snapshot(kv, kv_index(kv), &len1);
    assert_int_equal(len0, len1);
    struct kv *k0 = NULL, *k1 = NULL;
    uint64_t a0, a1;
    assert_int_equal(kv_restore_mem(snap0, len0, 0, &k0, &a0), 0);
    assert_int_equal(kv_restore_mem(snap1, len1, 0, &k1, &a1), 0);
    assert_int_equal(kv_count(k0), kv_count(k1));
    struct kv_lease l0, l1;
    assert_int_equal(kv_lease_get(k0, 10, &l0), 0);
    assert_int_equal(kv_lease_get(k1, 10, &l1), 0);
    assert_true(l0.refreshed == 10 && l1.refreshed == 13 && l0.n_keys == l1.n_keys);
    kv_free(k0);
    kv_free(k1);
    craft_free(snap0);
    snap0 = snap1; /* the state after the keepalive */
    /* unknown ids: not found, nothing changed */
    for (uint8_t op = KV_LEASE_REVOKE; op <= KV_LEASE_KEEPALIVE; op++) {
        lease_cmd(kv, 14, op, 999, op == KV_LEASE_EXPIRE ? 1 : 0);
        r = kv_last_result(kv);
        assert_int_equal(r->lease_op, op);
        assert_false(r->lease_found);
        assert_int_equal(r->lease_id, 999);
        assert_int_equal(r->lease_deleted, 0);
        snap1 = snapshot(kv, kv_index(kv) - 1, &len1);
        assert_memory_equal(snap0, snap1, len0);
        craft_free(snap1);
    }
    craft_free(snap0);

    /* listing in id order, paged */
    size_t n;
    bool more;
    assert_int_equal(kv_lease_list(kv, 0, 1, walk_lease,
                                   &(struct lease_walk){kv, 0}, &more), 0);
    assert_true(more);
    assert_int_equal(kv_lease_list(kv, 10, 1, walk_lease,
                                   &(struct lease_walk){kv, 0}, &more), 0);
    assert_false(more);
    /* the keys of a lease, in key order, paged */
    n = 0;
    size_t seen = 0;
    assert_int_equal(kv_lease_keys(kv, 10, NULL, 0, 1, count_key, &seen, &n,
                                   &more), 0);
    assert_true(more && n == 1 && seen == 1);
    assert_int_equal(kv_lease_keys(kv, 10, "a", 1, 5, count_key, &seen, &n,
                                   &more), 0);
    assert_true(!more && n == 1 && seen == 2);
    assert_int_equal(kv_lease_keys(kv, 77, NULL, 0, 5, count_key, &seen, &n,
                                   &more), CRAFT_ENOTFOUND);

    /* revoke: exactly the lease's keys go, the lease too */
    lease_cmd(kv, 15, KV_LEASE_REVOKE, 10, 0);
    r = kv_last_result(kv);
    assert_int_equal(r->lease_op, KV_LEASE_REVOKE);
    assert_true(r->lease_found);
    assert_int_equal(r->lease_deleted, 2);
    assert_int_equal(r->lease_ttl_ms, 5000);
    assert_int_equal(kv_get(kv, "a", 1, NULL, NULL), CRAFT_ENOTFOUND);
    assert_int_equal(kv_get(kv, "b", 1, NULL, NULL), CRAFT_ENOTFOUND);
    assert_int_equal(kv_get(kv, "c", 1, NULL, NULL), 0);
    assert_int_equal(kv_get(kv, "d", 1, NULL, NULL), 0);
    assert_int_equal(kv_lease_get(kv, 10, &l), CRAFT_ENOTFOUND);
    assert_int_equal(kv_lease_count(kv), 1);
    assert_int_equal(kv_index(kv), 15);
    /* an expiry counted from a refresh that is no longer the last one (a
     * keepalive applied after the leader decided) is stale: nothing goes */
    assert_int_equal(kv_lease_get(kv, 11, &l), 0);
    uint64_t decided = l.refreshed;
    lease_cmd(kv, 16, KV_LEASE_KEEPALIVE, 11, 0);
    r = kv_last_result(kv);
    assert_true(r->lease_found && r->lease_refreshed == 16 && !r->lease_stale);
    lease_cmd(kv, 17, KV_LEASE_EXPIRE, 11, decided);
    r = kv_last_result(kv);
    assert_true(r->lease_found && r->lease_stale);
    assert_int_equal(r->lease_deleted, 0);
    assert_int_equal(r->lease_refreshed, 16);
    assert_int_equal(kv_count(kv), 2);
    assert_int_equal(kv_lease_get(kv, 11, &l), 0);
    assert_int_equal(l.refreshed, 16);
    assert_int_equal(kv_index(kv), 17);
    /* expire from the last refresh works as revoke does */
    lease_cmd(kv, 18, KV_LEASE_EXPIRE, 11, 16);
    r = kv_last_result(kv);
    assert_false(r->lease_stale);
    assert_int_equal(r->lease_op, KV_LEASE_EXPIRE);
    assert_true(r->lease_found);
    assert_int_equal(r->lease_deleted, 1);
    assert_int_equal(kv_count(kv), 1);
    assert_int_equal(kv_lease_count(kv), 0);
    check_leases(kv);
    check_tree(kv);
    kv_free(kv);
}

static void test_lease_attach_detach(void **state)
{
    (void)state;
    struct kv *kv = kv_new(SEED);
    lease_cmd(kv, 1, KV_LEASE_GRANT, 0, 1000);
    lease_cmd(kv, 2, KV_LEASE_GRANT, 0, 1000);
    struct kv_txn_op p1[] = {OP_PUTL("k1", "v", 1), OP_PUTL("k2", "v", 1),
                             OP_PUTL("k3", "v", 1), OP_PUTL("k4", "v", 1),
                             OP_PUTL("p/a", "v", 1), OP_PUTL("p/b", "v", 1),
                             OP_PUTL("k5", "v", 1)};
    apply_ok(kv, 3, &(struct kv_txn){.success = p1, .n_success = 7});
    struct kv_lease l;
    assert_int_equal(kv_lease_get(kv, 1, &l), 0);
    assert_int_equal(l.n_keys, 7);
    /* put again with the same lease: still attached once */
    struct kv_txn_op same[] = {OP_PUTL("k1", "w", 1)};
    apply_ok(kv, 4, &(struct kv_txn){.success = same, .n_success = 1});
    /* a put without lease (txn, and a version-1 batch), one with another,
     * a delete, a delete_prefix, a direct put and delete: all detach */
    struct kv_txn_op p2[] = {OP_PUT("k1", "x"), OP_PUTL("k2", "x", 2),
                             OP_DEL("k3"), OP_DELP("p/")};
    apply_ok(kv, 5, &(struct kv_txn){.success = p2, .n_success = 4});
    batch_set(kv, 6, "k4", "y");
    check_leases(kv);
    assert_int_equal(kv_lease_get(kv, 1, &l), 0);
    assert_int_equal(l.n_keys, 1); /* k5 */
    assert_int_equal(kv_lease_get(kv, 2, &l), 0);
    assert_int_equal(l.n_keys, 1); /* k2 */
    assert_int_equal(kv_put(kv, "k5", 2, "z", 1), 0);
    assert_int_equal(kv_lease_get(kv, 1, &l), 0);
    assert_int_equal(l.n_keys, 0);
    assert_int_equal(kv_del(kv, "k2", 2), 0);
    assert_int_equal(kv_lease_get(kv, 2, &l), 0);
    assert_int_equal(l.n_keys, 0);
    check_leases(kv);
    /* put, delete, put again in one txn: attached at the end */
    struct kv_txn_op p3[] = {OP_PUTL("r", "1", 1), OP_DEL("r"),
                             OP_PUTL("r", "2", 1), OP_PUTL("s", "1", 1),
                             OP_PUTL("s", "2", 2)};
    apply_ok(kv, 7, &(struct kv_txn){.success = p3, .n_success = 5});
    check_leases(kv);
    assert_int_equal(kv_lease_get(kv, 1, &l), 0);
    assert_int_equal(l.n_keys, 1);
    assert_int_equal(kv_lease_get(kv, 2, &l), 0);
    assert_int_equal(l.n_keys, 1);
    /* revoking 1 leaves the keys detached from it alone */
    lease_cmd(kv, 8, KV_LEASE_REVOKE, 1, 0);
    assert_int_equal(kv_last_result(kv)->lease_deleted, 1);
    assert_int_equal(kv_get(kv, "r", 1, NULL, NULL), CRAFT_ENOTFOUND);
    assert_int_equal(kv_get(kv, "s", 1, NULL, NULL), 0);
    assert_int_equal(kv_get(kv, "k1", 2, NULL, NULL), 0);
    check_leases(kv);
    kv_free(kv);
}

static void test_lease_missing(void **state)
{
    (void)state;
    struct kv *kv = kv_new(SEED);
    lease_cmd(kv, 1, KV_LEASE_GRANT, 0, 1000);
    batch_set(kv, 2, "x", "old");
    struct ev_log log = {.len = 0};
    kv_set_observer(kv, ev_record, &log);
    size_t len0;
    uint8_t *snap0 = snapshot(kv, 0, &len0);
    struct kv_txn_op ops[] = {OP_PUTL("a", "1", 1), OP_DEL("x"),
                              OP_PUTL("b", "1", 42)};
    apply_ok(kv, 3, &(struct kv_txn){.success = ops, .n_success = 3});
    const struct kv_result *r = kv_last_result(kv);
    assert_false(r->succeeded);
    assert_int_equal(r->failed_cmp, -1);
    assert_int_equal(r->missing_lease, 42);
    assert_int_equal(r->n_ops, 0);
    assert_int_equal(r->index, 3);
    assert_int_equal(log.len, 0);
    size_t len1;
    uint8_t *snap1 = snapshot(kv, 0, &len1);
    assert_int_equal(len0, len1);
    assert_memory_equal(snap0, snap1, len0);
    craft_free(snap0);
    craft_free(snap1);
    struct kv_lease l;
    assert_int_equal(kv_lease_get(kv, 1, &l), 0);
    assert_int_equal(l.n_keys, 0);
    /* a revoked lease is missing too */
    lease_cmd(kv, 4, KV_LEASE_REVOKE, 1, 0);
    struct kv_txn_op again[] = {OP_PUTL("a", "1", 1)};
    apply_ok(kv, 5, &(struct kv_txn){.success = again, .n_success = 1});
    assert_int_equal(kv_last_result(kv)->missing_lease, 1);
    assert_int_equal(kv_get(kv, "a", 1, NULL, NULL), CRAFT_ENOTFOUND);
    kv_free(kv);
}

/* The observer sees each key of a revoked lease deleted at the revoke's
 * index, with the lease, in key order. */
static void test_lease_events(void **state)
{
    (void)state;
    struct kv *kv = kv_new(SEED);
    lease_cmd(kv, 1, KV_LEASE_GRANT, 0, 1000);
    struct kv_txn_op ops[] = {OP_PUTL("m", "1", 1), OP_PUTL("b", "1", 1),
                              OP_PUT("c", "1"), OP_PUTL("z", "1", 1)};
    apply_ok(kv, 2, &(struct kv_txn){.success = ops, .n_success = 4});
    struct ev_log log = {.len = 0};
    kv_set_observer(kv, ev_record, &log);
    lease_cmd(kv, 3, KV_LEASE_GRANT, 0, 1000); /* tells nothing */
    lease_cmd(kv, 4, KV_LEASE_KEEPALIVE, 1, 0);
    assert_int_equal(log.len, 0);
    lease_cmd(kv, 5, KV_LEASE_EXPIRE, 1, 4); /* from the keepalive at 4 */
    assert_string_equal(log.text,
                        "5:D:b::0:5:0;5:D:m::0:5:0;5:D:z::0:5:0;");
    kv_free(kv);
}

static uint64_t seen_lease;
static void ev_lease(void *ud, uint64_t index, const struct kv_event *ev)
{
    (void)index;
    ++*(size_t *)ud;
    seen_lease = ev->meta.lease;
}

static void test_lease_nomem(void **state)
{
    (void)state;
    struct kv *kv = fill(11, SEED);
    uint8_t buf[KV_LEASE_CMD_MAX];
    size_t len = kv_lease_cmd_encode(KV_LEASE_GRANT, 0, 100, buf);
    for (uint64_t id = 20; id < 29; id++) /* the table grows past 8 */
        assert_true(apply_failing_each_allocation(kv, id, buf, len) >= 0);
    assert_true(apply_failing_each_allocation(kv, 29, buf, len) > 0);
    assert_int_equal(kv_lease_count(kv), 10);
    /* puts attaching 20 keys to one lease (its set grows), moving one */
    struct kv_txn_op ops[20];
    char keys[20][16];
    for (int i = 0; i < 20; i++) {
        snprintf(keys[i], sizeof keys[i], "lk%02u", (unsigned)i % 100);
        ops[i] = (struct kv_txn_op){KV_TOP_PUT, (const uint8_t *)keys[i], 4,
                                    (const uint8_t *)"v", 1, i < 19 ? 20 : 21};
    }
    uint8_t tb[2048];
    struct kv_txn t = {.success = ops, .n_success = 20};
    size_t tlen = kv_txn_encode(&t, tb);
    assert_true(tlen > 0 && tlen <= sizeof tb);
    assert_true(apply_failing_each_allocation(kv, 30, tb, tlen) > 0);
    check_leases(kv);
    ops[3].lease = 21;
    ops[4].lease = 0;
    t.n_success = 5;
    tlen = kv_txn_encode(&t, tb);
    assert_true(apply_failing_each_allocation(kv, 31, tb, tlen) > 0);
    check_leases(kv);
    struct kv_lease l;
    assert_int_equal(kv_lease_get(kv, 20, &l), 0);
    assert_int_equal(l.n_keys, 17);
    /* revoke: a failed allocation changes nothing, the observer is told
     * nothing until it applies */
    size_t told = 0;
    kv_set_observer(kv, ev_lease, &told);
    len = kv_lease_cmd_encode(KV_LEASE_REVOKE, 20, 0, buf);
    assert_true(apply_failing_each_allocation(kv, 32, buf, len) > 0);
    assert_int_equal(told, 17);
    assert_int_equal(seen_lease, 20);
    assert_int_equal(kv_last_result(kv)->lease_deleted, 17);
    check_leases(kv);
    check_tree(kv);
    kv_free(kv);
}

static void test_lease_snapshot(void **state)
{
    (void)state;
    struct kv *kv = kv_new(SEED);
    lease_cmd(kv, 3, KV_LEASE_GRANT, 0, 1500);
    lease_cmd(kv, 4, KV_LEASE_GRANT, 0, 2500);
    lease_cmd(kv, 5, KV_LEASE_GRANT, 0, 3500); /* no keys */
    struct kv_txn_op ops[] = {OP_PUTL("a", "1", 3), OP_PUTL("b", "2", 4),
                              OP_PUTL("c", "3", 4), OP_PUT("d", "4")};
    apply_ok(kv, 6, &(struct kv_txn){.success = ops, .n_success = 4});
    size_t len;
    uint8_t *buf = snapshot(kv, 6, &len);
    assert_int_equal(len, kv_snapshot_size(kv));
    assert_int_equal(craft_get32(buf + 8), 3);
    struct kv *back;
    uint64_t applied;
    assert_int_equal(kv_restore_mem(buf, len, 0, &back, &applied), 0);
    assert_same(kv, back);
    check_leases(back);
    assert_int_equal(kv_lease_count(back), 3);
    struct kv_lease l;
    assert_int_equal(kv_lease_get(back, 4, &l), 0);
    assert_true(l.ttl_ms == 2500 && l.n_keys == 2);
    assert_int_equal(kv_lease_get(back, 5, &l), 0);
    assert_true(l.ttl_ms == 3500 && l.n_keys == 0);
    /* the restored sets work: revoke deletes b and c */
    lease_cmd(back, 7, KV_LEASE_REVOKE, 4, 0);
    assert_int_equal(kv_last_result(back)->lease_deleted, 2);
    assert_int_equal(kv_count(back), 2);
    kv_free(back);

    /* corrupt lease tables (resealed): ids not increasing, a TTL 0, a key
     * naming a lease not in the table */
    struct kv *bad = NULL;
    uint8_t *t = buf + 36;
    assert_int_equal(craft_get64(t), 3);
    /* records of 24 bytes: id, ttl_ms, refreshed */
    uint64_t ref2 = craft_get64(t + 8 + 24 + 16), ref3 = craft_get64(t + 8 + 48 + 16);
    craft_put64(t + 8 + 24, 3); /* second id = first */
    reseal(buf, len);
    assert_int_equal(kv_restore_mem(buf, len, 0, &bad, &applied), CRAFT_ECORRUPT);
    craft_put64(t + 8 + 24, 4);
    craft_put64(t + 8 + 8, 0); /* ttl 0 */
    reseal(buf, len);
    assert_int_equal(kv_restore_mem(buf, len, 0, &bad, &applied), CRAFT_ECORRUPT);
    craft_put64(t + 8 + 8, 1500);
    craft_put64(t + 8 + 24 + 16, 3); /* refreshed before the grant */
    reseal(buf, len);
    assert_int_equal(kv_restore_mem(buf, len, 0, &bad, &applied), CRAFT_ECORRUPT);
    craft_put64(t + 8 + 24 + 16, applied + 1); /* refreshed after the state */
    reseal(buf, len);
    assert_int_equal(kv_restore_mem(buf, len, 0, &bad, &applied), CRAFT_ECORRUPT);
    /* ids 3, 5, 9 (in order) but b and c name 4 */
    craft_put64(t + 8 + 48, 9);
    craft_put64(t + 8 + 48 + 16, 9 > ref3 ? 9 : ref3);
    craft_put64(t + 8 + 24, 5);
    craft_put64(t + 8 + 24 + 16, 5 > ref2 ? 5 : ref2);
    reseal(buf, len);
    assert_int_equal(kv_restore_mem(buf, len, 0, &bad, &applied), CRAFT_ECORRUPT);
    craft_put64(t + 8 + 24, 4);
    craft_put64(t + 8 + 24 + 16, ref2);
    craft_put64(t + 8 + 48, 5);
    craft_put64(t + 8 + 48 + 16, ref3);
    craft_put64(t, 2); /* a table of 2: lease 5 is read as a key record */
    reseal(buf, len);
    assert_int_equal(kv_restore_mem(buf, len, 0, &bad, &applied), CRAFT_ECORRUPT);
    craft_put64(t, 3);
    reseal(buf, len);
    assert_int_equal(kv_restore_mem(buf, len, 0, &bad, &applied), 0);
    kv_free(bad);
    bad = NULL;
    /* a failing allocation anywhere in the restore: ENOMEM, no leak */
    for (long at = 1;; at++) {
        count_alloc_countdown = at;
        int err = kv_restore_mem(buf, len, SEED, &bad, &applied);
        count_alloc_countdown = 0;
        if (err == 0)
            break;
        assert_int_equal(err, CRAFT_ENOMEM);
        assert_null(bad);
    }
    check_leases(bad);
    kv_free(bad);

    /* the same state as a version-2 snapshot (no table; lease ids in the
     * key records): it reads, with no leases and no key attached */
    size_t tbl = 8 + 24 * 3;
    memmove(buf + 36, buf + 36 + tbl, len - 36 - tbl);
    len -= tbl;
    craft_put32(buf + 8, 2);
    reseal(buf, len);
    assert_int_equal(kv_restore_mem(buf, len, 0, &back, &applied), 0);
    assert_same(kv, back);
    assert_int_equal(kv_lease_count(back), 0);
    struct kv_meta m;
    assert_int_equal(kv_get_meta(back, "b", 1, &m), 0);
    assert_int_equal(m.lease, 0);
    assert_int_equal(m.create_index, 6);
    check_leases(back);
    kv_free(back);
    craft_free(buf);
    kv_free(kv);
}

/* 10^5 keys on one lease: attaching costs O(1) each, revoking O(keys). */
static void test_lease_many_keys(void **state)
{
    (void)state;
    struct kv *kv = kv_new(SEED);
    lease_cmd(kv, 1, KV_LEASE_GRANT, 0, 1000);
    lease_cmd(kv, 2, KV_LEASE_GRANT, 0, 1000);
    enum { N = 100000 };
    char k[16];
    struct timespec t0, t1, t2;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t index = 3;
    for (unsigned i = 0; i < N; i += KV_TXN_MAX) {
        struct kv_txn_op ops[KV_TXN_MAX];
        char keys[KV_TXN_MAX][16];
        size_t n = 0;
        for (unsigned j = i; j < N && n < KV_TXN_MAX; j++, n++) {
            key16(keys[n], j, "lse");
            ops[n] = (struct kv_txn_op){KV_TOP_PUT, (const uint8_t *)keys[n],
                                        16, (const uint8_t *)"v", 1, 1};
        }
        apply_ok(kv, index++, &(struct kv_txn){.success = ops, .n_success = n});
    }
    key16(k, 7, "other");
    struct kv_txn_op other = {KV_TOP_PUT, (const uint8_t *)k, 16,
                              (const uint8_t *)"v", 1, 2};
    apply_ok(kv, index++, &(struct kv_txn){.success = &other, .n_success = 1});
    clock_gettime(CLOCK_MONOTONIC, &t1);
    struct kv_lease l;
    assert_int_equal(kv_lease_get(kv, 1, &l), 0);
    assert_int_equal(l.n_keys, N);
    lease_cmd(kv, index++, KV_LEASE_REVOKE, 1, 0);
    clock_gettime(CLOCK_MONOTONIC, &t2);
    assert_int_equal(kv_last_result(kv)->lease_deleted, N);
    assert_int_equal(kv_count(kv), 1);
    double put_s = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    double rev_s = (double)(t2.tv_sec - t1.tv_sec) + (t2.tv_nsec - t1.tv_nsec) / 1e9;
    print_message("kv: %d keys on one lease: attached in %.0f ms, revoked in %.0f ms\n",
                  N, put_s * 1e3, rev_s * 1e3);
    /* generous bounds (shared machine, valgrind, ASan): quadratic work on
     * 10^5 keys would take minutes */
    double slow = RUNNING_ON_VALGRIND ? 30 : 1;
    assert_true(rev_s < 5 * slow);
    assert_true(put_s < 10 * slow);
    check_tree(kv);
    check_leases(kv);
    kv_free(kv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, count_alloc_setup, count_alloc_teardown)
        T(test_put_get_del),
        T(test_binary_keys),
        T(test_grow_delete_iterate),
        T(test_million_keys),
        T(test_cmd_round_trip),
        T(test_cmd_truncation),
        T(test_cmd_malformed),
        T(test_batch_atomicity),
        T(test_apply_semantics),
        T(test_apply_nomem),
        T(test_members),
        T(test_snapshot_mem),
        T(test_snapshot_file),
        T(test_snapshot_pipe_fork),
        T(test_snapshot_child_gives_pages_back),
        T(test_pages),
        T(test_snapshot_corruption),
        T(test_snapshot_structure),
        T(test_snapshot_errors),
        T(test_snapshot_huge_lengths),
        T(test_revisions),
        T(test_cas_race),
        T(test_txn_compares),
        T(test_txn_branches),
        T(test_txn_nomem),
        T(test_txn_encoding),
        T(test_list_binary_order),
        T(test_list_paging),
        T(test_model_walk),
        T(test_hash_table_map_fails),
        T(test_hash_resize_in_steps),
        T(test_hash_resize_model),
        T(test_hash_tidy),
        T(test_long_keys),
        T(test_rewrites_grow),
        T(test_load_leaves_room_for_rewrites),
        T(test_delete_merges),
        T(test_big_batch),
        T(test_fill_in_order),
        T(test_fill_random),
        T(test_fill_runs),
        T(test_snapshot_revisions),
        T(test_snapshot_v1),
        T(test_events),
        T(test_lease_cmd_encoding),
        T(test_lease_grant_keepalive_revoke),
        T(test_lease_attach_detach),
        T(test_lease_missing),
        T(test_lease_events),
        T(test_lease_nomem),
        T(test_lease_snapshot),
        T(test_lease_many_keys),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
