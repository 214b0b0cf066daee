/* libFuzzer target for what the peer port reads (src/transport/wire.c):
 * arbitrary bytes go through the acceptor's steps in its order - the hello
 * (v2 or v3), with a token the proof, then frames - fed in pieces whose
 * sizes come from the input, as reads arrive. Checks: no step reads past
 * what it was given, a frame is never longer than the maximum, nothing is
 * taken as a frame before the proof passes (with a token), and a decoded
 * hello re-encodes to its bytes. The same bytes go through the datagram
 * parser (its payload lies within the input; one whose MAC is right under
 * the fuzz key re-encodes to its bytes) and the key record's decoder.
 * Built and run by `make fuzz`.
 *
 * Input: byte 0 bit 0: token mode; bit 1: replace the proof by the right
 * one (so that the frame reader is reached in token mode too); byte 1:
 * read size for the pieces (1..256); the rest is the connection's bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/endian.h"
#include "common/error.h"
#include "transport/internal.h"

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond))                                                         \
            __builtin_trap();                                                \
    } while (0)

#define MAX_FRAME 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    bool token = data[0] & 1, fix_proof = data[0] & 2;
    size_t piece = (size_t)data[1] + 1;
    const uint8_t *in = data + 2;
    size_t n = size - 2;

    static uint8_t key[PEER__KEY_LEN];
    static bool have_key;
    if (!have_key) {
        CHECK(peer__derive_key(key, "fuzz token", 10) == 0);
        have_key = true;
    }
    uint8_t nonce_a[PEER__NONCE_LEN];
    memset(nonce_a, 0x3c, sizeof nonce_a);

    /* The input as one datagram, and as a key record, in buffers of their
     * size. */
    if (n <= PEER__DGRAM_MAX) {
        uint8_t *dg = malloc(n ? n : 1);
        CHECK(dg != NULL);
        memcpy(dg, in, n);
        struct peer__dgram d;
        const uint8_t *payload;
        size_t plen;
        if (peer__dgram_parse(dg, n, &d, &payload, &plen) == 0) {
            CHECK(payload >= dg && payload + plen <= dg + n);
            struct peer__dgmac *m = peer__dgmac_new(key);
            CHECK(m != NULL);
            if (peer__dgram_mac_ok(dg, n, m)) {
                uint8_t re[PEER__DGRAM_MAX];
                size_t rn = peer__dgram_encode(re, &d, payload, plen, m);
                CHECK(rn == n && memcmp(re, dg, n) == 0);
            }
            peer__dgmac_free(m);
        }
        if (n == PEER__DGKEY_LEN) {
            uint8_t k[PEER__KEY_LEN], re[PEER__DGKEY_LEN];
            if (peer__dgkey_decode(dg, k) == 0) {
                peer__dgkey_encode(re, k);
                CHECK(memcmp(re, dg, n) == 0);
            }
        }
        free(dg);
    }

    /* The connection's bytes, copied so that the proof may be fixed. */
    uint8_t *conn = malloc(n ? n : 1);
    CHECK(conn != NULL);
    memcpy(conn, in, n);

    enum { HELLO, PROOF, OPEN } st = HELLO;
    uint8_t hello[PEER__HELLO3_LEN];
    size_t got = 0, off = 0; /* bytes arrived; consumed */
    uint64_t frames = 0;
    while (got < n) {
        size_t step = n - got < piece ? n - got : piece;
        got += step;
        /* Each step sees exactly the bytes arrived and not consumed, in a
         * buffer of that size (ASan catches reads past it). */
        for (;;) {
            size_t avail = got - off;
            uint8_t *view = malloc(avail ? avail : 1);
            CHECK(view != NULL);
            memcpy(view, conn + off, avail);
            size_t used = 0;
            bool stop = false, dead = false;
            if (st == HELLO) {
                struct peer__hello h;
                unsigned v = 0;
                int rv = peer__hello_decode(view, avail, &h, &v);
                if (rv == CRAFT_ETRUNCATED) {
                    stop = true;
                } else if (rv != 0 || (token && h.version != PEER__VERSION_AUTH) ||
                           (!token && h.version != PEER__VERSION)) {
                    dead = true;
                } else {
                    uint8_t re[PEER__HELLO3_LEN];
                    used = peer__hello_encode(re, &h);
                    CHECK(used <= avail && memcmp(re, view, used) == 0);
                    if (token) {
                        memcpy(hello, view, PEER__HELLO3_LEN);
                        st = PROOF;
                    } else {
                        st = OPEN;
                    }
                }
            } else if (st == PROOF) {
                if (avail < PEER__PROOF_LEN) {
                    stop = true;
                } else {
                    if (fix_proof) {
                        uint8_t mac[PEER__MAC_LEN];
                        CHECK(peer__mac(mac, key, false, hello, nonce_a) == 0);
                        peer__proof_encode(conn + off, mac);
                        peer__proof_encode(view, mac);
                    }
                    uint8_t mac[PEER__MAC_LEN];
                    bool ok = peer__proof_decode(view, mac) == 0 &&
                              peer__mac_ok(key, false, hello, nonce_a, mac);
                    CHECK(!fix_proof || ok);
                    if (!ok)
                        dead = true;
                    used = PEER__PROOF_LEN;
                    st = OPEN;
                }
            } else {
                uint32_t len = 0;
                int rv = peer__frame_next(view, avail, MAX_FRAME, &len);
                CHECK(len <= MAX_FRAME);
                if (rv == CRAFT_ETRUNCATED)
                    stop = true;
                else if (rv != 0)
                    dead = true;
                else {
                    CHECK(PEER__FRAME_HDR + (size_t)len <= avail);
                    used = PEER__FRAME_HDR + len;
                    frames++;
                }
            }
            free(view);
            if (dead) {
                free(conn);
                return 0; /* the acceptor closes the connection */
            }
            off += used;
            if (stop || off == got)
                break;
        }
    }
    /* With a token, frames come only after a passing proof. */
    CHECK(!token || frames == 0 || st == OPEN);
    free(conn);
    return 0;
}
