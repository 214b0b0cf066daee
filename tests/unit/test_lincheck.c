/* Tests of the linearizability checker (tests/lincheck): hand-made valid and
 * invalid histories, bad input, allocation failure, budgets, reports, and
 * randomized histories generated from a real sequential register. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/error.h"
#include "lincheck/lincheck.h"

#define OK_ LINCHECK_OUTCOME_OK
#define FAIL_ LINCHECK_OUTCOME_FAIL
#define UNK_ LINCHECK_OUTCOME_UNKNOWN
#define INF LINCHECK_INF

#define PUTX(c, k, v, i, r, o)                                               \
    {.client = (c), .key = (k), .kind = LINCHECK_PUT, .value = (v),          \
     .has_value = true, .invoke = (i), .complete = (r), .outcome = (o)}
#define PUT(c, k, v, i, r) PUTX(c, k, v, i, r, OK_)
#define PUTU(c, k, v, i) PUTX(c, k, v, i, INF, UNK_)
#define PUTF(c, k, v, i, r) PUTX(c, k, v, i, r, FAIL_)
#define DEL(c, k, i, r)                                                      \
    {.client = (c), .key = (k), .kind = LINCHECK_DELETE, .invoke = (i),      \
     .complete = (r), .outcome = OK_}
#define DELU(c, k, i)                                                        \
    {.client = (c), .key = (k), .kind = LINCHECK_DELETE, .invoke = (i),      \
     .complete = INF, .outcome = UNK_}
/* A get that read v (NULL: absent). */
#define GETX(c, k, v, i, r, o)                                               \
    {.client = (c), .key = (k), .kind = LINCHECK_GET, .value = (v),          \
     .has_value = (v) != NULL, .invoke = (i), .complete = (r), .outcome = (o)}
#define GET(c, k, v, i, r) GETX(c, k, v, i, r, OK_)

/* Revisions: a put given mod_index m, a get that read v at mod m, a cas
 * from expected mod e writing v (ok: given mod m; fail: current mod m
 * reported), one of unknown outcome. */
#define PUTM(c, k, v, m, i, r)                                               \
    {.client = (c), .key = (k), .kind = LINCHECK_PUT, .value = (v),          \
     .has_value = true, .invoke = (i), .complete = (r), .outcome = OK_,      \
     .mod = (m), .has_mod = true}
#define GETM(c, k, v, m, i, r)                                               \
    {.client = (c), .key = (k), .kind = LINCHECK_GET, .value = (v),          \
     .has_value = (v) != NULL, .invoke = (i), .complete = (r),               \
     .outcome = OK_, .mod = (m), .has_mod = true}
#define CASX(c, k, e, v, m, i, r, o)                                         \
    {.client = (c), .key = (k), .kind = LINCHECK_CAS, .value = (v),          \
     .has_value = true, .invoke = (i), .complete = (r), .outcome = (o),      \
     .mod = (m), .has_mod = true, .expect = (e)}
#define CAS(c, k, e, v, m, i, r) CASX(c, k, e, v, m, i, r, OK_)
#define CASF(c, k, e, m, i, r) CASX(c, k, e, "-", m, i, r, FAIL_)
#define CASU(c, k, e, v, i)                                                  \
    {.client = (c), .key = (k), .kind = LINCHECK_CAS, .value = (v),          \
     .has_value = true, .invoke = (i), .complete = INF, .outcome = UNK_,     \
     .expect = (e)}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Check a history and return its verdict (the call itself must succeed). */
static int verdict_of(const struct lincheck_op *ops, size_t n,
                      const struct lincheck_opts *o)
{
    struct lincheck_result res;
    assert_int_equal(lincheck_check(ops, n, o, &res), 0);
    int v = res.verdict;
    if (v == LINCHECK_OK) {
        assert_null(res.bad_key);
        assert_null(res.explanation);
    } else {
        assert_non_null(res.bad_key);
        assert_non_null(res.explanation);
    }
    lincheck_result_free(&res);
    return v;
}

#define ACCEPT(ops) assert_int_equal(verdict_of(ops, N(ops), NULL), LINCHECK_OK)
#define REJECT(ops)                                                          \
    assert_int_equal(verdict_of(ops, N(ops), NULL), LINCHECK_VIOLATION)

/* ---- valid histories ---- */

static void test_empty(void **state)
{
    struct lincheck_result res;
    assert_int_equal(lincheck_check(NULL, 0, NULL, &res), 0);
    assert_int_equal(res.verdict, LINCHECK_OK);
    assert_int_equal(res.n_keys, 0);
    lincheck_result_free(&res);
}

static void test_sequential(void **state)
{
    struct lincheck_op ops[] = {
        GET(1, "k", NULL, 0, 1),  PUT(1, "k", "a", 2, 3),
        GET(2, "k", "a", 4, 5),   PUT(2, "k", "b", 6, 7),
        GET(1, "k", "b", 8, 9),   DEL(1, "k", 10, 11),
        GET(2, "k", NULL, 12, 13), PUT(1, "k", "a", 14, 15),
        GET(2, "k", "a", 16, 17),
    };
    ACCEPT(ops);
}

static void test_overlapping_reads_see_either(void **state)
{
    /* Two concurrent puts; reads overlapping them see either, in an order
     * consistent with one linearization. */
    struct lincheck_op first_b[] = {
        PUT(1, "k", "a", 0, 10), PUT(2, "k", "b", 5, 15),
        GET(3, "k", "b", 6, 12), GET(4, "k", "a", 7, 14),
    };
    ACCEPT(first_b);
    struct lincheck_op first_a[] = {
        PUT(1, "k", "a", 0, 10), PUT(2, "k", "b", 5, 15),
        GET(3, "k", "a", 6, 12), GET(4, "k", "b", 13, 14),
    };
    ACCEPT(first_a);
    /* A read overlapping the first put may still see absent. */
    struct lincheck_op absent[] = {
        PUT(1, "k", "a", 0, 10), GET(2, "k", NULL, 2, 20),
        GET(3, "k", "a", 11, 12),
    };
    ACCEPT(absent);
}

static void test_unknown_put(void **state)
{
    struct lincheck_op seen[] = {
        PUT(1, "k", "a", 0, 10), PUTU(2, "k", "b", 20),
        GET(3, "k", "b", 30, 40), GET(3, "k", "b", 50, 60),
    };
    ACCEPT(seen);
    struct lincheck_op unseen[] = {
        PUT(1, "k", "a", 0, 10), PUTU(2, "k", "b", 20),
        GET(3, "k", "a", 30, 40), GET(3, "k", "a", 50, 60),
    };
    ACCEPT(unseen);
    /* Takes effect late: after reads that missed it. */
    struct lincheck_op late[] = {
        PUTU(2, "k", "b", 0), GET(3, "k", NULL, 30, 40),
        GET(3, "k", "b", 1000, 1001),
    };
    ACCEPT(late);
    /* But at most once: b then a again is impossible. */
    struct lincheck_op twice[] = {
        PUT(1, "k", "a", 0, 10), PUTU(2, "k", "b", 20),
        GET(3, "k", "b", 30, 40), GET(3, "k", "a", 50, 60),
    };
    REJECT(twice);
    /* And never before its invocation. */
    struct lincheck_op early[] = {
        GET(3, "k", "b", 0, 10), PUTU(2, "k", "b", 20),
    };
    REJECT(early);
    /* An unknown delete may happen too. */
    struct lincheck_op del[] = {
        PUT(1, "k", "a", 0, 10), DELU(2, "k", 20),
        GET(3, "k", NULL, 30, 40),
    };
    ACCEPT(del);
}

static void test_failed_ops_are_dropped(void **state)
{
    struct lincheck_op ok[] = {
        PUT(1, "k", "a", 0, 10), PUTF(2, "k", "b", 20, 30),
        GET(3, "k", "a", 40, 50),
        /* gets without an answer observed nothing */
        GETX(3, "k", "garbage", 60, 70, FAIL_),
        GETX(3, "k", "garbage", 80, INF, UNK_),
    };
    ACCEPT(ok);
    struct lincheck_op bad[] = {
        PUT(1, "k", "a", 0, 10), PUTF(2, "k", "b", 20, 30),
        GET(3, "k", "b", 40, 50),
    };
    REJECT(bad);
}

static void test_delete(void **state)
{
    struct lincheck_op ok[] = {
        PUT(1, "k", "a", 0, 10), DEL(1, "k", 20, 30),
        GET(2, "k", NULL, 40, 50),
    };
    ACCEPT(ok);
    struct lincheck_op stale[] = {
        PUT(1, "k", "a", 0, 10), DEL(1, "k", 20, 30),
        GET(2, "k", "a", 40, 50),
    };
    REJECT(stale);
}

static void test_equal_stamps_overlap(void **state)
{
    /* complete == invoke of the next op counts as concurrent. */
    struct lincheck_op ops[] = {
        PUT(1, "k", "a", 0, 10), GET(2, "k", NULL, 10, 20),
    };
    ACCEPT(ops);
}

static void test_keys_are_independent(void **state)
{
    /* As one register this would be a stale read; per key it is fine. */
    struct lincheck_op ops[] = {
        PUT(1, "x", "a", 0, 10), PUT(1, "y", "b", 20, 30),
        GET(2, "x", "a", 40, 50), GET(2, "y", "b", 40, 50),
    };
    ACCEPT(ops);
}

/* ---- invalid histories ---- */

static void test_stale_read(void **state)
{
    struct lincheck_op ops[] = {
        PUT(1, "k", "a", 0, 10), PUT(2, "k", "b", 20, 30),
        GET(3, "k", "a", 40, 50),
    };
    REJECT(ops);
}

static void test_value_never_written(void **state)
{
    struct lincheck_op ops[] = {
        PUT(1, "k", "a", 0, 10), GET(2, "k", "zzz", 5, 50),
    };
    struct lincheck_result res;
    assert_int_equal(lincheck_check(ops, N(ops), NULL, &res), 0);
    assert_int_equal(res.verdict, LINCHECK_VIOLATION);
    assert_string_equal(res.bad_key, "k");
    assert_non_null(strstr(res.explanation, "no put of this key writes"));
    lincheck_result_free(&res);
    /* The same value written on another key does not count. */
    struct lincheck_op other[] = {
        PUT(1, "j", "zzz", 0, 10), GET(2, "k", "zzz", 20, 30),
    };
    REJECT(other);
}

static void test_non_monotonic_read(void **state)
{
    struct lincheck_op ops[] = {
        PUT(1, "k", "a", 0, 10), PUT(2, "k", "b", 5, 100),
        GET(3, "k", "b", 20, 30), GET(3, "k", "a", 40, 50),
    };
    REJECT(ops);
}

static void test_lost_write(void **state)
{
    struct lincheck_op ops[] = {
        PUT(1, "k", "a", 0, 10), GET(2, "k", NULL, 20, 30),
        GET(3, "k", NULL, 40, 50),
    };
    REJECT(ops);
}

static void test_report_names_first_bad_key(void **state)
{
    struct lincheck_op ops[] = {
        PUT(1, "b", "1", 0, 10), GET(1, "b", NULL, 20, 30), /* bad */
        PUT(1, "a", "1", 0, 10), GET(1, "a", "1", 20, 30),  /* good */
        PUT(1, "c", "1", 0, 10), GET(1, "c", "2", 20, 30),  /* bad */
        GETX(1, "d", "x", 0, 10, FAIL_),                   /* all dropped */
    };
    struct lincheck_result res;
    assert_int_equal(lincheck_check(ops, N(ops), NULL, &res), 0);
    assert_int_equal(res.verdict, LINCHECK_VIOLATION);
    assert_int_equal(res.n_ops, 7);
    assert_int_equal(res.n_checked, 6);
    assert_int_equal(res.n_keys, 4);
    assert_int_equal(res.n_bad_keys, 2);
    assert_int_equal(res.n_unknown_keys, 0);
    assert_string_equal(res.bad_key, "b");

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    lincheck_result_print(&res, f);
    fclose(f);
    assert_non_null(strstr(buf, "verdict: violation"));
    assert_non_null(strstr(buf, "key \"b\""));
    assert_non_null(strstr(buf, "  L1    client 1"));
    assert_non_null(strstr(buf, "1 of 2 ops"));
    assert_non_null(strstr(buf, "get -> absent"));
    free(buf);
    lincheck_result_free(&res);
    lincheck_result_free(&res); /* harmless twice */
    lincheck_result_free(NULL);
}

/* The result must not point into the caller's history. */
static void test_result_owns_its_strings(void **state)
{
    char *key = strdup("key-on-heap");
    char *val = strdup("v");
    struct lincheck_op ops[] = {
        PUT(1, key, val, 0, 10), GET(2, key, NULL, 20, 30),
    };
    struct lincheck_result res;
    assert_int_equal(lincheck_check(ops, N(ops), NULL, &res), 0);
    memset(key, 'X', strlen(key));
    free(key);
    free(val);
    assert_string_equal(res.bad_key, "key-on-heap");
    assert_non_null(strstr(res.explanation, "put \"v\""));
    lincheck_result_free(&res);
}

static void test_verdict_names(void **state)
{
    assert_string_equal(lincheck_verdict_name(LINCHECK_OK), "ok");
    assert_string_equal(lincheck_verdict_name(LINCHECK_VIOLATION), "violation");
    assert_string_equal(lincheck_verdict_name(LINCHECK_UNKNOWN), "unknown");
    assert_string_equal(lincheck_verdict_name(42), "?");
}

/* ---- bad input ---- */

static void expect_einval(const struct lincheck_op *op)
{
    struct lincheck_op ops[2] = {PUT(1, "k", "a", 0, 10), *op};
    struct lincheck_result res;
    assert_int_equal(lincheck_check(ops, 2, NULL, &res), CRAFT_EINVAL);
    assert_null(res.bad_key);
    assert_null(res.explanation);
    lincheck_result_free(&res);
}

static void test_bad_input(void **state)
{
    struct lincheck_op good = PUT(1, "k", "a", 0, 10), op;
    op = good, op.key = NULL;
    expect_einval(&op);
    op = good, op.kind = 0;
    expect_einval(&op);
    op = good, op.kind = LINCHECK_CAS + 1;
    expect_einval(&op);
    op = good, op.outcome = 7;
    expect_einval(&op);
    op = good, op.outcome = -1;
    expect_einval(&op);
    op = good, op.has_value = false; /* put without value */
    expect_einval(&op);
    op = good, op.value = NULL; /* has_value but no string */
    expect_einval(&op);
    op = good, op.invoke = 11; /* completes before invoked */
    expect_einval(&op);
    op = good, op.complete = INF; /* ok but never completed */
    expect_einval(&op);
    op = good, op.invoke = INF, op.outcome = UNK_;
    expect_einval(&op);

    struct lincheck_result res;
    assert_int_equal(lincheck_check(NULL, 3, NULL, &res), CRAFT_EINVAL);
    /* A failed op may have any complete time. */
    op = good, op.outcome = FAIL_, op.complete = INF;
    struct lincheck_op ops[] = {op};
    ACCEPT(ops);
}

/* ---- compare-and-set ---- */

/* Clients race to increment a counter from the same read: one wins, the
 * other is refused and told the new mod_index; then it retries. */
static void test_cas_race_accepted(void **state)
{
    struct lincheck_op ops[] = {
        PUTM(1, "x", "0", 5, 0, 1),
        GETM(2, "x", "0", 5, 2, 3),    GETM(3, "x", "0", 5, 2, 3),
        CAS(2, "x", 5, "1", 7, 4, 8),  CASF(3, "x", 5, 7, 4, 9),
        GETM(3, "x", "1", 7, 10, 11),  CAS(3, "x", 7, "2", 12, 12, 13),
        /* creation: expected mod 0 is "absent" */
        CAS(1, "y", 0, "a", 6, 0, 20), GETM(2, "y", "a", 6, 21, 22),
    };
    ACCEPT(ops);
}

/* Two CAS from the same expected mod_index both succeed: a lost update. */
static void test_cas_double_success_rejected(void **state)
{
    struct lincheck_op ops[] = {
        PUTM(1, "x", "0", 5, 0, 1),
        CAS(2, "x", 5, "1", 7, 4, 8),
        CAS(3, "x", 5, "1", 9, 4, 9),
    };
    struct lincheck_result res;
    assert_int_equal(lincheck_check(ops, N(ops), NULL, &res), 0);
    assert_int_equal(res.verdict, LINCHECK_VIOLATION);
    assert_string_equal(res.bad_key, "x");
    /* The report shows the two compares and where the search got stuck. */
    assert_non_null(strstr(res.explanation, "cas if mod 5: put \"1\" (mod 7)"));
    assert_non_null(strstr(res.explanation, "cas if mod 5: put \"1\" (mod 9)"));
    assert_non_null(strstr(res.explanation, "2 of 3 ops"));
    lincheck_result_free(&res);
    /* Sequential, it is just as wrong. */
    struct lincheck_op seq[] = {
        PUTM(1, "x", "0", 5, 0, 1),
        CAS(2, "x", 5, "1", 7, 2, 3),
        CAS(3, "x", 5, "2", 9, 4, 5),
    };
    REJECT(seq);
}

/* A refusal when nothing changed, or one reporting an index nobody wrote
 * at that time, is a violation; a compare against a key's mod_index. */
static void test_cas_refusals(void **state)
{
    struct lincheck_op spurious[] = {
        PUTM(1, "x", "0", 5, 0, 1), CASF(2, "x", 5, 0, 2, 3),
    };
    REJECT(spurious);
    struct lincheck_op spurious_any[] = { /* no mod reported */
        PUTM(1, "x", "0", 5, 0, 1),
        {.client = 2, .key = "x", .kind = LINCHECK_CAS, .value = "1",
         .has_value = true, .invoke = 2, .complete = 3, .outcome = FAIL_,
         .expect = 5},
    };
    REJECT(spurious_any);
    struct lincheck_op stale_mod[] = { /* current is 7 by then, not 5 */
        PUTM(1, "x", "0", 5, 0, 1), PUTM(1, "x", "1", 7, 2, 3),
        CASF(2, "x", 9, 5, 4, 5),
    };
    REJECT(stale_mod);
    struct lincheck_op absent[] = { /* absent: mod 0 */
        CASF(2, "x", 3, 0, 0, 1), CAS(2, "x", 0, "a", 4, 2, 3),
        CASF(3, "x", 0, 4, 5, 6),
    };
    ACCEPT(absent);
    struct lincheck_op wrong_mod[] = { /* a get at an index never written */
        PUTM(1, "x", "0", 5, 0, 1), GETM(2, "x", "0", 6, 2, 3),
    };
    REJECT(wrong_mod);
}

/* A CAS of unknown outcome may have applied: its mod_index is fixed by the
 * first op that observes one, and must then stay that. */
static void test_cas_unknown(void **state)
{
    struct lincheck_op applied[] = {
        PUTM(1, "x", "0", 5, 0, 1), CASU(2, "x", 5, "1", 2),
        GETM(3, "x", "1", 8, 10, 11), CAS(3, "x", 8, "2", 9, 12, 13),
    };
    ACCEPT(applied);
    struct lincheck_op not_applied[] = {
        PUTM(1, "x", "0", 5, 0, 1), CASU(2, "x", 5, "1", 2),
        CAS(3, "x", 5, "2", 9, 12, 13),
    };
    ACCEPT(not_applied);
    struct lincheck_op two_mods[] = { /* one write, two indexes */
        PUTM(1, "x", "0", 5, 0, 1), CASU(2, "x", 5, "1", 2),
        GETM(3, "x", "1", 8, 10, 11), GETM(3, "x", "1", 9, 12, 13),
    };
    REJECT(two_mods);
    struct lincheck_op both[] = { /* an unknown one cannot apply after an
                                     ok one from the same expected index */
        PUTM(1, "x", "0", 5, 0, 1), CASU(2, "x", 5, "1", 2),
        CAS(3, "x", 5, "2", 9, 3, 4), GETM(3, "x", "1", 10, 12, 13),
    };
    REJECT(both);
}

/* Random CAS histories from a real register, the ops overlapping their
 * neighbours (always linearizable: in the order they were generated), and
 * the same with one refused CAS turned into a success (never linearizable:
 * its expected index is one the key never had). */
static void test_cas_random(void **state)
{
    srand(7);
    for (int round = 0; round < 200; round++) {
        struct lincheck_op ops[40];
        char vals[40][8];
        uint64_t mod = 0, t = 0, index = 0;
        size_t n = 0, refused = SIZE_MAX;
        while (n < N(ops)) {
            /* each client reads, then tries to write from what it read */
            uint64_t seen = mod;
            uint64_t start = t++;
            snprintf(vals[n], sizeof(vals[n]), "%zu", n);
            index += 1 + (uint64_t)(rand() % 3);
            if (rand() % 3 == 0)
                seen = mod + 500; /* never a mod_index: refused */
            if (seen == mod) {
                ops[n] = (struct lincheck_op)CAS(n % 4, "c", seen, vals[n],
                                                 index, start,
                                                 t + (uint64_t)(rand() % 4));
                mod = index;
            } else {
                ops[n] = (struct lincheck_op)CASF(n % 4, "c", seen, mod,
                                                  start,
                                                  t + (uint64_t)(rand() % 4));
                if (refused == SIZE_MAX && n > 0)
                    refused = n;
            }
            n++;
        }
        ACCEPT(ops);
        if (refused == SIZE_MAX)
            continue;
        ops[refused].outcome = OK_;
        ops[refused].mod = ++index + 1000;
        REJECT(ops);
    }
}

/* ---- allocation failure ---- */

/* The allocator has no context pointer, so the failure injector state is
 * file-scope (tests only). */
static long alloc_budget; /* allocations left before failing; <0: never */
static long alloc_live;   /* blocks currently allocated */

static void *fail_malloc(size_t n)
{
    if (alloc_budget == 0)
        return NULL;
    if (alloc_budget > 0)
        alloc_budget--;
    alloc_live++;
    return malloc(n);
}

static void *fail_realloc(void *p, size_t n)
{
    if (alloc_budget == 0)
        return NULL;
    if (alloc_budget > 0)
        alloc_budget--;
    if (p == NULL)
        alloc_live++;
    return realloc(p, n);
}

static void fail_free(void *p)
{
    if (p)
        alloc_live--;
    free(p);
}

static void test_out_of_memory(void **state)
{
    static const struct craft_allocator fa = {fail_malloc, fail_realloc,
                                              fail_free};
    struct lincheck_op ops[] = {
        PUT(1, "k", "a", 0, 10),  PUT(2, "k", "b", 5, 15),
        GET(3, "k", "b", 6, 12),  GET(4, "k", "a", 20, 30), /* bad */
        PUT(1, "j", "a", 0, 10),  GET(1, "j", "x", 20, 30), /* bad */
        PUT(1, "i", "a", 0, 10),  GET(1, "i", "a", 20, 30),
    };
    struct lincheck_opts o = {.alloc = &fa};
    struct lincheck_result res;
    int failures = 0;
    for (long budget = 0;; budget++) {
        alloc_budget = budget;
        alloc_live = 0;
        int err = lincheck_check(ops, N(ops), &o, &res);
        if (err == 0) {
            assert_int_equal(res.verdict, LINCHECK_VIOLATION);
            assert_string_equal(res.bad_key, "j");
            lincheck_result_free(&res);
            assert_int_equal(alloc_live, 0);
            break;
        }
        assert_int_equal(err, CRAFT_ENOMEM);
        assert_null(res.bad_key);
        assert_int_equal(alloc_live, 0);
        failures++;
        assert_true(budget < 10000);
    }
    assert_true(failures > 10); /* every allocation site was hit */
    alloc_budget = -1;
}

/* ---- budgets ---- */

/* n concurrent puts, then reads of v1 and v0 after all of them completed:
 * a violation that takes the search about 2^n states to prove. */
static size_t hard_history(struct lincheck_op *ops, char (*vals)[16], size_t n)
{
    for (size_t i = 0; i < n; i++) {
        snprintf(vals[i], sizeof(vals[i]), "v%u", (unsigned)i);
        ops[i] = (struct lincheck_op)PUT(i, "k", vals[i], 0, 100);
    }
    ops[n] = (struct lincheck_op)GET(99, "k", vals[1], 200, 210);
    ops[n + 1] = (struct lincheck_op)GET(99, "k", vals[0], 220, 230);
    return n + 2;
}

static void test_step_budget(void **state)
{
    struct lincheck_op ops[18];
    char vals[16][16];
    size_t n = hard_history(ops, vals, 16);
    struct lincheck_opts o = {.max_steps = 100};
    struct lincheck_result res;
    assert_int_equal(lincheck_check(ops, n, &o, &res), 0);
    assert_int_equal(res.verdict, LINCHECK_UNKNOWN);
    assert_int_equal(res.n_unknown_keys, 1);
    assert_int_equal(res.steps, 100);
    assert_string_equal(res.bad_key, "k");
    assert_non_null(strstr(res.explanation, "undecided"));
    lincheck_result_free(&res);

    /* A violation elsewhere takes precedence in verdict and report. */
    struct lincheck_op more[20];
    memcpy(more, ops, n * sizeof(ops[0]));
    more[n] = (struct lincheck_op)PUT(1, "z", "a", 0, 10);
    more[n + 1] = (struct lincheck_op)GET(1, "z", NULL, 20, 30);
    assert_int_equal(lincheck_check(more, n + 2, &o, &res), 0);
    assert_int_equal(res.verdict, LINCHECK_VIOLATION);
    assert_string_equal(res.bad_key, "z");
    assert_int_equal(res.n_unknown_keys, 1);
    lincheck_result_free(&res);

    /* With the default budget the memo cache settles a smaller one. */
    n = hard_history(ops, vals, 10);
    assert_int_equal(verdict_of(ops, n, NULL), LINCHECK_VIOLATION);
}

static void test_cache_budget(void **state)
{
    struct lincheck_op ops[18];
    char vals[16][16];
    size_t n = hard_history(ops, vals, 16);
    struct lincheck_opts o = {.max_cache_bytes = 4096};
    assert_int_equal(verdict_of(ops, n, &o), LINCHECK_UNKNOWN);
}

/* A long report lists a window of ops only. */
static void test_long_report_is_cut(void **state)
{
    enum { NOPS = 300 };
    struct lincheck_op ops[NOPS];
    char vals[NOPS][16];
    for (size_t i = 0; i < NOPS; i++) {
        snprintf(vals[i], sizeof(vals[i]), "%u", (unsigned)i);
        ops[i] = (struct lincheck_op)PUT(1, "k", vals[i], 10 * i, 10 * i + 5);
    }
    ops[200] = (struct lincheck_op)GET(2, "k", vals[10], 2000, 2005);
    struct lincheck_opts o = {.max_explain_ops = 20};
    struct lincheck_result res;
    assert_int_equal(lincheck_check(ops, NOPS, &o, &res), 0);
    assert_int_equal(res.verdict, LINCHECK_VIOLATION);
    assert_non_null(strstr(res.explanation, "200 of 300 ops"));
    assert_non_null(strstr(res.explanation, "  ... 195 earlier ops not shown"));
    assert_non_null(strstr(res.explanation, "  ... 85 later ops not shown"));
    assert_non_null(strstr(res.explanation, "L200"));
    assert_null(strstr(res.explanation, "L194 "));
    size_t lines = 0;
    for (const char *p = res.explanation; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 3 + 2 + 20);
    lincheck_result_free(&res);
}

/* ---- randomized histories from a real register ---- */

struct rng {
    uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return r->s;
}

static uint64_t rnd_in(struct rng *r, uint64_t lo, uint64_t hi)
{
    return lo + rnd(r) % (hi - lo + 1);
}

struct gen {
    struct lincheck_op *ops;
    uint64_t *lin;   /* linearization point (if it takes effect) */
    bool *effect;    /* whether the op takes effect */
    char (*vals)[16];
    size_t n;
};

static const char *const gen_keys[] = {"k0", "k1", "k2", "k3", "k4",
                                       "k5", "k6", "k7", "k8", "k9"};

static int by_lin(const void *pa, const void *pb, void *ctx)
{
    const uint64_t *lin = ctx;
    size_t i = *(const size_t *)pa, j = *(const size_t *)pb;
    if (lin[i] != lin[j])
        return lin[i] < lin[j] ? -1 : 1;
    return i < j ? -1 : i > j;
}

/* Fill g with n ops by `clients` clients on `keys` keys: each op has a
 * random interval, takes effect at a random point inside it (unknown puts
 * anywhere after invoke, or never), and gets read the register there. */
static void gen_history(struct gen *g, struct rng *r, size_t n, size_t clients,
                        size_t keys)
{
    g->n = n;
    g->ops = calloc(n, sizeof(*g->ops));
    g->lin = calloc(n, sizeof(*g->lin));
    g->effect = calloc(n, sizeof(*g->effect));
    g->vals = calloc(n, sizeof(*g->vals));
    uint64_t *next = calloc(clients, sizeof(*next));
    assert_true(g->ops && g->lin && g->effect && g->vals && next);
    for (size_t i = 0; i < n; i++) {
        size_t c = rnd(r) % clients;
        struct lincheck_op *op = &g->ops[i];
        op->client = c;
        op->key = gen_keys[rnd(r) % keys];
        op->invoke = next[c] + rnd_in(r, 0, 5);
        op->complete = op->invoke + rnd_in(r, 1, 30);
        next[c] = op->complete + 1;
        op->outcome = OK_;
        g->lin[i] = rnd_in(r, op->invoke, op->complete);
        g->effect[i] = true;
        uint64_t dice = rnd(r) % 100;
        if (dice < 40) {
            op->kind = LINCHECK_GET;
            continue;
        }
        if (dice < 50) {
            op->kind = LINCHECK_DELETE;
        } else {
            op->kind = LINCHECK_PUT;
            snprintf(g->vals[i], sizeof(g->vals[i]), "v%u", (unsigned)i);
            op->value = g->vals[i];
            op->has_value = true;
        }
        dice = rnd(r) % 100;
        if (dice < 5) {
            op->outcome = FAIL_;
            g->effect[i] = false;
        } else if (dice < 12) {
            op->outcome = UNK_;
            g->lin[i] = op->invoke + rnd_in(r, 0, 200);
            g->effect[i] = rnd(r) % 2;
            op->complete = INF;
        }
    }
    free(next);

    /* Run the register in linearization order. */
    size_t *order = calloc(n, sizeof(*order));
    assert_non_null(order);
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    qsort_r(order, n, sizeof(*order), by_lin, g->lin);
    const char *reg[N(gen_keys)] = {0};
    for (size_t j = 0; j < n; j++) {
        struct lincheck_op *op = &g->ops[order[j]];
        size_t k = (size_t)(op->key[1] - '0');
        if (!g->effect[order[j]])
            continue;
        if (op->kind == LINCHECK_PUT)
            reg[k] = op->value;
        else if (op->kind == LINCHECK_DELETE)
            reg[k] = NULL;
        else
            op->value = reg[k], op->has_value = reg[k] != NULL;
    }
    free(order);
}

static void gen_free(struct gen *g)
{
    free(g->ops);
    free(g->lin);
    free(g->effect);
    free(g->vals);
}

/* A get that must see a value from before two completed puts: find an ok
 * put p1, an ok put p2 of the same key invoked after p1 completed, and an
 * ok get invoked after p2 completed. */
static bool find_stale(const struct gen *g, size_t *get, size_t *p1)
{
    const struct lincheck_op *o = g->ops;
    for (size_t c = 0; c < g->n; c++) {
        if (o[c].kind != LINCHECK_GET || o[c].outcome != OK_)
            continue;
        for (size_t b = 0; b < g->n; b++) {
            if (o[b].kind != LINCHECK_PUT || o[b].outcome != OK_ ||
                strcmp(o[b].key, o[c].key) || o[b].complete >= o[c].invoke)
                continue;
            for (size_t a = 0; a < g->n; a++)
                if (o[a].kind == LINCHECK_PUT && o[a].outcome == OK_ &&
                    !strcmp(o[a].key, o[c].key) &&
                    o[a].complete < o[b].invoke &&
                    o[a].value != o[c].value) {
                    *get = c;
                    *p1 = a;
                    return true;
                }
        }
    }
    return false;
}

static void test_random_histories(void **state)
{
    struct rng r = {0x9e3779b97f4a7c15ULL};
    int random_rejected = 0, random_tried = 0, stale_found = 0;
    for (int round = 0; round < 150; round++) {
        struct gen g;
        size_t clients = 2 + round % 5;
        gen_history(&g, &r, 40 + round % 60, clients, 1 + round % 3);
        assert_int_equal(verdict_of(g.ops, g.n, NULL), LINCHECK_OK);

        /* Pick an answered get to corrupt. */
        size_t get = g.n;
        for (size_t t = 0; t < 20 && get == g.n; t++) {
            size_t i = rnd(&r) % g.n;
            if (g.ops[i].kind == LINCHECK_GET && g.ops[i].outcome == OK_)
                get = i;
        }
        if (get == g.n) {
            gen_free(&g);
            continue;
        }
        struct lincheck_op saved = g.ops[get];

        /* Definitely invalid: a value nobody wrote. */
        g.ops[get].value = "never-written";
        g.ops[get].has_value = true;
        assert_int_equal(verdict_of(g.ops, g.n, NULL), LINCHECK_VIOLATION);

        /* Maybe invalid: some other value of the same key, or absent. */
        size_t src = rnd(&r) % g.n;
        if (g.ops[src].kind == LINCHECK_PUT &&
            !strcmp(g.ops[src].key, saved.key) &&
            g.ops[src].value != saved.value) {
            g.ops[get].value = g.ops[src].value;
            g.ops[get].has_value = true;
        } else {
            g.ops[get].value = NULL;
            g.ops[get].has_value = false;
        }
        if (g.ops[get].value != saved.value) {
            random_tried++;
            random_rejected +=
                verdict_of(g.ops, g.n, NULL) == LINCHECK_VIOLATION;
        }
        g.ops[get] = saved;

        /* Definitely invalid: a stale read across two completed puts. */
        size_t sg, p1;
        if (find_stale(&g, &sg, &p1)) {
            saved = g.ops[sg];
            g.ops[sg].value = g.ops[p1].value;
            g.ops[sg].has_value = true;
            assert_int_equal(verdict_of(g.ops, g.n, NULL), LINCHECK_VIOLATION);
            g.ops[sg] = saved;
            stale_found++;
        }
        gen_free(&g);
    }
    print_message("random corruptions rejected: %d of %d; stale reads: %d\n",
                  random_rejected, random_tried, stale_found);
    assert_true(stale_found > 50);
    assert_true(random_tried > 50);
    assert_true(random_rejected * 2 > random_tried); /* "most cases" */
}

/* The definition, by brute force: try every order of the ops (ops that
 * never completed may be left out) that respects real time and the register.
 * reg: current value (NULL: absent); used: ops placed so far. */
static bool brute(const struct lincheck_op *ops, size_t n, bool *used,
                  const char *reg)
{
    bool all_done = true;
    for (size_t i = 0; i < n; i++)
        if (!used[i] && ops[i].complete != INF)
            all_done = false;
    if (all_done)
        return true;
    for (size_t x = 0; x < n; x++) {
        if (used[x])
            continue;
        bool blocked = false; /* some pending op returned before x began */
        for (size_t y = 0; y < n && !blocked; y++)
            blocked = !used[y] && ops[y].complete < ops[x].invoke;
        if (blocked)
            continue;
        const char *next = reg;
        if (ops[x].kind == LINCHECK_PUT)
            next = ops[x].value;
        else if (ops[x].kind == LINCHECK_DELETE)
            next = NULL;
        else if (ops[x].has_value ? !reg || strcmp(reg, ops[x].value)
                                  : reg != NULL)
            continue;
        used[x] = true;
        bool ok = brute(ops, n, used, next);
        used[x] = false;
        if (ok)
            return true;
    }
    return false;
}

/* Small random histories, valid or not, judged by both the checker and the
 * brute force; they must agree. */
static void test_agrees_with_brute_force(void **state)
{
    static const char *const vals[] = {"a", "b", "c"};
    struct rng r = {42};
    int violations = 0;
    for (int round = 0; round < 400; round++) {
        struct lincheck_op ops[7];
        bool used[7] = {0};
        size_t n = 2 + rnd(&r) % 6;
        for (size_t i = 0; i < n; i++) {
            uint64_t inv = rnd_in(&r, 0, 20);
            int kind = LINCHECK_PUT + (int)(rnd(&r) % 3);
            const char *v = rnd(&r) % 4 ? vals[rnd(&r) % 3] : NULL;
            if (kind == LINCHECK_PUT && v == NULL)
                v = "a";
            bool unknown = kind != LINCHECK_GET && rnd(&r) % 4 == 0;
            ops[i] = (struct lincheck_op){
                .client = i, .key = "k", .kind = kind,
                .value = kind == LINCHECK_DELETE ? NULL : v,
                .has_value = kind != LINCHECK_DELETE && v != NULL,
                .invoke = inv,
                .complete = unknown ? INF : inv + rnd_in(&r, 0, 10),
                .outcome = unknown ? UNK_ : OK_,
            };
        }
        bool expect = brute(ops, n, used, NULL);
        int v = verdict_of(ops, n, NULL);
        assert_int_equal(v, expect ? LINCHECK_OK : LINCHECK_VIOLATION);
        violations += !expect;
    }
    print_message("brute force: %d of 400 histories not linearizable\n",
                  violations);
    assert_true(violations > 40 && violations < 360); /* both kinds seen */
}

/* 1000 ops on 10 keys from 5 concurrent clients: well under a second. */
static void test_performance(void **state)
{
    struct rng r = {12345};
    struct gen g;
    gen_history(&g, &r, 1000, 5, 10);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct lincheck_result res;
    assert_int_equal(lincheck_check(g.ops, g.n, NULL, &res), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) +
                  (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    print_message("1000 ops, 10 keys: %.2f ms, %llu steps\n", secs * 1e3,
                  (unsigned long long)res.steps);
    assert_int_equal(res.verdict, LINCHECK_OK);
    assert_int_equal(res.n_keys, 10);
    assert_true(secs < 1.0);
    lincheck_result_free(&res);
    gen_free(&g);
}

int main(void)
{
    alloc_budget = -1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_sequential),
        cmocka_unit_test(test_overlapping_reads_see_either),
        cmocka_unit_test(test_unknown_put),
        cmocka_unit_test(test_failed_ops_are_dropped),
        cmocka_unit_test(test_delete),
        cmocka_unit_test(test_equal_stamps_overlap),
        cmocka_unit_test(test_keys_are_independent),
        cmocka_unit_test(test_stale_read),
        cmocka_unit_test(test_value_never_written),
        cmocka_unit_test(test_non_monotonic_read),
        cmocka_unit_test(test_lost_write),
        cmocka_unit_test(test_report_names_first_bad_key),
        cmocka_unit_test(test_result_owns_its_strings),
        cmocka_unit_test(test_verdict_names),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_cas_race_accepted),
        cmocka_unit_test(test_cas_double_success_rejected),
        cmocka_unit_test(test_cas_refusals),
        cmocka_unit_test(test_cas_unknown),
        cmocka_unit_test(test_cas_random),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_step_budget),
        cmocka_unit_test(test_cache_budget),
        cmocka_unit_test(test_long_report_is_cut),
        cmocka_unit_test(test_random_histories),
        cmocka_unit_test(test_agrees_with_brute_force),
        cmocka_unit_test(test_performance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
