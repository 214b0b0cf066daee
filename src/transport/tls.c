/* The peer TLS engine: an OpenSSL session over two memory BIOs (no socket,
 * no loop), the SSL_CTX made from the node's certificate, key and CA, and
 * the checks that bind a peer's certificate to a node's name.
 *
 * Both sides present a certificate and check the other's against the CA
 * (TLS 1.2 at least; 1.3 when both can). The dialer puts its incarnation
 * (8 bytes, little-endian) in a ClientHello extension of its own, type
 * PEER_TLS_EXT; the ClientHello is part of the transcript the dialer signs
 * with its certificate's key, so the incarnation is as authentic as the
 * certificate. With it the acceptor checks that the Raft id claimed in the
 * handshake is craft_member_id(a name of the certificate, incarnation)
 * without knowing the dialer beforehand. Session tickets are off: there is
 * no resumption, and no ticket after the handshake. */
#include "transport/tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/alloc.h"
#include "common/endian.h"
#include "common/error.h"
#include "common/member_id.h"

/* An extension type no standard uses (the IANA registry leaves it free). */
#define PEER_TLS_EXT 0xCAF7
#define NAMES_MAX 16   /* certificate names looked at */
#define NAME_MAX_LEN 255

struct peer__tls_ctx {
    SSL_CTX *ssl;
};

struct peer__tls {
    SSL *ssl;
    BIO *rbio;               /* ciphertext in (owned by ssl) */
    BIO *wbio;               /* ciphertext out (owned by ssl) */
    bool server;
    bool done;               /* handshake complete */
    uint64_t incarnation;    /* client: sent in the ClientHello */
    uint64_t expect_tag;     /* client: the server must be this node */
    bool have_peer_inc;      /* server: the client sent its incarnation */
    uint64_t peer_inc;
    bool name_mismatch;      /* client: the server's chain was fine, its
                                name was not */
    char err[192];
};

static void set_err(struct peer__tls *s, const char *what)
{
    unsigned long e = ERR_get_error();
    if (s->name_mismatch) {
        snprintf(s->err, sizeof s->err, "%s: the certificate names another "
                 "node than the one dialed", what);
    } else if (SSL_get_verify_result(s->ssl) != X509_V_OK) {
        snprintf(s->err, sizeof s->err, "%s: certificate: %s", what,
                 X509_verify_cert_error_string(
                     SSL_get_verify_result(s->ssl)));
    } else if (e != 0) {
        char buf[128];
        ERR_error_string_n(e, buf, sizeof buf);
        snprintf(s->err, sizeof s->err, "%s: %s", what, buf);
    } else {
        snprintf(s->err, sizeof s->err, "%s", what);
    }
    ERR_clear_error();
}

/* ---- certificate names ---- */

/* Up to max names of cert: its DNS subject alternative names, then its
 * CN. Names with a NUL inside or too long are skipped. */
static size_t cert_names(X509 *cert, char names[][NAME_MAX_LEN + 1],
                         size_t max)
{
    size_t k = 0;
    GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL,
                                           NULL);
    for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans) && k < max;
         i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type != GEN_DNS)
            continue;
        const unsigned char *p = ASN1_STRING_get0_data(g->d.dNSName);
        int len = ASN1_STRING_length(g->d.dNSName);
        if (len <= 0 || len > NAME_MAX_LEN || memchr(p, 0, (size_t)len))
            continue;
        memcpy(names[k], p, (size_t)len);
        names[k++][len] = '\0';
    }
    GENERAL_NAMES_free(sans);
    X509_NAME *subj = X509_get_subject_name(cert);
    int idx = subj ? X509_NAME_get_index_by_NID(subj, NID_commonName, -1)
                   : -1;
    if (idx >= 0 && k < max) {
        ASN1_STRING *cn = X509_NAME_ENTRY_get_data(
            X509_NAME_get_entry(subj, idx));
        unsigned char *u = NULL;
        int len = ASN1_STRING_to_UTF8(&u, cn);
        if (len > 0 && len <= NAME_MAX_LEN && !memchr(u, 0, (size_t)len)) {
            memcpy(names[k], u, (size_t)len);
            names[k++][len] = '\0';
        }
        OPENSSL_free(u);
    }
    return k;
}

static bool cert_has_tag(X509 *cert, uint64_t tag)
{
    char names[NAMES_MAX][NAME_MAX_LEN + 1];
    size_t k = cert_names(cert, names, NAMES_MAX);
    for (size_t i = 0; i < k; i++)
        if (craft_member_id(names[i], 0) == tag)
            return true;
    return false;
}

/* ---- the context ---- */

/* The client's check of the server's leaf, inside the handshake, so that a
 * wrong name fails it (with an alert) before anything is sent. */
static int verify_cb(int ok, X509_STORE_CTX *x)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(
        x, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct peer__tls *s = ssl ? SSL_get_app_data(ssl) : NULL;
    if (!ok || s == NULL || s->server || s->expect_tag == 0 ||
        X509_STORE_CTX_get_error_depth(x) != 0)
        return ok;
    if (!cert_has_tag(X509_STORE_CTX_get_current_cert(x), s->expect_tag)) {
        s->name_mismatch = true;
        X509_STORE_CTX_set_error(x, X509_V_ERR_HOSTNAME_MISMATCH);
        return 0;
    }
    return 1;
}

static int ext_add(SSL *ssl, unsigned type, unsigned context,
                   const unsigned char **out, size_t *outlen, X509 *x,
                   size_t chainidx, int *al, void *arg)
{
    struct peer__tls *s = SSL_get_app_data(ssl);
    if (s == NULL || s->server)
        return 0; /* nothing to add */
    uint8_t *b = OPENSSL_malloc(8);
    if (b == NULL) {
        *al = SSL_AD_INTERNAL_ERROR;
        return -1;
    }
    craft_put64(b, s->incarnation);
    *out = b;
    *outlen = 8;
    return 1;
}

static void ext_free(SSL *ssl, unsigned type, unsigned context,
                     const unsigned char *out, void *arg)
{
    OPENSSL_free((void *)out);
}

static int ext_parse(SSL *ssl, unsigned type, unsigned context,
                     const unsigned char *in, size_t inlen, X509 *x,
                     size_t chainidx, int *al, void *arg)
{
    struct peer__tls *s = SSL_get_app_data(ssl);
    if (s == NULL || !s->server)
        return 1;
    if (inlen != 8) {
        *al = SSL_AD_DECODE_ERROR;
        return 0;
    }
    s->peer_inc = craft_get64(in);
    s->have_peer_inc = true;
    return 1;
}

/* A file we cannot open: say so in the words of the system. */
static int check_file(const char *what, const char *path, char *err,
                      size_t errlen)
{
    if (path == NULL || path[0] == '\0') {
        snprintf(err, errlen, "%s: no file given", what);
        return CRAFT_EINVAL;
    }
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
        return CRAFT_EINVAL;
    }
    fclose(f);
    return 0;
}

static void ssl_reason(char *out, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(out, len, "%s", r ? r : "unknown error");
    ERR_clear_error();
}

/* Our own certificate must chain to the CA too, or every peer refuses us:
 * better said once at start than at every connection. */
static int check_own_cert(SSL_CTX *ssl, char *err, size_t errlen,
                          const char *cert)
{
    X509_STORE_CTX *v = X509_STORE_CTX_new();
    if (v == NULL)
        return CRAFT_ENOMEM;
    STACK_OF(X509) *chain = NULL;
    SSL_CTX_get0_chain_certs(ssl, &chain);
    int rc = 0;
    if (!X509_STORE_CTX_init(v, SSL_CTX_get_cert_store(ssl),
                             SSL_CTX_get0_certificate(ssl), chain)) {
        rc = CRAFT_ENOMEM;
    } else if (X509_verify_cert(v) != 1) {
        snprintf(err, errlen, "peer TLS certificate %s does not verify "
                 "against the CA given with -peer-tls-ca: %s", cert,
                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(v)));
        rc = CRAFT_EINVAL;
    }
    X509_STORE_CTX_free(v);
    ERR_clear_error();
    return rc;
}

/* Never ask a terminal for a passphrase: an encrypted key fails. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    return 0;
}

static int load(SSL_CTX *ssl, const char *cert, const char *key,
                const char *ca, char *err, size_t errlen)
{
    char why[128];
    int rc = check_file("peer TLS certificate", cert, err, errlen);
    if (rc == 0)
        rc = check_file("peer TLS key", key, err, errlen);
    if (rc == 0)
        rc = check_file("peer TLS CA", ca, err, errlen);
    if (rc)
        return rc;
    if (SSL_CTX_use_certificate_chain_file(ssl, cert) != 1) {
        ssl_reason(why, sizeof why);
        snprintf(err, errlen, "peer TLS certificate %s: not a PEM "
                 "certificate (%s)", cert, why);
        return CRAFT_EINVAL;
    }
    FILE *f = fopen(key, "r");
    EVP_PKEY *pk = f ? PEM_read_PrivateKey(f, NULL, no_password, NULL)
                     : NULL;
    if (f != NULL)
        fclose(f);
    if (pk == NULL) {
        ssl_reason(why, sizeof why);
        snprintf(err, errlen, "peer TLS key %s: not a PEM private key (an "
                 "encrypted key is not supported) (%s)", key, why);
        return CRAFT_EINVAL;
    }
    int used = SSL_CTX_use_PrivateKey(ssl, pk);
    EVP_PKEY_free(pk);
    if (used != 1 || SSL_CTX_check_private_key(ssl) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "peer TLS key %s does not match certificate "
                 "%s", key, cert);
        return CRAFT_EINVAL;
    }
    if (SSL_CTX_load_verify_locations(ssl, ca, NULL) != 1) {
        ssl_reason(why, sizeof why);
        snprintf(err, errlen, "peer TLS CA %s: no PEM certificate in it "
                 "(%s)", ca, why);
        return CRAFT_EINVAL;
    }
    return check_own_cert(ssl, err, errlen, cert);
}

int peer__tls_ctx_new(struct peer__tls_ctx **out, const char *cert,
                      const char *key, const char *ca, char *err,
                      size_t errlen)
{
    err[0] = '\0';
    struct peer__tls_ctx *c = craft_calloc(1, sizeof *c);
    if (c == NULL)
        return CRAFT_ENOMEM;
    c->ssl = SSL_CTX_new(TLS_method());
    if (c->ssl == NULL) {
        craft_free(c);
        ERR_clear_error();
        return CRAFT_ENOMEM;
    }
    SSL_CTX_set_min_proto_version(c->ssl, TLS1_2_VERSION);
    SSL_CTX_set_options(c->ssl, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_num_tickets(c->ssl, 0);
    SSL_CTX_set_session_cache_mode(c->ssl, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(c->ssl,
                       SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       verify_cb);
    int rc = load(c->ssl, cert, key, ca, err, errlen);
    if (rc == 0 &&
        SSL_CTX_add_custom_ext(c->ssl, PEER_TLS_EXT, SSL_EXT_CLIENT_HELLO,
                               ext_add, ext_free, NULL, ext_parse,
                               NULL) != 1) {
        ERR_clear_error();
        rc = CRAFT_ENOMEM;
    }
    if (rc) {
        if (rc == CRAFT_ENOMEM && err[0] == '\0')
            snprintf(err, errlen, "peer TLS: out of memory");
        peer__tls_ctx_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

bool peer__tls_ctx_has_tag(const struct peer__tls_ctx *ctx, uint64_t tag)
{
    X509 *cert = SSL_CTX_get0_certificate(ctx->ssl);
    return cert != NULL && cert_has_tag(cert, tag);
}

void peer__tls_ctx_free(struct peer__tls_ctx *ctx)
{
    if (ctx == NULL)
        return;
    SSL_CTX_free(ctx->ssl);
    craft_free(ctx);
}

/* ---- a session ---- */

int peer__tls_new(struct peer__tls **out, struct peer__tls_ctx *ctx,
                  bool server, uint64_t incarnation, uint64_t expect_tag)
{
    struct peer__tls *s = craft_calloc(1, sizeof *s);
    if (s == NULL)
        return CRAFT_ENOMEM;
    s->server = server;
    s->incarnation = incarnation;
    s->expect_tag = expect_tag;
    s->ssl = SSL_new(ctx->ssl);
    s->rbio = BIO_new(BIO_s_mem());
    s->wbio = BIO_new(BIO_s_mem());
    if (s->ssl == NULL || s->rbio == NULL || s->wbio == NULL) {
        BIO_free(s->rbio);
        BIO_free(s->wbio);
        SSL_free(s->ssl);
        craft_free(s);
        ERR_clear_error();
        return CRAFT_ENOMEM;
    }
    /* An empty memory BIO says "retry", not "end of file". */
    BIO_set_mem_eof_return(s->rbio, -1);
    SSL_set_bio(s->ssl, s->rbio, s->wbio);
    SSL_set_app_data(s->ssl, s);
    if (server)
        SSL_set_accept_state(s->ssl);
    else
        SSL_set_connect_state(s->ssl);
    snprintf(s->err, sizeof s->err, "no error");
    *out = s;
    return 0;
}

void peer__tls_free(struct peer__tls *s)
{
    if (s == NULL)
        return;
    SSL_free(s->ssl); /* frees both BIOs */
    craft_free(s);
}

int peer__tls_feed(struct peer__tls *s, const uint8_t *in, size_t len)
{
    while (len > 0) {
        int chunk = len > (1u << 30) ? (1 << 30) : (int)len;
        int n = BIO_write(s->rbio, in, chunk);
        if (n <= 0) {
            ERR_clear_error();
            return CRAFT_ENOMEM;
        }
        in += n;
        len -= (size_t)n;
    }
    return 0;
}

int peer__tls_handshake(struct peer__tls *s)
{
    if (s->done)
        return 0;
    int r = SSL_do_handshake(s->ssl);
    if (r == 1) {
        s->done = true;
        return 0;
    }
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        return CRAFT_ETRUNCATED;
    }
    set_err(s, "TLS handshake");
    return CRAFT_ECORRUPT;
}

bool peer__tls_done(const struct peer__tls *s)
{
    return s->done;
}

int peer__tls_read(struct peer__tls *s, uint8_t *out, size_t cap, size_t *n)
{
    *n = 0;
    if (cap == 0)
        return 0;
    int want = cap > (1u << 30) ? (1 << 30) : (int)cap;
    int r = SSL_read(s->ssl, out, want);
    if (r > 0) {
        *n = (size_t)r;
        return 0;
    }
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        return 0;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        snprintf(s->err, sizeof s->err, "the peer closed the TLS session");
        return CRAFT_ESHUTDOWN;
    }
    set_err(s, "TLS read");
    return CRAFT_ECORRUPT;
}

int peer__tls_write(struct peer__tls *s, const uint8_t *in, size_t len)
{
    if (!s->done) {
        snprintf(s->err, sizeof s->err, "TLS write before the handshake");
        return CRAFT_EINVAL;
    }
    while (len > 0) {
        int chunk = len > (1u << 30) ? (1 << 30) : (int)len;
        int r = SSL_write(s->ssl, in, chunk);
        if (r <= 0) {
            set_err(s, "TLS write");
            return CRAFT_ECORRUPT;
        }
        in += r;
        len -= (size_t)r;
    }
    return 0;
}

size_t peer__tls_pending(const struct peer__tls *s)
{
    return BIO_ctrl_pending(s->wbio);
}

size_t peer__tls_take(struct peer__tls *s, uint8_t *out, size_t cap)
{
    size_t got = 0;
    while (got < cap && BIO_ctrl_pending(s->wbio) > 0) {
        size_t want = cap - got;
        int n = BIO_read(s->wbio, out + got,
                         want > (1u << 30) ? (1 << 30) : (int)want);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return got;
}

bool peer__tls_peer_has_tag(const struct peer__tls *s, uint64_t tag)
{
    X509 *cert = SSL_get0_peer_certificate(s->ssl);
    return s->done && cert != NULL && cert_has_tag(cert, tag);
}

bool peer__tls_peer_is(const struct peer__tls *s, uint64_t raft_id)
{
    X509 *cert = SSL_get0_peer_certificate(s->ssl);
    if (!s->done || cert == NULL || !s->have_peer_inc)
        return false;
    char names[NAMES_MAX][NAME_MAX_LEN + 1];
    size_t k = cert_names(cert, names, NAMES_MAX);
    for (size_t i = 0; i < k; i++)
        if (craft_member_id(names[i], s->peer_inc) == raft_id)
            return true;
    return false;
}

void peer__tls_peer_name(const struct peer__tls *s, char *out, size_t len)
{
    X509 *cert = SSL_get0_peer_certificate(s->ssl);
    char names[1][NAME_MAX_LEN + 1];
    if (cert != NULL && cert_names(cert, names, 1) == 1)
        snprintf(out, len, "%s", names[0]);
    else
        snprintf(out, len, "?");
}

const char *peer__tls_error(const struct peer__tls *s)
{
    return s->err;
}
