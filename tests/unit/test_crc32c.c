/* Unit tests for CRC32C (src/common/crc32c.c): known vectors, chaining, and
 * the SSE4.2 path agreeing with the table at every length and alignment. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/crc32c.h"

/* RFC 3720 (iSCSI) B.4 and the usual "123456789" check value. */
static void test_vectors(void **state)
{
    (void)state;
    uint8_t buf[32];
    assert_int_equal(crc32c(0, "123456789", 9), 0xe3069283u);
    assert_int_equal(crc32c_sw(0, "123456789", 9), 0xe3069283u);
    assert_int_equal(crc32c(0, "", 0), 0);
    memset(buf, 0, sizeof buf);
    assert_int_equal(crc32c(0, buf, 32), 0x8a9136aau);
    memset(buf, 0xff, sizeof buf);
    assert_int_equal(crc32c(0, buf, 32), 0x62a8ab43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    assert_int_equal(crc32c(0, buf, 32), 0x46dd794eu);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    assert_int_equal(crc32c(0, buf, 32), 0x113fdb5cu);
}

static void test_chaining(void **state)
{
    (void)state;
    const char *s = "The quick brown fox jumps over the lazy dog";
    size_t n = strlen(s);
    uint32_t whole = crc32c(0, s, n);
    for (size_t cut = 0; cut <= n; cut++)
        assert_int_equal(crc32c(crc32c(0, s, cut), s + cut, n - cut), whole);
    assert_int_equal(whole, 0x22620404u);
}

static void test_hw_matches_sw(void **state)
{
    (void)state;
    if (!crc32c_hw_available())
        skip();
    uint8_t buf[300];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof buf; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16);
    }
    for (size_t off = 0; off < 8; off++)
        for (size_t len = 0; len + off <= sizeof buf; len++)
            assert_int_equal(crc32c_hw(7, buf + off, len),
                             crc32c_sw(7, buf + off, len));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_chaining),
        cmocka_unit_test(test_hw_matches_sw),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
