/* Tests of the watch history and hub (src/watch): eviction by count and by
 * bytes a whole entry at a time, floor, cursors overtaken by the ring or a
 * reset, key and prefix matching (binary keys, empty prefix), many
 * subscribers, unsubscribing inside a callback, allocation failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "unit/count_alloc.h"
#include "watch/watch.h"

/* ---- helpers ------------------------------------------------------------ */

static struct watch_event put(uint64_t index, const char *key, const char *val)
{
    return (struct watch_event){.index = index,
                                .type = WATCH_PUT,
                                .key = (const uint8_t *)key,
                                .klen = strlen(key),
                                .val = (const uint8_t *)val,
                                .vlen = strlen(val),
                                .create_index = index,
                                .mod_index = index,
                                .version = 1};
}

static void append(struct watch_history *h, uint64_t index, const char *key,
                   const char *val)
{
    struct watch_event ev = put(index, key, val);
    assert_int_equal(watch_history_append(h, &ev), 0);
}

/* Read every event after `after` into "index:key " words. */
static int read_all(struct watch_history *h, uint64_t after, char *out,
                    size_t cap)
{
    struct watch_cursor c;
    int rc = watch_history_seek(h, after, &c);
    if (rc)
        return rc;
    struct watch_event ev;
    size_t n = 0;
    out[0] = 0;
    while ((rc = watch_history_next(h, &c, &ev)) == 1)
        n += (size_t)snprintf(out + n, cap - n, "%llu:%.*s ",
                              (unsigned long long)ev.index, (int)ev.klen,
                              (const char *)ev.key);
    return rc;
}

/* ---- history ------------------------------------------------------------ */

static void test_append_and_read(void **state)
{
    struct watch_history *h = watch_history_new(100, 1 << 20, 3);
    assert_non_null(h);
    assert_int_equal(watch_history_last(h), 3);
    append(h, 4, "a", "1");
    append(h, 4, "b", "2");
    append(h, 6, "a", "3");
    struct watch_event del = {.index = 7, .type = WATCH_DELETE,
                              .key = (const uint8_t *)"b", .klen = 1,
                              .mod_index = 7, .lease = 9};
    assert_int_equal(watch_history_append(h, &del), 0);
    assert_int_equal(watch_history_count(h), 4);
    assert_int_equal(watch_history_last(h), 7);
    assert_int_equal(watch_history_bytes(h),
                     3 * WATCH_EVENT_COST(1, 1) + WATCH_EVENT_COST(1, 0));

    struct watch_cursor c;
    struct watch_event ev;
    assert_int_equal(watch_history_seek(h, 4, &c), 0);
    assert_int_equal(watch_history_next(h, &c, &ev), 1);
    assert_int_equal(ev.index, 6);
    assert_int_equal(ev.type, WATCH_PUT);
    assert_memory_equal(ev.val, "3", 1);
    assert_int_equal(ev.create_index, 6);
    assert_int_equal(watch_history_next(h, &c, &ev), 1);
    assert_int_equal(ev.type, WATCH_DELETE);
    assert_int_equal(ev.lease, 9);
    assert_null(ev.val);
    assert_int_equal(c.index, 7);
    assert_int_equal(watch_history_next(h, &c, &ev), 0);
    append(h, 9, "c", "4");
    assert_int_equal(watch_history_next(h, &c, &ev), 1);
    assert_int_equal(ev.index, 9);

    char buf[256];
    assert_int_equal(read_all(h, 3, buf, sizeof buf), 0);
    assert_string_equal(buf, "4:a 4:b 6:a 7:b 9:c ");
    /* out of order: refused, nothing changed */
    struct watch_event old = put(8, "x", "y");
    assert_int_equal(watch_history_append(h, &old), CRAFT_EINVAL);
    assert_int_equal(watch_history_count(h), 5);
    watch_history_free(h);
}

static void test_evict_by_count_whole_entries(void **state)
{
    struct watch_history *h = watch_history_new(4, 1 << 20, 0);
    append(h, 1, "a", "");
    append(h, 1, "b", "");
    append(h, 2, "c", "");
    append(h, 3, "d", "");
    assert_int_equal(watch_history_floor(h), 0);
    append(h, 4, "e", ""); /* evicts entry 1 whole: both of its events */
    assert_int_equal(watch_history_count(h), 3);
    assert_int_equal(watch_history_floor(h), 1);
    char buf[256];
    assert_int_equal(read_all(h, 0, buf, sizeof buf), CRAFT_ENOTFOUND);
    assert_int_equal(read_all(h, 1, buf, sizeof buf), 0);
    assert_string_equal(buf, "2:c 3:d 4:e ");
    /* an entry larger than the ring is dropped whole: floor = its index */
    for (int i = 0; i < 5; i++)
        append(h, 5, "f", "");
    assert_int_equal(watch_history_count(h), 0);
    assert_int_equal(watch_history_floor(h), 5);
    assert_int_equal(watch_history_last(h), 5);
    append(h, 6, "g", "");
    assert_int_equal(read_all(h, 5, buf, sizeof buf), 0);
    assert_string_equal(buf, "6:g ");
    watch_history_free(h);
}

static void test_evict_by_bytes(void **state)
{
    /* room for three 1+10-byte events, not four */
    struct watch_history *h =
        watch_history_new(1000, 3 * WATCH_EVENT_COST(1, 10) + 5, 0);
    append(h, 1, "a", "0123456789");
    append(h, 2, "b", "0123456789");
    append(h, 2, "c", "0123456789");
    append(h, 3, "d", "0123456789");
    assert_int_equal(watch_history_floor(h), 1);
    append(h, 4, "e", "0123456789"); /* entry 2 goes: both events */
    assert_int_equal(watch_history_floor(h), 2);
    assert_int_equal(watch_history_count(h), 2);
    char buf[256];
    assert_int_equal(read_all(h, 2, buf, sizeof buf), 0);
    assert_string_equal(buf, "3:d 4:e ");
    /* one event bigger than the bound: its entry is dropped, not held */
    char big[200];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    append(h, 5, "f", big);
    append(h, 5, "g", "1");
    assert_int_equal(watch_history_floor(h), 5);
    assert_int_equal(watch_history_count(h), 0);
    assert_int_equal(watch_history_bytes(h), 0);
    watch_history_free(h);
}

static void test_cursor_overtaken(void **state)
{
    struct watch_history *h = watch_history_new(3, 1 << 20, 0);
    append(h, 1, "a", "");
    append(h, 2, "b", "");
    struct watch_cursor c;
    struct watch_event ev;
    assert_int_equal(watch_history_seek(h, 0, &c), 0);
    assert_int_equal(watch_history_next(h, &c, &ev), 1); /* read 1 */
    append(h, 3, "c", "");
    append(h, 4, "d", ""); /* evicts 1 */
    assert_int_equal(watch_history_next(h, &c, &ev), 1); /* 2 still there */
    assert_int_equal(ev.index, 2);
    append(h, 5, "e", ""); /* evicts 2 */
    append(h, 6, "f", ""); /* evicts 3: c had not read it */
    assert_int_equal(watch_history_next(h, &c, &ev), CRAFT_ENOTFOUND);
    /* a reader that keeps up is never overtaken */
    assert_int_equal(watch_history_seek(h, 6, &c), 0);
    for (uint64_t i = 7; i < 50; i++) {
        append(h, i, "k", "");
        assert_int_equal(watch_history_next(h, &c, &ev), 1);
        assert_int_equal(ev.index, i);
    }
    /* a caught-up reader is overtaken by an entry dropped whole */
    for (int i = 0; i < 4; i++)
        append(h, 50, "big", "");
    assert_int_equal(watch_history_next(h, &c, &ev), CRAFT_ENOTFOUND);
    watch_history_free(h);
    /* and by one whose first event alone is over the byte bound, when
     * nothing of the entry was held (the ring was empty after evicting) */
    h = watch_history_new(100, WATCH_EVENT_COST(1, 4), 0);
    append(h, 1, "a", "v");
    assert_int_equal(watch_history_seek(h, 0, &c), 0);
    assert_int_equal(watch_history_next(h, &c, &ev), 1); /* caught up */
    append(h, 2, "b", "too long");
    assert_int_equal(watch_history_count(h), 0);
    assert_int_equal(watch_history_floor(h), 2);
    append(h, 3, "c", "v");
    assert_int_equal(watch_history_next(h, &c, &ev), CRAFT_ENOTFOUND);
    /* a new reader from the floor goes on */
    assert_int_equal(watch_history_seek(h, 2, &c), 0);
    assert_int_equal(watch_history_next(h, &c, &ev), 1);
    assert_int_equal(ev.index, 3);
    watch_history_free(h);
}

static void test_seek_beyond_last(void **state)
{
    struct watch_history *h = watch_history_new(10, 1 << 20, 0);
    append(h, 1, "a", "");
    struct watch_cursor c;
    struct watch_event ev;
    assert_int_equal(watch_history_seek(h, 3, &c), 0);
    append(h, 2, "b", "");
    append(h, 3, "c", "");
    assert_int_equal(watch_history_next(h, &c, &ev), 0);
    append(h, 4, "d", "");
    assert_int_equal(watch_history_next(h, &c, &ev), 1);
    assert_int_equal(ev.index, 4);
    watch_history_free(h);
}

static void test_reset(void **state)
{
    struct watch_history *h = watch_history_new(10, 1 << 20, 0);
    append(h, 1, "a", "");
    append(h, 2, "b", "");
    struct watch_cursor c;
    struct watch_event ev;
    assert_int_equal(watch_history_seek(h, 2, &c), 0); /* caught up */
    watch_history_reset(h, 20);
    assert_int_equal(watch_history_floor(h), 20);
    assert_int_equal(watch_history_last(h), 20);
    assert_int_equal(watch_history_count(h), 0);
    assert_int_equal(watch_history_bytes(h), 0);
    /* even a reader that had read everything missed what the reset covers */
    assert_int_equal(watch_history_next(h, &c, &ev), CRAFT_ENOTFOUND);
    assert_int_equal(watch_history_seek(h, 19, &c), CRAFT_ENOTFOUND);
    assert_int_equal(watch_history_seek(h, 20, &c), 0);
    append(h, 20, "stale", ""); /* at the floor: dropped */
    append(h, 21, "x", "");
    assert_int_equal(watch_history_next(h, &c, &ev), 1);
    assert_int_equal(ev.index, 21);
    watch_history_reset(h, 5); /* floor never goes down, nor below last */
    assert_int_equal(watch_history_floor(h), 21);
    assert_int_equal(watch_history_last(h), 21);
    watch_history_free(h);
}

/* A cursor overtaken by a reset is told so, with the floor the reset left;
 * one overtaken by eviction after the reset, or not overtaken, is not. */
static void test_reset_past(void **state)
{
    struct watch_history *h = watch_history_new(3, 1 << 20, 0);
    struct watch_cursor behind, caught_up, fresh;
    struct watch_event ev;
    uint64_t floor = 0;
    append(h, 1, "a", "");
    append(h, 2, "b", "");
    assert_int_equal(watch_history_seek(h, 0, &behind), 0);
    assert_int_equal(watch_history_seek(h, 2, &caught_up), 0);
    /* no reset yet: eviction overtakes behind, and that is not a reset */
    append(h, 3, "c", "");
    append(h, 4, "d", "");
    assert_int_equal(watch_history_next(h, &behind, &ev), CRAFT_ENOTFOUND);
    assert_int_equal(watch_history_reset_past(h, &behind, &floor), 0);
    assert_int_equal(watch_history_reset_past(h, &caught_up, &floor), 0);
    watch_history_reset(h, 30); /* a snapshot at 30 */
    assert_int_equal(watch_history_reset_past(h, &behind, &floor), 1);
    assert_int_equal(floor, 30);
    floor = 0;
    assert_int_equal(watch_history_reset_past(h, &caught_up, &floor), 1);
    assert_int_equal(floor, 30);
    /* a cursor from after the reset: not overtaken, then by eviction */
    assert_int_equal(watch_history_seek(h, 30, &fresh), 0);
    assert_int_equal(watch_history_reset_past(h, &fresh, &floor), 0);
    for (uint64_t i = 31; i <= 35; i++)
        append(h, i, "e", "");
    assert_int_equal(watch_history_next(h, &fresh, &ev), CRAFT_ENOTFOUND);
    assert_int_equal(watch_history_reset_past(h, &fresh, &floor), 0);
    /* those from before it still are, after a second reset with its floor */
    watch_history_reset(h, 50);
    assert_int_equal(watch_history_reset_past(h, &behind, &floor), 1);
    assert_int_equal(floor, 50);
    assert_int_equal(watch_history_reset_past(h, &fresh, &floor), 1);
    assert_int_equal(floor, 50);
    watch_history_free(h);
}

static void test_changed(void **state)
{
    struct watch_history *h = watch_history_new(10, 1 << 20, 2);
    const uint8_t bin[] = {'p', 0, 0xff};
    struct watch_event ev = {.index = 3, .type = WATCH_PUT, .key = bin,
                             .klen = 3};
    assert_int_equal(watch_history_append(h, &ev), 0);
    append(h, 5, "app/x", "1");
    uint64_t at;
    assert_int_equal(watch_history_changed(h, 2, bin, 3, false, &at), 1);
    assert_int_equal(at, 3);
    assert_int_equal(watch_history_changed(h, 3, bin, 3, false, &at), 0);
    assert_int_equal(watch_history_changed(h, 2, bin, 2, false, &at), 0);
    assert_int_equal(watch_history_changed(h, 2, bin, 2, true, &at), 1);
    assert_int_equal(watch_history_changed(h, 2, "app/", 4, true, &at), 1);
    assert_int_equal(at, 5);
    assert_int_equal(watch_history_changed(h, 3, "", 0, true, &at), 1);
    assert_int_equal(at, 5);
    assert_int_equal(watch_history_changed(h, 5, "", 0, true, &at), 0);
    assert_int_equal(watch_history_changed(h, 1, "", 0, true, &at),
                     CRAFT_ENOTFOUND);
    watch_history_free(h);
}

/* Events of random sizes through given bounds, so that the byte ring
 * wraps, skips its end, grows and (phases: 1,500 events of values up to
 * 390 bytes, then 1,500 of up to 3, and so on) shrinks: after each
 * append, what a cursor from the floor reads is exactly the events
 * appended with an index above the floor, byte for byte. */
static void model_run(size_t max_events, uint64_t max_bytes, bool phases)
{
    enum { N = 6000 };
    struct watch_history *h = watch_history_new(max_events, max_bytes, 0);
    static struct { uint64_t index; char key[48], val[400]; } evs[N];
    uint64_t x = 88172645463325252ull, index = 1;
    size_t peak = 0;
    for (size_t i = 0; i < N; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        if (x % 3 == 0)
            index++; /* one to a few events an entry */
        size_t kl = 1 + x % 40;
        size_t vl = phases ? ((i / 1500) % 2 ? x % 4 : (x >> 8) % 390)
                           : (x >> 8) % (i < N / 2 ? 60 : 390);
        evs[i].index = index;
        snprintf(evs[i].key, sizeof evs[i].key, "%zu-%.*s", i, (int)kl, "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk");
        memset(evs[i].val, 'a' + (int)(i % 26), vl);
        evs[i].val[vl] = 0;
        struct watch_event ev = put(index, evs[i].key, evs[i].val);
        assert_int_equal(watch_history_append(h, &ev), 0);
        if (watch_history_mem(h) > peak)
            peak = watch_history_mem(h);

        uint64_t floor = watch_history_floor(h);
        struct watch_cursor c;
        assert_int_equal(watch_history_seek(h, floor, &c), 0);
        size_t first = i + 1;
        while (first > 0 && evs[first - 1].index > floor)
            first--;
        struct watch_event out;
        for (size_t j = first; j <= i; j++) {
            assert_int_equal(watch_history_next(h, &c, &out), 1);
            assert_int_equal(out.index, evs[j].index);
            assert_int_equal(out.klen, strlen(evs[j].key));
            assert_memory_equal(out.key, evs[j].key, out.klen);
            assert_int_equal(out.vlen, strlen(evs[j].val));
            if (out.vlen)
                assert_memory_equal(out.val, evs[j].val, out.vlen);
        }
        assert_int_equal(watch_history_next(h, &c, &out), 0);
        assert_int_equal(watch_history_count(h), i + 1 - first);
    }
    assert_true(watch_history_floor(h) > 0); /* the bounds evicted */
    if (phases) /* it ends in a phase of small values: the ring halved */
        assert_true(watch_history_mem(h) * 5 < peak * 3);
    watch_history_free(h);
}

/* Every field of an event comes back as it went in, at the edges of its
 * encoding: a mod_index other than the index, zero and the largest
 * revisions and leases, an empty key, a delete without a value. */
static void test_history_fields_round_trip(void **state)
{
    (void)state;
    struct watch_history *h = watch_history_new(100, 1 << 20, 0);
    const uint64_t big = UINT64_MAX;
    struct watch_event in[] = {
        {.index = 5, .type = WATCH_PUT, .key = (const uint8_t *)"k", .klen = 1,
         .val = (const uint8_t *)"v", .vlen = 1, .create_index = 0,
         .mod_index = 5, .version = 0, .lease = 0},
        {.index = 6, .type = WATCH_PUT, .key = (const uint8_t *)"", .klen = 0,
         .val = (const uint8_t *)"xyz", .vlen = 3, .create_index = big,
         .mod_index = 1, .version = big, .lease = big},
        {.index = 1ull << 62, .type = WATCH_DELETE, .key = (const uint8_t *)"gone",
         .klen = 4, .val = NULL, .vlen = 0, .create_index = 0,
         .mod_index = 1ull << 62, .version = 0, .lease = 1ull << 40},
        {.index = 1ull << 62, .type = WATCH_PUT, .key = (const uint8_t *)"m",
         .klen = 1, .val = (const uint8_t *)"", .vlen = 0, .create_index = 3,
         .mod_index = (1ull << 62) - 1, .version = 128, .lease = 127},
    };
    size_t n = sizeof in / sizeof in[0];
    for (size_t i = 0; i < n; i++)
        assert_int_equal(watch_history_append(h, &in[i]), 0);
    struct watch_cursor c;
    assert_int_equal(watch_history_seek(h, 0, &c), 0);
    for (size_t i = 0; i < n; i++) {
        struct watch_event out;
        assert_int_equal(watch_history_next(h, &c, &out), 1);
        assert_int_equal(out.index, in[i].index);
        assert_int_equal(out.type, in[i].type);
        assert_int_equal(out.klen, in[i].klen);
        if (out.klen)
            assert_memory_equal(out.key, in[i].key, out.klen);
        assert_int_equal(out.vlen, in[i].vlen);
        if (out.vlen)
            assert_memory_equal(out.val, in[i].val, out.vlen);
        else
            assert_null(out.val);
        assert_true(out.create_index == in[i].create_index);
        assert_true(out.mod_index == in[i].mod_index);
        assert_true(out.version == in[i].version);
        assert_true(out.lease == in[i].lease);
    }
    watch_history_free(h);
}

static void test_history_packed_ring(void **state)
{
    model_run(37, 6000, false);
    model_run(1000, 1000000, true);
}

/* The byte ring's edge: an event as long as the room before the head's
 * bytes must not wrap there (its end would meet the head, and the ring
 * would look empty: the next event would overwrite the head's bytes). Sizes
 * for the first 4 KiB ring: 2000, 1000 and 500 bytes, then 2000 evicts the
 * first (by the byte bound) and finds exactly 2000 free before the head. */
static void test_history_ring_edges(void **state)
{
    static char v[5][2000];
    const size_t len[5] = {2000, 1000, 500, 2000, 100};
    struct watch_history *h = watch_history_new(100, 4000, 0);
    for (int i = 0; i < 5; i++) {
        memset(v[i], 'a' + i, len[i] - 1); /* key "k" + value: len[i] bytes */
        struct watch_event ev = put((uint64_t)i + 1, "k", v[i]);
        assert_int_equal(watch_history_append(h, &ev), 0);
    }
    assert_int_equal(watch_history_floor(h), 1); /* the first evicted */
    struct watch_cursor c;
    struct watch_event out;
    assert_int_equal(watch_history_seek(h, 1, &c), 0);
    for (int i = 1; i < 5; i++) {
        assert_int_equal(watch_history_next(h, &c, &out), 1);
        assert_int_equal(out.vlen, len[i] - 1);
        assert_memory_equal(out.val, v[i], out.vlen);
    }
    watch_history_free(h);
}

/* The byte ring gives memory back: after a burst of big values is
 * evicted, small events shrink it by halves (their bytes intact). */
static void test_history_ring_shrinks(void **state)
{
    static char big[100000];
    memset(big, 'b', sizeof big - 1);
    struct watch_history *h = watch_history_new(1000, 1u << 30, 0);
    for (uint64_t i = 1; i <= 20; i++) {
        struct watch_event ev = put(i, "big", big);
        assert_int_equal(watch_history_append(h, &ev), 0);
    }
    assert_true(watch_history_mem(h) > 2000000);
    char key[32];
    for (uint64_t i = 21; i < 3000; i++) {
        snprintf(key, sizeof key, "small-%llu", (unsigned long long)i);
        struct watch_event ev = put(i, key, "v");
        assert_int_equal(watch_history_append(h, &ev), 0);
    }
    assert_true(watch_history_mem(h) < 256 * 1024);
    struct watch_cursor c;
    struct watch_event out;
    assert_int_equal(watch_history_seek(h, watch_history_floor(h), &c), 0);
    for (uint64_t i = 2000; i < 3000; i++) {
        snprintf(key, sizeof key, "small-%llu", (unsigned long long)i);
        assert_int_equal(watch_history_next(h, &c, &out), 1);
        assert_int_equal(out.index, i);
        assert_int_equal(out.klen, strlen(key));
        assert_memory_equal(out.key, key, out.klen);
    }
    watch_history_free(h);
}

static void test_history_alloc_failure(void **state)
{
    assert_null((count_alloc_countdown = 1, watch_history_new(10, 100, 0)));
    struct watch_history *h = watch_history_new(10, 1 << 20, 0);
    append(h, 1, "a", "");
    struct watch_cursor c;
    assert_int_equal(watch_history_seek(h, 1, &c), 0);
    static char big[5000]; /* more than the byte ring's first 4 KiB */
    memset(big, 'v', sizeof big - 1);
    struct watch_event ev = put(2, "b", big);
    count_alloc_countdown = 1; /* the byte ring's growth for b fails */
    assert_int_equal(watch_history_append(h, &ev), CRAFT_ENOMEM);
    assert_int_equal(watch_history_floor(h), 2);
    assert_int_equal(watch_history_count(h), 0);
    struct watch_event out;
    assert_int_equal(watch_history_next(h, &c, &out), CRAFT_ENOTFOUND);
    ev = put(2, "c", "v"); /* the rest of entry 2 is dropped */
    assert_int_equal(watch_history_append(h, &ev), 0);
    assert_int_equal(watch_history_count(h), 0);
    append(h, 3, "d", "");
    assert_int_equal(watch_history_count(h), 1);
    watch_history_free(h);
}

/* ---- hub ---------------------------------------------------------------- */

struct rec {
    int calls;
    uint64_t index;
    struct watch_hub *hub;
    struct watch_sub *victim; /* unsubscribed by the callback */
    bool self;                /* the callback unsubscribes itself */
};

static void on_change(void *ud, struct watch_sub *sub, uint64_t index)
{
    struct rec *r = ud;
    r->calls++;
    r->index = index;
    if (r->victim) {
        watch_hub_unsubscribe(r->hub, r->victim);
        r->victim = NULL;
    }
    if (r->self)
        watch_hub_unsubscribe(r->hub, sub);
}

static void test_key_and_prefix_matching(void **state)
{
    struct watch_hub *hub = watch_hub_new(7);
    struct rec key = {0}, pre = {0}, all = {0}, bin = {0}, other = {0};
    const uint8_t bkey[] = {0, 'z', 0};
    assert_non_null(watch_hub_subscribe(hub, "app/a", 5, false, on_change, &key));
    assert_non_null(watch_hub_subscribe(hub, "app/", 4, true, on_change, &pre));
    assert_non_null(watch_hub_subscribe(hub, "", 0, true, on_change, &all));
    assert_non_null(watch_hub_subscribe(hub, bkey, 2, true, on_change, &bin));
    assert_non_null(watch_hub_subscribe(hub, "app/ab", 6, false, on_change, &other));
    assert_int_equal(watch_hub_count(hub), 5);
    assert_int_equal(watch_hub_groups(hub), 5);

    /* one entry changing two keys under app/: each matching sub once */
    watch_hub_changed(hub, "app/a", 5);
    watch_hub_changed(hub, "app/b", 5);
    assert_int_equal(watch_hub_flush(hub, 10), 3);
    assert_int_equal(key.calls, 1);
    assert_int_equal(key.index, 10);
    assert_int_equal(pre.calls, 1);
    assert_int_equal(all.calls, 1);
    assert_int_equal(bin.calls, 0);
    assert_int_equal(other.calls, 0);
    assert_int_equal(watch_hub_flush(hub, 11), 0); /* marks are gone */

    const uint8_t k2[] = {0, 'z', 0, 1};
    watch_hub_changed(hub, k2, sizeof k2);
    assert_int_equal(watch_hub_flush(hub, 12), 2);
    assert_int_equal(bin.calls, 1);
    assert_int_equal(all.calls, 2);
    watch_hub_changed(hub, "app", 3); /* shorter than the prefix */
    assert_int_equal(watch_hub_flush(hub, 13), 1);
    assert_int_equal(pre.calls, 1);
    assert_int_equal(watch_hub_notify_all(hub, 14), 5);
    assert_int_equal(other.calls, 1);
    watch_hub_free(hub); /* frees the subscriptions left */
}

static void test_same_key_groups(void **state)
{
    struct watch_hub *hub = watch_hub_new(1);
    struct rec r = {0};
    struct watch_sub *a = watch_hub_subscribe(hub, "k", 1, false, on_change, &r);
    struct watch_sub *b = watch_hub_subscribe(hub, "k", 1, false, on_change, &r);
    struct watch_sub *p = watch_hub_subscribe(hub, "k", 1, true, on_change, &r);
    assert_int_equal(watch_hub_groups(hub), 2); /* exact k, prefix k */
    size_t klen;
    bool prefix;
    assert_memory_equal(watch_sub_key(p, &klen, &prefix), "k", 1);
    assert_true(prefix);
    assert_ptr_equal(watch_sub_ud(a), &r);
    watch_hub_unsubscribe(hub, a);
    watch_hub_unsubscribe(hub, p);
    assert_int_equal(watch_hub_groups(hub), 1);
    watch_hub_changed(hub, "k", 1);
    assert_int_equal(watch_hub_flush(hub, 1), 1);
    watch_hub_unsubscribe(hub, b);
    assert_int_equal(watch_hub_count(hub), 0);
    assert_int_equal(watch_hub_groups(hub), 0);
    watch_hub_changed(hub, "k", 1);
    assert_int_equal(watch_hub_flush(hub, 2), 0);
    watch_hub_free(hub);
}

static void test_thousand_subscribers(void **state)
{
    struct watch_hub *hub = watch_hub_new(99);
    static struct rec r[1000];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 1000; i++)
        assert_non_null(watch_hub_subscribe(hub, "hot", 3, false, on_change, &r[i]));
    /* and many other keys, so the table grows under them */
    struct rec cold = {0};
    char k[32];
    for (int i = 0; i < 500; i++) {
        snprintf(k, sizeof k, "cold/%d", i);
        assert_non_null(watch_hub_subscribe(hub, k, strlen(k), false, on_change, &cold));
    }
    watch_hub_changed(hub, "hot", 3);
    watch_hub_changed(hub, "hot", 3); /* twice in one entry: still once */
    assert_int_equal(watch_hub_flush(hub, 5), 1000);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].index, 5);
    }
    assert_int_equal(cold.calls, 0);
    watch_hub_changed(hub, "cold/250", 8);
    assert_int_equal(watch_hub_flush(hub, 6), 1);
    assert_int_equal(cold.calls, 1);
    watch_hub_free(hub);
}

static void test_unsubscribe_during_notify(void **state)
{
    struct watch_hub *hub = watch_hub_new(3);
    struct rec r[4] = {{0}};
    struct watch_sub *s[4];
    for (int i = 0; i < 4; i++) {
        r[i].hub = hub;
        s[i] = watch_hub_subscribe(hub, "k", 1, false, on_change, &r[i]);
    }
    r[0].self = true;       /* one-shot */
    r[1].victim = s[2];     /* removes one not yet called */
    r[3].victim = s[1];     /* removes one already called */
    watch_hub_changed(hub, "k", 1);
    assert_int_equal(watch_hub_flush(hub, 1), 3);
    assert_int_equal(r[0].calls, 1);
    assert_int_equal(r[1].calls, 1);
    assert_int_equal(r[2].calls, 0);
    assert_int_equal(r[3].calls, 1);
    assert_int_equal(watch_hub_count(hub), 1);
    /* the last one leaves, and its group with it, inside the callback */
    r[3].self = true;
    watch_hub_changed(hub, "k", 1);
    assert_int_equal(watch_hub_flush(hub, 2), 1);
    assert_int_equal(watch_hub_count(hub), 0);
    assert_int_equal(watch_hub_groups(hub), 0);
    watch_hub_free(hub);
}

static void test_hub_alloc_failure(void **state)
{
    for (long n = 1; n <= 2; n++) {
        count_alloc_countdown = n;
        assert_null(watch_hub_new(1));
    }
    count_alloc_countdown = 0;
    struct watch_hub *hub = watch_hub_new(1);
    struct rec r = {0};
    /* sub, group, prefix length: each failing leaves nothing behind */
    for (long n = 1; n <= 3; n++) {
        count_alloc_countdown = n;
        assert_null(watch_hub_subscribe(hub, "p", 1, true, on_change, &r));
        assert_int_equal(watch_hub_count(hub), 0);
        assert_int_equal(watch_hub_groups(hub), 0);
    }
    count_alloc_countdown = 0;
    assert_non_null(watch_hub_subscribe(hub, "p", 1, true, on_change, &r));
    watch_hub_changed(hub, "pq", 2);
    assert_int_equal(watch_hub_flush(hub, 1), 1);
    watch_hub_free(hub);
}

#define T(f) cmocka_unit_test_setup_teardown(f, count_alloc_setup, count_alloc_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_append_and_read),
        T(test_evict_by_count_whole_entries),
        T(test_evict_by_bytes),
        T(test_cursor_overtaken),
        T(test_seek_beyond_last),
        T(test_reset),
        T(test_reset_past),
        T(test_changed),
        T(test_history_fields_round_trip),
        T(test_history_packed_ring),
        T(test_history_ring_edges),
        T(test_history_ring_shrinks),
        T(test_history_alloc_failure),
        T(test_key_and_prefix_matching),
        T(test_same_key_groups),
        T(test_thousand_subscribers),
        T(test_unsubscribe_during_notify),
        T(test_hub_alloc_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
