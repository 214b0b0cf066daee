/* A libuv loop for unit tests of the peer transport: the loop, a logger
 * that captures every line into a buffer (and echoes it to stderr when
 * TRANSPORT_VERBOSE is set), and bounded runs of the loop. Each wait is
 * bounded by a uv timer, so that a test that fails does not hang. */
#ifndef CRAFT_TEST_UV_ENV_H
#define CRAFT_TEST_UV_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/log.h"

struct uvenv_log {
    /* every line logged, as "LEVEL message\n"; cut off when full */
    char text[65536];
    size_t len;
    unsigned warns; /* lines at CRAFT_LOG_WARN or above */
};

struct uvenv {
    uv_loop_t loop;
    struct uvenv_log lb;
    struct craft_logger log; /* writes into lb */
};

/* Allocate (calloc, not the craft allocator) and open an env; NULL on
 * failure. uvenv_free closes the loop (reporting any handle left open on
 * stderr) and frees the env; it returns uv_loop_close's result. */
struct uvenv *uvenv_new(void);
int uvenv_free(struct uvenv *e);

/* cmocka setup/teardown: *state is a new env; teardown asserts that every
 * handle was closed. */
int uvenv_setup(void **state);
int uvenv_teardown(void **state);

/* Run the loop until cond(arg) holds or ms pass; true if cond held. */
bool uvenv_run_until(struct uvenv *e, bool (*cond)(void *), void *arg,
                     unsigned ms);
/* Run the loop until *count >= want or ms pass; true if it got there. */
bool uvenv_run_until_count(struct uvenv *e, const unsigned *count,
                           unsigned want, unsigned ms);
/* Let the loop run for ms (to show that something does NOT happen). */
void uvenv_run_for(struct uvenv *e, unsigned ms);
/* A cond for uvenv_run_until: *(bool *)arg. */
bool uvenv_is_true(void *arg);

/* How many times what stands in the captured log. */
unsigned uvenv_count(const struct uvenv *e, const char *what);

/* One UDP datagram to 127.0.0.1:port from a socket of the test's own (a
 * stranger to the transport under test); asserts that it went out. */
void uvenv_udp_send(uint16_t port, const void *buf, size_t len);

/* The datagram of d and payload under key (a raw datagram key, made up or
 * taken from a transport) into out: peer__dgram_encode with a context of
 * its own. Its length; asserts that one could be made. */
struct peer__dgram;
size_t uvenv_dgram_encode(uint8_t *out, const struct peer__dgram *d,
                          const uint8_t *payload, size_t len,
                          const uint8_t *key);

#endif
