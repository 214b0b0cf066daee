/* Tests of the peer transport (src/transport/): address parsing and the
 * wire codec in isolation, then real transports on one uv loop talking over
 * 127.0.0.1 with ephemeral ports. Every wait is bounded by a uv timer, and
 * every test ends with an empty loop and no live allocation. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/crc32c.h"
#include "common/endian.h"
#include "common/error.h"
#include "transport/internal.h"
#include "unit/uv_env.h"

#define WAIT_MS 10000

/* ---- counting allocator (fails on demand) ---- */

static long live_blocks;
static long fail_in = -1; /* fail the allocation after this many; -1 never */

static bool should_fail(void)
{
    if (fail_in < 0)
        return false;
    return fail_in-- == 0;
}

static void *t_malloc(size_t n)
{
    if (should_fail())
        return NULL;
    void *p = malloc(n);
    if (p)
        live_blocks++;
    return p;
}

static void *t_realloc(void *p, size_t n)
{
    if (p == NULL)
        return t_malloc(n);
    if (should_fail())
        return NULL;
    return realloc(p, n);
}

static void t_free(void *p)
{
    if (p)
        live_blocks--;
    free(p);
}

static const struct craft_allocator counting = {t_malloc, t_realloc, t_free};

/* ---- the loop (uv_env.h), with the allocator installed ---- */

static int setup(void **state)
{
    craft_set_allocator(&counting);
    live_blocks = 0;
    fail_in = -1;
    return uvenv_setup(state);
}

static int teardown(void **state)
{
    int rc = uvenv_free(*state);
    long live = live_blocks;
    craft_set_allocator(NULL);
    assert_int_equal(rc, 0);    /* every handle closed */
    assert_int_equal(live, 0);  /* every block freed */
    return 0;
}

/* ---- a node: a transport plus what it received ---- */

#define MAX_ID 16

struct rx {
    uint64_t count[MAX_ID];
    uint64_t next_seq[MAX_ID];
    uint64_t bytes;
    unsigned bad;      /* wrong sender, content, or order */
    bool gaps_ok;      /* sequence must increase but may skip */
    uint8_t *seen;     /* non-NULL: frames may come twice, in any order;
                          seen[seq] counts them (seq < seen_cap) */
    size_t seen_cap;
    uint64_t dups;     /* with seen: arrivals of a seq already seen */
    unsigned refused_in, refused_out; /* on_refused calls, by side */
    struct peer_refusal last_in, last_out; /* (addr not kept) */
    char last_in_addr[80];
};

struct node {
    struct uvenv *e;
    struct peer_transport *t;
    uint64_t id;
    uint16_t port;
    struct rx rx;
};

/* Payload: u64 seq, u64 sender, then bytes (uint8_t)(seq + i). */
static size_t make_frame(uint8_t *buf, size_t len, uint64_t seq, uint64_t from)
{
    craft_put64(buf, seq);
    craft_put64(buf + 8, from);
    for (size_t i = 16; i < len; i++)
        buf[i] = (uint8_t)(seq + i);
    return len;
}

static void on_frame(void *ud, uint64_t from, const uint8_t *buf, size_t len)
{
    struct rx *rx = ud;
    if (from >= MAX_ID || len < 16 || craft_get64(buf + 8) != from) {
        rx->bad++;
        return;
    }
    uint64_t seq = craft_get64(buf);
    for (size_t i = 16; i < len; i++)
        if (buf[i] != (uint8_t)(seq + i)) {
            rx->bad++;
            return;
        }
    if (rx->seen != NULL) {
        if (seq >= rx->seen_cap) {
            rx->bad++;
        } else if (rx->seen[seq]++ > 0) {
            rx->dups++;
        } else {
            rx->count[from]++;
            rx->bytes += len;
        }
        return;
    }
    if (rx->gaps_ok ? seq < rx->next_seq[from] : seq != rx->next_seq[from])
        rx->bad++;
    rx->next_seq[from] = seq + 1;
    rx->count[from]++;
    rx->bytes += len;
}

static void on_refused(void *ud, const struct peer_refusal *r)
{
    struct rx *rx = ud;
    if (r->inbound) {
        rx->refused_in++;
        rx->last_in = *r;
        snprintf(rx->last_in_addr, sizeof rx->last_in_addr, "%s", r->addr);
        rx->last_in.addr = NULL;
    } else {
        rx->refused_out++;
        rx->last_out = *r;
        rx->last_out.addr = NULL;
    }
}

static struct peer_opts node_opts(struct node *n, const char *listen)
{
    struct peer_opts o;
    memset(&o, 0, sizeof o);
    o.loop = &n->e->loop;
    o.listen_addr = listen;
    o.self_id = n->id;
    o.backoff_min_ms = 10;
    o.backoff_max_ms = 100;
    o.connect_timeout_ms = 1000;
    o.seed = 42;
    o.log = &n->e->log;
    o.on_frame = on_frame;
    o.on_refused = on_refused;
    o.ud = &n->rx;
    return o;
}

static void node_start_opts(struct node *n, struct uvenv *e, uint64_t id,
                            struct peer_opts *o)
{
    n->e = e;
    n->id = id;
    o->self_id = id;
    o->loop = &e->loop;
    o->log = &e->log;
    o->ud = &n->rx;
    assert_int_equal(peer_transport_start(&n->t, o), 0);
    n->port = peer_transport_port(n->t);
    if (o->listen_addr != NULL)
        assert_int_not_equal(n->port, 0);
}

static void node_start(struct node *n, struct uvenv *e, uint64_t id,
                       const char *listen)
{
    memset(n, 0, sizeof *n);
    n->e = e;
    n->id = id;
    struct peer_opts o = node_opts(n, listen);
    node_start_opts(n, e, id, &o);
}

static void set_flag(void *ud)
{
    *(bool *)ud = true;
}

static void node_close(struct node *n)
{
    bool done = false;
    peer_transport_close(n->t, set_flag, &done);
    assert_true(uvenv_run_until(n->e, uvenv_is_true, &done, WAIT_MS));
    n->t = NULL;
}

static void link_to(struct node *from, const struct node *to)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", to->port);
    assert_int_equal(peer_set(from->t, to->id, 0, addr), 0);
}

/* Nodes 1 and 2 on ephemeral ports, each the other's peer. */
static void start_pair(struct uvenv *e, struct node *a, struct node *b)
{
    node_start(a, e, 1, "127.0.0.1:0");
    node_start(b, e, 2, "127.0.0.1:0");
    link_to(a, b);
    link_to(b, a);
}

struct want {
    const struct rx *rx;
    uint64_t from;
    uint64_t count;
};

static bool got_count(void *arg)
{
    const struct want *w = arg;
    return w->rx->count[w->from] >= w->count;
}

static void expect_frames(struct node *to, uint64_t from, uint64_t count)
{
    struct want w = {&to->rx, from, count};
    assert_true(uvenv_run_until(to->e, got_count, &w, WAIT_MS));
    assert_int_equal(to->rx.count[from], count);
}

static void send_seq(struct node *from, uint64_t to, uint64_t first,
                     uint64_t n, size_t len)
{
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    for (uint64_t s = first; s < first + n; s++) {
        make_frame(buf, len, s, from->id);
        assert_int_equal(peer_send(from->t, to, buf, len), 0);
    }
    free(buf);
}

/* ---- pure parts ---- */

static void test_parse_addr(void **state)
{
    char host[16];
    uint16_t port = 1;
    assert_int_equal(peer_parse_addr("localhost:12001", host, sizeof host,
                                     &port), 0);
    assert_string_equal(host, "localhost");
    assert_int_equal(port, 12001);
    assert_int_equal(peer_parse_addr(":11000", host, sizeof host, &port), 0);
    assert_string_equal(host, "");
    assert_int_equal(port, 11000);
    assert_int_equal(peer_parse_addr("[::1]:0", host, sizeof host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 0);
    assert_int_equal(peer_parse_addr("127.0.0.1:65535", host, sizeof host,
                                     &port), 0);
    assert_int_equal(port, 65535);

    static const char *const bad[] = {
        "", "localhost", "host:", "host:65536", "host:-1", "host:12a",
        "host:123456", "::1:80", "[::1]80", "[]:80", "[::1:80", "h: 80",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(peer_parse_addr(bad[i], host, sizeof host, &port),
                         CRAFT_EINVAL);
    assert_int_equal(peer_parse_addr("a-very-long-host-name:1", host,
                                     sizeof host, &port), CRAFT_ETOOBIG);
    assert_int_equal(peer_parse_addr(NULL, host, sizeof host, &port),
                     CRAFT_EINVAL);
}

static void test_wire(void **state)
{
    uint8_t hello[PEER__HELLO_LEN];
    struct peer__hello h = {.version = PEER__VERSION,
                            .sender = 0x1122334455667788ull,
                            .cluster = 0xc1c1c1c1c1c1c1c1ull,
                            .target = 0x99,
                            .target_tag = 0x7a7a},
                       got;
    unsigned version = 0;
    peer__hello_encode(hello, &h);
    assert_memory_equal(hello, "CRFT", 4);
    assert_int_equal(craft_get16(hello + 4), 2);
    assert_int_equal(peer__hello_decode(hello, sizeof hello, &got, &version),
                     0);
    assert_true(got.sender == h.sender && got.cluster == h.cluster &&
                got.target == h.target && got.target_tag == h.target_tag);
    /* Every prefix is "not yet" (magic and version checked as they come). */
    for (size_t n = 0; n < sizeof hello; n++)
        assert_int_equal(peer__hello_decode(hello, n, &got, NULL),
                         CRAFT_ETRUNCATED);
    /* Every bit flip is caught: magic, version or CRC (2 -> 3 makes it
     * the prefix of a longer v3 hello: not there yet). */
    for (size_t i = 0; i < sizeof hello * 8; i++) {
        hello[i / 8] ^= (uint8_t)(1u << (i % 8));
        int rv = peer__hello_decode(hello, sizeof hello, &got, NULL);
        assert_true(rv == CRAFT_ECORRUPT || rv == CRAFT_EVERSION ||
                    (i == 32 && rv == CRAFT_ETRUNCATED));
        hello[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    hello[0] = 'X';
    assert_int_equal(peer__hello_decode(hello, 4, &got, NULL), CRAFT_ECORRUPT);
    hello[0] = 'C';
    /* The handshake before identities (version 1, 20 bytes) is told
     * apart as soon as its version is there. */
    craft_put16(hello + 4, 1);
    assert_int_equal(peer__hello_decode(hello, 6, &got, &version),
                     CRAFT_EVERSION);
    assert_int_equal(version, 1);
    craft_put16(hello + 4, 4); /* a future version, valid CRC */
    craft_put32(hello + 40, crc32c(0, hello, 40));
    assert_int_equal(peer__hello_decode(hello, sizeof hello, &got, &version),
                     CRAFT_EVERSION);
    assert_int_equal(version, 4);

    uint8_t no[PEER__REFUSAL_LEN];
    struct peer__refusal_rec r = {.reason = PEER_REFUSED_TARGET, .id = 5,
                                  .cluster = 6, .tag = 7},
                             rg;
    peer__refusal_encode(no, &r);
    assert_memory_equal(no, "CRNO", 4);
    assert_int_equal(peer__refusal_decode(no, &rg), 0);
    assert_true(rg.reason == r.reason && rg.id == 5 && rg.cluster == 6 &&
                rg.tag == 7);
    for (size_t i = 0; i < sizeof no * 8; i++) {
        no[i / 8] ^= (uint8_t)(1u << (i % 8));
        assert_int_equal(peer__refusal_decode(no, &rg), CRAFT_ECORRUPT);
        no[i / 8] ^= (uint8_t)(1u << (i % 8));
    }

    uint8_t f[PEER__FRAME_HDR + 5];
    uint32_t len = 99;
    memcpy(f + PEER__FRAME_HDR, "hello", 5);
    peer__frame_header(f, f + PEER__FRAME_HDR, 5);
    assert_int_equal(craft_get32(f), 5);
    assert_int_equal(peer__frame_next(f, sizeof f, 16, &len), 0);
    assert_int_equal(len, 5);
    assert_int_equal(peer__frame_next(f, 7, 16, &len), CRAFT_ETRUNCATED);
    assert_int_equal(len, 0);
    assert_int_equal(peer__frame_next(f, 12, 16, &len), CRAFT_ETRUNCATED);
    assert_int_equal(len, 5);
    assert_int_equal(peer__frame_next(f, sizeof f, 4, &len), CRAFT_ETOOBIG);
    f[PEER__FRAME_HDR + 2] ^= 0x40;
    assert_int_equal(peer__frame_next(f, sizeof f, 16, &len), CRAFT_ECORRUPT);
    peer__frame_header(f, NULL, 0); /* empty payload is a valid frame */
    assert_int_equal(peer__frame_next(f, PEER__FRAME_HDR, 16, &len), 0);
    assert_int_equal(len, 0);
    assert_true(strcmp(peer_strerror(UV_EAI_NONAME), "unknown error") != 0);
    assert_string_equal(peer_strerror(CRAFT_ETOOBIG), "too big");
}

/* ---- real transports ---- */

static void test_two_nodes_exchange(void **state)
{
    struct uvenv *e = *state;
    struct node a, b;
    start_pair(e, &a, &b);
    enum { N = 5000 };
    /* Sent in bursts across loop iterations, with varied sizes. */
    uint8_t buf[600];
    for (uint64_t s = 0; s < N; s++) {
        size_t len = 16 + (s * 37) % 500;
        make_frame(buf, len, s, 1);
        assert_int_equal(peer_send(a.t, 2, buf, len), 0);
        make_frame(buf, 16, s, 2);
        assert_int_equal(peer_send(b.t, 1, buf, 16), 0);
        if (s % 1000 == 999)
            uv_run(&e->loop, UV_RUN_NOWAIT);
    }
    expect_frames(&b, 1, N);
    expect_frames(&a, 2, N);
    assert_int_equal(a.rx.bad + b.rx.bad, 0);

    struct peer_stats st;
    assert_int_equal(peer_get_stats(a.t, 2, &st), 0);
    assert_true(st.connected);
    assert_int_equal(st.frames_sent, N);
    assert_int_equal(st.bytes_sent, b.rx.bytes);
    assert_int_equal(st.frames_dropped, 0);
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.queued_bytes, 0);
    /* Batched: a write per loop iteration, not per frame. */
    assert_true(st.writes >= 1 && st.writes * 10 <= N);
    if (getenv("TRANSPORT_VERBOSE"))
        fprintf(stderr, "%llu frames in %llu writes\n",
                (unsigned long long)st.frames_sent,
                (unsigned long long)st.writes);
    struct peer_transport_stats ts;
    peer_transport_get_stats(b.t, &ts);
    assert_int_equal(ts.frames_received, N);
    assert_int_equal(ts.bytes_received, b.rx.bytes);
    assert_int_equal(ts.conns_open, 1);
    assert_int_equal(ts.conns_rejected, 0);
    assert_int_equal(ts.peers, 1);
    struct peer_stats list[2];
    assert_int_equal(peer_list_stats(a.t, list, 2), 1);
    assert_int_equal(list[0].id, 2);
    node_close(&a);
    node_close(&b);
}

static void test_three_nodes(void **state)
{
    struct uvenv *e = *state;
    struct node n[3];
    for (int i = 0; i < 3; i++)
        node_start(&n[i], e, (uint64_t)i + 1, "127.0.0.1:0");
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            if (i != j)
                link_to(&n[i], &n[j]);
    enum { N = 2000 };
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            if (i != j)
                send_seq(&n[i], n[j].id, 0, N, 64);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            if (i != j)
                expect_frames(&n[j], n[i].id, N);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(n[i].rx.bad, 0);
        assert_int_equal(n[i].rx.count[n[i].id], 0); /* nothing to self */
    }
    for (int i = 0; i < 3; i++)
        node_close(&n[i]);
}

static void test_large_frames(void **state)
{
    struct uvenv *e = *state;
    struct node a, b;
    node_start(&a, e, 1, "127.0.0.1:0");
    node_start(&b, e, 2, "127.0.0.1:0");
    link_to(&a, &b);
    send_seq(&a, 2, 0, 8, 1u << 20);
    expect_frames(&b, 1, 8);
    assert_int_equal(b.rx.bad, 0);
    assert_int_equal(b.rx.bytes, 8u << 20);
    node_close(&a);
    node_close(&b);
}

static bool disconnected(void *arg)
{
    struct node *a = arg;
    struct peer_stats st;
    return peer_get_stats(a->t, 2, &st) == 0 && !st.connected;
}

static void test_peer_restart(void **state)
{
    struct uvenv *e = *state;
    struct node a, b;
    node_start(&a, e, 1, "127.0.0.1:0");
    node_start(&b, e, 2, "127.0.0.1:0");
    link_to(&a, &b);
    send_seq(&a, 2, 0, 100, 100);
    expect_frames(&b, 1, 100);

    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", b.port);
    /* Logs call a peer by its name once it has one. */
    assert_int_equal(peer_set_name(a.t, 2, "bravo"), 0);
    assert_int_equal(peer_set_name(a.t, 99, "nobody"), CRAFT_ENOTFOUND);
    node_close(&b);
    assert_true(uvenv_run_until(e, disconnected, &a, WAIT_MS));
    /* Queued while the peer is down; kept, then delivered in order. */
    send_seq(&a, 2, 100, 100, 100);
    uvenv_run_for(e, 50); /* a few refused reconnects */
    struct peer_stats st;
    assert_int_equal(peer_get_stats(a.t, 2, &st), 0);
    assert_int_equal(st.queued_bytes, 100 * (PEER__FRAME_HDR + 100));
    assert_int_not_equal(st.last_error, 0);

    struct node b2;
    node_start(&b2, e, 2, listen);
    b2.rx.next_seq[1] = 100;
    expect_frames(&b2, 1, 100);
    assert_int_equal(b2.rx.bad, 0);
    assert_int_equal(peer_get_stats(a.t, 2, &st), 0);
    assert_true(st.connected);
    assert_int_equal(st.connects, 2);
    assert_int_equal(st.frames_sent, 200);
    assert_int_equal(st.frames_dropped, 0);
    assert_non_null(strstr(e->lb.text, "reconnecting"));
    assert_non_null(strstr(e->lb.text, "peer bravo (127.0.0.1:"));
    node_close(&a);
    node_close(&b2);
}

/* ---- datagrams ---- */

static struct peer_transport_stats tstats(const struct node *n)
{
    struct peer_transport_stats ts;
    peer_transport_get_stats(n->t, &ts);
    return ts;
}

static bool dgrams_to_peer(void *arg)
{
    const struct node *n = arg;
    const struct peer__out *p = n->t->peers;
    return p != NULL && p->dg_mac != NULL && p->state == PEER__CONNECTED;
}

static void send_urgent(struct node *from, uint64_t to, uint64_t first,
                        uint64_t n, bool urgent)
{
    uint8_t buf[64];
    for (uint64_t s = first; s < first + n; s++) {
        make_frame(buf, sizeof buf, s, from->id);
        int rv = urgent ? peer_send_urgent(from->t, to, buf, sizeof buf, 0)
                        : peer_send(from->t, to, buf, sizeof buf);
        assert_int_equal(rv, 0);
    }
}

/* Urgent frames go on the connection and as datagrams; the receiver drops
 * the TCP copy of a datagram it took (a burst longer than it remembers
 * comes up twice, the first copy counting), others come once. A stranger's datagram (garbage, or
 * one "from a" under a key of its own) is dropped; one made under a's key
 * (by someone on the path who read it, without TLS) counts once, and the
 * same bytes again are dropped as stale. */
static void test_datagrams(void **state)
{
    struct uvenv *e = *state;
    struct node a, b;
    start_pair(e, &a, &b);
    send_urgent(&b, 1, 0, 1, false); /* b's hello tells a it takes them */
    expect_frames(&a, 2, 1);
    assert_true(uvenv_run_until(e, dgrams_to_peer, &a, WAIT_MS));
    uint8_t seen[512] = {0};
    b.rx.seen = seen;
    b.rx.seen_cap = sizeof seen;
    /* In bursts, as heartbeats go: a burst of hundreds outruns the UDP
     * socket's send buffer (counted in dgrams_unsent, as a loss). */
    for (uint64_t s = 0; s < 200; s += 20) {
        send_urgent(&a, 2, s, 20, true);
        uvenv_run_for(e, 5);
    }
    expect_frames(&b, 1, 200);
    uvenv_run_for(e, 50);
    assert_int_equal(tstats(&a).dgrams_unsent, 0);
    assert_int_equal(tstats(&a).dgrams_sent, 200);
    assert_int_equal(tstats(&b).dgrams_received, 200);
    /* b remembers the last PEER__TWINS datagrams: their TCP copies are
     * dropped, the rest of each burst's come up a second time. */
    assert_int_equal(tstats(&b).frames_twins, 10 * PEER__TWINS);
    assert_int_equal(b.rx.dups + tstats(&b).frames_twins, 200);
    assert_int_equal(tstats(&b).frames_received, 200 - 10 * PEER__TWINS);
    /* One at a time, as heartbeats go: each counts once. */
    uint64_t dups = b.rx.dups;
    for (uint64_t s = 200; s < 220; s++) {
        send_urgent(&a, 2, s, 1, true);
        uvenv_run_for(e, 5);
    }
    expect_frames(&b, 1, 220);
    assert_int_equal(b.rx.dups, dups);
    assert_int_equal(tstats(&b).frames_twins, 10 * PEER__TWINS + 20);
    send_urgent(&a, 2, 220, 80, false);
    expect_frames(&b, 1, 300);
    uvenv_run_for(e, 50);
    assert_int_equal(b.rx.dups, dups); /* not urgent: the connection only */
    assert_int_equal(b.rx.bad, 0);

    uint8_t junk[60] = "CRDG not really";
    uvenv_udp_send(b.port, junk, sizeof junk);
    uint8_t frame[64], dg[PEER__DGRAM_MAX], made_up[PEER__KEY_LEN] = {7};
    make_frame(frame, sizeof frame, 300, 1);
    struct peer__dgram d = {.sender = 1, .target = 2, .seq = 1u << 30};
    size_t n = uvenv_dgram_encode(dg, &d, frame, sizeof frame, made_up);
    assert_true(n == PEER__DGRAM_HDR + sizeof frame + PEER__MAC_LEN);
    uvenv_udp_send(b.port, dg, n);
    uvenv_run_for(e, 100);
    assert_int_equal(tstats(&b).dgrams_rejected, 2);
    assert_int_equal(b.rx.count[1], 300);
    n = uvenv_dgram_encode(dg, &d, frame, sizeof frame, a.t->peers->dg_key);
    uvenv_udp_send(b.port, dg, n);
    uvenv_udp_send(b.port, dg, n);
    uvenv_run_for(e, 100);
    assert_int_equal(b.rx.count[1], 301);
    assert_int_equal(tstats(&b).dgrams_stale, 1);
    assert_int_equal(b.rx.bad, 0);

    /* A new connection has a new key: once b has closed a's connection
     * and a has come back, a datagram under the old key is rejected, and
     * a's urgent frames come twice again under the new one. */
    uint8_t old_key[PEER__KEY_LEN];
    memcpy(old_key, a.t->peers->dg_key, sizeof old_key);
    peer__in_close(b.t->ins);
    send_urgent(&a, 2, 302, 1, false); /* queued until a has reconnected */
    expect_frames(&b, 1, 302);
    assert_true(uvenv_run_until(e, dgrams_to_peer, &a, WAIT_MS));
    assert_int_not_equal(memcmp(old_key, a.t->peers->dg_key, sizeof old_key), 0);
    uint64_t rejected = tstats(&b).dgrams_rejected;
    make_frame(frame, sizeof frame, 303, 1);
    d.seq = 1u << 31;
    n = uvenv_dgram_encode(dg, &d, frame, sizeof frame, old_key);
    uvenv_udp_send(b.port, dg, n);
    uvenv_run_for(e, 100);
    assert_int_equal(tstats(&b).dgrams_rejected, rejected + 1);
    assert_int_equal(b.rx.count[1], 302);
    uint64_t got = tstats(&b).dgrams_received;
    send_urgent(&a, 2, 310, 5, true);
    expect_frames(&b, 1, 307);
    uvenv_run_for(e, 50);
    assert_int_equal(tstats(&b).dgrams_received, got + 5);
    assert_int_equal(b.rx.dups, dups);
    assert_int_equal(b.rx.bad, 0);
    node_close(&a);
    node_close(&b);
}

static uint64_t frames_sent(const struct node *n, uint64_t to)
{
    struct peer_stats st;
    assert_int_equal(peer_get_stats(n->t, to, &st), 0);
    return st.frames_sent;
}

/* A pair (a = 1, b = 2) whose first frame, b to a, has come, and whose
 * a can send datagrams to b (b gave it a key). */
static void start_dgram_pair(struct uvenv *e, struct node *a, struct node *b)
{
    start_pair(e, a, b);
    send_urgent(b, 1, 0, 1, false);
    expect_frames(a, 2, 1);
    assert_true(uvenv_run_until(e, dgrams_to_peer, a, WAIT_MS));
}

/* Urgent frames sent one after the other with a copy gap: while no
 * datagram has come from the peer, each goes on the connection too. Once
 * one has, those within the gap of the last copy go as datagrams alone,
 * and each arrives once. A gap of 0: always a
 * copy. Without datagrams the gap changes nothing: every frame goes on
 * the connection (test_peer_without_datagrams). */
static void test_urgent_copy_gap(void **state)
{
    struct uvenv *e = *state;
    struct node a, b;
    start_dgram_pair(e, &a, &b);
    uint8_t seen[64] = {0};
    b.rx.seen = seen;
    b.rx.seen_cap = sizeof seen;
    uint64_t tcp = frames_sent(&a, 2), dg = tstats(&a).dgrams_sent;
    uint8_t buf[64];
    for (uint64_t s = 10; s < 13; s++) {
        make_frame(buf, sizeof buf, s, 1);
        assert_int_equal(peer_send_urgent(a.t, 2, buf, sizeof buf, 60000), 0);
        uvenv_run_for(e, 5);
    }
    expect_frames(&b, 1, 3);
    assert_int_equal(frames_sent(&a, 2), tcp + 3); /* nothing heard from b */
    assert_int_equal(tstats(&a).dgrams_sent, dg + 3);
    assert_true(uvenv_run_until(e, dgrams_to_peer, &b, WAIT_MS));
    send_urgent(&b, 1, 1, 1, true);
    expect_frames(&a, 2, 2);
    assert_int_equal(tstats(&a).dgrams_received, 1);
    tcp = frames_sent(&a, 2);
    dg = tstats(&a).dgrams_sent;
    for (uint64_t s = 0; s < 5; s++) {
        make_frame(buf, sizeof buf, s, 1);
        assert_int_equal(peer_send_urgent(a.t, 2, buf, sizeof buf, 60000), 0);
        uvenv_run_for(e, 5);
    }
    expect_frames(&b, 1, 8);
    assert_int_equal(frames_sent(&a, 2), tcp); /* the last copy went just now */
    assert_int_equal(tstats(&a).dgrams_sent, dg + 5);
    assert_int_equal(b.rx.dups, 0);
    /* A gap of 0: every frame has its copy (dropped at b as a twin). */
    uint64_t twins = tstats(&b).frames_twins;
    make_frame(buf, sizeof buf, 5, 1);
    assert_int_equal(peer_send_urgent(a.t, 2, buf, sizeof buf, 0), 0);
    expect_frames(&b, 1, 9);
    uvenv_run_for(e, 50);
    assert_int_equal(frames_sent(&a, 2), tcp + 1);
    assert_int_equal(tstats(&b).frames_twins, twins + 1);
    assert_int_equal(a.rx.bad, 0);
    assert_int_equal(b.rx.dups + b.rx.bad, 0);
    node_close(&a);
    node_close(&b);
}

static uint64_t dgram_misses(const struct node *n, uint64_t to)
{
    struct peer_stats st;
    assert_int_equal(peer_get_stats(n->t, to, &st), 0);
    return st.dgram_misses;
}

/* a sends b an urgent frame with a copy gap, which goes alone if it
 * can; b answers at once if told to. Returns the TCP frames a sent. */
static uint64_t urgent_round(struct node *a, struct node *b, uint64_t *seq,
                             unsigned gap, bool answer)
{
    uint8_t buf[64];
    make_frame(buf, sizeof buf, (*seq)++, 1);
    assert_int_equal(peer_send_urgent(a->t, 2, buf, sizeof buf, gap), 0);
    expect_frames(b, 1, b->rx.count[1] + 1);
    if (answer) {
        send_urgent(b, 1, 100 + *seq, 1, true);
        expect_frames(a, 2, a->rx.count[2] + 1);
    }
    uvenv_run_for(a->e, 1);
    return frames_sent(a, 2);
}

/* An urgent frame that went as a datagram alone and that no frame from
 * the peer followed within its gap: its datagram may never have arrived
 * (UDP dropped one way; a heartbeat round lost so waits for a tick). Then
 * every urgent frame has its copy for PEER__MISS_GAPS gaps. A peer that
 * answers within the gap keeps the frames alone. */
static void test_urgent_alone_unanswered(void **state)
{
    struct uvenv *e = *state;
    struct node a, b;
    start_dgram_pair(e, &a, &b);
    assert_true(uvenv_run_until(e, dgrams_to_peer, &b, WAIT_MS));
    send_urgent(&b, 1, 1, 1, true); /* a has heard b's datagrams */
    expect_frames(&a, 2, 2);
    uint8_t seen_a[256] = {0}, seen_b[256] = {0}; /* frames come in any order */
    a.rx.seen = seen_a;
    a.rx.seen_cap = sizeof seen_a;
    b.rx.seen = seen_b;
    b.rx.seen_cap = sizeof seen_b;
    enum { GAP = 200 };
    uint64_t seq = 10;
    uint64_t tcp = urgent_round(&a, &b, &seq, GAP, true); /* the copy */
    for (int i = 0; i < 3; i++) /* answered: alone */
        assert_int_equal(urgent_round(&a, &b, &seq, GAP, true), tcp);
    assert_int_equal(dgram_misses(&a, 2), 0);
    /* Alone and unanswered past its gap: the next ones have copies. */
    assert_int_equal(urgent_round(&a, &b, &seq, GAP, false), tcp);
    uvenv_run_for(e, GAP + 20);
    assert_int_equal(urgent_round(&a, &b, &seq, GAP, true), tcp + 1);
    assert_int_equal(dgram_misses(&a, 2), 1);
    assert_int_equal(tstats(&a).dgrams_unanswered, 1);
    assert_int_equal(urgent_round(&a, &b, &seq, GAP, true), tcp + 2);
    assert_int_equal(urgent_round(&a, &b, &seq, GAP, true), tcp + 3);
    assert_int_equal(a.rx.bad + b.rx.bad + a.rx.dups + b.rx.dups, 0);
    node_close(&a);
    node_close(&b);
}

/* A peer that does not take datagrams (no_datagrams: as a node before
 * them) is sent none, and does not listen for them. */
static void test_peer_without_datagrams(void **state)
{
    struct uvenv *e = *state;
    struct node a, b;
    node_start(&a, e, 1, "127.0.0.1:0");
    memset(&b, 0, sizeof b);
    b.e = e;
    struct peer_opts o = node_opts(&b, "127.0.0.1:0");
    o.no_datagrams = true;
    node_start_opts(&b, e, 2, &o);
    assert_false(b.t->udp_open);
    link_to(&a, &b);
    link_to(&b, &a);
    send_urgent(&b, 1, 0, 1, false);
    expect_frames(&a, 2, 1);
    send_urgent(&a, 2, 0, 50, true);
    send_urgent(&b, 1, 1, 50, true);
    expect_frames(&b, 1, 50);
    expect_frames(&a, 2, 51);
    uint8_t buf[64]; /* a copy gap changes nothing without datagrams */
    make_frame(buf, sizeof buf, 50, 1);
    assert_int_equal(peer_send_urgent(a.t, 2, buf, sizeof buf, 60000), 0);
    make_frame(buf, sizeof buf, 51, 1);
    assert_int_equal(peer_send_urgent(a.t, 2, buf, sizeof buf, 60000), 0);
    expect_frames(&b, 1, 52);
    uvenv_run_for(e, 50);
    assert_null(a.t->peers->dg_mac); /* b gave none: it has no UDP */
    assert_null(b.t->peers->dg_mac); /* b did not ask for one */
    assert_int_equal(tstats(&a).dgrams_sent, 0);
    assert_int_equal(tstats(&b).dgrams_sent, 0);
    assert_int_equal(a.rx.bad + b.rx.bad, 0);
    node_close(&a);
    node_close(&b);
}

static void test_unknown_peer_and_args(void **state)
{
    struct uvenv *e = *state;
    struct node a;
    node_start(&a, e, 1, NULL); /* no listener: send-only */
    assert_int_equal(peer_transport_port(a.t), 0);
    uint8_t buf[16] = {0};
    assert_int_equal(peer_send(a.t, 7, buf, sizeof buf), CRAFT_ENOTFOUND);
    assert_int_equal(peer_remove(a.t, 7), CRAFT_ENOTFOUND);
    struct peer_stats st;
    assert_int_equal(peer_get_stats(a.t, 7, &st), CRAFT_ENOTFOUND);
    assert_int_equal(peer_set(a.t, 7, 0, "nohostport"), CRAFT_EINVAL);
    assert_int_equal(peer_set(a.t, 7, 0, "127.0.0.1:0"), CRAFT_EINVAL);
    assert_int_equal(peer_set(a.t, 7, 0, "127.0.0.1:99999"), CRAFT_EINVAL);
    assert_int_equal(peer_set(a.t, 7, 0, "127.0.0.1:1"), 0);
    assert_int_equal(peer_send(a.t, 7, buf, sizeof buf), 0);
    assert_int_equal(peer_remove(a.t, 7), 0);
    assert_int_equal(peer_send(a.t, 7, buf, sizeof buf), CRAFT_ENOTFOUND);
    assert_int_equal(peer_remove(a.t, 7), CRAFT_ENOTFOUND);
    node_close(&a);

    /* Bad options. */
    struct node x;
    memset(&x, 0, sizeof x);
    x.e = e;
    struct peer_opts o = node_opts(&x, "127.0.0.1:0");
    struct peer_transport *t = NULL;
    o.on_frame = NULL;
    assert_int_equal(peer_transport_start(&t, &o), CRAFT_EINVAL);
    o.on_frame = on_frame;
    o.listen_addr = "no-port";
    assert_int_equal(peer_transport_start(&t, &o), CRAFT_EINVAL);
    o.listen_addr = "127.0.0.1:0";
    o.bind_host = "not-an-ip";
    assert_int_equal(peer_transport_start(&t, &o), CRAFT_EINVAL);
    o.bind_host = NULL;
    o.listen_addr = "no-such-host.invalid:0";
    assert_int_equal(peer_transport_start(&t, &o), CRAFT_EINVAL);
    assert_null(t);

    /* Port in use: the error is returned, the handles close on the loop. */
    struct node b;
    node_start(&b, e, 2, "127.0.0.1:0");
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", b.port);
    o.listen_addr = listen;
    assert_int_equal(peer_transport_start(&t, &o), -EADDRINUSE);
    assert_null(t);
    uvenv_run_for(e, 10);
    node_close(&b);
}

static void test_alloc_failures(void **state)
{
    struct uvenv *e = *state;
    struct node a;
    memset(&a, 0, sizeof a);
    a.e = e;
    struct peer_opts o = node_opts(&a, "127.0.0.1:0");
    struct peer_transport *t = NULL;
    fail_in = 0;
    assert_int_equal(peer_transport_start(&t, &o), CRAFT_ENOMEM);
    assert_null(t);
    assert_int_equal(live_blocks, 0);

    node_start(&a, e, 1, "127.0.0.1:0");
    fail_in = 0;
    assert_int_equal(peer_set(a.t, 2, 0, "127.0.0.1:1"), CRAFT_ENOMEM);
    assert_int_equal(peer_set(a.t, 2, 0, "127.0.0.1:1"), 0);
    uint8_t buf[32] = {0};
    fail_in = 0;
    assert_int_equal(peer_send(a.t, 2, buf, sizeof buf), CRAFT_ENOMEM);
    struct peer_stats st;
    assert_int_equal(peer_get_stats(a.t, 2, &st), 0);
    assert_int_equal(st.frames_dropped, 1);
    assert_int_equal(peer_send(a.t, 2, buf, sizeof buf), 0);
    node_close(&a);
}

static bool reconnected(void *arg)
{
    struct node *a = arg;
    struct peer_stats st;
    return peer_get_stats(a->t, 2, &st) == 0 && st.connects >= 2 &&
           st.connected;
}

/* No memory for an accepted connection: it is refused, the listener keeps
 * working and the dialer's retry gets through. */
static void test_accept_out_of_memory(void **state)
{
    struct uvenv *e = *state;
    struct node a, b;
    node_start(&a, e, 1, NULL);
    node_start(&b, e, 2, "127.0.0.1:0");
    link_to(&a, &b);
    fail_in = 0; /* the next allocation is b's for the connection */
    assert_true(uvenv_run_until(e, reconnected, &a, WAIT_MS));
    assert_non_null(strstr(e->lb.text, "out of memory; refusing"));
    send_seq(&a, 2, 0, 10, 30);
    expect_frames(&b, 1, 10);
    node_close(&a);
    node_close(&b);
}

/* n's established connection from peer id (its handshake done), or NULL. */
static struct peer__in *conn_from(const struct node *n, uint64_t id)
{
    for (struct peer__in *c = n->t->ins; c != NULL; c = c->next)
        if (c->hello_done && !c->closing && c->from == id)
            return c;
    return NULL;
}

/* Both dialers are connected and each acceptor took the other's
 * connection. A dialer's own stats are not enough: one the acceptor
 * refused looks connected until it reads the close, and a frame written
 * on that connection is lost (the acceptor hung up without reading it). */
static bool pair_up(void *arg)
{
    struct node *const *n = arg;
    struct peer_stats sa, sb;
    return peer_get_stats(n[0]->t, 2, &sa) == 0 && sa.connected &&
           peer_get_stats(n[1]->t, 1, &sb) == 0 && sb.connected &&
           conn_from(n[0], 2) != NULL && conn_from(n[1], 1) != NULL;
}

/* Whether the connection from -> to has no datagram key; a key it has is
 * the one to's end of it made (and made ready) for it. */
static bool keyless(const struct node *from, const struct node *to)
{
    const struct peer__out *p = from->t->peers;
    const struct peer__in *c = conn_from(to, from->id);
    assert_non_null(c);
    if (p->dg_mac == NULL)
        return true;
    assert_non_null(c->dg_mac);
    assert_memory_equal(p->dg_key, c->dg_key, sizeof p->dg_key);
    return false;
}

/* Urgent frames from -> to (seq first.. first + n - 1) arrive, once each.
 * Returns how many of them went as datagrams too. */
static uint64_t expect_urgent(struct node *from, struct node *to,
                              uint64_t first, uint64_t n)
{
    uint64_t dgrams = tstats(from).dgrams_sent;
    send_urgent(from, to->id, first, n, true);
    /* Sent from outside the loop: written now, not after the next poll
     * returns (without a datagram to wake it, at the reaper's tick). */
    peer_transport_flush(from->t);
    expect_frames(to, from->id, first + n);
    assert_int_equal(to->rx.bad, 0);
    return tstats(from).dgrams_sent - dgrams;
}

/* Each allocation of a pair's setup fails in turn (the k-th after both
 * dial): the acceptor's connection (refused), its read buffer (closed),
 * the key it makes for the dialer's datagrams or the dialer's for the key
 * it got (the connection goes on without datagrams). Every time both
 * connections come up, urgent frames arrive both ways (as datagrams where
 * a key was made), and closing frees everything. */
static void test_datagram_setup_out_of_memory(void **state)
{
    struct uvenv *e = *state;
    unsigned without_key = 0;
    for (long k = 0; k < 40; k++) {
        struct node a, b;
        struct node *pair[2] = {&a, &b};
        uint8_t seen_a[16] = {0}, seen_b[16] = {0};
        start_pair(e, &a, &b);
        fail_in = k;
        assert_true(uvenv_run_until(e, pair_up, pair, WAIT_MS));
        fail_in = -1; /* set up: nothing fails from here on */
        a.rx.seen = seen_a; /* a frame may come twice: datagram and TCP */
        a.rx.seen_cap = sizeof seen_a;
        b.rx.seen = seen_b;
        b.rx.seen_cap = sizeof seen_b;
        /* A first round: frames from the other end have come in, so each
         * dialer has read its key record, if it was sent one. */
        expect_urgent(&a, &b, 0, 4);
        expect_urgent(&b, &a, 0, 4);
        bool a_keyless = keyless(&a, &b), b_keyless = keyless(&b, &a);
        without_key += a_keyless + b_keyless;
        assert_int_equal(expect_urgent(&a, &b, 4, 4), a_keyless ? 0 : 4);
        assert_int_equal(expect_urgent(&b, &a, 4, 4), b_keyless ? 0 : 4);
        node_close(&a);
        node_close(&b);
        assert_int_equal(live_blocks, 0);
    }
    assert_true(without_key > 0);
    assert_int_not_equal(uvenv_count(e, "out of memory; refusing"), 0);
}

static void test_queue_limit(void **state)
{
    struct uvenv *e = *state;
    /* A port nobody listens on (yet). */
    struct node b;
    node_start(&b, e, 2, "127.0.0.1:0");
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", b.port);
    node_close(&b);

    struct node a;
    memset(&a, 0, sizeof a);
    a.e = e;
    struct peer_opts o = node_opts(&a, NULL);
    o.max_queue_bytes = 1000;
    o.max_frame_bytes = 500;
    node_start_opts(&a, e, 1, &o);
    assert_int_equal(peer_set(a.t, 2, 0, listen), 0);
    uint8_t buf[501];
    unsigned queued = 0;
    int err = 0;
    for (uint64_t s = 0; s < 20; s++) {
        make_frame(buf, 100, s, 1);
        err = peer_send(a.t, 2, buf, 100);
        if (err)
            break;
        queued++;
    }
    assert_int_equal(err, -ENOBUFS);
    assert_int_equal(queued, 1000 / (PEER__FRAME_HDR + 100));
    assert_int_equal(peer_send(a.t, 2, buf, 501), CRAFT_ETOOBIG);
    uvenv_run_for(e, 60); /* refused connects; nothing lost meanwhile */
    struct peer_stats st;
    assert_int_equal(peer_get_stats(a.t, 2, &st), 0);
    assert_false(st.connected);
    assert_int_equal(st.frames_dropped, 2);
    assert_int_equal(st.queued_bytes, queued * (PEER__FRAME_HDR + 100));
    assert_int_equal(st.last_error, UV_ECONNREFUSED);

    /* The peer comes up: what was queued arrives, in order. */
    node_start(&b, e, 2, listen);
    expect_frames(&b, 1, queued);
    assert_int_equal(b.rx.bad, 0);
    uvenv_run_for(e, 20);
    assert_int_equal(peer_get_stats(a.t, 2, &st), 0);
    assert_int_equal(st.queued_bytes, 0);
    assert_int_equal(st.frames_sent, queued);
    node_close(&a);
    node_close(&b);
}

/* A hand-made client: connect, write bytes, wait for the server to hang up. */
struct raw {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    uint8_t out[256];
    size_t out_len;
    char in[64];
    bool hung_up;
};

static void raw_closed(uv_handle_t *h)
{
    struct raw *r = h->data;
    r->hung_up = true;
}

static void raw_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf)
{
    struct raw *r = h->data;
    *buf = uv_buf_init(r->in, sizeof r->in);
}

static void raw_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    if (nread < 0)
        uv_close((uv_handle_t *)s, raw_closed);
}

static void raw_written(uv_write_t *req, int status)
{
}

static void raw_connected(uv_connect_t *req, int status)
{
    struct raw *r = req->handle->data;
    assert_int_equal(status, 0);
    uv_buf_t b = uv_buf_init((char *)r->out, (unsigned)r->out_len);
    assert_int_equal(uv_write(&r->wreq, (uv_stream_t *)&r->tcp, &b, 1,
                              raw_written), 0);
    assert_int_equal(uv_read_start((uv_stream_t *)&r->tcp, raw_alloc,
                                   raw_read), 0);
}

/* Send r->out to port; true if the server closed the connection. */
static bool raw_session(struct uvenv *e, struct raw *r, uint16_t port)
{
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", port, &sa);
    uv_tcp_init(&e->loop, &r->tcp);
    r->tcp.data = r;
    r->hung_up = false;
    assert_int_equal(uv_tcp_connect(&r->creq, &r->tcp,
                                     (const struct sockaddr *)&sa,
                                     raw_connected), 0);
    bool ok = uvenv_run_until(e, uvenv_is_true, &r->hung_up, 3000);
    if (!ok) {
        uv_close((uv_handle_t *)&r->tcp, raw_closed);
        uvenv_run_until(e, uvenv_is_true, &r->hung_up, WAIT_MS);
    }
    return ok;
}

static size_t put_frame(uint8_t *p, const uint8_t *payload, uint32_t len)
{
    peer__frame_header(p, payload, len);
    memcpy(p + PEER__FRAME_HDR, payload, len);
    return PEER__FRAME_HDR + len;
}

static void test_garbage_clients(void **state)
{
    struct uvenv *e = *state;
    struct node b;
    memset(&b, 0, sizeof b);
    b.e = e;
    struct peer_opts o = node_opts(&b, "127.0.0.1:0");
    o.max_frame_bytes = 1024;
    node_start_opts(&b, e, 2, &o);
    struct peer_transport_stats ts;
    struct raw r;
    memset(&r, 0, sizeof r);

    /* 1. Not our protocol at all. */
    r.out_len = (size_t)snprintf((char *)r.out, sizeof r.out,
                                 "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(raw_session(e, &r, b.port));
    peer_transport_get_stats(b.t, &ts);
    assert_int_equal(ts.conns_rejected, 1);
    assert_non_null(strstr(e->lb.text, "bad handshake magic"));

    /* 2. A good handshake, then a frame whose CRC is wrong. */
    uint8_t payload[32];
    make_frame(payload, sizeof payload, 0, 9);
    struct peer__hello h9 = {.version = PEER__VERSION, .sender = 9, .target = 2};
    peer__hello_encode(r.out, &h9);
    size_t n = PEER__HELLO_LEN;
    n += put_frame(r.out + n, payload, sizeof payload);
    r.out[n - 1] ^= 0xff;
    r.out_len = n;
    assert_true(raw_session(e, &r, b.port));
    peer_transport_get_stats(b.t, &ts);
    assert_int_equal(ts.conns_rejected, 2);
    assert_int_equal(b.rx.count[9], 0);
    assert_non_null(strstr(e->lb.text, "frame CRC"));

    /* 3. One good frame, then a length over the limit. */
    n = PEER__HELLO_LEN;
    n += put_frame(r.out + n, payload, sizeof payload);
    craft_put32(r.out + n, 1025);
    craft_put32(r.out + n + 4, 0);
    r.out_len = n + PEER__FRAME_HDR;
    assert_true(raw_session(e, &r, b.port));
    assert_int_equal(b.rx.count[9], 1);
    assert_int_equal(b.rx.bad, 0);
    peer_transport_get_stats(b.t, &ts);
    assert_int_equal(ts.conns_rejected, 3);
    assert_non_null(strstr(e->lb.text, "frame length"));

    /* 4. The handshake of craftd before identities (version 1). */
    craft_put16(r.out + 4, 1);
    craft_put32(r.out + 16, crc32c(0, r.out, 16));
    r.out_len = 20;
    assert_true(raw_session(e, &r, b.port));
    peer_transport_get_stats(b.t, &ts);
    assert_int_equal(ts.conns_rejected, 4);
    assert_non_null(strstr(e->lb.text, "handshake version 1 (this node "
                                       "speaks 2"));

    /* The server still works for a real peer. */
    struct node a;
    node_start(&a, e, 1, NULL);
    link_to(&a, &b);
    send_seq(&a, 2, 0, 10, 40);
    expect_frames(&b, 1, 10);
    assert_int_equal(b.rx.bad, 0);
    node_close(&a);
    node_close(&b);
}

static void test_name_resolution_and_bind(void **state)
{
    struct uvenv *e = *state;
    struct node a, b, c;
    memset(&a, 0, sizeof a);
    a.e = e;
    struct peer_opts o = node_opts(&a, NULL);
    o.bind_host = "127.0.0.2";
    node_start_opts(&a, e, 1, &o);
    node_start(&b, e, 2, "localhost:0");
    node_start(&c, e, 3, ":0");
    char addr[64];
    snprintf(addr, sizeof addr, "localhost:%u", b.port);
    assert_int_equal(peer_set(a.t, 2, 0, addr), 0);
    snprintf(addr, sizeof addr, ":%u", c.port);
    assert_int_equal(peer_set(a.t, 3, 0, addr), 0);
    send_seq(&a, 2, 0, 50, 20);
    send_seq(&a, 3, 0, 50, 20);
    expect_frames(&b, 1, 50);
    expect_frames(&c, 1, 50);
    assert_int_equal(b.rx.bad + c.rx.bad, 0);
    /* Outgoing connections came from the bind address. */
    assert_non_null(strstr(e->lb.text, "peer 0000000000000001 connected from 127.0.0.2:"));
    node_close(&a);
    node_close(&b);
    node_close(&c);
}

static void test_readdress(void **state)
{
    struct uvenv *e = *state;
    struct node a, b, c;
    node_start(&a, e, 1, NULL);
    node_start(&b, e, 2, "127.0.0.1:0");
    /* c takes over as node 2 (a restart elsewhere): the same id */
    node_start(&c, e, 2, "127.0.0.1:0");
    link_to(&a, &b);
    assert_int_equal(peer_set(a.t, 2, 0, "127.0.0.1:1"), 0); /* during resolve */
    link_to(&a, &b);
    send_seq(&a, 2, 0, 10, 20);
    expect_frames(&b, 1, 10);
    /* Peer 2 moves to c's address: frames follow it. */
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", c.port);
    assert_int_equal(peer_set(a.t, 2, 0, addr), 0);
    assert_int_equal(peer_set(a.t, 2, 0, addr), 0); /* same: no-op */
    send_seq(&a, 2, 10, 10, 20);
    c.rx.next_seq[1] = 10;
    expect_frames(&c, 1, 10);
    assert_int_equal(b.rx.count[1], 10);
    assert_int_equal(b.rx.bad + c.rx.bad, 0);
    node_close(&a);
    node_close(&b);
    node_close(&c);
}

static void test_close_frees_everything(void **state)
{
    struct uvenv *e = *state;
    struct node a, b, dead;
    node_start(&dead, e, 9, "127.0.0.1:0");
    char refused[32];
    snprintf(refused, sizeof refused, "127.0.0.1:%u", dead.port);
    node_close(&dead);

    node_start(&a, e, 1, "127.0.0.1:0");
    node_start(&b, e, 2, "127.0.0.1:0");
    link_to(&a, &b);
    link_to(&b, &a);
    send_seq(&a, 2, 0, 10, 100);
    expect_frames(&b, 1, 10);
    assert_int_equal(peer_set(a.t, 3, 0, refused), 0);   /* in backoff */
    send_seq(&a, 3, 0, 5, 100);
    uvenv_run_for(e, 30);
    assert_int_equal(peer_set(a.t, 4, 0, "localhost:9"), 0); /* resolving */
    send_seq(&a, 2, 10, 100, 1000);                       /* in flight */
    assert_int_equal(peer_remove(a.t, 3), 0);
    node_close(&a);
    node_close(&b);
    /* teardown checks: loop empty, no live allocation */
}

/* Closing from inside on_frame stops delivery at once. */
struct closer {
    struct node *n;
    unsigned frames;
    bool closed;
};

static void on_frame_close(void *ud, uint64_t from, const uint8_t *buf,
                           size_t len)
{
    struct closer *c = ud;
    c->frames++;
    if (c->frames == 3)
        peer_transport_close(c->n->t, set_flag, &c->closed);
}

static void test_close_from_callback(void **state)
{
    struct uvenv *e = *state;
    struct node a, b;
    struct closer cl = {&b, 0, false};
    memset(&b, 0, sizeof b);
    b.e = e;
    b.id = 2;
    struct peer_opts o = node_opts(&b, "127.0.0.1:0");
    o.on_frame = on_frame_close;
    o.ud = &cl;
    assert_int_equal(peer_transport_start(&b.t, &o), 0);
    b.port = peer_transport_port(b.t);

    node_start(&a, e, 1, NULL);
    link_to(&a, &b);
    send_seq(&a, 2, 0, 50, 16);
    assert_true(uvenv_run_until(e, uvenv_is_true, &cl.closed, WAIT_MS));
    assert_int_equal(cl.frames, 3);
    node_close(&a);
}


/* ---- identity checks of the handshake ---- */

static void wait_count(struct uvenv *e, const unsigned *count, unsigned want)
{
    assert_true(uvenv_run_until_count(e, count, want, WAIT_MS));
}

static void node_start_cluster(struct node *n, struct uvenv *e, uint64_t id,
                               uint64_t cluster, const char *listen)
{
    memset(n, 0, sizeof *n);
    n->e = e;
    struct peer_opts o = node_opts(n, listen);
    o.cluster_id = cluster;
    o.self_tag = 0x100 + id;
    node_start_opts(n, e, id, &o);
}

static void link_tagged(struct node *from, uint64_t id, uint64_t tag,
                        const struct node *to)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", to->port);
    assert_int_equal(peer_set(from->t, id, tag, addr), 0);
}

/* A dialer of another cluster, and one meaning to reach another id, are
 * refused; both sides hear why, no frame of theirs is delivered, and the
 * dialer keeps retrying quietly (no warning per attempt). Nodes without a
 * cluster id accept any; one that learns its id refuses from then on. */
static void test_identity_checks(void **state)
{
    struct uvenv *e = *state;
    struct node a, b, x, u;
    node_start_cluster(&a, e, 1, 100, "127.0.0.1:0");
    node_start_cluster(&b, e, 2, 100, "127.0.0.1:0");
    node_start_cluster(&x, e, 3, 200, NULL);
    node_start_cluster(&u, e, 4, 0, "127.0.0.1:0");

    /* Same cluster, right target: frames flow. */
    link_tagged(&a, 2, 0x102, &b);
    send_seq(&a, 2, 0, 5, 32);
    expect_frames(&b, 1, 5);

    /* 1. Another cluster. */
    link_tagged(&x, 2, 0x102, &b);
    send_seq(&x, 2, 0, 5, 32);
    wait_count(e, &b.rx.refused_in, 1);
    wait_count(e, &x.rx.refused_out, 1);
    assert_int_equal(b.rx.last_in.reason, PEER_REFUSED_CLUSTER);
    assert_true(b.rx.last_in.peer_id == 3 && b.rx.last_in.peer_cluster == 200);
    assert_true(b.rx.last_in.target == 2 && b.rx.last_in.target_tag == 0x102);
    assert_non_null(strstr(b.rx.last_in_addr, "127.0.0.1:"));
    assert_int_equal(x.rx.last_out.reason, PEER_REFUSED_CLUSTER);
    assert_true(x.rx.last_out.peer_id == 2 &&
                x.rx.last_out.peer_cluster == 100 &&
                x.rx.last_out.peer_tag == 0x102);
    assert_true(x.rx.last_out.target == 2);
    assert_int_equal(b.rx.count[3], 0);
    /* It retries, and is refused again each time, without a warning. */
    wait_count(e, &b.rx.refused_in, 3);
    struct peer_transport_stats ts;
    peer_transport_get_stats(b.t, &ts);
    assert_true(ts.conns_refused >= 3);
    assert_int_equal(ts.conns_rejected, 0);
    struct peer_stats ps;
    assert_int_equal(peer_get_stats(x.t, 2, &ps), 0);
    assert_true(ps.refusals >= 2);
    assert_null(strstr(e->lb.text, "WARN"));
    assert_int_equal(peer_remove(x.t, 2), 0);

    /* 2. The right cluster, another target (a node that was 5 before). */
    link_tagged(&a, 5, 0x777, &b);
    send_seq(&a, 5, 0, 3, 32);
    wait_count(e, &a.rx.refused_out, 1);
    assert_int_equal(b.rx.last_in.reason, PEER_REFUSED_TARGET);
    assert_true(b.rx.last_in.peer_id == 1 && b.rx.last_in.target == 5 &&
                b.rx.last_in.target_tag == 0x777);
    assert_int_equal(a.rx.last_out.reason, PEER_REFUSED_TARGET);
    assert_true(a.rx.last_out.peer_id == 2 && a.rx.last_out.target == 5 &&
                a.rx.last_out.target_tag == 0x777 &&
                a.rx.last_out.peer_tag == 0x102);
    assert_int_equal(peer_remove(a.t, 5), 0);
    assert_int_equal(b.rx.count[1], 5); /* the good connection is unharmed */

    /* 3. No cluster id: any cluster may talk to it, and it to any. */
    link_tagged(&x, 4, 0, &u);
    link_tagged(&u, 2, 0, &b);
    send_seq(&x, 4, 0, 4, 32);
    send_seq(&u, 2, 0, 4, 32);
    expect_frames(&u, 3, 4);
    expect_frames(&b, 4, 4);

    /* 4. u learns it is of cluster 300: a new dialer of 100 is refused,
     * and u's own next handshakes carry 300 (b refuses them). */
    unsigned before = u.rx.refused_in;
    peer_set_cluster(u.t, 300);
    link_tagged(&a, 4, 0, &u);
    send_seq(&a, 4, 0, 2, 32);
    wait_count(e, &u.rx.refused_in, before + 1);
    assert_int_equal(u.rx.last_in.reason, PEER_REFUSED_CLUSTER);
    assert_int_equal(u.rx.count[1], 0);
    char baddr[32];
    snprintf(baddr, sizeof baddr, "127.0.0.1:%u", b.port);
    before = b.rx.refused_in;
    assert_int_equal(peer_set(u.t, 2, 0, "127.0.0.1:1"), 0);
    assert_int_equal(peer_set(u.t, 2, 0, baddr), 0); /* reconnects */
    wait_count(e, &b.rx.refused_in, before + 1);
    assert_true(b.rx.last_in.peer_id == 4 && b.rx.last_in.peer_cluster == 300);

    node_close(&a);
    node_close(&b);
    node_close(&x);
    node_close(&u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_addr),
        cmocka_unit_test(test_wire),
        cmocka_unit_test_setup_teardown(test_two_nodes_exchange, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_three_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_datagrams, setup, teardown),
        cmocka_unit_test_setup_teardown(test_urgent_copy_gap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_urgent_alone_unanswered, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_peer_without_datagrams, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_large_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_peer_and_args, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_alloc_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accept_out_of_memory, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_datagram_setup_out_of_memory,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_clients, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_name_resolution_and_bind, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_readdress, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_frees_everything, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_close_from_callback, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_identity_checks, setup,
                                        teardown),
    };
    signal(SIGPIPE, SIG_IGN); /* as the daemon does (transport.h) */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
