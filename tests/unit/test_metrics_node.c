/* Tests of what the node's metrics and health routes rest on: the readiness
 * rule (node__ready_eval), the storage's fsync timings (every sync logged
 * with the duration the syscall table's clock gives it, handed over once,
 * none in memory, the overflow kept as a count and a total), and the HTTP
 * route and method labels requests are counted by. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http/http.h"
#include "node/metrics.h"
#include "storage/storage.h"

/* ---- readiness ---- */

static struct node__ready_in healthy(void)
{
    return (struct node__ready_in){.member = true, .leader_known = true,
                                   .since_leader_ms = 100, .election_ms = 1000,
                                   .applied = 500, .leader_commit = 510, .max_lag = 1000};
}

static void test_ready(void **state)
{
    (void)state;
    struct node__ready r;
    struct node__ready_in in = healthy();
    node__ready_eval(&in, &r);
    assert_true(r.ready && r.member && r.has_leader && r.caught_up);
    assert_int_equal(r.lag, 10);
    assert_string_equal(r.why, "");

    /* The lag bound is inclusive. */
    in.leader_commit = in.applied + in.max_lag;
    node__ready_eval(&in, &r);
    assert_true(r.ready);
    in.leader_commit++;
    node__ready_eval(&in, &r);
    assert_false(r.ready);
    assert_true(r.member && r.has_leader);
    assert_false(r.caught_up);
    assert_int_equal(r.lag, 1001);
    assert_non_null(strstr(r.why, "1001 entries behind"));

    /* Applied ahead of what the leader said (it said it earlier): lag 0. */
    in = healthy();
    in.applied = 600;
    node__ready_eval(&in, &r);
    assert_true(r.ready);
    assert_int_equal(r.lag, 0);
}

static void test_not_ready(void **state)
{
    (void)state;
    struct node__ready r;
    struct node__ready_in in = healthy();
    in.member = false;
    node__ready_eval(&in, &r);
    assert_false(r.ready);
    assert_false(r.member);
    assert_true(r.has_leader && r.caught_up);
    assert_non_null(strstr(r.why, "not a member"));

    in = healthy();
    in.leader_known = false;
    node__ready_eval(&in, &r);
    assert_false(r.ready || r.has_leader);
    assert_string_equal(r.why, "no leader known");

    /* A leader still named but silent for longer than an election
     * timeout (a follower cut off, before its core gives it up). */
    in = healthy();
    in.since_leader_ms = 1001;
    node__ready_eval(&in, &r);
    assert_false(r.ready || r.has_leader);
    assert_non_null(strstr(r.why, "no word from the leader for 1001 ms"));
    in.since_leader_ms = 1000;
    node__ready_eval(&in, &r);
    assert_true(r.ready);

    /* The leader itself hears nobody: its own word counts. */
    in = healthy();
    in.leads = true;
    in.since_leader_ms = 99999;
    node__ready_eval(&in, &r);
    assert_true(r.ready);

    in = healthy();
    in.removed = true;
    node__ready_eval(&in, &r);
    assert_false(r.ready || r.member);
    assert_non_null(strstr(r.why, "removed"));
    in = healthy();
    in.conflict = true;
    node__ready_eval(&in, &r);
    assert_false(r.ready || r.member);
    in = healthy();
    in.stopping = true;
    node__ready_eval(&in, &r);
    assert_false(r.ready);
    assert_true(r.member && r.has_leader && r.caught_up);
    assert_string_equal(r.why, "shutting down");
}

/* ---- fsync timings ---- */

static uint64_t clock_ns;   /* the store's clock: +1 ms at every reading */
static unsigned n_syncs;    /* fdatasync and fsync calls through the table */

static int t_clock(clockid_t clk, struct timespec *ts)
{
    (void)clk;
    clock_ns += 1000000;
    ts->tv_sec = (time_t)(clock_ns / 1000000000u);
    ts->tv_nsec = (long)(clock_ns % 1000000000u);
    return 0;
}

static int t_fdatasync(int fd)
{
    n_syncs++;
    return fdatasync(fd);
}

static int t_fsync(int fd)
{
    n_syncs++;
    return fsync(fd);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    return remove(path);
}

static int save_one(struct stor *s, uint64_t index)
{
    struct raft_hard_state hs = {.term = 1, .vote = 1, .commit = index - 1};
    struct raft_entry e = {.term = 1, .index = index, .type = RAFT_ENTRY_NORMAL,
                           .len = 3, .data = (const uint8_t *)"abc"};
    return stor_save(s, &hs, &e, 1, NULL);
}

static void test_sync_log(void **state)
{
    (void)state;
    char root[64], dir[80];
    snprintf(root, sizeof root, "/tmp/craft-metrics-XXXXXX");
    assert_non_null(mkdtemp(root));
    snprintf(dir, sizeof dir, "%s/data", root);
    struct stor_sys sys = *stor_sys_default();
    sys.clock_gettime = t_clock;
    sys.fdatasync = t_fdatasync;
    sys.fsync = t_fsync;
    struct stor_opts o = {.dir = dir, .sys = &sys};
    struct stor *s;
    struct raft_persisted p;
    assert_int_equal(stor_open(&o, &s, &p), 0);
    struct stor_sync_log l;
    stor_sync_take(s, &l); /* what opening synced */
    n_syncs = 0;

    assert_int_equal(save_one(s, 1), 0);
    assert_true(n_syncs >= 2); /* the log, and the state file for the vote */
    stor_sync_take(s, &l);
    assert_int_equal(l.n, n_syncs);
    for (uint32_t i = 0; i < l.n; i++)
        assert_int_equal(l.ns[i], 1000000); /* one reading before, one after */
    assert_int_equal(l.lost, 0);
    stor_sync_take(s, &l); /* taken: gone */
    assert_int_equal(l.n, 0);

    /* More syncs than the log holds before anybody takes them: the rest
     * are counted with their total. */
    n_syncs = 0;
    for (uint64_t i = 2; n_syncs < STOR_SYNC_LOG + 5; i++)
        assert_int_equal(save_one(s, i), 0);
    stor_sync_take(s, &l);
    assert_int_equal(l.n, STOR_SYNC_LOG);
    assert_int_equal(l.lost, n_syncs - STOR_SYNC_LOG);
    assert_int_equal(l.lost_ns, l.lost * 1000000);
    stor_close(s);
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);

    /* In memory nothing is synced, so nothing is logged. */
    o = (struct stor_opts){.inmem = true, .sys = &sys};
    assert_int_equal(stor_open(&o, &s, &p), 0);
    assert_int_equal(save_one(s, 1), 0);
    stor_sync_take(s, &l);
    assert_int_equal(l.n, 0);
    assert_int_equal(l.lost, 0);
    stor_close(s);
}

/* ---- route labels ---- */

static int route(const char *path)
{
    return http_route_of(path, strlen(path));
}

static void test_routes(void **state)
{
    (void)state;
    assert_int_equal(route("/key"), HTTP_ROUTE_KEY);
    assert_int_equal(route("/key/a%2Fb"), HTTP_ROUTE_KEY);
    assert_int_equal(route("/keys"), HTTP_ROUTE_KEYS);
    assert_int_equal(route("/keyx"), HTTP_ROUTE_OTHER);
    assert_int_equal(route("/lease/12/keepalive"), HTTP_ROUTE_LEASE);
    assert_int_equal(route("/leases"), HTTP_ROUTE_LEASES);
    assert_int_equal(route("/metrics"), HTTP_ROUTE_METRICS);
    assert_int_equal(route("/metrics/x"), HTTP_ROUTE_OTHER);
    assert_int_equal(route("/livez"), HTTP_ROUTE_LIVEZ);
    assert_int_equal(route("/readyz"), HTTP_ROUTE_READYZ);
    assert_int_equal(route("/status"), HTTP_ROUTE_STATUS);
    assert_int_equal(route(""), HTTP_ROUTE_OTHER);
    assert_int_equal(route("/"), HTTP_ROUTE_OTHER);
    for (int r = 0; r < HTTP_ROUTE_COUNT; r++) /* every route has a name ... */
        assert_non_null(http_route_name(r));
    for (int r = 0; r < HTTP_ROUTE_OTHER; r++) /* ... its own path */
        if (r != HTTP_ROUTE_KEY && r != HTTP_ROUTE_LEASE)
            assert_int_equal(route(http_route_name(r)), r);
    assert_string_equal(http_route_name(HTTP_ROUTE_OTHER), "other");
    assert_string_equal(http_route_name(-1), "other");
    assert_int_equal(http_method_of("GET", 3), HTTP_METHOD_GET);
    assert_int_equal(http_method_of("DELETE", 6), HTTP_METHOD_DELETE);
    assert_int_equal(http_method_of("GETX", 4), HTTP_METHOD_OTHER);
    assert_int_equal(http_method_of("get", 3), HTTP_METHOD_OTHER); /* methods are case-sensitive */
    assert_string_equal(http_method_name(HTTP_METHOD_PUT), "PUT");
    assert_string_equal(http_method_name(99), "other");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ready),
        cmocka_unit_test(test_not_ready),
        cmocka_unit_test(test_sync_log),
        cmocka_unit_test(test_routes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
