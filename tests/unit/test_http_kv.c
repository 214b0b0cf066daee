/* Tests of the pure parts of src/http for transactions and listing:
 * base64, the POST /txn body, the /keys query, and the JSON encoders of
 * their answers (each output decoded again with jansson). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/alloc.h"
#include "http/kvreq.h"

/* ---- base64 ---- */

static void b64_roundtrip(const char *raw, size_t n, const char *enc)
{
    char out[64];
    uint8_t back[64];
    size_t e = http__b64_encode(out, (const uint8_t *)raw, n);
    assert_int_equal(e, strlen(enc));
    assert_memory_equal(out, enc, e);
    assert_int_equal(http__b64_decode(back, enc, strlen(enc)), (long)n);
    assert_memory_equal(back, raw, n);
}

static void test_b64(void **state)
{
    b64_roundtrip("", 0, "");
    b64_roundtrip("f", 1, "Zg==");
    b64_roundtrip("fo", 2, "Zm8=");
    b64_roundtrip("foo", 3, "Zm9v");
    b64_roundtrip("foob", 4, "Zm9vYg==");
    b64_roundtrip("\xff\x00\xfe", 3, "/wD+");
    uint8_t d[16];
    assert_int_equal(http__b64_decode(d, "Zg=", 3), -1);   /* not a multiple of 4 */
    assert_int_equal(http__b64_decode(d, "Zh==", 4), -1);  /* unused bits set */
    assert_int_equal(http__b64_decode(d, "Zm9=", 4), -1);
    assert_int_equal(http__b64_decode(d, "Z===", 4), -1);
    assert_int_equal(http__b64_decode(d, "Zg==Zg==", 8), -1); /* padding inside */
    assert_int_equal(http__b64_decode(d, "Zm 9", 4), -1);
    assert_int_equal(http__b64_decode(d, "Zm-_", 4), -1);  /* url alphabet */
}

/* ---- POST /txn ---- */

static char err[256];

static int txn(const char *body, struct http__txnbody *b)
{
    return http__parse_txn_body(body, strlen(body), 8, 16, b, err, sizeof err);
}

static struct http__txnbody *new_body(void)
{
    struct http__txnbody *b = malloc(sizeof *b);
    assert_non_null(b);
    return b;
}

static void test_txn_full(void **state)
{
    struct http__txnbody *b = new_body();
    const char *body =
        "{\"compare\":[{\"key\":\"a\",\"mod_index\":5},{\"key\":\"b\",\"exists\":false},"
        "{\"key\":\"c\",\"value\":\"x\"},{\"key\":\"d\",\"version\":2,\"cmp\":\">\"},"
        "{\"key_b64\":\"/wA=\",\"create_index\":7,\"cmp\":\"<\"},"
        "{\"key\":\"e\",\"value_b64\":\"AP8=\",\"cmp\":\"!=\"},"
        "{\"key\":\"f\",\"exists\":true,\"cmp\":\"!=\"}],"
        "\"success\":[{\"op\":\"put\",\"key\":\"a\",\"value\":\"1\",\"lease\":\"0\"},"
        "{\"op\":\"delete\",\"key\":\"b\"},{\"op\":\"delete_prefix\",\"key\":\"tmp/\"},"
        "{\"op\":\"get\",\"key\":\"c\"},"
        "{\"op\":\"put\",\"key_b64\":\"AA==\",\"value_b64\":\"\",\"lease\":42}],"
        "\"failure\":[{\"op\":\"get\",\"key\":\"a\"}]}";
    assert_int_equal(txn(body, b), 0);
    const struct kv_txn *t = &b->txn;
    assert_int_equal(t->n_cmp, 7);
    assert_int_equal(t->cmp[0].target, KV_CMP_MOD);
    assert_int_equal(t->cmp[0].op, KV_CMP_EQ);
    assert_int_equal(t->cmp[0].num, 5);
    assert_int_equal(t->cmp[0].klen, 1);
    assert_memory_equal(t->cmp[0].key, "a", 1);
    assert_int_equal(t->cmp[1].target, KV_CMP_EXISTS);
    assert_int_equal(t->cmp[1].num, 0);
    assert_int_equal(t->cmp[2].target, KV_CMP_VALUE);
    assert_int_equal(t->cmp[2].vlen, 1);
    assert_memory_equal(t->cmp[2].val, "x", 1);
    assert_int_equal(t->cmp[3].target, KV_CMP_VERSION);
    assert_int_equal(t->cmp[3].op, KV_CMP_GT);
    assert_int_equal(t->cmp[3].num, 2);
    assert_int_equal(t->cmp[4].target, KV_CMP_CREATE);
    assert_int_equal(t->cmp[4].op, KV_CMP_LT);
    assert_int_equal(t->cmp[4].klen, 2);
    assert_memory_equal(t->cmp[4].key, "\xff\x00", 2);
    assert_int_equal(t->cmp[5].op, KV_CMP_NE);
    assert_int_equal(t->cmp[5].vlen, 2);
    assert_memory_equal(t->cmp[5].val, "\x00\xff", 2);
    assert_int_equal(t->cmp[6].target, KV_CMP_EXISTS);
    assert_int_equal(t->cmp[6].num, 1);
    assert_int_equal(t->cmp[6].op, KV_CMP_NE);
    assert_int_equal(t->n_success, 5);
    assert_int_equal(t->success[0].type, KV_TOP_PUT);
    assert_memory_equal(t->success[0].val, "1", 1);
    assert_int_equal(t->success[0].lease, 0);
    assert_int_equal(t->success[1].type, KV_TOP_DEL);
    assert_int_equal(t->success[2].type, KV_TOP_DEL_PREFIX);
    assert_int_equal(t->success[2].klen, 4);
    assert_int_equal(t->success[3].type, KV_TOP_GET);
    assert_int_equal(t->success[4].klen, 1);
    assert_int_equal(t->success[4].key[0], 0);
    assert_int_equal(t->success[4].vlen, 0);
    assert_int_equal(t->success[4].lease, 42);
    assert_int_equal(t->n_failure, 1);
    assert_int_equal(t->failure[0].type, KV_TOP_GET);
    http__txnbody_free(b);

    /* every part is optional */
    assert_int_equal(txn("{}", b), 0);
    assert_int_equal(b->txn.n_cmp + b->txn.n_success + b->txn.n_failure, 0);
    http__txnbody_free(b);
    free(b);
}

static void txn_bad(struct http__txnbody *b, const char *body, const char *msg)
{
    int rc = txn(body, b);
    if (rc == 0)
        fail_msg("accepted: %s", body);
    if (strstr(err, msg) == NULL)
        fail_msg("%s: message \"%s\" lacks \"%s\"", body, err, msg);
    assert_null(b->root);
    assert_null(b->arena);
}

/* A body with n items in the named list. */
static char *many(const char *list, size_t n)
{
    const char *item = strcmp(list, "compare") == 0 ? "{\"key\":\"k\",\"exists\":true}"
                                                    : "{\"op\":\"get\",\"key\":\"k\"}";
    char *s = malloc(64 + n * (strlen(item) + 1));
    size_t o = (size_t)sprintf(s, "{\"%s\":[", list);
    for (size_t i = 0; i < n; i++)
        o += (size_t)sprintf(s + o, "%s%s", i ? "," : "", item);
    strcpy(s + o, "]}");
    return s;
}

static void test_txn_errors(void **state)
{
    struct http__txnbody *b = new_body();
    txn_bad(b, "", "empty body");
    txn_bad(b, "{\"compare\":[", "invalid JSON");
    txn_bad(b, "{}x", "invalid JSON");
    txn_bad(b, "[]", "expected a JSON object");
    txn_bad(b, "{\"compares\":[]}", "unknown field \"compares\"");
    txn_bad(b, "{\"compare\":{}}", "\"compare\" must be an array");
    txn_bad(b, "{\"compare\":[1]}", "compare[0]: a compare is an object");
    txn_bad(b, "{\"compare\":[{\"mod_index\":1}]}", "missing \"key\"");
    txn_bad(b, "{\"compare\":[{\"key\":\"\",\"mod_index\":1}]}", "empty key");
    txn_bad(b, "{\"compare\":[{\"key\":\"123456789\",\"mod_index\":1}]}", "key too long");
    txn_bad(b, "{\"compare\":[{\"key\":\"a\",\"key_b64\":\"YQ==\",\"mod_index\":1}]}",
            "not both");
    txn_bad(b, "{\"compare\":[{\"key_b64\":\"!!\",\"mod_index\":1}]}", "not valid base64");
    txn_bad(b, "{\"compare\":[{\"key\":\"a\"}]}", "exactly one of");
    txn_bad(b, "{\"compare\":[{\"key\":\"a\",\"version\":1,\"mod_index\":1}]}",
            "exactly one of");
    txn_bad(b, "{\"compare\":[{\"key\":\"a\",\"version\":-1}]}", "integer >= 0");
    txn_bad(b, "{\"compare\":[{\"key\":\"a\",\"version\":1.5}]}", "integer >= 0");
    txn_bad(b, "{\"compare\":[{\"key\":\"a\",\"version\":\"1\"}]}", "integer >= 0");
    txn_bad(b, "{\"compare\":[{\"key\":\"a\",\"exists\":1}]}", "true or false");
    txn_bad(b, "{\"compare\":[{\"key\":\"a\",\"version\":1,\"cmp\":\">=\"}]}", "\"cmp\"");
    txn_bad(b, "{\"compare\":[{\"key\":\"a\",\"value\":\"x\",\"cmp\":\"<\"}]}",
            "\"value\" compares with \"=\" or \"!=\" only");
    txn_bad(b, "{\"compare\":[{\"key\":\"a\",\"exists\":true,\"cmp\":\">\"}]}",
            "\"exists\" compares");
    txn_bad(b, "{\"compare\":[{\"key\":\"a\",\"value\":\"12345678901234567\"}]}",
            "value too long");
    txn_bad(b, "{\"compare\":[{\"key\":\"a\",\"exists\":true,\"x\":1}]}", "unknown field \"x\"");
    txn_bad(b, "{\"success\":[{\"key\":\"a\"}]}", "success[0]: \"op\" must be");
    txn_bad(b, "{\"success\":[{\"op\":\"nop\",\"key\":\"a\"}]}", "\"op\" must be");
    txn_bad(b, "{\"success\":[{\"op\":\"put\",\"key\":\"a\"}]}", "missing \"value\"");
    txn_bad(b, "{\"success\":[{\"op\":\"put\",\"key\":\"a\",\"value\":1}]}", "must be a string");
    txn_bad(b, "{\"success\":[{\"op\":\"delete\",\"key\":\"a\",\"value\":\"1\"}]}",
            "unknown field \"value\"");
    txn_bad(b, "{\"success\":[{\"op\":\"delete_prefix\",\"key\":\"\"}]}", "empty key");
    txn_bad(b, "{\"failure\":[{\"op\":\"get\",\"key\":\"a\"},{\"op\":\"get\"}]}",
            "failure[1]: missing \"key\"");
    txn_bad(b, "{\"success\":[{\"op\":\"put\",\"key\":\"a\",\"value\":\"\",\"lease\":\"x\"}]}",
            "\"lease\"");
    txn_bad(b, "{\"success\":[{\"op\":\"put\",\"key\":\"a\",\"value\":\"\",\"lease\":\"-1\"}]}",
            "\"lease\"");
    txn_bad(b,
            "{\"success\":[{\"op\":\"put\",\"key\":\"a\",\"value\":\"\","
            "\"lease\":\"99999999999999999999\"}]}",
            "\"lease\"");
    /* 128 is the limit, per list */
    static const char *const lists[] = {"compare", "success", "failure"};
    for (size_t i = 0; i < 3; i++) {
        char *s = many(lists[i], KV_TXN_MAX);
        assert_int_equal(txn(s, b), 0);
        http__txnbody_free(b);
        free(s);
        s = many(lists[i], KV_TXN_MAX + 1);
        txn_bad(b, s, "at most 128");
        free(s);
    }
    free(b);
}

/* ---- /keys ---- */

static int keysq(const char *q, bool del, struct http_keys_query *out, char *buf)
{
    return http__parse_keys_query(q, strlen(q), del, 8, buf, out, err, sizeof err);
}

static void test_keys_query(void **state)
{
    struct http_keys_query k;
    char buf[128];
    assert_int_equal(keysq("", false, &k, buf), 0);
    assert_true(k.range.is_prefix);
    assert_int_equal(k.range.slen, 0);
    assert_int_equal(k.limit, HTTP_LIST_DEFAULT);
    assert_false(k.keys_only || k.count_only);
    assert_null(k.after);
    assert_int_equal(k.level, HTTP_READ_LINEARIZABLE);

    assert_int_equal(keysq("prefix=a%2Fb&limit=10000&after=a%2Fb%00&keys_only&level=weak",
                           false, &k, buf), 0);
    assert_true(k.range.is_prefix);
    assert_int_equal(k.range.slen, 3);
    assert_memory_equal(k.range.start, "a/b", 3);
    assert_int_equal(k.limit, 10000);
    assert_int_equal(k.alen, 4);
    assert_memory_equal(k.after, "a/b\0", 4);
    assert_true(k.keys_only);
    assert_int_equal(k.level, HTTP_READ_WEAK);

    assert_int_equal(keysq("start=%ff&end=%ff%01&count_only=true&level=none", false, &k, buf),
                     0);
    assert_false(k.range.is_prefix);
    assert_true(k.range.has_end);
    assert_int_equal(k.range.slen, 1);
    assert_int_equal((uint8_t)k.range.start[0], 0xff);
    assert_int_equal(k.range.elen, 2);
    assert_memory_equal(k.range.end, "\xff\x01", 2);
    assert_true(k.count_only);
    assert_int_equal(k.limit, HTTP_COUNT_MAX);
    assert_int_equal(k.level, HTTP_READ_NONE);

    assert_int_equal(keysq("end=m&count_only&limit=1000000&keys_only=0", false, &k, buf), 0);
    assert_int_equal(k.range.slen, 0);
    assert_true(k.range.has_end);
    assert_int_equal(k.limit, 1000000);
    assert_int_equal(keysq("start=m&end=", false, &k, buf), 0); /* no end */
    assert_false(k.range.has_end);
    assert_int_equal(keysq("limit=5&limit=7", false, &k, buf), 0); /* last wins */
    assert_int_equal(k.limit, 7);

    static const struct {
        const char *q, *msg;
    } bad[] = {
        {"prefx=a", "unknown parameter \"prefx\""},
        {"prefix=a&start=b", "not both"},
        {"prefix=a&end=b", "not both"},
        {"limit=0", "from 1 to 10000"},
        {"limit=10001", "from 1 to 10000"},
        {"limit=", "from 1 to"},
        {"limit=1x", "from 1 to"},
        {"limit=-1", "from 1 to"},
        {"count_only&limit=1000001", "from 1 to 1000000"},
        {"prefix=%zz", "percent-encoding"},
        {"prefix=123456789", "too long"},
        {"after=123456789", "too long"},
        {"keys_only=yes", "true/false"},
        {"keys_only&count_only", "not both"},
        {"level=strong", "read level"},
        {"level=", "read level"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (keysq(bad[i].q, false, &k, buf) == 0)
            fail_msg("accepted: %s", bad[i].q);
        if (strstr(err, bad[i].msg) == NULL)
            fail_msg("%s: \"%s\" lacks \"%s\"", bad[i].q, err, bad[i].msg);
    }

    /* DELETE: a non-empty prefix only */
    assert_int_equal(keysq("prefix=tmp%2F", true, &k, buf), 0);
    assert_true(k.range.is_prefix);
    assert_int_equal(k.range.slen, 4);
    assert_memory_equal(k.range.start, "tmp/", 4);
    assert_int_equal(keysq("", true, &k, buf), -1);
    assert_non_null(strstr(err, "non-empty prefix"));
    assert_int_equal(keysq("prefix=", true, &k, buf), -1);
    assert_int_equal(keysq("prefix=a&limit=3", true, &k, buf), -1);
    assert_non_null(strstr(err, "prefix= only"));
    assert_int_equal(keysq("start=a", true, &k, buf), -1);
}

/* ---- encoders ---- */

static json_t *decode(struct http_jbuf *j)
{
    assert_false(j->failed);
    json_error_t je;
    json_t *v = json_loadb(j->data, j->len, JSON_ALLOW_NUL, &je);
    if (v == NULL)
        fail_msg("not JSON (%s): %.*s", je.text, (int)j->len, j->data);
    return v;
}

static struct kv_meta meta(const char *k, size_t kl, const char *v, size_t vl, uint64_t mod)
{
    return (struct kv_meta){.key = (const uint8_t *)k, .klen = kl,
                            .val = (const uint8_t *)v, .vlen = vl, .create_index = 3,
                            .mod_index = mod, .version = 2, .lease = 0};
}

static void test_json_meta_and_txn(void **state)
{
    struct http_jbuf j;
    http_jbuf_init(&j);
    struct kv_meta m = meta("k\"1", 3, "v\0x", 3, 9);
    m.lease = 12345678901234567890u;
    http_jbuf_meta(&j, &m);
    json_t *v = decode(&j);
    assert_string_equal(json_string_value(json_object_get(v, "key")), "k\"1");
    assert_int_equal(json_string_length(json_object_get(v, "value")), 3);
    assert_int_equal(json_integer_value(json_object_get(v, "create_index")), 3);
    assert_int_equal(json_integer_value(json_object_get(v, "mod_index")), 9);
    assert_int_equal(json_integer_value(json_object_get(v, "version")), 2);
    assert_string_equal(json_string_value(json_object_get(v, "lease")), "12345678901234567890");
    assert_int_equal(json_object_size(v), 6);
    json_decref(v);
    http_jbuf_free(&j);

    /* not UTF-8: base64 under *_b64, and no plain field */
    http_jbuf_init(&j);
    m = meta("\xff\x00", 2, "\xc3", 1, 1);
    http_jbuf_meta(&j, &m);
    v = decode(&j);
    assert_string_equal(json_string_value(json_object_get(v, "key_b64")), "/wA=");
    assert_string_equal(json_string_value(json_object_get(v, "value_b64")), "ww==");
    assert_null(json_object_get(v, "key"));
    assert_null(json_object_get(v, "value"));
    json_decref(v);
    http_jbuf_free(&j);

    struct kv_op_result ops[5] = {
        {.type = KV_TOP_PUT, .created = true},
        {.type = KV_TOP_DEL, .deleted = 1},
        {.type = KV_TOP_DEL_PREFIX, .deleted = 40},
        {.type = KV_TOP_GET, .found = false},
        {.type = KV_TOP_GET, .found = true, .meta = meta("a", 1, "b", 1, 7)},
    };
    struct kv_result r = {.index = 77, .succeeded = true, .failed_cmp = -1, .n_ops = 5,
                          .ops = ops};
    http_jbuf_init(&j);
    http_jbuf_txn(&j, &r);
    v = decode(&j);
    assert_true(json_is_true(json_object_get(v, "succeeded")));
    assert_int_equal(json_integer_value(json_object_get(v, "index")), 77);
    json_t *res = json_object_get(v, "results");
    assert_int_equal(json_array_size(res), 5);
    assert_int_equal(json_object_size(json_array_get(res, 0)), 0);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(res, 1), "deleted")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(res, 2), "deleted")), 40);
    assert_true(json_is_false(json_object_get(json_array_get(res, 3), "found")));
    assert_int_equal(json_object_size(json_array_get(res, 3)), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(res, 4), "value")), "b");
    json_decref(v);
    http_jbuf_free(&j);

    r = (struct kv_result){.index = 78, .succeeded = false, .failed_cmp = 0};
    http_jbuf_init(&j);
    http_jbuf_txn(&j, &r);
    assert_int_equal(j.len, strlen("{\"succeeded\":false,\"index\":78,\"results\":[]}"));
    assert_memory_equal(j.data, "{\"succeeded\":false,\"index\":78,\"results\":[]}", j.len);
    http_jbuf_free(&j);

    http_jbuf_init(&j);
    http_jbuf_deleted(&j, 2500, 9007199254740993u);
    assert_memory_equal(j.data, "{\"deleted\":2500,\"index\":9007199254740993}", j.len);
    http_jbuf_free(&j);
}

static void test_json_list(void **state)
{
    struct http_jbuf j;
    http_jbuf_init(&j);
    http_jbuf_list_begin(&j, 12);
    struct kv_meta a = meta("a", 1, "1", 1, 4), b = meta("\x80", 1, "2", 1, 5);
    http_jbuf_list_key(&j, &a, false);
    http_jbuf_list_key(&j, &b, false);
    http_jbuf_list_end(&j, true, &b);
    json_t *v = decode(&j);
    assert_int_equal(json_integer_value(json_object_get(v, "index")), 12);
    json_t *keys = json_object_get(v, "keys");
    assert_int_equal(json_array_size(keys), 2);
    json_t *k0 = json_array_get(keys, 0), *k1 = json_array_get(keys, 1);
    assert_string_equal(json_string_value(json_object_get(k0, "key")), "a");
    assert_string_equal(json_string_value(json_object_get(k0, "value")), "1");
    assert_int_equal(json_integer_value(json_object_get(k0, "mod_index")), 4);
    assert_int_equal(json_object_size(k0), 3);
    assert_string_equal(json_string_value(json_object_get(k1, "key_b64")), "gA==");
    assert_true(json_is_true(json_object_get(v, "more")));
    assert_string_equal(json_string_value(json_object_get(v, "next_b64")), "gA==");
    json_decref(v);
    http_jbuf_free(&j);

    /* keys_only, last page; an empty page has no "next" */
    http_jbuf_init(&j);
    http_jbuf_list_begin(&j, 3);
    http_jbuf_list_key(&j, &a, true);
    http_jbuf_list_end(&j, false, &a);
    v = decode(&j);
    k0 = json_array_get(json_object_get(v, "keys"), 0);
    assert_null(json_object_get(k0, "value"));
    assert_int_equal(json_object_size(k0), 2);
    assert_true(json_is_false(json_object_get(v, "more")));
    assert_string_equal(json_string_value(json_object_get(v, "next")), "a");
    json_decref(v);
    http_jbuf_free(&j);
    http_jbuf_init(&j);
    http_jbuf_list_begin(&j, 3);
    http_jbuf_list_end(&j, false, NULL);
    assert_memory_equal(j.data, "{\"index\":3,\"keys\":[],\"more\":false}", j.len);
    http_jbuf_free(&j);

    http_jbuf_init(&j);
    http_jbuf_count(&j, 8, 2500, false, NULL);
    assert_memory_equal(j.data, "{\"index\":8,\"count\":2500}", j.len);
    http_jbuf_free(&j);
    http_jbuf_init(&j);
    http_jbuf_count(&j, 8, 1000, true, &a);
    assert_memory_equal(j.data, "{\"index\":8,\"count\":1000,\"more\":true,\"next\":\"a\"}",
                        j.len);
    http_jbuf_free(&j);
}

/* The meta object (a txn get's result, GET /key?meta) decodes back to the
 * bytes it was made of: "key"/"value" exactly when they are valid UTF-8,
 * else "key_b64"/"value_b64" that the request decoder turns back into
 * them, and the revisions as numbers. */
static void check_bytes_field(json_t *o, const char *name, const char *p, size_t n)
{
    char b64name[32];
    snprintf(b64name, sizeof b64name, "%s_b64", name);
    json_t *s = json_object_get(o, name), *b = json_object_get(o, b64name);
    if (craft_utf8_valid(p, n)) {
        assert_null(b);
        assert_true(json_is_string(s));
        assert_int_equal(json_string_length(s), n);
        assert_memory_equal(json_string_value(s), p, n);
    } else {
        assert_null(s);
        assert_true(json_is_string(b));
        uint8_t back[64];
        long got = http__b64_decode(back, json_string_value(b), json_string_length(b));
        assert_int_equal(got, (long)n);
        assert_memory_equal(back, p, n);
    }
}

static void test_jbuf_meta_round_trips(void **state)
{
    static const struct {
        const char *k, *v;
        size_t kl, vl;
    } cases[] = {{"a", "b", 1, 1}, {"\xff\x00k", "\x80", 3, 1}, {"k\n\"", "", 3, 0},
                 {"\xc3\xa9", "v\x00w", 2, 3}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct kv_meta m = meta(cases[i].k, cases[i].kl, cases[i].v, cases[i].vl, 40 + i);
        m.lease = i;
        struct http_jbuf j;
        http_jbuf_init(&j);
        http_jbuf_meta(&j, &m);
        json_t *got = decode(&j);
        assert_int_equal(json_object_size(got), 6);
        check_bytes_field(got, "key", cases[i].k, cases[i].kl);
        check_bytes_field(got, "value", cases[i].v, cases[i].vl);
        assert_int_equal(json_integer_value(json_object_get(got, "create_index")), 3);
        assert_int_equal(json_integer_value(json_object_get(got, "mod_index")), 40 + i);
        assert_int_equal(json_integer_value(json_object_get(got, "version")), 2);
        char lease[8];
        snprintf(lease, sizeof lease, "%zu", i);
        assert_string_equal(json_string_value(json_object_get(got, "lease")), lease);
        json_decref(got);
        http_jbuf_free(&j);
    }
}

/* An allocator that fails from the nth call on. */
static int alloc_left = -1;
static void *fail_malloc(size_t n)
{
    return alloc_left-- == 0 ? NULL : malloc(n);
}
static void *fail_realloc(void *p, size_t n)
{
    return alloc_left-- == 0 ? NULL : realloc(p, n);
}

static void test_json_oom(void **state)
{
    struct craft_allocator a = {fail_malloc, fail_realloc, free};
    craft_set_allocator(&a);
    struct kv_meta m = meta("k", 1, "v", 1, 1);
    for (int i = 0; i < 3; i++) {
        alloc_left = i;
        struct http_jbuf j;
        http_jbuf_init(&j);
        http_jbuf_list_begin(&j, 1);
        for (int k = 0; k < 200; k++) /* grows past 256 bytes more than once */
            http_jbuf_list_key(&j, &m, false);
        http_jbuf_list_end(&j, false, &m);
        assert_true(j.failed);
        http_jbuf_free(&j);
    }
    alloc_left = -1;
    craft_set_allocator(NULL);
}

/* ---- leases ---- */

static int lease_body(const char *body, uint64_t *ttl)
{
    return http__parse_lease_body(body, strlen(body), ttl, err, sizeof err);
}

static void test_lease_requests(void **state)
{
    uint64_t ttl = 0, id;
    bool ka;
    assert_int_equal(lease_body("{\"ttl\":10}", &ttl), 0);
    assert_int_equal(ttl, 10);
    assert_int_equal(lease_body("{\"ttl\":1000000000}", &ttl), 0);
    assert_int_equal(ttl, 1000000000);
    const char *bad[] = {"", "nope", "[]", "{}", "{\"ttl\":0}", "{\"ttl\":-5}",
                         "{\"ttl\":1000000001}", "{\"ttl\":1.5}", "{\"ttl\":\"10\"}",
                         "{\"ttl\":10,\"x\":1}", "{\"ttl\":1,\"ttl\":2}", "{\"ttl\":null}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        if (lease_body(bad[i], &ttl) != -1)
            fail_msg("accepted %s", bad[i]);
        assert_true(strlen(err) > 5);
    }

    assert_int_equal(http__parse_lease_path("", 0, &id, &ka, err, 256), 0);
    assert_true(id == 0 && !ka);
    assert_int_equal(http__parse_lease_path("/42", 3, &id, &ka, err, 256), 0);
    assert_true(id == 42 && !ka);
    assert_int_equal(http__parse_lease_path("/18446744073709551615/keepalive", 31, &id, &ka,
                                            err, 256), 0);
    assert_true(id == UINT64_MAX && ka);
    const char *badp[] = {"/", "/0", "/abc", "/-1", "/01", "/4/", "/4/keep", "/4/keepalive/",
                          "/4/keepalivex", "/18446744073709551616", "x4", "//keepalive"};
    for (size_t i = 0; i < sizeof badp / sizeof badp[0]; i++)
        if (http__parse_lease_path(badp[i], strlen(badp[i]), &id, &ka, err, 256) != -1)
            fail_msg("accepted the path %s", badp[i]);

    struct http_leases_query lq;
    assert_int_equal(http__parse_leases_query("", 0, &lq, err, 256), 0);
    assert_true(lq.after == 0 && lq.limit == HTTP_LEASES_DEFAULT &&
                lq.level == HTTP_READ_LINEARIZABLE);
    const char *q = "after=17&limit=5&level=none";
    assert_int_equal(http__parse_leases_query(q, strlen(q), &lq, err, 256), 0);
    assert_true(lq.after == 17 && lq.limit == 5 && lq.level == HTTP_READ_NONE);
    const char *badq[] = {"limit=0", "limit=10001", "after=x", "level=fast", "prefix=a",
                          "limit"};
    for (size_t i = 0; i < sizeof badq / sizeof badq[0]; i++)
        if (http__parse_leases_query(badq[i], strlen(badq[i]), &lq, err, 256) != -1)
            fail_msg("accepted the query %s", badq[i]);
}

/* The query of GET /lease/<id>: after= is a key (percent-decoded, any
 * bytes), limit 1..10000 (default 1000), level; nothing else. */
static void test_parse_lease_query(void **state)
{
    (void)state;
    char buf[64];
    struct http_lease_query lq;
    assert_int_equal(http__parse_lease_query("", 0, 9, 16, buf, &lq, err, sizeof err), 0);
    assert_true(lq.id == 9 && lq.after == NULL && lq.limit == HTTP_LEASE_KEYS_DEFAULT &&
                lq.limit == 1000 && lq.level == HTTP_READ_LINEARIZABLE);
    const char *q = "after=a%2F%00b&limit=10000&level=weak";
    assert_int_equal(http__parse_lease_query(q, strlen(q), 9, 16, buf, &lq, err, sizeof err),
                     0);
    assert_true(lq.after != NULL && lq.alen == 4 && memcmp(lq.after, "a/\0b", 4) == 0);
    assert_true(lq.limit == 10000 && lq.level == HTTP_READ_WEAK);
    q = "after=";
    assert_int_equal(http__parse_lease_query(q, strlen(q), 9, 16, buf, &lq, err, sizeof err),
                     0);
    assert_true(lq.after != NULL && lq.alen == 0);
    const char *bad[] = {"limit=0", "limit=10001", "limit=x", "limit", "after=%zz",
                         "after=01234567890123456", "level=fast", "prefix=a", "afterx=1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        if (http__parse_lease_query(bad[i], strlen(bad[i]), 9, 16, buf, &lq, err,
                                    sizeof err) != -1)
            fail_msg("accepted the query %s", bad[i]);
        assert_true(strlen(err) > 5);
    }
}

static void test_json_leases(void **state)
{
    struct http_jbuf j;
    http_jbuf_init(&j);
    http_jbuf_lease(&j, 12345678901234567890u, 10);
    json_t *v = decode(&j);
    assert_string_equal(json_string_value(json_object_get(v, "id")), "12345678901234567890");
    assert_int_equal(json_integer_value(json_object_get(v, "ttl")), 10);
    assert_int_equal(json_object_size(v), 2);
    json_decref(v);
    http_jbuf_free(&j);

    /* GET /lease/<id>: keys as strings, bytes that are not UTF-8 as key_b64 */
    http_jbuf_init(&j);
    http_jbuf_lease_info_begin(&j, 7, 2, 1500);
    http_jbuf_lease_info_end(&j, false, NULL, 0);
    v = decode(&j);
    assert_int_equal(json_array_size(json_object_get(v, "keys")), 0);
    assert_int_equal(json_integer_value(json_object_get(v, "remaining_ms")), 1500);
    assert_true(json_is_false(json_object_get(v, "more")));
    assert_null(json_object_get(v, "next")); /* an empty page has no last key */
    json_decref(v);
    http_jbuf_free(&j);
    http_jbuf_init(&j);
    http_jbuf_lease_info_begin(&j, 7, 2, 0);
    http_jbuf_lease_key(&j, (const uint8_t *)"a\"b", 3);
    http_jbuf_lease_key(&j, (const uint8_t *)"\xff", 1);
    http_jbuf_lease_key(&j, (const uint8_t *)"c", 1);
    http_jbuf_lease_info_end(&j, true, (const uint8_t *)"c", 1);
    v = decode(&j);
    json_t *keys = json_object_get(v, "keys");
    assert_int_equal(json_array_size(keys), 3);
    assert_string_equal(json_string_value(json_array_get(keys, 0)), "a\"b");
    assert_string_equal(json_string_value(json_object_get(json_array_get(keys, 1), "key_b64")),
                        "/w==");
    assert_string_equal(json_string_value(json_array_get(keys, 2)), "c");
    assert_string_equal(json_string_value(json_object_get(v, "id")), "7");
    assert_true(json_is_true(json_object_get(v, "more")));
    assert_string_equal(json_string_value(json_object_get(v, "next")), "c");
    json_decref(v);
    http_jbuf_free(&j);
    /* a last key that is not UTF-8: next_b64, as GET /keys */
    http_jbuf_init(&j);
    http_jbuf_lease_info_begin(&j, 7, 2, 0);
    http_jbuf_lease_key(&j, (const uint8_t *)"\xff", 1);
    http_jbuf_lease_info_end(&j, false, (const uint8_t *)"\xff", 1);
    v = decode(&j);
    assert_string_equal(json_string_value(json_object_get(v, "next_b64")), "/w==");
    assert_null(json_object_get(v, "next"));
    json_decref(v);
    http_jbuf_free(&j);

    /* GET /leases */
    http_jbuf_init(&j);
    http_jbuf_leases_begin(&j, 99);
    http_jbuf_leases_item(&j, 3, 5);
    http_jbuf_leases_item(&j, 8, 60);
    http_jbuf_leases_end(&j, false);
    v = decode(&j);
    assert_int_equal(json_integer_value(json_object_get(v, "index")), 99);
    json_t *ls = json_object_get(v, "leases");
    assert_int_equal(json_array_size(ls), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(ls, 1), "id")), "8");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(ls, 1), "ttl")), 60);
    json_decref(v);
    http_jbuf_free(&j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64),
        cmocka_unit_test(test_txn_full),
        cmocka_unit_test(test_txn_errors),
        cmocka_unit_test(test_keys_query),
        cmocka_unit_test(test_json_meta_and_txn),
        cmocka_unit_test(test_json_list),
        cmocka_unit_test(test_jbuf_meta_round_trips),
        cmocka_unit_test(test_json_oom),
        cmocka_unit_test(test_lease_requests),
        cmocka_unit_test(test_parse_lease_query),
        cmocka_unit_test(test_json_leases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
