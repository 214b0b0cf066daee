/* Tests of the peer transport's cluster-token handshake and inbound limits
 * (src/transport/wire.c, inbound.c, outbound.c): the v3 codec and proof in
 * isolation, then real transports and hand-made hostile clients (plain
 * blocking sockets) on one uv loop over 127.0.0.1. Every wait is bounded,
 * and every test ends with an empty loop. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "common/crc32c.h"
#include "common/endian.h"
#include "common/error.h"
#include "transport/internal.h"
#include "unit/uv_env.h"

#define WAIT_MS 10000

/* ---- pure: codec and proof ---- */

struct session {
    uint8_t key[PEER__KEY_LEN];
    uint8_t hello[PEER__HELLO3_LEN];
    uint8_t nonce_a[PEER__NONCE_LEN];
};

static void make_session(struct session *s, const char *token)
{
    assert_int_equal(peer__derive_key(s->key, token, strlen(token)), 0);
    struct peer__hello h = {.version = PEER__VERSION_AUTH, .sender = 7,
                            .cluster = 0xc1, .target = 9, .target_tag = 3};
    assert_int_equal(peer__nonce(h.nonce), 0);
    assert_int_equal(peer__hello_encode(s->hello, &h), PEER__HELLO3_LEN);
    assert_int_equal(peer__nonce(s->nonce_a), 0);
}

static void test_hello_v3_codec(void **state)
{
    struct peer__hello h = {.version = PEER__VERSION_AUTH, .sender = 1,
                            .cluster = 2, .target = 3, .target_tag = 4},
                       got;
    memset(h.nonce, 0xab, sizeof h.nonce);
    uint8_t b[PEER__HELLO3_LEN];
    assert_int_equal(peer__hello_encode(b, &h), PEER__HELLO3_LEN);
    unsigned v = 0;
    assert_int_equal(peer__hello_decode(b, sizeof b, &got, &v), 0);
    assert_int_equal(v, 3);
    assert_int_equal(got.version, 3);
    assert_true(got.sender == 1 && got.cluster == 2 && got.target == 3 &&
                got.target_tag == 4);
    assert_memory_equal(got.nonce, h.nonce, PEER__NONCE_LEN);
    /* Truncated: every prefix is "not yet". */
    for (size_t n = 0; n < sizeof b; n++)
        assert_int_equal(peer__hello_decode(b, n, &got, NULL),
                         CRAFT_ETRUNCATED);
    /* A flipped bit anywhere (nonce included) is caught. */
    for (size_t i = 0; i < sizeof b * 8; i++) {
        b[i / 8] ^= (uint8_t)(1u << (i % 8));
        int rv = peer__hello_decode(b, sizeof b, &got, NULL);
        assert_true(rv == CRAFT_ECORRUPT || rv == CRAFT_EVERSION);
        b[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    /* Version 1 is still refused. */
    craft_put16(b + 4, 1);
    assert_int_equal(peer__hello_decode(b, 6, &got, &v), CRAFT_EVERSION);
    assert_int_equal(v, 1);
}

static void test_key_derivation(void **state)
{
    uint8_t k1[PEER__KEY_LEN], k2[PEER__KEY_LEN], k3[PEER__KEY_LEN];
    assert_int_equal(peer__derive_key(k1, "secret", 6), 0);
    assert_int_equal(peer__derive_key(k2, "secret", 6), 0);
    assert_int_equal(peer__derive_key(k3, "secreT", 6), 0);
    assert_memory_equal(k1, k2, sizeof k1);
    assert_memory_not_equal(k1, k3, sizeof k1);
    /* The key is not the token itself. */
    assert_memory_not_equal(k1, "secret", 6);
    assert_int_equal(peer__derive_key(k1, "", 0), CRAFT_EINVAL);
}

static void hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

/* The wire format's MACs against values computed elsewhere (Python's hmac
 * module) from the definitions in wire.c's top comment: the key, both
 * handshake MACs and the /join MAC go through one HMAC routine, and a
 * change to it that alters any of them breaks the handshake with older
 * nodes. */
static void test_mac_known_answers(void **state)
{
    (void)state;
    uint8_t key[PEER__KEY_LEN], hello[PEER__HELLO3_LEN], nonce[PEER__NONCE_LEN], m[PEER__MAC_LEN];
    char h[2 * PEER__MAC_LEN + 1];
    for (unsigned i = 0; i < sizeof hello; i++)
        hello[i] = (uint8_t)i;
    for (unsigned i = 0; i < sizeof nonce; i++)
        nonce[i] = (uint8_t)(100 + i);
    assert_int_equal(peer__derive_key(key, "secret", 6), 0);
    hex(key, sizeof key, h);
    assert_string_equal(h, "a7800b95598fd3e2d02edd155e82e750de0642cb1420f44270bd8a222982edc1");
    assert_int_equal(peer__mac(m, key, true, hello, nonce), 0);
    hex(m, sizeof m, h);
    assert_string_equal(h, "fd73c7ef9f4a84aba5b054732f2a3fc1375031efbc062a6ff00447e75ab74341");
    assert_int_equal(peer__mac(m, key, false, hello, nonce), 0);
    hex(m, sizeof m, h);
    assert_string_equal(h, "5584e511ffebf435e9aa515ffac88853158d2fdc335619651cbde0366d25fd58");
    assert_int_equal(peer__join_mac(m, key, "{\"id\":\"n\"}", 10), 0);
    hex(m, sizeof m, h);
    assert_string_equal(h, "ba6552ee3ff7c47903ed159de21ca12c357d3388bae00e06445a0d0baa41cc89");
}

static void test_proof_accepted(void **state)
{
    struct session s;
    make_session(&s, "the token");
    /* Acceptor: challenge. Dialer: decode and check it. */
    uint8_t mac_a[PEER__MAC_LEN], ch[PEER__CHALLENGE_LEN];
    assert_int_equal(peer__mac(mac_a, s.key, true, s.hello, s.nonce_a), 0);
    peer__challenge_encode(ch, s.nonce_a, mac_a);
    uint8_t n2[PEER__NONCE_LEN], m2[PEER__MAC_LEN];
    assert_int_equal(peer__challenge_decode(ch, n2, m2), 0);
    assert_true(peer__mac_ok(s.key, true, s.hello, n2, m2));
    /* Dialer: proof. Acceptor: check it. */
    uint8_t mac_d[PEER__MAC_LEN], pf[PEER__PROOF_LEN];
    assert_int_equal(peer__mac(mac_d, s.key, false, s.hello, n2), 0);
    peer__proof_encode(pf, mac_d);
    uint8_t m3[PEER__MAC_LEN];
    assert_int_equal(peer__proof_decode(pf, m3), 0);
    assert_true(peer__mac_ok(s.key, false, s.hello, s.nonce_a, m3));
    /* The two directions differ: a challenge cannot be reflected as a
     * proof. */
    assert_memory_not_equal(mac_a, mac_d, PEER__MAC_LEN);
    assert_false(peer__mac_ok(s.key, false, s.hello, s.nonce_a, mac_a));
}

static void test_proof_refused(void **state)
{
    struct session s, other;
    make_session(&s, "the token");
    make_session(&other, "another token");
    uint8_t mac_d[PEER__MAC_LEN];
    assert_int_equal(peer__mac(mac_d, s.key, false, s.hello, s.nonce_a), 0);

    /* Wrong token: the MAC of another key does not pass, either way. */
    uint8_t wrong[PEER__MAC_LEN];
    assert_int_equal(peer__mac(wrong, other.key, false, s.hello, s.nonce_a),
                     0);
    assert_false(peer__mac_ok(s.key, false, s.hello, s.nonce_a, wrong));
    assert_int_equal(peer__mac(wrong, other.key, true, s.hello, s.nonce_a), 0);
    assert_false(peer__mac_ok(s.key, true, s.hello, s.nonce_a, wrong));

    /* Replay: a proof recorded on one connection does not fit the next
     * one, whose acceptor nonce is new. */
    uint8_t fresh[PEER__NONCE_LEN];
    assert_int_equal(peer__nonce(fresh), 0);
    assert_memory_not_equal(fresh, s.nonce_a, PEER__NONCE_LEN);
    assert_false(peer__mac_ok(s.key, false, s.hello, fresh, mac_d));
    /* Nor a recorded challenge a dialer with a new hello nonce. */
    uint8_t mac_a[PEER__MAC_LEN];
    assert_int_equal(peer__mac(mac_a, s.key, true, s.hello, s.nonce_a), 0);
    uint8_t hello2[PEER__HELLO3_LEN];
    memcpy(hello2, s.hello, sizeof hello2);
    hello2[50] ^= 1; /* another nonce_d */
    assert_false(peer__mac_ok(s.key, true, hello2, s.nonce_a, mac_a));

    /* Any flipped bit of the proof record, the MAC, the hello (claimed ids
     * included) or the nonce is refused. */
    uint8_t pf[PEER__PROOF_LEN], m[PEER__MAC_LEN];
    peer__proof_encode(pf, mac_d);
    for (size_t i = 0; i < sizeof pf * 8; i++) {
        pf[i / 8] ^= (uint8_t)(1u << (i % 8));
        bool ok = peer__proof_decode(pf, m) == 0 &&
                  peer__mac_ok(s.key, false, s.hello, s.nonce_a, m);
        assert_false(ok);
        pf[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    for (size_t i = 0; i < sizeof s.hello * 8; i++) {
        s.hello[i / 8] ^= (uint8_t)(1u << (i % 8));
        assert_false(peer__mac_ok(s.key, false, s.hello, s.nonce_a, mac_d));
        s.hello[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    for (size_t i = 0; i < sizeof s.nonce_a * 8; i++) {
        s.nonce_a[i / 8] ^= (uint8_t)(1u << (i % 8));
        assert_false(peer__mac_ok(s.key, false, s.hello, s.nonce_a, mac_d));
        s.nonce_a[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    assert_true(peer__mac_ok(s.key, false, s.hello, s.nonce_a, mac_d));
    /* A challenge that is not one. */
    uint8_t ch[PEER__CHALLENGE_LEN];
    peer__challenge_encode(ch, s.nonce_a, mac_a);
    ch[0] ^= 1;
    assert_int_equal(peer__challenge_decode(ch, fresh, m), CRAFT_ECORRUPT);
}

/* ---- live: transports and hostile clients ---- */

struct node {
    struct uvenv *e;
    struct peer_transport *t;
    uint64_t id;
    uint16_t port;
    uint64_t got[8]; /* frames by sender */
};

static void on_frame(void *ud, uint64_t from, const uint8_t *buf, size_t len)
{
    struct node *n = ud;
    n->got[from < 8 ? from : 7]++;
}

static struct peer_opts opts_for(struct node *n, struct uvenv *e, uint64_t id,
                                 const char *token)
{
    memset(n, 0, sizeof *n);
    n->e = e;
    n->id = id;
    struct peer_opts o;
    memset(&o, 0, sizeof o);
    o.loop = &e->loop;
    o.listen_addr = "127.0.0.1:0";
    o.self_id = id;
    o.token = token;
    o.token_len = token ? strlen(token) : 0;
    o.backoff_min_ms = 10;
    o.backoff_max_ms = 100;
    o.log = &e->log;
    o.on_frame = on_frame;
    o.ud = n;
    return o;
}

static void start(struct node *n, const struct peer_opts *o)
{
    assert_int_equal(peer_transport_start(&n->t, o), 0);
    n->port = peer_transport_port(n->t);
}

static void start_node(struct node *n, struct uvenv *e, uint64_t id,
                       const char *token)
{
    struct peer_opts o = opts_for(n, e, id, token);
    start(n, &o);
}

static void set_flag(void *ud)
{
    *(bool *)ud = true;
}

static void stop_node(struct node *n)
{
    bool done = false;
    peer_transport_close(n->t, set_flag, &done);
    assert_true(uvenv_run_until(n->e, uvenv_is_true, &done, WAIT_MS));
}

static void link_to(struct node *from, const struct node *to)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", to->port);
    assert_int_equal(peer_set(from->t, to->id, 0, addr), 0);
}

static void send_n(struct node *from, uint64_t to, unsigned n)
{
    uint8_t buf[32] = {1, 2, 3};
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(peer_send(from->t, to, buf, sizeof buf), 0);
}

struct want {
    const struct node *n;
    uint64_t from, count;
};

static bool got_enough(void *arg)
{
    const struct want *w = arg;
    return w->n->got[w->from] >= w->count;
}

static bool wait_frames(struct node *n, uint64_t from, uint64_t count)
{
    struct want w = {n, from, count};
    return uvenv_run_until(n->e, got_enough, &w, 3000);
}

/* a's peer (its only one) has the key of its acceptor for datagrams. */
static bool keyed(void *arg)
{
    const struct peer_transport *t = arg;
    return t->peers != NULL && t->peers->dg_mac != NULL;
}

/* A blocking client socket connected to port (the kernel completes the
 * connect before the server accepts it). */
static int raw_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static void raw_send(int fd, const void *buf, size_t len)
{
    assert_int_equal(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* True if the server has closed fd (EOF or reset); drains what came. */
static bool raw_closed(int fd)
{
    char b[256];
    for (;;) {
        ssize_t n = recv(fd, b, sizeof b, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return true;
        if (n < 0)
            return false;
    }
}

static size_t hello_bytes(uint8_t *out, unsigned version, uint64_t sender,
                          uint64_t target)
{
    struct peer__hello h = {.version = version, .sender = sender,
                            .target = target};
    memset(h.nonce, 0x5a, sizeof h.nonce);
    return peer__hello_encode(out, &h);
}

static size_t frame_bytes(uint8_t *out, uint32_t len)
{
    memset(out + PEER__FRAME_HDR, 0x42, len);
    peer__frame_header(out, out + PEER__FRAME_HDR, len);
    return PEER__FRAME_HDR + len;
}

static void test_token_peers_exchange(void **state)
{
    struct uvenv *e = *state;
    struct node a, b;
    start_node(&a, e, 1, "sesame");
    start_node(&b, e, 2, "sesame");
    link_to(&a, &b);
    link_to(&b, &a);
    send_n(&a, 2, 50); /* queued before the handshake is done */
    send_n(&b, 1, 50);
    assert_true(wait_frames(&b, 1, 50));
    assert_true(wait_frames(&a, 2, 50));
    assert_non_null(strstr(e->lb.text, "cluster token proved"));
    assert_null(strstr(e->lb.text, "sesame")); /* never logged */
    assert_true(peer_transport_authenticated(a.t));
    assert_true(peer_transport_loopback(a.t));

    /* Urgent frames also go as datagrams under the key b gave a on a's
     * connection, after a's proof: one sent so arrives as a datagram, and
     * its TCP copy, coming after it, is dropped. A datagram "from a" under
     * a key of one's own (a token holder's, say) does not count. */
    assert_true(uvenv_run_until(e, keyed, a.t, WAIT_MS));
    uint64_t before = b.got[1];
    uint8_t frame[16] = {0}, dg[PEER__DGRAM_MAX], made_up[PEER__KEY_LEN] = {0};
    assert_int_equal(peer_send_urgent(a.t, 2, frame, sizeof frame, 0), 0);
    assert_true(wait_frames(&b, 1, before + 1));
    uvenv_run_for(e, 50);
    struct peer__dgram d = {.sender = 1, .target = 2, .seq = 1u << 30};
    assert_int_equal(peer__derive_key(made_up, "sesame", 6), 0);
    size_t n = uvenv_dgram_encode(dg, &d, frame, sizeof frame, made_up);
    uvenv_udp_send(b.port, dg, n);
    uvenv_run_for(e, 100);
    assert_int_equal(b.got[1], before + 1);
    struct peer_transport_stats ts;
    peer_transport_get_stats(b.t, &ts);
    assert_int_equal(ts.dgrams_rejected, 1);
    assert_int_equal(ts.dgrams_received, 1);
    assert_int_equal(ts.frames_twins, 1);
    stop_node(&a);
    stop_node(&b);
}

/* The /join proof: HMAC-SHA256 under the derived key of "craftd join v1"
 * and the body (the expected value computed apart, with Python's hmac);
 * another body, token or a flipped digit is refused; none without a token. */
static void test_join_proof(void **state)
{
    struct uvenv *e = *state;
    struct node a, b, c;
    start_node(&a, e, 1, "secret-token");
    start_node(&b, e, 2, "other-token");
    start_node(&c, e, 3, NULL);
    const char *body = "{\"id\":\"n4\",\"addr\":\"127.0.0.1:12004\"}";
    size_t len = strlen(body);
    char p[PEER_JOIN_PROOF_LEN + 1];
    assert_int_equal(peer_join_proof(a.t, body, len, p), 0);
    assert_string_equal(p, "283e6c8ebe6b0090526bc17f4f8bce27"
                           "9088acd5d9f52c367bcf19a45e3beab9");
    assert_true(peer_join_proof_ok(a.t, body, len, p, strlen(p)));
    assert_false(peer_join_proof_ok(a.t, body, len - 1, p, strlen(p)));
    assert_false(peer_join_proof_ok(b.t, body, len, p, strlen(p)));
    assert_false(peer_join_proof_ok(a.t, body, len, p, strlen(p) - 1));
    for (size_t i = 0; i < PEER_JOIN_PROOF_LEN; i += 7) {
        char q[sizeof p];
        memcpy(q, p, sizeof p);
        q[i] = q[i] == '0' ? '1' : '0';
        assert_false(peer_join_proof_ok(a.t, body, len, q, strlen(q)));
    }
    assert_int_equal(peer_join_proof(c.t, body, len, p), CRAFT_EINVAL);
    assert_false(peer_join_proof_ok(c.t, body, len, p, PEER_JOIN_PROOF_LEN));
    stop_node(&a);
    stop_node(&b);
    stop_node(&c);
}

static void test_wrong_or_missing_token_refused(void **state)
{
    struct uvenv *e = *state;
    struct node a, b, c, d;
    start_node(&b, e, 2, "right");
    start_node(&a, e, 1, "wrong"); /* another token */
    start_node(&c, e, 3, NULL);    /* no token: plain v2 */
    start_node(&d, e, 4, NULL);    /* no token, dialled by a token node */
    link_to(&a, &b);
    link_to(&c, &b);
    link_to(&b, &d);
    send_n(&a, 2, 5);
    send_n(&c, 2, 5);
    send_n(&b, 4, 5);
    uvenv_run_for(e, 600);
    assert_int_equal(b.got[1], 0);
    assert_int_equal(b.got[3], 0);
    assert_int_equal(d.got[2], 0);
    struct peer_transport_stats sb, sd;
    peer_transport_get_stats(b.t, &sb);
    peer_transport_get_stats(d.t, &sd);
    assert_true(sb.conns_auth_failed >= 2);
    assert_true(sd.conns_auth_failed >= 1);
    assert_int_equal(sb.frames_received, 0);
    /* The dialer with the wrong token learns that the acceptor's proof is
     * not of its token. */
    assert_non_null(strstr(e->lb.text, "cluster-token proof of the peer"));
    /* Refusals on b and d are rate-limited (a burst of 5 each, then one
     * per 5 s), although the dialers retry every <= 100 ms; so are the
     * dialers' own lines about connections that die in the handshake. */
    assert_true(uvenv_count(e, "closing peer connection") <= 10);
    assert_true(uvenv_count(e, "warn peer ") <= 4);
    stop_node(&a);
    stop_node(&b);
    stop_node(&c);
    stop_node(&d);
}

/* Hostile clients against a token node: nothing they send is decoded, each
 * is closed, and the log stays short. */
static void test_hostile_clients(void **state)
{
    struct uvenv *e = *state;
    struct node b;
    start_node(&b, e, 2, "sesame");
    uint8_t buf[512];
    int fds[6];

    /* v2 hello claiming id 1 with a frame: refused, frame not decoded. */
    size_t n = hello_bytes(buf, PEER__VERSION, 1, 2);
    n += frame_bytes(buf + n, 16);
    fds[0] = raw_connect(b.port);
    raw_send(fds[0], buf, n);
    /* v3 hello, then a made-up proof and a frame at once. */
    n = hello_bytes(buf, PEER__VERSION_AUTH, 1, 2);
    uint8_t mac[PEER__MAC_LEN];
    memset(mac, 0x11, sizeof mac);
    peer__proof_encode(buf + n, mac);
    n += PEER__PROOF_LEN;
    n += frame_bytes(buf + n, 16);
    fds[1] = raw_connect(b.port);
    raw_send(fds[1], buf, n);
    /* Frames with no handshake at all. */
    n = frame_bytes(buf, 64);
    fds[2] = raw_connect(b.port);
    raw_send(fds[2], buf, n);
    /* Random bytes. */
    for (size_t i = 0; i < 256; i++)
        buf[i] = (uint8_t)(i * 37 + 11);
    fds[3] = raw_connect(b.port);
    raw_send(fds[3], buf, 256);
    /* A truncated v3 hello, and a v3 hello with no proof: they wait for
     * the handshake deadline (below). */
    n = hello_bytes(buf, PEER__VERSION_AUTH, 1, 2);
    fds[4] = raw_connect(b.port);
    raw_send(fds[4], buf, n - 10);
    fds[5] = raw_connect(b.port);
    raw_send(fds[5], buf, n);
    uvenv_run_for(e, 300);
    for (int i = 0; i < 4; i++)
        assert_true(raw_closed(fds[i]));
    assert_int_equal(b.got[1], 0);
    struct peer_transport_stats st;
    peer_transport_get_stats(b.t, &st);
    assert_int_equal(st.frames_received, 0);
    assert_true(st.conns_auth_failed >= 2);
    /* The default handshake deadline is 5 s: still open. */
    assert_false(raw_closed(fds[5]));
    for (int i = 0; i < 6; i++)
        close(fds[i]);
    stop_node(&b);

    /* Same with a short deadline. */
    struct peer_opts o = opts_for(&b, e, 2, "sesame");
    o.handshake_timeout_ms = 200;
    start(&b, &o);
    fds[0] = raw_connect(b.port);
    raw_send(fds[0], buf, n);
    fds[1] = raw_connect(b.port); /* sends nothing */
    uvenv_run_for(e, 500);
    assert_true(raw_closed(fds[0]));
    assert_true(raw_closed(fds[1]));
    peer_transport_get_stats(b.t, &st);
    assert_int_equal(st.conns_timed_out, 2);
    close(fds[0]);
    close(fds[1]);
    stop_node(&b);
}

/* An impostor claiming the id of a connected peer does not evict it. */
static void test_impostor_does_not_evict(void **state)
{
    struct uvenv *e = *state;
    struct node a, b;
    start_node(&a, e, 1, "sesame");
    start_node(&b, e, 2, "sesame");
    link_to(&a, &b);
    send_n(&a, 2, 10);
    assert_true(wait_frames(&b, 1, 10));
    uint8_t buf[256];
    size_t n = hello_bytes(buf, PEER__VERSION_AUTH, 1, 2);
    memset(buf + n, 0, PEER__PROOF_LEN); /* not a proof */
    int fd = raw_connect(b.port);
    raw_send(fd, buf, n);
    uvenv_run_for(e, 100);
    raw_send(fd, buf + n, PEER__PROOF_LEN);
    uvenv_run_for(e, 100);
    assert_true(raw_closed(fd));
    close(fd);
    /* a's connection is the same one and still delivers. */
    struct peer_stats ps;
    assert_int_equal(peer_get_stats(a.t, 2, &ps), 0);
    assert_int_equal(ps.connects, 1);
    send_n(&a, 2, 10);
    assert_true(wait_frames(&b, 1, 20));
    stop_node(&a);
    stop_node(&b);
}

/* Connection limits: handshakes that never finish cannot keep a real peer
 * out (the oldest goes), and the total is capped. */
static void test_connection_limits(void **state)
{
    struct uvenv *e = *state;
    struct node a, b;
    struct peer_opts o = opts_for(&b, e, 2, "sesame");
    o.max_conns = 8;
    o.max_unauth_conns = 4;
    start(&b, &o);
    int fds[20];
    for (int i = 0; i < 20; i++)
        fds[i] = raw_connect(b.port);
    uvenv_run_for(e, 200);
    struct peer_transport_stats st;
    peer_transport_get_stats(b.t, &st);
    assert_int_equal(st.conns_open, 4);
    assert_int_equal(st.conns_limited, 16);
    assert_true(uvenv_count(e, "too many connections") <= 6);
    start_node(&a, e, 1, "sesame");
    link_to(&a, &b);
    send_n(&a, 2, 10);
    assert_true(wait_frames(&b, 1, 10));
    for (int i = 0; i < 20; i++)
        close(fds[i]);
    stop_node(&a);
    stop_node(&b);
}

/* A real dialer mid-handshake (it has its challenge, its proof is yet to
 * come) is not evicted by strangers that connect after it while the
 * handshake slots are full: they are refused until the ones in handshake
 * have had the time for a round trip; then the oldest goes. */
static void test_strangers_do_not_evict_a_young_handshake(void **state)
{
    struct uvenv *e = *state;
    struct node b;
    struct peer_opts o = opts_for(&b, e, 2, "sesame");
    o.max_conns = 8;
    o.max_unauth_conns = 2;
    start(&b, &o); /* default deadline 5 s: eviction after 1 s */
    struct session s;
    assert_int_equal(peer__derive_key(s.key, "sesame", 6), 0);
    struct peer__hello h = {.version = PEER__VERSION_AUTH, .sender = 1, .target = 2};
    assert_int_equal(peer__nonce(h.nonce), 0);
    assert_int_equal(peer__hello_encode(s.hello, &h), PEER__HELLO3_LEN);
    int honest = raw_connect(b.port);
    raw_send(honest, s.hello, sizeof s.hello);
    uvenv_run_for(e, 100);
    uint8_t ch[PEER__CHALLENGE_LEN], mac[PEER__MAC_LEN];
    assert_int_equal(recv(honest, ch, sizeof ch, MSG_DONTWAIT), (ssize_t)sizeof ch);
    assert_int_equal(peer__challenge_decode(ch, s.nonce_a, mac), 0);
    assert_true(peer__mac_ok(s.key, true, s.hello, s.nonce_a, mac));
    int strangers[4];
    for (int i = 0; i < 4; i++)
        strangers[i] = raw_connect(b.port);
    uvenv_run_for(e, 100);
    /* the honest one finishes: proof, then a frame */
    uint8_t buf[PEER__PROOF_LEN + PEER__FRAME_HDR + 16];
    assert_int_equal(peer__mac(mac, s.key, false, s.hello, s.nonce_a), 0);
    peer__proof_encode(buf, mac);
    size_t n = PEER__PROOF_LEN + frame_bytes(buf + PEER__PROOF_LEN, 16);
    raw_send(honest, buf, n);
    assert_true(wait_frames(&b, 1, 1));
    assert_false(raw_closed(honest));
    /* one stranger got the other slot; three were refused */
    struct peer_transport_stats st;
    peer_transport_get_stats(b.t, &st);
    assert_int_equal(st.conns_limited, 3);
    assert_true(raw_closed(strangers[1]) && raw_closed(strangers[2]) &&
                raw_closed(strangers[3]));
    assert_false(raw_closed(strangers[0]));
    /* past the age, new strangers (one takes the honest one's slot) evict
     * the oldest one in handshake */
    uvenv_run_for(e, 1100);
    int late[2] = {raw_connect(b.port), raw_connect(b.port)};
    uvenv_run_for(e, 100);
    assert_true(raw_closed(strangers[0]));
    assert_false(raw_closed(late[0]) || raw_closed(late[1]));
    close(late[0]);
    close(late[1]);
    for (int i = 0; i < 4; i++)
        close(strangers[i]);
    close(honest);
    stop_node(&b);
}

/* Once a frame has begun it must arrive whole within the frame deadline;
 * a frame over the maximum is refused at once, before its bytes come. */
static void test_frame_deadline_and_size(void **state)
{
    struct uvenv *e = *state;
    struct node b;
    struct peer_opts o = opts_for(&b, e, 2, NULL);
    o.frame_timeout_ms = 200;
    o.max_frame_bytes = 1 << 20;
    start(&b, &o);
    uint8_t buf[256];
    size_t n = hello_bytes(buf, PEER__VERSION, 1, 2);
    craft_put32(buf + n, 1000); /* announces 1000 bytes, sends 10 */
    craft_put32(buf + n + 4, 0);
    memset(buf + n + 8, 0, 10);
    int slow = raw_connect(b.port);
    raw_send(slow, buf, n + 18);
    n = hello_bytes(buf, PEER__VERSION, 3, 2); /* another sender */
    craft_put32(buf + n, (1u << 20) + 1); /* over the limit */
    craft_put32(buf + n + 4, 0);
    int big = raw_connect(b.port);
    raw_send(big, buf, n + 18);
    uvenv_run_for(e, 100);
    assert_true(raw_closed(big));
    assert_false(raw_closed(slow));
    uvenv_run_for(e, 500);
    assert_true(raw_closed(slow));
    struct peer_transport_stats st;
    peer_transport_get_stats(b.t, &st);
    assert_int_equal(st.conns_timed_out, 1);
    assert_non_null(strstr(e->lb.text, "frame deadline"));
    assert_non_null(strstr(e->lb.text, "frame length"));
    close(slow);
    close(big);
    stop_node(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_v3_codec),
        cmocka_unit_test(test_key_derivation),
        cmocka_unit_test(test_mac_known_answers),
        cmocka_unit_test(test_proof_accepted),
        cmocka_unit_test(test_proof_refused),
        cmocka_unit_test_setup_teardown(test_token_peers_exchange,
                                        uvenv_setup, uvenv_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_or_missing_token_refused,
                                        uvenv_setup, uvenv_teardown),
        cmocka_unit_test_setup_teardown(test_hostile_clients,
                                        uvenv_setup, uvenv_teardown),
        cmocka_unit_test_setup_teardown(test_join_proof,
                                        uvenv_setup, uvenv_teardown),
        cmocka_unit_test_setup_teardown(test_impostor_does_not_evict,
                                        uvenv_setup, uvenv_teardown),
        cmocka_unit_test_setup_teardown(test_connection_limits,
                                        uvenv_setup, uvenv_teardown),
        cmocka_unit_test_setup_teardown(test_frame_deadline_and_size,
                                        uvenv_setup, uvenv_teardown),
        cmocka_unit_test_setup_teardown(test_strangers_do_not_evict_a_young_handshake,
                                        uvenv_setup, uvenv_teardown),
    };
    signal(SIGPIPE, SIG_IGN); /* as the daemon does (transport.h) */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
