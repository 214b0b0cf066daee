/* Tests of peer TLS (src/transport/tls.c, tlsconn.c). The certificates are
 * made by the test at run time with the OpenSSL API (two CAs, node
 * certificates naming n1, n2 and n3) in a fresh temporary directory, removed
 * at the end. First two engines talking to each other in memory (handshake,
 * data both ways, a certificate of another CA, a wrong name, garbage), then
 * two real transports on one uv loop over 127.0.0.1. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "common/endian.h"
#include "common/error.h"
#include "common/member_id.h"
#include "transport/internal.h"
#include "transport/tls.h"
#include "unit/uv_env.h"

#define WAIT_MS 10000

/* ---- certificates, made once for the whole run ---- */

static char dir[64];
static long serial = 1;

static EVP_PKEY *new_key(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    assert_non_null(k);
    return k;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v;
    X509V3_set_ctx_nodb(&v);
    X509V3_set_ctx(&v, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v, nid, value);
    assert_non_null(e);
    assert_int_equal(X509_add_ext(x, e, -1), 1);
    X509_EXTENSION_free(e);
}

/* A certificate for key named cn (and DNS:san if not NULL), signed by
 * issuer/ikey, or self-signed (a CA) when issuer is NULL. */
static X509 *new_cert(const char *cn, const char *san, EVP_PKEY *key,
                      X509 *issuer, EVP_PKEY *ikey)
{
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
    X509 *signer = issuer ? issuer : x;
    if (issuer == NULL) {
        add_ext(x, signer, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(x, signer, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(x, signer, NID_key_usage, "critical,digitalSignature");
        add_ext(x, signer, NID_ext_key_usage, "serverAuth,clientAuth");
    }
    if (san != NULL) {
        char v[300];
        snprintf(v, sizeof v, "DNS:%s", san);
        add_ext(x, signer, NID_subject_alt_name, v);
    }
    assert_true(X509_sign(x, ikey ? ikey : key, EVP_sha256()) > 0);
    return x;
}

static void path_of(char *out, size_t len, const char *file)
{
    snprintf(out, len, "%s/%s", dir, file);
}

static void write_cert(const char *file, X509 *x, X509 *also)
{
    char p[128];
    path_of(p, sizeof p, file);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    if (also != NULL)
        assert_int_equal(PEM_write_X509(f, also), 1);
    fclose(f);
}

static void write_key(const char *file, EVP_PKEY *k)
{
    char p[128];
    path_of(p, sizeof p, file);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL),
                     1);
    fclose(f);
}

static void write_text(const char *file, const char *text)
{
    char p[128];
    path_of(p, sizeof p, file);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static const char *const FILES[] = {
    "ca.pem", "ca2.pem", "both-cas.pem", "junk.pem", "n1.pem", "n1.key",
    "n2.pem", "n2.key", "n3.pem", "n3.key", "evil-n2.pem", "evil-n2.key",
    "cn-only.pem", "cn-only.key",
};

static int make_certs(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/craftd-tls-test-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    EVP_PKEY *cak = new_key(), *ca2k = new_key();
    X509 *ca = new_cert("craftd test CA", NULL, cak, NULL, NULL);
    X509 *ca2 = new_cert("another CA", NULL, ca2k, NULL, NULL);
    write_cert("ca.pem", ca, NULL);
    write_cert("ca2.pem", ca2, NULL);
    write_cert("both-cas.pem", ca2, ca);
    write_text("junk.pem", "this is no certificate\n");
    const char *names[] = {"n1", "n2", "n3"};
    for (int i = 0; i < 3; i++) {
        EVP_PKEY *k = new_key();
        X509 *x = new_cert(names[i], names[i], k, ca, cak);
        char f[32];
        snprintf(f, sizeof f, "%s.pem", names[i]);
        write_cert(f, x, NULL);
        snprintf(f, sizeof f, "%s.key", names[i]);
        write_key(f, k);
        X509_free(x);
        EVP_PKEY_free(k);
    }
    /* n2 once more, but signed by the other CA. */
    EVP_PKEY *ek = new_key();
    X509 *ex = new_cert("n2", "n2", ek, ca2, ca2k);
    write_cert("evil-n2.pem", ex, NULL);
    write_key("evil-n2.key", ek);
    /* A certificate naming n2 by its CN only. */
    EVP_PKEY *ck = new_key();
    X509 *cx = new_cert("n2", NULL, ck, ca, cak);
    write_cert("cn-only.pem", cx, NULL);
    write_key("cn-only.key", ck);
    X509_free(cx);
    EVP_PKEY_free(ck);
    X509_free(ex);
    EVP_PKEY_free(ek);
    X509_free(ca);
    X509_free(ca2);
    EVP_PKEY_free(cak);
    EVP_PKEY_free(ca2k);
    return 0;
}

static int remove_certs(void **state)
{
    for (size_t i = 0; i < sizeof FILES / sizeof FILES[0]; i++) {
        char p[128];
        path_of(p, sizeof p, FILES[i]);
        unlink(p);
    }
    rmdir(dir);
    return 0;
}

/* A context for node name (files name.pem, name.key) trusting ca. */
static int ctx_of(struct peer__tls_ctx **out, const char *cert,
                  const char *key, const char *ca, char *err, size_t errlen)
{
    char c[128], k[128], a[128];
    path_of(c, sizeof c, cert);
    path_of(k, sizeof k, key);
    path_of(a, sizeof a, ca);
    return peer__tls_ctx_new(out, c, k, a, err, errlen);
}

static struct peer__tls_ctx *ctx_for(const char *name, const char *ca)
{
    char c[32], k[32], err[512];
    snprintf(c, sizeof c, "%s.pem", name);
    snprintf(k, sizeof k, "%s.key", name);
    struct peer__tls_ctx *x = NULL;
    int rc = ctx_of(&x, c, k, ca, err, sizeof err);
    if (rc)
        fail_msg("context of %s: %s", name, err);
    return x;
}

/* ---- two engines in memory ---- */

/* Move ciphertext both ways until neither has any left; then the result
 * of each side's handshake. */
static void pump(struct peer__tls *a, struct peer__tls *b, int *ra, int *rb)
{
    uint8_t buf[65536];
    *ra = peer__tls_handshake(a);
    *rb = CRAFT_ETRUNCATED;
    for (int round = 0; round < 50; round++) {
        size_t moved = 0, n;
        while ((n = peer__tls_take(a, buf, sizeof buf)) > 0) {
            assert_int_equal(peer__tls_feed(b, buf, n), 0);
            moved += n;
        }
        *rb = peer__tls_handshake(b);
        while ((n = peer__tls_take(b, buf, sizeof buf)) > 0) {
            assert_int_equal(peer__tls_feed(a, buf, n), 0);
            moved += n;
        }
        *ra = peer__tls_handshake(a);
        if (moved == 0)
            return;
    }
    fail_msg("the handshake does not settle");
}

static const uint64_t INC2 = 0x1234567890abcdefull;

struct pair {
    struct peer__tls_ctx *cc, *sc;
    struct peer__tls *c, *s;
    int rc, rs;
};

/* client (cert name, trusting cca) dials server n1 (trusting ca.pem),
 * expecting the server's tag to be that of expect. */
static void pair_open(struct pair *p, const char *client, const char *cca,
                      const char *expect)
{
    memset(p, 0, sizeof *p);
    p->cc = ctx_for(client, cca);
    p->sc = ctx_for("n1", "ca.pem");
    assert_int_equal(peer__tls_new(&p->c, p->cc, false, INC2,
                                   craft_member_id(expect, 0)), 0);
    assert_int_equal(peer__tls_new(&p->s, p->sc, true, 0, 0), 0);
    pump(p->c, p->s, &p->rc, &p->rs);
}

static void pair_close(struct pair *p)
{
    peer__tls_free(p->c);
    peer__tls_free(p->s);
    peer__tls_ctx_free(p->cc);
    peer__tls_ctx_free(p->sc);
}

/* Write len bytes on from, move the ciphertext, read them all on to. */
static void send_plain(struct peer__tls *from, struct peer__tls *to,
                       size_t len)
{
    uint8_t *in = malloc(len), *out = malloc(len);
    assert_non_null(in);
    assert_non_null(out);
    for (size_t i = 0; i < len; i++)
        in[i] = (uint8_t)(i * 7 + 3);
    assert_int_equal(peer__tls_write(from, in, len), 0);
    size_t cl = peer__tls_pending(from);
    assert_true(cl > len); /* records add their overhead */
    uint8_t *c = malloc(cl);
    assert_non_null(c);
    assert_int_equal(peer__tls_take(from, c, cl), cl);
    assert_int_equal(peer__tls_feed(to, c, cl), 0);
    size_t got = 0, n;
    while (got < len) {
        assert_int_equal(peer__tls_read(to, out + got, len - got, &n), 0);
        assert_true(n > 0);
        got += n;
    }
    assert_int_equal(peer__tls_read(to, out, len, &n), 0);
    assert_int_equal(n, 0); /* nothing more */
    assert_memory_equal(in, out, len);
    free(in);
    free(out);
    free(c);
}

static void test_handshake_and_data(void **state)
{
    struct pair p;
    pair_open(&p, "n2", "ca.pem", "n1");
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.rs, 0);
    assert_true(peer__tls_done(p.c) && peer__tls_done(p.s));
    /* The client checked the server's name; the server learns who the
     * client is: its name and, with the incarnation, its Raft id. */
    assert_true(peer__tls_peer_has_tag(p.c, craft_member_id("n1", 0)));
    assert_false(peer__tls_peer_has_tag(p.c, craft_member_id("n2", 0)));
    assert_true(peer__tls_peer_has_tag(p.s, craft_member_id("n2", 0)));
    assert_true(peer__tls_peer_is(p.s, craft_member_id("n2", INC2)));
    assert_false(peer__tls_peer_is(p.s, craft_member_id("n2", INC2 + 1)));
    assert_false(peer__tls_peer_is(p.s, craft_member_id("n3", INC2)));
    char name[64];
    peer__tls_peer_name(p.s, name, sizeof name);
    assert_string_equal(name, "n2");
    send_plain(p.c, p.s, 300000); /* several records */
    send_plain(p.s, p.c, 40);
    send_plain(p.c, p.s, 1);
    pair_close(&p);
}

static void test_cn_only_name(void **state)
{
    struct pair p;
    pair_open(&p, "cn-only", "ca.pem", "n1");
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.rs, 0);
    assert_true(peer__tls_peer_is(p.s, craft_member_id("n2", INC2)));
    pair_close(&p);
}

static void test_other_ca_refused(void **state)
{
    /* evil-n2 trusts both CAs (so it would accept n1), but its own
     * certificate comes from the other CA: n1 refuses it. */
    struct pair p;
    pair_open(&p, "evil-n2", "both-cas.pem", "n1");
    assert_int_equal(p.rs, CRAFT_ECORRUPT);
    assert_non_null(strstr(peer__tls_error(p.s), "certificate"));
    /* In TLS 1.3 the client is done before the server judges it: it
     * learns of the refusal from the server's alert, at its next read. */
    uint8_t out[16];
    size_t n;
    assert_true(p.rc != 0 ||
                peer__tls_read(p.c, out, sizeof out, &n) == CRAFT_ECORRUPT);
    assert_false(peer__tls_done(p.s));
    assert_int_equal(peer__tls_write(p.s, (const uint8_t *)"x", 1),
                     CRAFT_EINVAL);
    pair_close(&p);

    /* A client trusting only the other CA refuses n1. */
    pair_open(&p, "evil-n2", "ca2.pem", "n1");
    assert_int_equal(p.rc, CRAFT_ECORRUPT);
    assert_non_null(strstr(peer__tls_error(p.c), "certificate"));
    assert_int_not_equal(p.rs, 0);
    pair_close(&p);
}

static void test_wrong_name_refused(void **state)
{
    /* n2 dials what it thinks is n3; n1 answers: refused in the handshake,
     * before anything is written. */
    struct pair p;
    pair_open(&p, "n2", "ca.pem", "n3");
    assert_int_equal(p.rc, CRAFT_ECORRUPT);
    assert_non_null(strstr(peer__tls_error(p.c), "names another node"));
    assert_int_not_equal(p.rs, 0);
    pair_close(&p);
}

static void test_garbage_refused(void **state)
{
    struct peer__tls_ctx *sc = ctx_for("n1", "ca.pem");
    struct peer__tls *s;
    assert_int_equal(peer__tls_new(&s, sc, true, 0, 0), 0);
    /* A plain craftd handshake, as a forger would send on the port. */
    uint8_t hello[PEER__HELLO_LEN];
    struct peer__hello h = {.sender = 1, .target = 2};
    peer__hello_encode(hello, &h);
    assert_int_equal(peer__tls_feed(s, hello, sizeof hello), 0);
    assert_int_equal(peer__tls_handshake(s), CRAFT_ECORRUPT);
    size_t n;
    uint8_t out[16];
    assert_int_not_equal(peer__tls_read(s, out, sizeof out, &n), 0);
    peer__tls_free(s);

    /* Garbage after a good handshake: the next read fails. */
    struct pair p;
    pair_open(&p, "n2", "ca.pem", "n1");
    assert_int_equal(p.rs, 0);
    uint8_t junk[64];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(0x17 + i * 31);
    junk[0] = 0x17; /* application data */
    junk[1] = 0x03;
    junk[2] = 0x03;
    junk[3] = 0;
    junk[4] = sizeof junk - 5;
    assert_int_equal(peer__tls_feed(p.s, junk, sizeof junk), 0);
    assert_int_equal(peer__tls_read(p.s, out, sizeof out, &n),
                     CRAFT_ECORRUPT);
    assert_int_equal(n, 0);
    pair_close(&p);
    peer__tls_ctx_free(sc);
}

static void test_context_errors(void **state)
{
    struct peer__tls_ctx *x = NULL;
    char err[512];
    assert_int_equal(ctx_of(&x, "missing.pem", "n1.key", "ca.pem", err,
                            sizeof err), CRAFT_EINVAL);
    assert_non_null(strstr(err, "missing.pem"));
    assert_non_null(strstr(err, "No such file"));
    assert_int_equal(ctx_of(&x, "n1.pem", "n2.key", "ca.pem", err,
                            sizeof err), CRAFT_EINVAL);
    assert_non_null(strstr(err, "n2.key"));
    assert_non_null(strstr(err, "does not match certificate"));
    assert_int_equal(ctx_of(&x, "n1.pem", "junk.pem", "ca.pem", err,
                            sizeof err), CRAFT_EINVAL);
    assert_non_null(strstr(err, "not a PEM private key"));
    assert_int_equal(ctx_of(&x, "n1.pem", "n1.key", "junk.pem", err,
                            sizeof err), CRAFT_EINVAL);
    assert_non_null(strstr(err, "CA"));
    assert_non_null(strstr(err, "junk.pem"));
    assert_int_equal(ctx_of(&x, "n1.pem", "n1.key", "nope.pem", err,
                            sizeof err), CRAFT_EINVAL);
    assert_non_null(strstr(err, "No such file"));
    assert_int_equal(ctx_of(&x, "junk.pem", "n1.key", "ca.pem", err,
                            sizeof err), CRAFT_EINVAL);
    assert_non_null(strstr(err, "not a PEM certificate"));
    assert_int_equal(ctx_of(&x, "evil-n2.pem", "evil-n2.key", "ca.pem", err,
                            sizeof err), CRAFT_EINVAL);
    assert_non_null(strstr(err, "does not verify"));
    assert_null(x);
    assert_int_equal(ctx_of(&x, "n1.pem", "n1.key", "ca.pem", err,
                            sizeof err), 0);
    peer__tls_ctx_free(x);
}

/* ---- two transports on a loop ---- */

struct node {
    struct peer_transport *t;
    uint64_t id;
    unsigned frames;
    uint64_t last_from;
    unsigned refused_out;     /* refusal records read (through TLS) */
    int last_reason;
    char cert[128], key[128], ca[128];
};

static void on_frame(void *ud, uint64_t from, const uint8_t *buf, size_t len)
{
    struct node *n = ud;
    n->frames++;
    n->last_from = from;
}

static void on_refused(void *ud, const struct peer_refusal *r)
{
    struct node *n = ud;
    if (!r->inbound) {
        n->refused_out++;
        n->last_reason = r->reason;
    }
}

static void start(struct uvenv *e, struct node *n, const char *name,
                  uint64_t inc, const char *cert, const char *ca)
{
    memset(n, 0, sizeof *n);
    n->id = craft_member_id(name, inc);
    char f[32];
    snprintf(f, sizeof f, "%s.pem", cert);
    path_of(n->cert, sizeof n->cert, f);
    snprintf(f, sizeof f, "%s.key", cert);
    path_of(n->key, sizeof n->key, f);
    path_of(n->ca, sizeof n->ca, ca);
    struct peer_opts o = {.loop = &e->loop, .listen_addr = "127.0.0.1:0",
                          .self_id = n->id,
                          .self_tag = craft_member_id(name, 0),
                          .backoff_min_ms = 20, .backoff_max_ms = 100,
                          .connect_timeout_ms = 1000, .log = &e->log,
                          .on_frame = on_frame, .on_refused = on_refused,
                          .ud = n, .tls_cert = n->cert, .tls_key = n->key,
                          .tls_ca = n->ca, .self_incarnation = inc};
    assert_int_equal(peer_transport_start(&n->t, &o), 0);
}

static void set_flag(void *ud)
{
    *(bool *)ud = true;
}

static void stop(struct uvenv *e, struct node *n)
{
    bool done = false;
    peer_transport_close(n->t, set_flag, &done);
    while (!done)
        uv_run(&e->loop, UV_RUN_ONCE);
}

static void dial(struct node *from, const struct node *to, const char *name)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", peer_transport_port(to->t));
    assert_int_equal(peer_set(from->t, to->id, craft_member_id(name, 0),
                              addr), 0);
}

static void send_frames(struct node *from, uint64_t to, unsigned n)
{
    uint8_t buf[1000];
    memset(buf, 0xab, sizeof buf);
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(peer_send(from->t, to, buf, sizeof buf), 0);
}

static bool keyed(void *arg)
{
    const struct peer_transport *t = arg;
    return t->peers != NULL && t->peers->dg_mac != NULL;
}

static void test_transports_over_tls(void **state)
{
    struct uvenv *e = uvenv_new();
    assert_non_null(e);
    struct node a, b, evil, liar;
    start(e, &a, "n1", 5, "n1", "ca.pem");
    start(e, &b, "n2", 6, "n2", "ca.pem");
    /* Both ways, and the frames arrive as from the right node. */
    dial(&a, &b, "n2");
    dial(&b, &a, "n1");
    send_frames(&a, b.id, 200);
    send_frames(&b, a.id, 3);
    uvenv_run_until_count(e, &b.frames, 200, WAIT_MS);
    uvenv_run_until_count(e, &a.frames, 3, WAIT_MS);
    assert_int_equal(b.frames, 200);
    assert_int_equal(b.last_from, a.id);
    assert_int_equal(a.frames, 3);
    assert_int_equal(a.last_from, b.id);
    /* The key for datagrams comes through TLS: an urgent frame arrives as
     * a datagram, and its copy on the connection is dropped. */
    assert_true(uvenv_run_until(e, keyed, a.t, WAIT_MS));
    uint8_t urgent[16] = {0};
    assert_int_equal(peer_send_urgent(a.t, b.id, urgent, sizeof urgent, 0), 0);
    uvenv_run_until_count(e, &b.frames, 201, WAIT_MS);
    uvenv_run_for(e, 50);
    assert_int_equal(b.frames, 201);
    struct peer_transport_stats ts;
    peer_transport_get_stats(b.t, &ts);
    assert_int_equal(ts.dgrams_received, 1);
    assert_int_equal(ts.frames_twins, 1);

    /* The identity refusal record goes through TLS too: a dials n2's
     * address for another incarnation of n2 (right name, wrong id). */
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", peer_transport_port(b.t));
    assert_int_equal(peer_set(a.t, craft_member_id("n2", 99),
                              craft_member_id("n2", 0), addr), 0);
    send_frames(&a, craft_member_id("n2", 99), 1);
    uvenv_run_until_count(e, &a.refused_out, 1, WAIT_MS);
    assert_true(a.refused_out >= 1);
    assert_int_equal(a.last_reason, PEER_REFUSED_TARGET);
    assert_int_equal(peer_remove(a.t, craft_member_id("n2", 99)), 0);

    /* A node of another CA cannot get a frame in. */
    start(e, &evil, "n3", 7, "evil-n2", "both-cas.pem");
    dial(&evil, &b, "n2");
    send_frames(&evil, b.id, 5);
    /* n3's certificate is good, but it claims to be n1 (its Raft id). */
    start(e, &liar, "n3", 8, "n3", "ca.pem");
    liar.id = a.id;
    peer_transport_close(liar.t, NULL, NULL);
    struct peer_opts o = {.loop = &e->loop, .self_id = a.id,
                          .self_tag = craft_member_id("n1", 0),
                          .backoff_min_ms = 20, .backoff_max_ms = 100,
                          .log = &e->log, .on_frame = on_frame, .ud = &liar,
                          .tls_cert = liar.cert, .tls_key = liar.key,
                          .tls_ca = liar.ca, .self_incarnation = 5};
    assert_int_equal(peer_transport_start(&liar.t, &o), 0);
    dial(&liar, &b, "n2");
    send_frames(&liar, b.id, 5);
    uint64_t before = b.frames;
    uvenv_run_for(e, 1500);
    assert_int_equal(b.frames, before);
    assert_int_equal(b.last_from, a.id);
    assert_non_null(strstr(e->lb.text, "peer TLS with 127.0.0.1 failed"));
    assert_non_null(strstr(e->lb.text, "which its certificate (n3) does not "
                                       "name"));
    struct peer_transport_stats st;
    peer_transport_get_stats(b.t, &st);
    assert_true(st.conns_rejected >= 1);
    stop(e, &liar);
    stop(e, &evil);
    stop(e, &b);
    stop(e, &a);
    assert_int_equal(uvenv_free(e), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_context_errors),
        cmocka_unit_test(test_handshake_and_data),
        cmocka_unit_test(test_cn_only_name),
        cmocka_unit_test(test_other_ca_refused),
        cmocka_unit_test(test_wrong_name_refused),
        cmocka_unit_test(test_garbage_refused),
        cmocka_unit_test(test_transports_over_tls),
    };
    signal(SIGPIPE, SIG_IGN); /* as the daemon does (transport.h) */
    return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
