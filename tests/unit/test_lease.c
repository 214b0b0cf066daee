/* Tests of the lease clock (src/lease): deadlines from applied commands,
 * a new leader's full TTL, due leases named once and again after the retry
 * interval, allocation failures, the clock fed from src/kv (lease_kv.c:
 * rebuild, stale expiries, the EXPIRE's refresh), and a random walk
 * checked step by step against a plain model (an array of every lease). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kv/kv.h"
#include "lease/lease.h"
#include "unit/count_alloc.h"

static struct lease_clock *new_clock(uint64_t retry_ms)
{
    struct lease_clock *c;
    assert_int_equal(lease_clock_new(retry_ms, &c), 0);
    return c;
}

static void test_deadlines_from_commands(void **state)
{
    (void)state;
    struct lease_clock *c = new_clock(500);
    assert_int_equal(lease_clock_remaining(c, 7, 0), -1);
    /* GRANT at 1000 with 2 s: 2000 ms left, counting down. */
    assert_int_equal(lease_clock_on_applied(c, KV_LEASE_GRANT, 7, true, 2000, 1000), 0);
    assert_int_equal(lease_clock_count(c), 1);
    assert_int_equal(lease_clock_remaining(c, 7, 1000), 2000);
    assert_int_equal(lease_clock_remaining(c, 7, 2500), 500);
    assert_int_equal(lease_clock_remaining(c, 7, 3000), 0);
    assert_int_equal(lease_clock_remaining(c, 7, 9000), 0);
    /* KEEPALIVE at 2500 restarts it; one of an unknown lease adds nothing. */
    assert_int_equal(lease_clock_on_applied(c, KV_LEASE_KEEPALIVE, 7, true, 2000, 2500), 0);
    assert_int_equal(lease_clock_remaining(c, 7, 2500), 2000);
    assert_int_equal(lease_clock_on_applied(c, KV_LEASE_KEEPALIVE, 8, false, 0, 2500), 0);
    assert_int_equal(lease_clock_remaining(c, 8, 2500), -1);
    assert_int_equal(lease_clock_count(c), 1);
    /* REVOKE and EXPIRE forget; forgetting twice or an unknown id is fine. */
    assert_int_equal(lease_clock_on_applied(c, KV_LEASE_GRANT, 9, true, 100, 2500), 0);
    assert_int_equal(lease_clock_on_applied(c, KV_LEASE_REVOKE, 7, true, 0, 2600), 0);
    assert_int_equal(lease_clock_remaining(c, 7, 2600), -1);
    assert_int_equal(lease_clock_on_applied(c, KV_LEASE_EXPIRE, 9, true, 0, 2600), 0);
    assert_int_equal(lease_clock_on_applied(c, KV_LEASE_EXPIRE, 9, false, 0, 2600), 0);
    lease_clock_forget(c, 12345);
    assert_int_equal(lease_clock_count(c), 0);
    /* Other ops, and bad arguments. */
    assert_int_equal(lease_clock_on_applied(c, 0, 5, true, 100, 0), 0);
    assert_int_equal(lease_clock_count(c), 0);
    assert_int_equal(lease_clock_start(c, 0, 100, 0), CRAFT_EINVAL);
    assert_int_equal(lease_clock_start(c, 5, 0, 0), CRAFT_EINVAL);
    struct lease_clock *bad;
    assert_int_equal(lease_clock_new(0, &bad), CRAFT_EINVAL);
    assert_null(bad);
    lease_clock_free(c);
    lease_clock_free(NULL);
}

static void test_due_and_retry(void **state)
{
    (void)state;
    struct lease_clock *c = new_clock(300);
    uint64_t ids[8];
    assert_int_equal(lease_clock_start(c, 1, 1000, 0), 0);
    assert_int_equal(lease_clock_start(c, 2, 500, 0), 0);
    assert_int_equal(lease_clock_start(c, 3, 2000, 0), 0);
    assert_int_equal(lease_clock_due(c, 499, 0, ids, 8), 0);
    /* 2 runs out at 500 exactly. */
    assert_int_equal(lease_clock_due(c, 500, 0, ids, 8), 1);
    assert_int_equal(ids[0], 2);
    /* Named once: not again before the retry interval ... */
    assert_int_equal(lease_clock_due(c, 799, 0, ids, 8), 0);
    /* ... then again while it is still there, with 1 now due too, in
     * deadline order. */
    assert_int_equal(lease_clock_due(c, 1000, 0, ids, 8), 2);
    assert_int_equal(ids[0], 2);
    assert_int_equal(ids[1], 1);
    /* Its EXPIRE applied: never named again. A keepalive of 1 before its
     * expiry applied restarts it (no longer proposed). */
    lease_clock_forget(c, 2);
    assert_int_equal(lease_clock_start(c, 1, 1000, 1100), 0);
    assert_int_equal(lease_clock_due(c, 2099, 0, ids, 8), 1);
    assert_int_equal(ids[0], 3);
    assert_int_equal(lease_clock_due(c, 2100, 0, ids, 8), 1);
    assert_int_equal(ids[0], 1);
    /* cap bounds one call; the rest come in the next. */
    lease_clock_clear(c);
    for (uint64_t id = 1; id <= 5; id++)
        assert_int_equal(lease_clock_start(c, id, 10 * id, 0), 0);
    assert_int_equal(lease_clock_due(c, 100, 0, ids, 2), 2);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 2);
    assert_int_equal(lease_clock_due(c, 100, 0, ids, 8), 3);
    assert_int_equal(ids[0], 3);
    assert_int_equal(ids[2], 5);
    lease_clock_free(c);
}

/* A new leader gives every lease its full TTL from the moment it leads,
 * whatever the old deadlines and proposals were. */
static void test_became_leader(void **state)
{
    (void)state;
    struct lease_clock *c = new_clock(3000);
    uint64_t ids[8];
    assert_int_equal(lease_clock_start(c, 10, 1000, 0), 0);
    assert_int_equal(lease_clock_start(c, 11, 5000, 0), 0);
    assert_int_equal(lease_clock_due(c, 1500, 0, ids, 8), 1); /* 10 proposed */
    lease_clock_became_leader(c, 4000);
    assert_int_equal(lease_clock_remaining(c, 10, 4000), 1000);
    assert_int_equal(lease_clock_remaining(c, 11, 4000), 5000); /* later than before */
    assert_int_equal(lease_clock_due(c, 4999, 0, ids, 8), 0);
    assert_int_equal(lease_clock_due(c, 5000, 0, ids, 8), 1);
    assert_int_equal(ids[0], 10);
    assert_int_equal(lease_clock_due(c, 7999, 0, ids, 8), 0);
    assert_int_equal(lease_clock_due(c, 8000, 0, ids, 8), 1); /* 10, retried */
    assert_int_equal(ids[0], 10);
    assert_int_equal(lease_clock_due(c, 9000, 0, ids, 8), 1);
    assert_int_equal(ids[0], 11);
    lease_clock_free(c);
}

/* Expiries proposed up to an index hold every naming back until the
 * caller has applied that index; after it, retries run as before, and
 * taking office again lifts the wait. */
static void test_waits_for_applied(void **state)
{
    (void)state;
    struct lease_clock *c = new_clock(100);
    uint64_t ids[8];
    assert_int_equal(lease_clock_start(c, 1, 50, 0), 0);
    assert_int_equal(lease_clock_start(c, 2, 500, 0), 0);
    assert_int_equal(lease_clock_due(c, 50, 7, ids, 8), 1);
    assert_int_equal(ids[0], 1);
    lease_clock_proposed(c, 20);
    /* retry time for 1, deadline of 2: both held while applied < 20 */
    assert_int_equal(lease_clock_due(c, 600, 19, ids, 8), 0);
    assert_int_equal(lease_clock_due(c, 600, 20, ids, 8), 2);
    lease_clock_proposed(c, 30);
    assert_int_equal(lease_clock_due(c, 800, 29, ids, 8), 0);
    lease_clock_became_leader(c, 800);
    assert_int_equal(lease_clock_due(c, 850, 0, ids, 8), 1);
    assert_int_equal(ids[0], 1);
    lease_clock_free(c);
}

/* Many leases through the hash table and the heap (growth, deletion in
 * the middle of probe runs and of the heap). */
/* Applies lease command (op, id, arg) at index to kv, then feeds its result
 * to c at now, as a node does (lease_kv.c). */
static const struct kv_result *apply_lease(struct kv *kv, struct lease_clock *c,
                                           uint64_t index, uint8_t op, uint64_t id,
                                           uint64_t arg, uint64_t now)
{
    uint8_t cmd[KV_LEASE_CMD_MAX];
    size_t len = kv_lease_cmd_encode(op, id, arg, cmd);
    assert_true(len > 0);
    assert_int_equal(kv_apply_at(kv, index, cmd, len), 0);
    const struct kv_result *r = kv_last_result(kv);
    assert_int_equal(r->index, index);
    assert_int_equal(lease_clock_on_result(c, r, now), 0);
    return r;
}

static void test_clock_and_map(void **state)
{
    (void)state;
    struct kv *kv = kv_new(1);
    assert_non_null(kv);
    struct lease_clock *c = new_clock(500);
    /* Grant at index 3 (lease 3), time 1000; keepalive at index 5, 1500. */
    apply_lease(kv, c, 3, KV_LEASE_GRANT, 0, 2000, 1000);
    assert_int_equal(lease_clock_remaining(c, 3, 1000), 2000);
    uint8_t exp[KV_LEASE_CMD_MAX];
    size_t elen = lease_expire_cmd(kv, 3, exp); /* names refresh 3 */
    assert_true(elen > 0);
    apply_lease(kv, c, 5, KV_LEASE_KEEPALIVE, 3, 0, 1500);
    assert_int_equal(lease_clock_remaining(c, 3, 1500), 2000);
    /* The EXPIRE decided before the keepalive is stale: lease and clock
     * keep it. */
    assert_int_equal(kv_apply_at(kv, 6, exp, elen), 0);
    const struct kv_result *r = kv_last_result(kv);
    assert_true(r->lease_stale);
    assert_int_equal(lease_clock_on_result(c, r, 1600), 0);
    assert_int_equal(lease_clock_remaining(c, 3, 1600), 1900);
    struct kv_lease l;
    assert_int_equal(kv_lease_get(kv, 3, &l), 0);
    /* A rebuild (restart, install) starts it with its full TTL, and
     * forgets what the map does not hold. */
    assert_int_equal(lease_clock_start(c, 99, 10, 0), 0);
    assert_int_equal(lease_clock_rebuild(c, kv, 4000), 0);
    assert_int_equal(lease_clock_count(c), 1);
    assert_int_equal(lease_clock_remaining(c, 3, 4000), 2000);
    assert_int_equal(lease_clock_remaining(c, 99, 4000), -1);
    /* The EXPIRE named now counts from refresh 5 and deletes it. */
    elen = lease_expire_cmd(kv, 3, exp);
    assert_int_equal(kv_apply_at(kv, 7, exp, elen), 0);
    r = kv_last_result(kv);
    assert_false(r->lease_stale);
    assert_true(r->lease_found);
    assert_int_equal(lease_clock_on_result(c, r, 6000), 0);
    assert_int_equal(lease_clock_count(c), 0);
    assert_int_equal(lease_expire_cmd(kv, 3, exp), 0); /* gone */
    /* Not a lease command, or none: nothing. */
    assert_int_equal(lease_clock_on_result(c, NULL, 0), 0);
    assert_int_equal(lease_clock_rebuild(c, NULL, 0), 0);
    lease_clock_free(c);
    kv_free(kv);
}

static void test_many(void **state)
{
    (void)state;
    struct lease_clock *c = new_clock(1);
    enum { N = 5000 };
    for (uint64_t id = 1; id <= N; id++)
        assert_int_equal(lease_clock_start(c, id * 64, 1 + (id * 7919) % 10007, 0), 0);
    for (uint64_t id = 2; id <= N; id += 2)
        lease_clock_forget(c, id * 64);
    assert_int_equal(lease_clock_count(c), N / 2);
    for (uint64_t id = 1; id <= N; id++) {
        int64_t want = id % 2 ? (int64_t)(1 + (id * 7919) % 10007) : -1;
        assert_int_equal(lease_clock_remaining(c, id * 64, 0), want);
    }
    /* All of them run out in deadline order. */
    uint64_t *ids = malloc(N * sizeof *ids);
    assert_non_null(ids);
    assert_int_equal(lease_clock_due(c, 20000, 0, ids, N), N / 2);
    uint64_t prev = 0;
    for (size_t i = 0; i < N / 2; i++) {
        uint64_t id = ids[i] / 64;
        assert_true(id % 2 == 1);
        uint64_t ttl = 1 + (id * 7919) % 10007;
        assert_true(ttl >= prev);
        prev = ttl;
    }
    free(ids);
    lease_clock_free(c);
}

/* A failed allocation leaves the clock as it was; nothing leaks. */
static void test_alloc_failure(void **state)
{
    (void)state;
    for (long fail_at = 1; fail_at <= 6; fail_at++) {
        struct lease_clock *c = new_clock(10);
        for (uint64_t id = 1; id <= 8; id++) /* the table is then full */
            assert_int_equal(lease_clock_start(c, id, 100, 0), 0);
        count_alloc_countdown = fail_at;
        int rv = lease_clock_start(c, 9, 100, 0);
        count_alloc_countdown = 0;
        if (rv == 0) {
            assert_int_equal(lease_clock_count(c), 9);
        } else {
            assert_int_equal(rv, CRAFT_ENOMEM);
            assert_int_equal(lease_clock_count(c), 8);
            assert_int_equal(lease_clock_remaining(c, 9, 0), -1);
        }
        for (uint64_t id = 1; id <= 8; id++)
            assert_int_equal(lease_clock_remaining(c, id, 0), 100);
        lease_clock_free(c);
    }
    count_alloc_countdown = 1;
    struct lease_clock *c;
    assert_int_equal(lease_clock_new(10, &c), CRAFT_ENOMEM);
    count_alloc_countdown = 0;
}

/* ---- the property test ---- */

#define MODEL_IDS 48

struct model_lease {
    bool live;
    uint64_t ttl, deadline, due_at;
};

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void check_against(struct lease_clock *c, const struct model_lease *m,
                          uint64_t now)
{
    size_t live = 0;
    for (uint64_t id = 1; id <= MODEL_IDS; id++) {
        int64_t want = -1;
        if (m[id].live) {
            live++;
            want = m[id].deadline > now ? (int64_t)(m[id].deadline - now) : 0;
        }
        assert_int_equal(lease_clock_remaining(c, id, now), want);
    }
    assert_int_equal(lease_clock_count(c), live);
}

/* One random walk: starts, forgets, leadership gains and due calls with a
 * small cap, each checked against the model. due may break ties between
 * equal due times either way: the model checks that what it names is due,
 * as many as can be, and never later than one it leaves. */
static void walk(uint64_t seed, int steps)
{
    struct lease_clock *c = new_clock(250);
    struct model_lease m[MODEL_IDS + 1];
    memset(m, 0, sizeof m);
    uint64_t s = seed, now = 1000;
    for (int step = 0; step < steps; step++) {
        now += rng_next(&s) % 200;
        uint64_t id = 1 + rng_next(&s) % MODEL_IDS;
        unsigned op = (unsigned)(rng_next(&s) % 100);
        if (op < 40) {
            uint64_t ttl = 1 + rng_next(&s) % 2000;
            assert_int_equal(lease_clock_start(c, id, ttl, now), 0);
            m[id] = (struct model_lease){.live = true, .ttl = ttl,
                                         .deadline = now + ttl, .due_at = now + ttl};
        } else if (op < 60) {
            lease_clock_forget(c, id);
            m[id].live = false;
        } else if (op < 63) {
            lease_clock_became_leader(c, now);
            for (uint64_t i = 1; i <= MODEL_IDS; i++)
                m[i].deadline = m[i].due_at = now + m[i].ttl;
        } else {
            size_t cap = 1 + rng_next(&s) % 6;
            uint64_t ids[8];
            size_t got = lease_clock_due(c, now, 0, ids, cap);
            size_t due = 0;
            for (uint64_t i = 1; i <= MODEL_IDS; i++)
                due += m[i].live && m[i].due_at <= now;
            assert_int_equal(got, due < cap ? due : cap);
            uint64_t latest = 0;
            for (size_t k = 0; k < got; k++) {
                struct model_lease *e = &m[ids[k]];
                assert_true(ids[k] >= 1 && ids[k] <= MODEL_IDS);
                assert_true(e->live && e->due_at <= now);
                assert_true(e->due_at >= latest); /* earliest first */
                latest = e->due_at;
                e->due_at = now + 250;
            }
            for (uint64_t i = 1; i <= MODEL_IDS; i++) /* none left was earlier */
                if (m[i].live && m[i].due_at <= now)
                    assert_true(m[i].due_at >= latest);
        }
        check_against(c, m, now);
    }
    lease_clock_free(c);
}

static void test_against_model(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 200; seed++)
        walk(seed * 0x9E3779B97F4A7C15ull, 2000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_deadlines_from_commands, count_alloc_setup,
                                        count_alloc_teardown),
        cmocka_unit_test_setup_teardown(test_due_and_retry, count_alloc_setup,
                                        count_alloc_teardown),
        cmocka_unit_test_setup_teardown(test_became_leader, count_alloc_setup,
                                        count_alloc_teardown),
        cmocka_unit_test_setup_teardown(test_waits_for_applied, count_alloc_setup,
                                        count_alloc_teardown),
        cmocka_unit_test_setup_teardown(test_clock_and_map, count_alloc_setup,
                                        count_alloc_teardown),
        cmocka_unit_test_setup_teardown(test_many, count_alloc_setup, count_alloc_teardown),
        cmocka_unit_test_setup_teardown(test_alloc_failure, count_alloc_setup,
                                        count_alloc_teardown),
        cmocka_unit_test_setup_teardown(test_against_model, count_alloc_setup,
                                        count_alloc_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
