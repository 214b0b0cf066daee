/* The libuv loop, captured log and bounded loop runs shared by the
 * transport unit tests (uv_env.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport/internal.h"
#include "unit/uv_env.h"

static void log_sink(void *ud, int level, const char *msg)
{
    struct uvenv_log *lb = ud;
    if (level >= CRAFT_LOG_WARN)
        lb->warns++;
    int n = snprintf(lb->text + lb->len, sizeof lb->text - lb->len, "%s %s\n",
                     craft_log_level_name(level), msg);
    if (n > 0 && lb->len + (size_t)n < sizeof lb->text)
        lb->len += (size_t)n;
    if (getenv("TRANSPORT_VERBOSE"))
        fprintf(stderr, "%s %s\n", craft_log_level_name(level), msg);
}

struct uvenv *uvenv_new(void)
{
    struct uvenv *e = calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    if (uv_loop_init(&e->loop) != 0) {
        free(e);
        return NULL;
    }
    e->log.fn = log_sink;
    e->log.ud = &e->lb;
    e->log.min_level = CRAFT_LOG_DEBUG;
    return e;
}

static void walk_cb(uv_handle_t *h, void *arg)
{
    fprintf(stderr, "leftover handle type %d\n", (int)h->type);
}

int uvenv_free(struct uvenv *e)
{
    uv_run(&e->loop, UV_RUN_NOWAIT);
    int rc = uv_loop_close(&e->loop);
    if (rc != 0)
        uv_walk(&e->loop, walk_cb, NULL);
    free(e);
    return rc;
}

int uvenv_setup(void **state)
{
    struct uvenv *e = uvenv_new();
    assert_non_null(e);
    *state = e;
    return 0;
}

int uvenv_teardown(void **state)
{
    assert_int_equal(uvenv_free(*state), 0); /* every handle closed */
    return 0;
}

static void on_deadline(uv_timer_t *h)
{
    *(bool *)h->data = true;
}

bool uvenv_run_until(struct uvenv *e, bool (*cond)(void *), void *arg,
                     unsigned ms)
{
    uv_timer_t deadline;
    bool expired = false;
    uv_timer_init(&e->loop, &deadline);
    deadline.data = &expired;
    uv_timer_start(&deadline, on_deadline, ms, 0);
    while (!cond(arg) && !expired)
        uv_run(&e->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&deadline, NULL);
    uv_run(&e->loop, UV_RUN_NOWAIT);
    return cond(arg);
}

struct reached {
    const unsigned *count;
    unsigned want;
};

static bool count_reached(void *arg)
{
    const struct reached *r = arg;
    return *r->count >= r->want;
}

bool uvenv_run_until_count(struct uvenv *e, const unsigned *count,
                           unsigned want, unsigned ms)
{
    struct reached r = {count, want};
    return uvenv_run_until(e, count_reached, &r, ms);
}

static bool never(void *arg)
{
    return false;
}

void uvenv_run_for(struct uvenv *e, unsigned ms)
{
    uvenv_run_until(e, never, NULL, ms);
}

bool uvenv_is_true(void *arg)
{
    return *(bool *)arg;
}

unsigned uvenv_count(const struct uvenv *e, const char *what)
{
    unsigned n = 0;
    for (const char *p = e->lb.text; (p = strstr(p, what)) != NULL; p++)
        n++;
    return n;
}

void uvenv_udp_send(uint16_t port, const void *buf, size_t len)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(sendto(fd, buf, len, 0, (struct sockaddr *)&sa, sizeof sa),
                     (ssize_t)len);
    close(fd);
}

size_t uvenv_dgram_encode(uint8_t *out, const struct peer__dgram *d,
                          const uint8_t *payload, size_t len,
                          const uint8_t *key)
{
    struct peer__dgmac *m = peer__dgmac_new(key);
    assert_non_null(m);
    size_t n = peer__dgram_encode(out, d, payload, len, m);
    peer__dgmac_free(m);
    return n;
}
