/* Tests of src/auth: the auth file parser (every refusal names its line),
 * password checks (unknown users cost a hash like wrong passwords), the
 * cache of good checks (hits cost no hash, bounded, expiring), the budget
 * of hash computations, the role of each route, and HTTP Basic headers
 * (malformed base64, no colon, huge values). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <crypt.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/auth.h"
#include "common/error.h"

/* A cheap SHA-512 crypt hash of pw (1000 rounds: tests stay fast). */
static const char *hash_of(const char *pw, const char *salt, char *out, size_t cap)
{
    char setting[64];
    snprintf(setting, sizeof setting, "$6$rounds=1000$%s$", salt);
    struct crypt_data cd;
    memset(&cd, 0, sizeof cd);
    const char *h = crypt_r(pw, setting, &cd);
    assert_non_null(h);
    assert_true(strlen(h) < cap);
    strcpy(out, h);
    return out;
}

static char err[512];

static struct auth_db *parse_ok(const char *text)
{
    struct auth_db *db = NULL;
    int rv = auth_db_parse(&db, text, strlen(text), err, sizeof err);
    if (rv != 0)
        fail_msg("parse failed: %s", err);
    return db;
}

static void parse_bad(const char *text, const char *want)
{
    struct auth_db *db = (struct auth_db *)1;
    assert_int_equal(auth_db_parse(&db, text, strlen(text), err, sizeof err), CRAFT_EINVAL);
    assert_null(db);
    if (strstr(err, want) == NULL)
        fail_msg("error \"%s\" does not contain \"%s\"", err, want);
}

/* "alice:<hash of pw-a>:read\n..." with three users. */
static char three[2048];

static int setup(void **state)
{
    char ha[200], hb[200], hc[200];
    snprintf(three, sizeof three,
             "# users of craftd\r\n\n   \nalice:%s:read\r\nbob:%s:write\n# admin\ncarol:%s:admin",
             hash_of("pw-a", "saltA", ha, sizeof ha), hash_of("pw-b", "saltB", hb, sizeof hb),
             hash_of("pw:c", "saltC", hc, sizeof hc));
    return 0;
}

static void test_parse_good(void **state)
{
    struct auth_db *db = parse_ok(three);
    assert_int_equal(auth_db_count(db), 3);
    assert_int_equal(auth_db_check(db, "alice", 5, "pw-a", 4, 1000), AUTH_READ);
    assert_int_equal(auth_db_check(db, "bob", 3, "pw-b", 4, 1000), AUTH_WRITE);
    assert_int_equal(auth_db_check(db, "carol", 5, "pw:c", 4, 1000), AUTH_ADMIN);
    auth_db_free(db);
}

static void test_parse_errors(void **state)
{
    char h[200], text[1024];
    hash_of("x", "s", h, sizeof h);
    parse_bad("", "no users");
    parse_bad("# only a comment\n\n", "no users");
    snprintf(text, sizeof text, "# c\nalice:%s\n", h);
    parse_bad(text, "line 2: expected user:crypt-hash:role");
    snprintf(text, sizeof text, "alice:%s:read:extra\n", h);
    parse_bad(text, "line 1: expected user:crypt-hash:role");
    snprintf(text, sizeof text, "\n\n:%s:read\n", h);
    parse_bad(text, "line 3: empty user name");
    snprintf(text, sizeof text, "al ice:%s:read\n", h);
    parse_bad(text, "line 1: user name with a space");
    snprintf(text, sizeof text, "alice:%s:root\n", h);
    parse_bad(text, "line 1: unknown role \"root\"");
    snprintf(text, sizeof text, "alice:%s:Read\n", h);
    parse_bad(text, "unknown role");
    snprintf(text, sizeof text, "alice:%s:read\nalice:%s:write\n", h, h);
    parse_bad(text, "line 2: duplicate user \"alice\"");
    parse_bad("alice:plaintext:read\n", "line 1: malformed hash");
    parse_bad("alice::read\n", "line 1: malformed hash");
    parse_bad("alice:$6$salt$bad hash:read\n", "malformed hash");
    parse_bad("alice:abJnggxhB/yWI:read\n", "malformed hash"); /* DES: no '$' */
    parse_bad("alice:$1$saltsalt$qjXMvbEw8oaL.CzflDugX/:read\n", "too weak");
    /* a SHA-512 hash cut short never matches anything: refused */
    char cut[200];
    snprintf(cut, sizeof cut, "%.*s", (int)strlen(h) - 5, h);
    snprintf(text, sizeof text, "alice:%s:read\n", cut);
    parse_bad(text, "line 1: malformed hash");
    /* a NUL byte inside a line */
    char nul[64] = "alice:$6$a\0b:read\n";
    struct auth_db *db = NULL;
    assert_int_equal(auth_db_parse(&db, nul, 19, err, sizeof err), CRAFT_EINVAL);
    assert_non_null(strstr(err, "line 1: NUL byte"));
    /* the first bad line is the one named */
    snprintf(text, sizeof text, "alice:%s:read\nbob:%s:write\nbad\nworse:x\n", h, h);
    parse_bad(text, "line 3:");
}

static void test_check_costs(void **state)
{
    struct auth_db *db = parse_ok(three);
    uint64_t t = 5000;
    uint64_t h0 = auth_db_hash_count(db);
    /* wrong password and unknown user: refused, one hash each */
    assert_int_equal(auth_db_check(db, "alice", 5, "nope", 4, t), AUTH_BAD);
    assert_int_equal(auth_db_hash_count(db), h0 + 1);
    assert_int_equal(auth_db_check(db, "mallory", 7, "pw-a", 4, t), AUTH_BAD);
    assert_int_equal(auth_db_hash_count(db), h0 + 2);
    /* another user's password, a prefix of the name, a NUL in the password */
    assert_int_equal(auth_db_check(db, "alice", 5, "pw-b", 4, t), AUTH_BAD);
    assert_int_equal(auth_db_check(db, "alic", 4, "pw-a", 4, t), AUTH_BAD);
    assert_int_equal(auth_db_check(db, "alice", 5, "pw-a\0x", 6, t), AUTH_BAD);
    assert_int_equal(auth_db_check(db, "alice", 5, "", 0, t), AUTH_BAD);
    assert_int_equal(auth_db_hash_count(db), h0 + 6);
    /* wrong ones are never cached: the same one costs a hash again */
    assert_int_equal(auth_db_check(db, "alice", 5, "nope", 4, t + 1000), AUTH_BAD);
    assert_int_equal(auth_db_hash_count(db), h0 + 7);
    auth_db_free(db);
}

static void test_cache(void **state)
{
    struct auth_db *db = parse_ok(three);
    uint64_t t = 1000;
    uint64_t h0 = auth_db_hash_count(db);
    assert_int_equal(auth_db_check(db, "bob", 3, "pw-b", 4, t), AUTH_WRITE);
    assert_int_equal(auth_db_hash_count(db), h0 + 1);
    for (int i = 0; i < 100; i++)
        assert_int_equal(auth_db_check(db, "bob", 3, "pw-b", 4, t + (uint64_t)i), AUTH_WRITE);
    assert_int_equal(auth_db_hash_count(db), h0 + 1);
    /* a cached good check does not let a wrong password through */
    assert_int_equal(auth_db_check(db, "bob", 3, "pw-B", 4, t), AUTH_BAD);
    /* ... nor another user with the same password */
    assert_int_equal(auth_db_check(db, "alice", 5, "pw-b", 4, t), AUTH_BAD);
    uint64_t h1 = auth_db_hash_count(db);
    /* it expires */
    assert_int_equal(auth_db_check(db, "bob", 3, "pw-b", 4, t + AUTH_CACHE_MS - 1), AUTH_WRITE);
    assert_int_equal(auth_db_hash_count(db), h1);
    assert_int_equal(auth_db_check(db, "bob", 3, "pw-b", 4, t + AUTH_CACHE_MS + 1), AUTH_WRITE);
    assert_int_equal(auth_db_hash_count(db), h1 + 1);
    auth_db_free(db);
}

/* More good users than cache slots: the oldest entry is replaced. */
static void test_cache_bounded(void **state)
{
    enum { N = AUTH_CACHE_SLOTS + 6 };
    size_t cap = (size_t)N * 200;
    char *text = malloc(cap);
    size_t len = 0;
    for (int i = 0; i < N; i++) {
        char h[200], pw[16], salt[16];
        snprintf(pw, sizeof pw, "pw%d", i);
        snprintf(salt, sizeof salt, "s%d", i);
        len += (size_t)snprintf(text + len, cap - len, "u%d:%s:read\n", i,
                                hash_of(pw, salt, h, sizeof h));
    }
    struct auth_db *db = parse_ok(text);
    free(text);
    assert_int_equal(auth_db_count(db), N);
    uint64_t t = 1000;
    for (int i = 0; i < N; i++) {
        char u[16], pw[16];
        snprintf(u, sizeof u, "u%d", i);
        snprintf(pw, sizeof pw, "pw%d", i);
        /* one ms apart, slowly enough for the budget to refill */
        t += AUTH_HASH_PERIOD_MS;
        assert_int_equal(auth_db_check(db, u, strlen(u), pw, strlen(pw), t), AUTH_READ);
    }
    uint64_t h = auth_db_hash_count(db);
    /* the newest are cached, the first ones were replaced */
    assert_int_equal(auth_db_check(db, "u69", 3, "pw69", 4, t), AUTH_READ);
    assert_int_equal(auth_db_hash_count(db), h);
    assert_int_equal(auth_db_check(db, "u0", 2, "pw0", 3, t + AUTH_HASH_PERIOD_MS), AUTH_READ);
    assert_int_equal(auth_db_hash_count(db), h + 1);
    auth_db_free(db);
}

static void test_budget(void **state)
{
    struct auth_db *db = parse_ok(three);
    uint64_t t = 1000;
    assert_int_equal(auth_db_check(db, "carol", 5, "pw:c", 4, t), AUTH_ADMIN); /* cached */
    for (int i = 1; i < AUTH_HASH_BURST; i++)
        assert_int_equal(auth_db_check(db, "alice", 5, "wrong", 5, t), AUTH_BAD);
    uint64_t h = auth_db_hash_count(db);
    /* spent: no hash is computed, not even for a right password */
    assert_int_equal(auth_db_check(db, "alice", 5, "wrong", 5, t), AUTH_BUSY);
    assert_int_equal(auth_db_check(db, "bob", 3, "pw-b", 4, t), AUTH_BUSY);
    assert_int_equal(auth_db_hash_count(db), h);
    /* cached good checks still pass */
    assert_int_equal(auth_db_check(db, "carol", 5, "pw:c", 4, t), AUTH_ADMIN);
    /* one more per period */
    assert_int_equal(auth_db_check(db, "bob", 3, "pw-b", 4, t + AUTH_HASH_PERIOD_MS), AUTH_WRITE);
    assert_int_equal(auth_db_check(db, "alice", 5, "pw-a", 4, t + AUTH_HASH_PERIOD_MS),
                     AUTH_BUSY);
    assert_int_equal(auth_db_hash_count(db), h + 1);
    auth_db_free(db);
}

static void test_load(void **state)
{
    char path[] = "/tmp/craftd-test-auth-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, three, strlen(three)), (ssize_t)strlen(three));
    close(fd);
    char warn[200];
    struct auth_db *db = NULL;
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(auth_db_load(&db, path, err, sizeof err, warn, sizeof warn), 0);
    assert_string_equal(warn, "");
    assert_int_equal(auth_db_count(db), 3);
    auth_db_free(db);
    /* readable by others: loaded, with a warning */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(auth_db_load(&db, path, err, sizeof err, warn, sizeof warn), 0);
    assert_non_null(strstr(warn, "group or others may read or change it"));
    auth_db_free(db);
    unlink(path);
    assert_int_equal(auth_db_load(&db, path, err, sizeof err, warn, sizeof warn), -ENOENT);
    assert_null(db);
    assert_int_equal(auth_db_load(&db, "/tmp", err, sizeof err, warn, sizeof warn),
                     CRAFT_EINVAL);
    assert_non_null(strstr(err, "not a regular file"));
}

static int role(const char *m, const char *p)
{
    return auth_route_role(m, strlen(m), p, strlen(p));
}

static void test_route_roles(void **state)
{
    assert_int_equal(role("GET", "/livez"), AUTH_OPEN);
    assert_int_equal(role("GET", "/readyz"), AUTH_OPEN);
    assert_int_equal(role("GET", "/key/a"), AUTH_READ);
    assert_int_equal(role("HEAD", "/key/a"), AUTH_READ);
    assert_int_equal(role("GET", "/keys"), AUTH_READ);
    assert_int_equal(role("GET", "/status"), AUTH_READ);
    assert_int_equal(role("GET", "/watch"), AUTH_READ);
    assert_int_equal(role("POST", "/key"), AUTH_WRITE);
    assert_int_equal(role("POST", "/key/"), AUTH_WRITE);
    assert_int_equal(role("DELETE", "/key/a"), AUTH_WRITE);
    assert_int_equal(role("PUT", "/key/a"), AUTH_WRITE);
    assert_int_equal(role("POST", "/txn"), AUTH_WRITE);
    assert_int_equal(role("POST", "/lease"), AUTH_WRITE);
    assert_int_equal(role("POST", "/lease/7/keepalive"), AUTH_WRITE);
    assert_int_equal(role("DELETE", "/lease/7"), AUTH_WRITE);
    assert_int_equal(role("GET", "/lease/7"), AUTH_READ);
    assert_int_equal(role("GET", "/leases"), AUTH_READ);
    assert_int_equal(role("POST", "/leases"), AUTH_WRITE);
    assert_int_equal(role("POST", "/join"), AUTH_ADMIN);
    assert_int_equal(role("GET", "/join"), AUTH_ADMIN);
    assert_int_equal(role("POST", "/remove"), AUTH_ADMIN);
    assert_int_equal(role("POST", "/transfer"), AUTH_ADMIN);
    assert_int_equal(role("GET", "/backup"), AUTH_ADMIN);
    assert_int_equal(role("GET", "/metrics"), AUTH_ADMIN);
    /* look-alikes are not the open routes, and unknown paths need a user */
    assert_int_equal(role("GET", "/livez/x"), AUTH_READ);
    assert_int_equal(role("GET", "/livezz"), AUTH_READ);
    assert_int_equal(role("POST", "/keyfoo"), AUTH_READ);
    assert_int_equal(role("GET", "/"), AUTH_READ);
    assert_string_equal(auth_role_name(AUTH_WRITE), "write");
    assert_string_equal(auth_role_name(AUTH_ADMIN), "admin");
}

static int basic(const char *hdr, char *buf, size_t cap, const char **u, size_t *ul,
                 const char **p, size_t *pl)
{
    return auth_parse_basic(hdr, strlen(hdr), buf, cap, u, ul, p, pl);
}

static void test_basic_header(void **state)
{
    char buf[256];
    const char *u, *p;
    size_t ul, pl;
    /* "alice:pw-a" */
    assert_int_equal(basic("Basic YWxpY2U6cHctYQ==", buf, sizeof buf, &u, &ul, &p, &pl), 0);
    assert_int_equal(ul, 5);
    assert_memory_equal(u, "alice", 5);
    assert_int_equal(pl, 4);
    assert_memory_equal(p, "pw-a", 4);
    assert_int_equal(basic("basic   YWxpY2U6cHctYQ==  ", buf, sizeof buf, &u, &ul, &p, &pl), 0);
    assert_int_equal(basic("BASIC YWxpY2U6cHctYQ==", buf, sizeof buf, &u, &ul, &p, &pl), 0);
    /* "a:b:c": the password is everything after the first colon */
    assert_int_equal(basic("Basic YTpiOmM=", buf, sizeof buf, &u, &ul, &p, &pl), 0);
    assert_int_equal(ul, 1);
    assert_int_equal(pl, 3);
    assert_memory_equal(p, "b:c", 3);
    /* "a:" : an empty password is well-formed (and never matches) */
    assert_int_equal(basic("Basic YTo=", buf, sizeof buf, &u, &ul, &p, &pl), 0);
    assert_int_equal(pl, 0);
    /* malformed */
    static const char *const bad[] = {
        "",                          /* nothing */
        "Basic",                     /* no credentials */
        "Basic ",                    /* empty */
        "Bearer YWxpY2U6cHctYQ==",   /* another scheme */
        "BasicYWxpY2U6cHctYQ==",     /* no space */
        "Basic YWxpY2U6cHctYQ",      /* no padding */
        "Basic YWxpY2U6cHctYQ=",     /* length not a multiple of 4 */
        "Basic YWxp Y2U6cHctYQ==",   /* a space inside */
        "Basic YWxpY2U6cHctYQ=a",    /* padding not at the end */
        "Basic YWxpY2U6cHctYR==",    /* bits after the last byte */
        "Basic YWxpY2U6cHct!Q==",    /* not base64 */
        "Basic ====",                /* only padding */
        "Basic YWxpY2U=",            /* "alice": no colon */
        "Basic OnB3",                /* ":pw": empty user */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (basic(bad[i], buf, sizeof buf, &u, &ul, &p, &pl) != -1)
            fail_msg("accepted \"%s\"", bad[i]);
    /* a huge header: its decoded bytes do not fit, refused, nothing written past cap */
    size_t n = 1 << 20;
    char *huge = malloc(6 + n + 1);
    memcpy(huge, "Basic ", 6);
    for (size_t i = 0; i < n; i += 4)
        memcpy(huge + 6 + i, "YTpi", 4);
    huge[6 + n] = 0;
    char small[64 + 8];
    memset(small, 0x5a, sizeof small);
    assert_int_equal(auth_parse_basic(huge, 6 + n, small, 64, &u, &ul, &p, &pl), -1);
    for (size_t i = 64; i < sizeof small; i++)
        assert_int_equal((unsigned char)small[i], 0x5a);
    free(huge);
}

static void test_basic_roundtrip(void **state)
{
    char hdr[128], buf[128];
    const char *u, *p;
    size_t ul, pl;
    const char *creds[] = {"a:b", "admin:a-pass", "u:p:with:colons", "x:", "\xc3\xa9t\xc3\xa9:ok"};
    for (size_t i = 0; i < sizeof creds / sizeof creds[0]; i++) {
        assert_int_equal(auth_basic_header(creds[i], hdr, sizeof hdr), 0);
        assert_int_equal(basic(hdr, buf, sizeof buf, &u, &ul, &p, &pl), 0);
        const char *colon = strchr(creds[i], ':');
        assert_int_equal(ul, (size_t)(colon - creds[i]));
        assert_memory_equal(u, creds[i], ul);
        assert_int_equal(pl, strlen(colon + 1));
        assert_memory_equal(p, colon + 1, pl);
    }
    assert_int_equal(auth_basic_header("abcdef:ghijkl", hdr, 10), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_parse_good, setup),
        cmocka_unit_test_setup(test_parse_errors, setup),
        cmocka_unit_test_setup(test_check_costs, setup),
        cmocka_unit_test_setup(test_cache, setup),
        cmocka_unit_test_setup(test_cache_bounded, setup),
        cmocka_unit_test_setup(test_budget, setup),
        cmocka_unit_test_setup(test_load, setup),
        cmocka_unit_test(test_route_roles),
        cmocka_unit_test(test_basic_header),
        cmocka_unit_test(test_basic_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
