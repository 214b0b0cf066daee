/* Tests of the replicated state machine (src/kv): the map, commands and
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
        assert_true(rss1 - rss0 < 200L * 1000 * 1000);
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
    size_t len0;
    uint8_t *snap0 = snapshot(kv, 0, &len0);
    int err, fails = 0;
    for (long at = 1;; at++) {
        count_alloc_countdown = at;
        err = kv_apply(kv, c.data, c.len);
        count_alloc_countdown = 0;
        if (err == 0)
            break;
        assert_int_equal(err, CRAFT_ENOMEM);
        fails++;
        size_t len1;
        uint8_t *snap1 = snapshot(kv, 0, &len1);
        assert_int_equal(len0, len1);
        assert_memory_equal(snap0, snap1, len0);
        craft_free(snap1);
    }
    assert_true(fails >= 12 + 1); /* at least 12 leaves and separators */
    assert_int_equal(kv_count(kv), 11 + 12 - 1);
    craft_free(snap0);

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
    assert_int_equal(len, 36 + 4);
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

    craft_put32(buf + 8, 3); /* version 3 */
    reseal(buf, len);
    assert_int_equal(kv_restore_mem(buf, len, SEED, &back, &applied),
                     CRAFT_ECORRUPT);
    craft_put32(buf + 8, 2);
    craft_put32(buf + 12, 1); /* unknown flag */
    reseal(buf, len);
    assert_int_equal(kv_restore_mem(buf, len, SEED, &back, &applied),
                     CRAFT_ECORRUPT);
    craft_put32(buf + 12, 0);
    /* the same key twice: the two records are k1/k2, make both k1; then
     * out of order: k1, k0 */
    uint8_t *rec2 = buf + 36 + 40 + 2 + 1 + 40;
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
    uint8_t *rev = buf + 36 + 8;
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
    craft_put32(buf + 36, 0x7fffffff);
    reseal(buf, len);
    assert_int_equal(kv_restore_mem(buf, len, SEED, &back, &applied),
                     CRAFT_ECORRUPT);
    craft_put32(buf + 36, 2);
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
        T(test_snapshot_corruption),
        T(test_snapshot_structure),
        T(test_snapshot_errors),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
