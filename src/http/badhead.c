/* The answer to a request head h2o cannot parse. h2o 2.2's HTTP/1 reader
 * answers garbage, a head over its size limit or one with too many headers
 * with a fixed plain-text 400 that it writes straight to the socket with
 * h2o_socket_write: no request exists yet, so no filter or handler sees it
 * (errfilter.c covers the errors that do have a request). craftd promises a
 * JSON body for every error, so this file defines h2o_socket_write itself.
 * The executable's definition is the one the dynamic linker binds for every
 * caller, libh2o's own calls included (they go through its PLT), so each
 * write h2o makes passes here first, before any TLS encryption. That one
 * fixed response is swapped for a JSON 400 with the same framing
 * (Connection: close, then h2o closes the connection as before); every
 * other write goes on untouched to libh2o's function, looked up once with
 * dlsym(RTLD_NEXT) and kept in a static (the one global here: an address
 * set once, never changed). tests/security/test_http_attacks.py sends
 * such heads, in plain text and over TLS: it fails if a build ever stops
 * binding this function first. */
#include "http/internal.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What h2o 2.2 writes (lib/core/http1.c), byte for byte. */
static const char H2O_BAD_HEAD[] = "HTTP/1.1 400 Bad Request\r\n"
                                   "Content-Type: text/plain; charset=utf-8\r\n"
                                   "Connection: close\r\n"
                                   "Content-Length: 11\r\n"
                                   "\r\n"
                                   "Bad Request";

#define JSON_BAD_HEAD_BODY "{\"error\":\"bad request: the request line or headers cannot be parsed, or are too large\"}"
static const char JSON_BAD_HEAD[] = "HTTP/1.1 400 Bad Request\r\n"
                                    "Content-Type: application/json\r\n"
                                    "Connection: close\r\n"
                                    "Content-Length: 87\r\n"
                                    "\r\n" JSON_BAD_HEAD_BODY;

_Static_assert(sizeof JSON_BAD_HEAD_BODY - 1 == 87, "Content-Length above");

typedef void (*socket_write_fn)(h2o_socket_t *, h2o_iovec_t *, size_t, h2o_socket_cb);

static socket_write_fn h2o_write;
static pthread_once_t h2o_write_once = PTHREAD_ONCE_INIT;

static void find_h2o_write(void)
{
    h2o_write = (socket_write_fn)dlsym(RTLD_NEXT, "h2o_socket_write");
    if (h2o_write == NULL) {
        fprintf(stderr, "craftd: libh2o's h2o_socket_write not found: %s\n", dlerror());
        abort();
    }
}

static bool is_h2o_bad_head(const h2o_iovec_t *bufs, size_t bufcnt)
{
    return bufcnt == 1 && bufs[0].len == sizeof H2O_BAD_HEAD - 1 &&
           memcmp(bufs[0].base, H2O_BAD_HEAD, sizeof H2O_BAD_HEAD - 1) == 0;
}

void h2o_socket_write(h2o_socket_t *sock, h2o_iovec_t *bufs, size_t bufcnt, h2o_socket_cb cb)
{
    pthread_once(&h2o_write_once, find_h2o_write);
    if (is_h2o_bad_head(bufs, bufcnt)) {
        /* h2o passes a static iovec: write ours from one of our own that
         * lives as long (the write may complete later). */
        static const h2o_iovec_t json = {(char *)JSON_BAD_HEAD, sizeof JSON_BAD_HEAD - 1};
        h2o_write(sock, (h2o_iovec_t *)&json, 1, cb);
        return;
    }
    h2o_write(sock, bufs, bufcnt, cb);
}
