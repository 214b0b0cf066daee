/* TLS for the node's own requests to members (joins, /status), over memory
 * buffers: the caller moves the ciphertext between these and its socket,
 * so that OpenSSL stays in src/http. TLS 1.2 and 1.3; the member's
 * certificate must chain to the given CAs and name the host dialled (DNS
 * name or IP address). */
#include "http/http.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/alloc.h"
#include "common/error.h"

struct http_tls_client {
    SSL_CTX *ctx;
};

struct http_tls_conn {
    SSL *ssl;
    BIO *rbio, *wbio;  /* owned by ssl: ciphertext in, ciphertext out */
    char *plain;       /* the request, until the handshake is done */
    size_t plain_len;
    char err[256];
};

static void ssl_error(char *buf, size_t cap)
{
    unsigned long e = ERR_get_error();
    if (e == 0)
        snprintf(buf, cap, "unknown TLS error");
    else
        ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
}

static void log_ssl(const struct craft_logger *log, const char *what, const char *path)
{
    char buf[256];
    ssl_error(buf, sizeof buf);
    CRAFT_ERROR(log, "tls client: %s %s: %s", what, path ? path : "", buf);
}

int http_tls_client_new(struct http_tls_client **out, const char *ca_file, const char *cert,
                        const char *key, const struct craft_logger *log)
{
    *out = NULL;
    if ((cert != NULL) != (key != NULL))
        return CRAFT_EINVAL;
    struct http_tls_client *c = craft_calloc(1, sizeof *c);
    if (c == NULL)
        return CRAFT_ENOMEM;
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL) {
        log_ssl(log, "cannot create a context", NULL);
        goto fail;
    }
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(c->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    if (ca_file != NULL) {
        if (SSL_CTX_load_verify_locations(c->ctx, ca_file, NULL) != 1) {
            log_ssl(log, "cannot load the CAs for members (-join-ca or -tls-client-ca)",
                    ca_file);
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
        log_ssl(log, "cannot load the system's CAs", NULL);
        goto fail;
    }
    if (cert != NULL) {
        if (SSL_CTX_use_certificate_chain_file(c->ctx, cert) != 1) {
            log_ssl(log, "cannot load the certificate (-tls-cert)", cert);
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(c->ctx) != 1) {
            log_ssl(log, "cannot load the private key (-tls-key) or it does not match", key);
            goto fail;
        }
    }
    *out = c;
    return 0;
fail:
    http_tls_client_free(c);
    return CRAFT_EINVAL;
}

void http_tls_client_free(struct http_tls_client *c)
{
    if (c == NULL)
        return;
    SSL_CTX_free(c->ctx);
    craft_free(c);
}

int http_tls_conn_new(struct http_tls_conn **out, struct http_tls_client *c, const char *host)
{
    *out = NULL;
    struct http_tls_conn *t = craft_calloc(1, sizeof *t);
    if (t == NULL)
        return CRAFT_ENOMEM;
    t->ssl = SSL_new(c->ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        craft_free(t);
        ERR_clear_error();
        return CRAFT_ENOMEM;
    }
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_connect_state(t->ssl);
    unsigned char ip[16];
    int ok;
    if (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1)
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host);
    else
        ok = SSL_set1_host(t->ssl, host) && SSL_set_tlsext_host_name(t->ssl, host);
    if (ok != 1) {
        http_tls_conn_free(t);
        ERR_clear_error();
        return CRAFT_ENOMEM;
    }
    *out = t;
    return 0;
}

void http_tls_conn_free(struct http_tls_conn *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl); /* and its BIOs */
    craft_free(t->plain);
    craft_free(t);
}

int http_tls_conn_write(struct http_tls_conn *t, const char *buf, size_t len)
{
    char *p = craft_realloc(t->plain, t->plain_len + len);
    if (p == NULL)
        return -1;
    memcpy(p + t->plain_len, buf, len);
    t->plain = p;
    t->plain_len += len;
    return 0;
}

/* A failed SSL call: the reason, the certificate's if verification failed. */
static int failed(struct http_tls_conn *t, const char *what)
{
    long v = SSL_get_verify_result(t->ssl);
    if (v != X509_V_OK) {
        snprintf(t->err, sizeof t->err, "%s: the member's certificate: %s", what,
                 X509_verify_cert_error_string(v));
        ERR_clear_error();
    } else {
        char buf[200];
        ssl_error(buf, sizeof buf);
        snprintf(t->err, sizeof t->err, "%s: %s", what, buf);
    }
    return -1;
}

int http_tls_conn_pump(struct http_tls_conn *t, const char *in, size_t inlen, char *out,
                       size_t cap, size_t *got)
{
    *got = 0;
    if (inlen > 0 && BIO_write(t->rbio, in, (int)inlen) != (int)inlen) {
        snprintf(t->err, sizeof t->err, "out of memory");
        return -1;
    }
    if (!SSL_is_init_finished(t->ssl)) {
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            int e = SSL_get_error(t->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return 0;
            return failed(t, "TLS handshake");
        }
    }
    if (t->plain != NULL) {
        int r = SSL_write(t->ssl, t->plain, (int)t->plain_len); /* all: memory BIO */
        if (r <= 0)
            return failed(t, "TLS write");
        craft_free(t->plain);
        t->plain = NULL;
        t->plain_len = 0;
    }
    int r = SSL_read(t->ssl, out, (int)(cap > INT32_MAX ? INT32_MAX : cap));
    if (r > 0) {
        *got = (size_t)r;
        return 0;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    if (e == SSL_ERROR_ZERO_RETURN)
        return 1;
    return failed(t, "TLS read");
}

char *http_tls_conn_output(struct http_tls_conn *t, size_t *len)
{
    *len = 0;
    size_t n = BIO_ctrl_pending(t->wbio);
    if (n == 0)
        return NULL;
    char *buf = craft_malloc(n);
    if (buf == NULL)
        return NULL;
    int r = BIO_read(t->wbio, buf, (int)n);
    if (r <= 0) {
        craft_free(buf);
        return NULL;
    }
    *len = (size_t)r;
    return buf;
}

const char *http_tls_conn_error(const struct http_tls_conn *t)
{
    return t->err[0] ? t->err : "no error";
}
