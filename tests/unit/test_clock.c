/* Tests of the node's Raft clock (src/node/clock.c): the tick arithmetic,
 * and a real one-node node whose loop is blocked for a while, as a stopped
 * or starved process is: the lease clock counts the ticks owed at once, and
 * the next timer callback delivers them all (bounded). The same node's
 * loop meter (src/node/loopbusy.c) must see each block as one busy
 * iteration of its length, and the idle loop before it as never busy long. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "node/internal.h"
#include "node/metrics.h"

#define MS 1000000ull

static void test_due_and_catch_up(void **state)
{
    (void)state;
    struct node__clock c;
    node__clock_init(&c, 1000 * MS, 50, 30);
    assert_int_equal(node__clock_due(&c, 999 * MS), 0); /* before the origin */
    assert_int_equal(node__clock_due(&c, 1000 * MS), 0);
    assert_int_equal(node__clock_due(&c, 1049 * MS), 0); /* a tick counts once elapsed */
    assert_int_equal(node__clock_due(&c, 1050 * MS), 1);
    assert_int_equal(node__clock_due(&c, 1149 * MS), 2);

    /* Nothing owed: nothing delivered, and the next tick is 50 ms away. */
    assert_int_equal(node__clock_catch_up(&c, 0, 1020 * MS), 0);
    assert_int_equal(node__clock_until_next(&c, 0, 1020 * MS), 30 * MS);
    /* One timer callback late by 3 ticks delivers all 4. */
    assert_int_equal(node__clock_catch_up(&c, 0, 1210 * MS), 4);
    assert_int_equal(node__clock_until_next(&c, 4, 1210 * MS), 40 * MS);
    /* A callback that comes early (the tick is not due yet) delivers none. */
    assert_int_equal(node__clock_catch_up(&c, 4, 1249 * MS), 0);
    assert_int_equal(node__clock_until_next(&c, 4, 1249 * MS), 1 * MS);
    assert_int_equal(node__clock_until_next(&c, 4, 1260 * MS), 0);

    /* A stall of 100 ticks: 30 delivered (max_burst), the rest dropped, so
     * that the clock then owes nothing and goes on from there. */
    uint64_t now = 1250 * MS + 100 * 50 * MS + 7 * MS;
    assert_int_equal(node__clock_due(&c, now), 105);
    assert_int_equal(node__clock_catch_up(&c, 4, now), 30);
    assert_int_equal(node__clock_due(&c, now), 34);
    assert_int_equal(node__clock_catch_up(&c, 34, now), 0);
    assert_int_equal(node__clock_until_next(&c, 34, now), 43 * MS);
    assert_int_equal(node__clock_due(&c, now + 43 * MS), 35);
}

static void test_busy_step(void **state)
{
    (void)state;
    struct node__busy b = {0};
    /* The first prepare only starts the count. */
    assert_int_equal(node__busy_step(&b, 1000 * MS, 7 * MS), 0);
    /* 50 ms later, 48 of them waiting in poll: busy for 2. */
    assert_int_equal(node__busy_step(&b, 1050 * MS, 55 * MS), 2 * MS);
    /* No wait at all (a busy loop): all of it. */
    assert_int_equal(node__busy_step(&b, 1080 * MS, 55 * MS), 30 * MS);
    /* A wait counted a little past the span around it: 0, not a wrap. */
    assert_int_equal(node__busy_step(&b, 1090 * MS, 65 * MS + 1), 0);
    /* Clocks that do not move: 0. */
    assert_int_equal(node__busy_step(&b, 1090 * MS, 65 * MS + 1), 0);
}

/* ---- a real node ---- */

struct fx {
    uv_loop_t loop;
    struct node *node;
    uv_timer_t t;
    int step;
    uint64_t t0;           /* uv_hrtime() at start */
    uint64_t elapsed_ms;   /* since t0, when the first stall begins */
    uint64_t before, owed; /* raft_now and node__ticks_now - raft_now after a stall */
    uint64_t after;        /* raft_now after the next tick */
    uint64_t before2, after2;
    uint64_t idle_longest, idle_iters, idle_busy; /* the loop meter before the stalls */
    uint64_t longest1, longest2;       /* ... after the first, the second */
    bool stopped;
};

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void on_stopped(void *ud)
{
    struct fx *f = ud;
    f->stopped = true;
}

static void on_step(uv_timer_t *t)
{
    struct fx *f = t->data;
    struct node *n = f->node;
    switch (f->step++) {
    case 0: /* after 300 ms of running: the loop is blocked for 20 ticks */
        f->idle_longest = node__metrics_loop_longest(n, &f->idle_iters, &f->idle_busy);
        f->before = raft_now(n->raft);
        f->elapsed_ms = (uv_hrtime() - f->t0) / 1000000u;
        sleep_ms(20 * 10);
        f->owed = node__ticks_now(n) - raft_now(n->raft);
        assert_int_equal(raft_now(n->raft), f->before); /* no tick could run */
        uv_timer_start(t, on_step, 30, 0);
        break;
    case 1:
        f->longest1 = node__metrics_loop_longest(n, &(uint64_t){0}, &(uint64_t){0});
        f->after = raft_now(n->raft);
        /* Blocked for 100 ticks: more than max_burst (3 election timeouts
         * of 10 ticks). */
        f->before2 = raft_now(n->raft);
        sleep_ms(100 * 10);
        uv_timer_start(t, on_step, 30, 0);
        break;
    case 2:
        f->longest2 = node__metrics_loop_longest(n, &(uint64_t){0}, &(uint64_t){0});
        f->after2 = raft_now(n->raft);
        uv_close((uv_handle_t *)t, NULL);
        node_stop(n, on_stopped, f);
        break;
    }
}

static void test_node_catches_up(void **state)
{
    (void)state;
    struct fx f = {0};
    assert_int_equal(uv_loop_init(&f.loop), 0);
    struct node_opts o = {.id = "c1", .http_addr = "127.0.0.1:0", .raft_addr = "127.0.0.1:0",
                          .dir = "", .inmem = true, .tick_ms = 10, .election_ticks = 10};
    f.t0 = uv_hrtime();
    assert_int_equal(node_start(&f.loop, &o, &f.node), 0);
    uv_timer_init(&f.loop, &f.t);
    f.t.data = &f;
    uv_update_time(&f.loop); /* 300 ms from now, not from before the start */
    uv_timer_start(&f.t, on_step, 300, 0);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    assert_true(f.stopped);
    assert_int_equal(uv_loop_close(&f.loop), 0);

    /* 300 ms at 10 ms a tick: about 30 ticks delivered, none early (no
     * more than the time since the start holds: a slow start under
     * valgrind makes that more than 300 ms). A busy machine delays
     * timers; valgrind slows the loop itself, so there only "none early"
     * holds. */
    assert_in_range(f.before, getenv("VALGRIND") ? 1 : 20, f.elapsed_ms / 10 + 1);
    /* Right after the 200 ms stall, the lease clock counts the 20 ticks. */
    assert_in_range(f.owed, 19, getenv("VALGRIND") ? 30 : 21); /* valgrind: a slower loop */
    /* The first tick after it delivered them all (plus those of the 30 ms
     * waited). */
    assert_in_range(f.after, f.before + 20, f.before + 35);
    /* After 100 ticks blocked: max_burst (30) delivered, the rest dropped;
     * then the clock goes on at one tick a tick. */
    assert_in_range(f.after2, f.before2 + 30, f.before2 + 40);

    /* The loop meter: idle, a tick's work is far below 50 ms (valgrind
     * slows it, not that much); each block is one iteration at least as
     * long, plus little more than that callback's own work. */
    assert_true(f.idle_iters >= (getenv("VALGRIND") ? 1u : 20u)); /* as f.before */
    /* (valgrind translates each code path the first time it runs: there a
     * first tick's iteration took 278 ms) */
    assert_in_range(f.idle_longest, 0, getenv("VALGRIND") ? 1000 * MS : 50 * MS);
    /* ... and its 300 ms were mostly spent waiting (idle time not counted
     * as busy), unless valgrind makes each tick's work long. */
    if (getenv("VALGRIND") == NULL)
        assert_in_range(f.idle_busy, 1, 100 * MS);
    uint64_t slack = getenv("VALGRIND") ? 500 * MS : 100 * MS;
    assert_in_range(f.longest1, 200 * MS, 200 * MS + slack);
    assert_in_range(f.longest2, 1000 * MS, 1000 * MS + slack);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_due_and_catch_up),
        cmocka_unit_test(test_busy_step),
        cmocka_unit_test(test_node_catches_up),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
