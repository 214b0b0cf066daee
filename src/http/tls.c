/* Client TLS: the server's SSL_CTX from PEM files. TLS 1.2 and 1.3 only,
 * forward-secret AEAD ciphers for 1.2 (1.3's suites are all sane), no
 * compression, no renegotiation; with a client CA, a client certificate
 * it signed is required. */
#include "http/internal.h"

#include <openssl/err.h>

static void log_ssl(const struct craft_logger *log, const char *what, const char *path)
{
    char buf[256];
    unsigned long e = ERR_get_error();
    ERR_error_string_n(e, buf, sizeof buf);
    CRAFT_ERROR(log, "http: tls: %s %s: %s", what, path ? path : "", e ? buf : "unknown error");
    ERR_clear_error();
}

#define TLS12_CIPHERS                                                                      \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                          \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                          \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

SSL_CTX *http__tls_ctx(const char *cert, const char *key, const char *client_ca,
                       const struct craft_logger *log)
{
    SSL_CTX *c = SSL_CTX_new(TLS_server_method());
    if (c == NULL) {
        log_ssl(log, "cannot create a context", NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_set_cipher_list(c, TLS12_CIPHERS) != 1) {
        log_ssl(log, "cipher list", NULL);
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(c, cert) != 1) {
        log_ssl(log, "cannot load the certificate (-tls-cert)", cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) != 1) {
        log_ssl(log, "cannot load the private key (-tls-key)", key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(c) != 1) {
        log_ssl(log, "the private key does not match the certificate", key);
        goto fail;
    }
    if (client_ca != NULL) {
        if (SSL_CTX_load_verify_locations(c, client_ca, NULL) != 1) {
            log_ssl(log, "cannot load the client CA (-tls-client-ca)", client_ca);
            goto fail;
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca);
        if (names != NULL)
            SSL_CTX_set_client_CA_list(c, names);
        SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    return c;
fail:
    SSL_CTX_free(c);
    return NULL;
}
