/* Tests of src/metrics: the registry's naming rules, histogram buckets and
 * code counters, the text format byte for byte (escaping, exact seconds,
 * cumulative buckets), a buffer that runs out of memory, and the parsing of
 * /proc/self/stat and /proc/stat, odd command names included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "metrics/metrics.h"
#include "unit/count_alloc.h"

static const struct metrics_family GOOD[] = {
    {"x_requests_total", METRICS_COUNTER, "Requests."},
    {"x_term", METRICS_GAUGE, "The term."},
    {"x_duration_seconds", METRICS_HISTOGRAM, "Durations."},
};

static void expect_refused(struct metrics_family f, const char *prefix, const char *why)
{
    struct metrics_family fams[2] = {GOOD[1], f};
    char err[160];
    assert_int_equal(metrics_registry_check(fams, 2, prefix, err, sizeof err), -1);
    if (strstr(err, why) == NULL)
        fail_msg("%s: \"%s\" does not say \"%s\"", f.name ? f.name : "(null)", err, why);
}

static void test_registry(void **state)
{
    (void)state;
    char err[160] = "x";
    assert_int_equal(metrics_registry_check(GOOD, 3, "x_", err, sizeof err), 0);
    assert_string_equal(err, "");
    expect_refused((struct metrics_family){"x_requests", METRICS_COUNTER, "h"}, "x_", "_total");
    expect_refused((struct metrics_family){"x_up_total", METRICS_GAUGE, "h"}, "x_", "_total");
    expect_refused((struct metrics_family){"x_d_total", METRICS_HISTOGRAM, "h"}, "x_", "_total");
    expect_refused((struct metrics_family){"x_a_count", METRICS_GAUGE, "h"}, "x_", "_count");
    expect_refused((struct metrics_family){"x_a_bucket", METRICS_GAUGE, "h"}, "x_", "_bucket");
    expect_refused((struct metrics_family){"x_a_sum", METRICS_GAUGE, "h"}, "x_", "_sum");
    expect_refused((struct metrics_family){"x-term", METRICS_GAUGE, "h"}, "x", "valid");
    expect_refused((struct metrics_family){"9x", METRICS_GAUGE, "h"}, NULL, "valid");
    expect_refused((struct metrics_family){"", METRICS_GAUGE, "h"}, NULL, "valid");
    expect_refused((struct metrics_family){"y_term", METRICS_GAUGE, "h"}, "x_", "prefix");
    expect_refused((struct metrics_family){"x_term", METRICS_GAUGE, "h"}, "x_", "twice");
    expect_refused((struct metrics_family){"x_a", METRICS_GAUGE, ""}, "x_", "help");
    expect_refused((struct metrics_family){"x_a", METRICS_GAUGE, NULL}, "x_", "help");
    expect_refused((struct metrics_family){"x_a", METRICS_GAUGE, "a\nb"}, "x_", "newline");
    expect_refused((struct metrics_family){"x_a", 0, "h"}, "x_", "type");
}

static void test_names(void **state)
{
    (void)state;
    assert_true(metrics_name_valid("a:b_c9", false));
    assert_false(metrics_name_valid("a:b", true)); /* no ':' in label names */
    assert_true(metrics_name_valid("_le", true));
    assert_false(metrics_name_valid("__name__", true));
    assert_false(metrics_name_valid("a b", false));
    assert_false(metrics_name_valid("é", false));
    assert_false(metrics_name_valid(NULL, false));
}

static const uint64_t BOUNDS[] = {10, 100, 1000};

static void test_hist(void **state)
{
    (void)state;
    struct metrics_hist h;
    metrics_hist_init(&h, BOUNDS, 3);
    uint64_t obs[] = {0, 10, 11, 100, 101, 1000, 1001, 5000};
    for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++)
        metrics_hist_observe(&h, obs[i]);
    /* Bounds are inclusive (le): 10 falls in the first bucket. */
    assert_int_equal(h.counts[0], 2);
    assert_int_equal(h.counts[1], 2);
    assert_int_equal(h.counts[2], 2);
    assert_int_equal(h.counts[3], 2); /* +Inf */
    assert_int_equal(h.count, 8);
    assert_int_equal(h.sum, 0 + 10 + 11 + 100 + 101 + 1000 + 1001 + 5000);

    /* The shared bound sets ascend (metrics_hist_init asserts it). */
    metrics_hist_init(&h, metrics_latency_ns, METRICS_LATENCY_BOUNDS);
    metrics_hist_init(&h, metrics_slow_ns, METRICS_SLOW_BOUNDS);
    metrics_hist_observe(&h, 0);
    assert_int_equal(h.counts[0], 1);
}

static void test_codes(void **state)
{
    (void)state;
    struct metrics_codes c = {0};
    metrics_codes_add(&c, 200);
    metrics_codes_add(&c, 404);
    metrics_codes_add(&c, 200);
    assert_int_equal(c.used, 2);
    assert_int_equal(c.code[0], 200);
    assert_int_equal(c.n[0], 2);
    assert_int_equal(c.n[1], 1);
    for (unsigned k = 0; k < METRICS_CODES_MAX; k++)
        metrics_codes_add(&c, 500 + k);
    assert_int_equal(c.used, METRICS_CODES_MAX);
    assert_int_equal(c.other, 2); /* 514 and 515 found no slot */
    metrics_codes_add(&c, 200);   /* known codes still count in their slot */
    assert_int_equal(c.n[0], 3);
    metrics_codes_add(&c, 0);
    assert_int_equal(c.other, 3);
}

static char *text(struct metrics_buf *b)
{
    static char out[4096];
    assert_false(b->failed);
    assert_true(b->len < sizeof out);
    memcpy(out, b->data, b->len);
    out[b->len] = 0;
    return out;
}

static void test_encode(void **state)
{
    (void)state;
    struct metrics_buf b;
    metrics_buf_init(&b);
    const struct metrics_family c = {"x_requests_total", METRICS_COUNTER,
                                     "Requests \\ by \"route\"."};
    metrics_put_family(&b, &c);
    struct metrics_label l[2] = {{"route", "/key"}, {"peer", "a\"b\\c\nd"}};
    metrics_put_u64(&b, &c, l, 2, 18446744073709551615ull);
    metrics_put_u64(&b, &c, NULL, 0, 0);
    const struct metrics_family g = {"x_seconds", METRICS_GAUGE, "Seconds."};
    metrics_put_family(&b, &g);
    metrics_put_seconds(&b, &g, NULL, 0, 0);
    metrics_put_seconds(&b, &g, NULL, 0, 1500000000);
    metrics_put_seconds(&b, &g, NULL, 0, 1);
    metrics_put_seconds(&b, &g, l, 1, 12000001000);
    assert_string_equal(text(&b),
        "# HELP x_requests_total Requests \\\\ by \"route\".\n"
        "# TYPE x_requests_total counter\n"
        "x_requests_total{route=\"/key\",peer=\"a\\\"b\\\\c\\nd\"} 18446744073709551615\n"
        "x_requests_total 0\n"
        "# HELP x_seconds Seconds.\n"
        "# TYPE x_seconds gauge\n"
        "x_seconds 0\n"
        "x_seconds 1.5\n"
        "x_seconds 0.000000001\n"
        "x_seconds{route=\"/key\"} 12.000001\n");
    metrics_buf_free(&b);
    assert_null(b.data);
}

static void test_encode_hist(void **state)
{
    (void)state;
    static const uint64_t ns[] = {500000, 1000000000};
    struct metrics_hist h;
    metrics_hist_init(&h, ns, 2);
    metrics_hist_observe(&h, 100000);
    metrics_hist_observe(&h, 2000000);
    metrics_hist_observe(&h, 3000000000u);
    struct metrics_buf b;
    metrics_buf_init(&b);
    const struct metrics_family f = {"x_duration_seconds", METRICS_HISTOGRAM, "D."};
    struct metrics_label l = {"route", "/key"};
    metrics_put_hist(&b, &f, &l, 1, &h);
    metrics_put_hist(&b, &f, NULL, 0, &h);
    assert_string_equal(text(&b),
        "x_duration_seconds_bucket{route=\"/key\",le=\"0.0005\"} 1\n"
        "x_duration_seconds_bucket{route=\"/key\",le=\"1\"} 2\n"
        "x_duration_seconds_bucket{route=\"/key\",le=\"+Inf\"} 3\n"
        "x_duration_seconds_sum{route=\"/key\"} 3.0021\n"
        "x_duration_seconds_count{route=\"/key\"} 3\n"
        "x_duration_seconds_bucket{le=\"0.0005\"} 1\n"
        "x_duration_seconds_bucket{le=\"1\"} 2\n"
        "x_duration_seconds_bucket{le=\"+Inf\"} 3\n"
        "x_duration_seconds_sum 3.0021\n"
        "x_duration_seconds_count 3\n");
    metrics_buf_free(&b);
}

/* Growing past the first block; then an allocation that fails marks the
 * buffer failed, and nothing more is written. */
static void test_encode_out_of_memory(void **state)
{
    (void)state;
    struct metrics_buf b;
    metrics_buf_init(&b);
    const struct metrics_family g = {"x_term", METRICS_GAUGE, "T."};
    for (int i = 0; i < 1000; i++)
        metrics_put_u64(&b, &g, NULL, 0, (uint64_t)i);
    assert_false(b.failed);
    assert_true(b.len > 4096);
    assert_memory_equal(b.data + b.len - 11, "x_term 999\n", 11);
    count_alloc_countdown = 1; /* the next growth fails */
    size_t len = b.len;
    for (int i = 0; i < 100000 && !b.failed; i++)
        metrics_put_u64(&b, &g, NULL, 0, 1);
    assert_true(b.failed);
    assert_true(b.len >= len);
    size_t failed_len = b.len;
    count_alloc_countdown = 0;
    metrics_put_u64(&b, &g, NULL, 0, 1); /* failed stays failed */
    assert_int_equal(b.len, failed_len);
    metrics_buf_free(&b);
}

static void test_proc_stat(void **state)
{
    (void)state;
    /* Fields 14, 15, 22, 23, 24: utime, stime, starttime, vsize, rss. */
    const char *stat = "4242 (cr) aft) d) S 1 4242 4242 0 -1 4194560 771 0 0 0 "
                       "17 5 0 0 20 0 3 0 123456 110395392 1164 18446744073709551615 "
                       "1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n";
    struct metrics_proc_stat ps;
    assert_int_equal(metrics_proc_parse_stat(stat, strlen(stat), &ps), 0);
    assert_int_equal(ps.utime, 17);
    assert_int_equal(ps.stime, 5);
    assert_int_equal(ps.starttime, 123456);
    assert_int_equal(ps.vsize, 110395392);
    assert_int_equal(ps.rss, 1164);
    /* Cut short, before rss: refused. */
    const char *cut = "1 (x) S 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 9 100";
    assert_int_equal(metrics_proc_parse_stat(cut, strlen(cut), &ps), -1);
    assert_int_equal(metrics_proc_parse_stat("no parens", 9, &ps), -1);
    const char *neg = "1 (x) S 1 1 1 0 -1 0 0 0 0 0 -1 2 0 0 20 0 1 0 9 100 5";
    assert_int_equal(metrics_proc_parse_stat(neg, strlen(neg), &ps), -1);
}

static void test_proc_btime(void **state)
{
    (void)state;
    const char *s = "cpu  1 2 3\nintr 1 2 3 4\nbtime 1764633600\nprocesses 9\n";
    uint64_t bt = 0;
    assert_int_equal(metrics_proc_parse_btime(s, strlen(s), &bt), 0);
    assert_int_equal(bt, 1764633600);
    const char *none = "cpu 1\nbtimex 5\n";
    assert_int_equal(metrics_proc_parse_btime(none, strlen(none), &bt), -1);
    const char *bad = "btime 12x\n";
    assert_int_equal(metrics_proc_parse_btime(bad, strlen(bad), &bt), -1);
    /* The line alone, as getline hands it over, with or without '\n'. */
    assert_int_equal(metrics_proc_parse_btime("btime 7\n", 8, &bt), 0);
    assert_int_equal(bt, 7);
    assert_int_equal(metrics_proc_parse_btime("btime 8", 7, &bt), 0);
    assert_int_equal(bt, 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_hist),
        cmocka_unit_test(test_codes),
        cmocka_unit_test_setup_teardown(test_encode, count_alloc_setup, count_alloc_teardown),
        cmocka_unit_test_setup_teardown(test_encode_hist, count_alloc_setup,
                                        count_alloc_teardown),
        cmocka_unit_test_setup_teardown(test_encode_out_of_memory, count_alloc_setup,
                                        count_alloc_teardown),
        cmocka_unit_test(test_proc_stat),
        cmocka_unit_test(test_proc_btime),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
