/* Tests of the pure parts of GET /watch in src/http: the request (key= or
 * prefix=, from= and Last-Event-ID) and the Server-Sent Events framing of
 * put, delete, progress and error events (each data line decoded again
 * with jansson). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "http/kvreq.h"

static char err[256];

static int parse(const char *q, const char *lid, struct http_watch_opts *w, char *buf)
{
    err[0] = 0;
    return http__parse_watch(q, strlen(q), lid, lid ? strlen(lid) : 0, 8, buf, w, err,
                             sizeof err);
}

static void test_watch_query(void **state)
{
    (void)state;
    char buf[128];
    struct http_watch_opts w;
    assert_int_equal(parse("key=a%00b", NULL, &w, buf), 0);
    assert_false(w.prefix);
    assert_int_equal(w.klen, 3);
    assert_memory_equal(w.key, "a\0b", 3);
    assert_false(w.has_from);

    assert_int_equal(parse("prefix=&from=42", NULL, &w, buf), 0);
    assert_true(w.prefix);
    assert_int_equal(w.klen, 0);
    assert_true(w.has_from);
    assert_int_equal(w.from, 42);

    assert_int_equal(parse("prefix=%ff", "7", &w, buf), 0);
    assert_int_equal(w.klen, 1);
    assert_int_equal(w.key[0], 0xff);
    assert_true(w.has_from);
    assert_int_equal(w.from, 7);

    assert_int_equal(parse("key=k&from=9", "9", &w, buf), 0); /* equal: fine */
    assert_int_equal(w.from, 9);
    assert_int_equal(parse("key=k&from=0", NULL, &w, buf), 0);
    assert_true(w.has_from);
    assert_int_equal(w.from, 0);
}

static void bad(const char *q, const char *lid, const char *msg)
{
    char buf[128];
    struct http_watch_opts w;
    assert_int_equal(parse(q, lid, &w, buf), -1);
    if (strstr(err, msg) == NULL)
        fail_msg("%s: \"%s\" lacks \"%s\"", q, err, msg);
}

static void test_watch_query_errors(void **state)
{
    (void)state;
    bad("", NULL, "missing key= or prefix=");
    bad("from=3", NULL, "missing key= or prefix=");
    bad("key=a&prefix=b", NULL, "exclude each other");
    bad("key=", NULL, "empty key");
    bad("key=123456789", NULL, "key too long");
    bad("prefix=123456789", NULL, "prefix too long");
    bad("key=%zz", NULL, "percent-encoding");
    bad("key=a&form=3", NULL, "unknown parameter \"form\"");
    bad("key=a&from=x", NULL, "from takes an index");
    bad("key=a&from=-1", NULL, "from takes an index");
    bad("key=a&from=18446744073709551616", NULL, "from takes an index");
    bad("key=a", "abc", "Last-Event-ID");
    bad("key=a&from=3", "4", "disagree");
}

/* The text of one event: its fields, and the data line as JSON. */
struct sse {
    char id[32], event[32];
    json_t *data;
};

static size_t parse_event(const char *p, size_t len, struct sse *e)
{
    memset(e, 0, sizeof *e);
    const char *end = strstr(p, "\n\n");
    assert_non_null(end);
    assert_true((size_t)(end + 2 - p) <= len);
    for (const char *l = p; l < end + 1;) {
        const char *nl = memchr(l, '\n', (size_t)(end + 1 - l));
        assert_non_null(nl);
        size_t n = (size_t)(nl - l);
        if (n > 4 && memcmp(l, "id: ", 4) == 0)
            snprintf(e->id, sizeof e->id, "%.*s", (int)(n - 4), l + 4);
        else if (n > 7 && memcmp(l, "event: ", 7) == 0)
            snprintf(e->event, sizeof e->event, "%.*s", (int)(n - 7), l + 7);
        else if (n > 6 && memcmp(l, "data: ", 6) == 0)
            e->data = json_loadb(l + 6, n - 6, 0, NULL);
        else
            fail_msg("unexpected line %.*s", (int)n, l);
        l = nl + 1;
    }
    assert_non_null(e->data);
    return (size_t)(end + 2 - p);
}

static void test_sse_events(void **state)
{
    (void)state;
    struct http_jbuf j;
    http_jbuf_init(&j);
    struct kv_meta m = {.key = (const uint8_t *)"k", .klen = 1,
                        .val = (const uint8_t *)"line1\nline2", .vlen = 11,
                        .create_index = 3, .mod_index = 9, .version = 2};
    http_jbuf_sse_put(&j, &m);
    m.key = (const uint8_t *)"\xff\x00";
    m.klen = 2;
    m.val = (const uint8_t *)"\x80";
    m.vlen = 1;
    m.lease = 77;
    http_jbuf_sse_put(&j, &m);
    http_jbuf_sse_delete(&j, (const uint8_t *)"gone", 4, 10);
    http_jbuf_sse_progress(&j, 12);
    http_jbuf_sse_error(&j, "too slow", 10);
    assert_false(j.failed);

    struct sse e;
    size_t off = parse_event(j.data, j.len, &e);
    assert_string_equal(e.id, "9");
    assert_string_equal(e.event, "put");
    assert_string_equal(json_string_value(json_object_get(e.data, "key")), "k");
    assert_string_equal(json_string_value(json_object_get(e.data, "value")), "line1\nline2");
    assert_int_equal(json_integer_value(json_object_get(e.data, "create_index")), 3);
    assert_int_equal(json_integer_value(json_object_get(e.data, "mod_index")), 9);
    assert_int_equal(json_integer_value(json_object_get(e.data, "version")), 2);
    assert_null(json_object_get(e.data, "lease")); /* none: left out */
    json_decref(e.data);

    off += parse_event(j.data + off, j.len - off, &e);
    assert_string_equal(e.id, "9");
    assert_string_equal(json_string_value(json_object_get(e.data, "key_b64")), "/wA=");
    assert_string_equal(json_string_value(json_object_get(e.data, "value_b64")), "gA==");
    assert_null(json_object_get(e.data, "key"));
    assert_string_equal(json_string_value(json_object_get(e.data, "lease")), "77");
    json_decref(e.data);

    off += parse_event(j.data + off, j.len - off, &e);
    assert_string_equal(e.id, "10");
    assert_string_equal(e.event, "delete");
    assert_string_equal(json_string_value(json_object_get(e.data, "key")), "gone");
    assert_int_equal(json_integer_value(json_object_get(e.data, "mod_index")), 10);
    assert_int_equal(json_object_size(e.data), 2);
    json_decref(e.data);

    off += parse_event(j.data + off, j.len - off, &e);
    assert_string_equal(e.id, ""); /* progress moves no Last-Event-ID */
    assert_string_equal(e.event, "progress");
    assert_int_equal(json_integer_value(json_object_get(e.data, "index")), 12);
    json_decref(e.data);

    off += parse_event(j.data + off, j.len - off, &e);
    assert_string_equal(e.event, "error");
    assert_string_equal(json_string_value(json_object_get(e.data, "error")), "too slow");
    assert_int_equal(json_integer_value(json_object_get(e.data, "index")), 10);
    json_decref(e.data);
    assert_int_equal(off, j.len);
    http_jbuf_free(&j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_watch_query),
        cmocka_unit_test(test_watch_query_errors),
        cmocka_unit_test(test_sse_events),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
