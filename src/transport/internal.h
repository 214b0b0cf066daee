/* Internals of the peer transport shared by its files (peer__ names):
 * the wire codec (wire.c), outgoing peers (outbound.c), accepted
 * connections (inbound.c) and the transport object (transport.c).
 * Not for use outside src/transport/ except by its unit test. */
#ifndef CRAFT_TRANSPORT_INTERNAL_H
#define CRAFT_TRANSPORT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/crc32c.h"
#include "common/ratelimit.h"
#include "transport/transport.h"

/* ---- wire format (wire.c) ---- */

#define PEER__MAGIC 0x54465243u /* bytes "CRFT" */
#define PEER__VERSION 2         /* plain handshake (no cluster token) */
#define PEER__VERSION_AUTH 3    /* challenge-response (cluster token) */
#define PEER__HELLO_LEN 44      /* v2: magic, version, flags, sender,
                                   cluster, target, target tag, crc */
#define PEER__NONCE_LEN 32
#define PEER__MAC_LEN 32        /* HMAC-SHA256 */
#define PEER__KEY_LEN 32        /* the key derived from the token */
#define PEER__HELLO3_LEN 76     /* v3: as v2 with a nonce before the crc */
#define PEER__CHALLENGE_MAGIC 0x48435243u /* bytes "CRCH" */
#define PEER__CHALLENGE_LEN 72  /* magic, version, zero, nonce, mac */
#define PEER__PROOF_MAGIC 0x46505243u /* bytes "CRPF" */
#define PEER__PROOF_LEN 40      /* magic, version, zero, mac */
#define PEER__REFUSAL_MAGIC 0x4f4e5243u /* bytes "CRNO" */
#define PEER__REFUSAL_LEN 40    /* magic, version, reason, id, cluster, tag,
                                   crc, zero */
#define PEER__FRAME_HDR 8       /* length, crc */
#define PEER__HELLO_DGRAM 1u    /* hello flags: the dialer takes datagrams */

/* What a dialer says about itself and about the node it means to reach. */
struct peer__hello {
    unsigned version;    /* PEER__VERSION or PEER__VERSION_AUTH */
    unsigned flags;      /* PEER__HELLO_* bits */
    uint64_t sender;     /* the dialer's node id */
    uint64_t cluster;    /* the dialer's cluster id, 0: none yet */
    uint64_t target;     /* the node id the dialer means to reach */
    uint64_t target_tag; /* the dialer's tag for that node */
    uint8_t nonce[PEER__NONCE_LEN]; /* v3 only: the dialer's nonce */
};

/* Bytes of the hello of version v (PEER__HELLO_LEN or PEER__HELLO3_LEN). */
size_t peer__hello_len(unsigned version);
/* Writes peer__hello_len(h->version) bytes; returns that length. */
size_t peer__hello_encode(uint8_t *out, const struct peer__hello *h);
/* The first avail bytes of a connection. 0 and *h once all of the
 * handshake is there (both versions 2 and 3 are decoded; h->version says
 * which); CRAFT_ETRUNCATED: not yet; CRAFT_ECORRUPT (bad magic, as soon as
 * 4 bytes are there, or bad CRC); CRAFT_EVERSION (any other version, as
 * soon as it is there; *version_out, if not NULL, gets it). */
int peer__hello_decode(const uint8_t *in, size_t avail, struct peer__hello *h,
                       unsigned *version_out);

/* ---- the cluster-token proof (wire.c; OpenSSL's libcrypto) ---- */

/* key = HMAC-SHA256(token, "craftd cluster token v1"). 0 or CRAFT_EINVAL
 * (empty token, or libcrypto failed). */
int peer__derive_key(uint8_t key[PEER__KEY_LEN], const void *token,
                     size_t len);
/* Fresh random nonce (RAND_bytes). 0 or CRAFT_EIO. */
int peer__nonce(uint8_t out[PEER__NONCE_LEN]);
/* The acceptor's (acceptor = true) or the dialer's MAC over the dialer's
 * hello bytes (hello, PEER__HELLO3_LEN of them, its nonce included) and the
 * acceptor's nonce. 0 or CRAFT_EIO. */
int peer__mac(uint8_t out[PEER__MAC_LEN], const uint8_t key[PEER__KEY_LEN],
              bool acceptor, const uint8_t *hello,
              const uint8_t nonce_a[PEER__NONCE_LEN]);
void peer__challenge_encode(uint8_t out[PEER__CHALLENGE_LEN],
                            const uint8_t nonce_a[PEER__NONCE_LEN],
                            const uint8_t mac[PEER__MAC_LEN]);
/* 0 (nonce_a and mac filled), CRAFT_ECORRUPT (not a challenge). */
int peer__challenge_decode(const uint8_t in[PEER__CHALLENGE_LEN],
                           uint8_t nonce_a[PEER__NONCE_LEN],
                           uint8_t mac[PEER__MAC_LEN]);
void peer__proof_encode(uint8_t out[PEER__PROOF_LEN],
                        const uint8_t mac[PEER__MAC_LEN]);
int peer__proof_decode(const uint8_t in[PEER__PROOF_LEN],
                       uint8_t mac[PEER__MAC_LEN]);
/* The MAC of a /join body (label "craftd join v1"). 0 or CRAFT_EIO. */
int peer__join_mac(uint8_t out[PEER__MAC_LEN], const uint8_t key[PEER__KEY_LEN],
                   const void *body, size_t len);
/* Constant-time: true if the MAC the other side sent is the expected one
 * (computed here from key, hello and nonce_a). */
bool peer__mac_ok(const uint8_t key[PEER__KEY_LEN], bool acceptor,
                  const uint8_t *hello, const uint8_t nonce_a[PEER__NONCE_LEN],
                  const uint8_t got[PEER__MAC_LEN]);

/* ---- datagrams (the codec in wire.c, the socket in datagram.c) ---- */

#define PEER__DGRAM_MAGIC 0x47445243u /* bytes "CRDG" */
#define PEER__DGRAM_VERSION 1
#define PEER__DGRAM_HDR 32      /* magic, version, zero, sender, target, seq */
#define PEER__DGRAM_MAX 1232    /* whole datagram: fits the IPv6 minimum MTU */
#define PEER__DGKEY_MAGIC 0x4b445243u /* bytes "CRDK" */
#define PEER__DGKEY_LEN 44      /* magic, version, zero, key, crc */

struct peer__dgram {
    uint64_t sender, target;
    uint64_t seq;               /* counts the datagrams sent under one key */
};

/* A datagram key made ready once: an HMAC-SHA256 context keyed with it,
 * so that a datagram's MAC costs neither an algorithm fetch nor a key
 * setup (a heartbeat round makes four of them in a row). NULL: no memory,
 * or libcrypto refused. The context is used from one thread only. */
struct peer__dgmac *peer__dgmac_new(const uint8_t key[PEER__KEY_LEN]);
void peer__dgmac_free(struct peer__dgmac *m); /* NULL: nothing */

/* The datagram of d and payload (len bytes) into out (PEER__DGRAM_MAX
 * bytes): header, payload, HMAC-SHA256 under m's key. Its length, or 0
 * when it would not fit (or libcrypto failed). */
size_t peer__dgram_encode(uint8_t *out, const struct peer__dgram *d,
                          const uint8_t *payload, size_t len,
                          struct peer__dgmac *m);
/* The header and payload of a datagram of len bytes, its MAC not checked
 * yet (the key depends on the sender): 0, or CRAFT_ECORRUPT (short, long,
 * bad magic or version). */
int peer__dgram_parse(const uint8_t *in, size_t len, struct peer__dgram *d,
                      const uint8_t **payload, size_t *plen);
/* Whether the datagram's MAC is that of m's key (constant time). */
bool peer__dgram_mac_ok(const uint8_t *in, size_t len, struct peer__dgmac *m);
/* The record by which an acceptor gives the dialer the key for the
 * datagrams it sends along that connection. */
void peer__dgkey_encode(uint8_t out[PEER__DGKEY_LEN],
                        const uint8_t key[PEER__KEY_LEN]);
/* 0 and key; CRAFT_ECORRUPT (not a key record). */
int peer__dgkey_decode(const uint8_t in[PEER__DGKEY_LEN],
                       uint8_t key[PEER__KEY_LEN]);

/* What an acceptor sends back before it hangs up on a refused dialer. */
struct peer__refusal_rec {
    uint16_t reason;  /* enum peer_refusal_reason */
    uint64_t id;      /* the acceptor's node id */
    uint64_t cluster; /* the acceptor's cluster id (0: none) */
    uint64_t tag;     /* the acceptor's own tag */
};

void peer__refusal_encode(uint8_t out[PEER__REFUSAL_LEN],
                          const struct peer__refusal_rec *r);
/* 0 and *r, or CRAFT_ECORRUPT. */
int peer__refusal_decode(const uint8_t in[PEER__REFUSAL_LEN],
                         struct peer__refusal_rec *r);
void peer__frame_header(uint8_t out[PEER__FRAME_HDR], const uint8_t *payload,
                        uint32_t len);
/* Look at the avail bytes at p. 0: a whole valid frame, payload at
 * p + PEER__FRAME_HDR, *len bytes. CRAFT_ETRUNCATED: not all there yet
 * (*len is the payload length once the header is complete, else 0).
 * CRAFT_ETOOBIG: length over max. CRAFT_ECORRUPT: CRC mismatch. */
int peer__frame_next(const uint8_t *p, size_t avail, size_t max,
                     uint32_t *len);

/* ---- a growable byte buffer ---- */

struct peer__buf {
    uint8_t *data;
    size_t len; /* bytes used */
    size_t cap; /* bytes allocated */
};

/* Make room for at least extra more bytes. 0 or CRAFT_ENOMEM. */
int peer__buf_reserve(struct peer__buf *b, size_t extra);
void peer__buf_free(struct peer__buf *b);

/* ---- outgoing peers (outbound.c) ---- */

enum peer__state {
    PEER__IDLE = 0,   /* disconnected; the timer may hold a retry */
    PEER__RESOLVING,  /* uv_getaddrinfo in flight */
    PEER__CONNECTING, /* uv_tcp_connect in flight; timer = deadline */
    PEER__CONNECTED,  /* writing frames */
    PEER__CLOSING,    /* tcp handle closing; then retry (or free) */
};

struct peer__out {
    struct peer__out *next;   /* transport's list of peers */
    struct peer_transport *t;
    uint64_t id;
    uint64_t tag;             /* sent in the handshake as the target's tag */
    char name[PEER_NAME_MAX + 1]; /* for logs (peer_set_name); "" = none */
    char host[PEER_HOST_MAX + 1]; /* "" = 127.0.0.1 */
    uint16_t port;
    enum peer__state state;
    bool removed;             /* freed once refs drops to 0 */
    bool redo_resolve;        /* address changed during a resolve */
    bool writing;             /* wreq in flight (flight holds its bytes) */
    bool auth_wait;           /* hello v3 sent, waiting for the challenge:
                                 no frames go out until it is answered */
    unsigned refs;            /* timer + tcp handle + gai request */
    uv_timer_t timer;         /* retry backoff, or connect deadline */
    uv_getaddrinfo_t gai;
    uv_tcp_t tcp;
    bool tcp_open;            /* tcp initialised and not yet closed */
    uv_connect_t creq;
    uv_write_t wreq;
    uint8_t hello[PEER__HELLO3_LEN]; /* as sent (the MACs cover it) */
    uint8_t nonce_d[PEER__NONCE_LEN];
    uint8_t proof[PEER__PROOF_LEN];
    const uint8_t *pre;       /* handshake bytes for the next write (hello
                                 or proof), pre_len of them; 0: none */
    size_t pre_len;
    struct peer__buf pend;    /* frames queued, not yet handed to libuv */
    struct peer__buf flight;  /* frames of the write in flight */
    uint64_t pend_frames, flight_frames;
    size_t pend_payload, flight_payload;
    unsigned backoff_ms;      /* next retry delay before jitter; 0 = now */
    unsigned failures;        /* consecutive failed attempts (log volume) */
    unsigned short_lived;     /* connections in a row that died in their
                                 handshake or soon after (log volume) */
    uint64_t connected_at;    /* uv_now at connect */
    uint64_t rng;             /* xorshift state for jitter */
    bool refused;             /* this connection was refused (said why) */
    uint8_t sink[128];        /* read buffer: peers write back only a
                                 challenge (before our proof), then a
                                 refusal (PEER__REFUSAL_LEN bytes) or the
                                 key for our datagrams (PEER__DGKEY_LEN) */
    size_t sink_len;
    struct peer_stats st;
    struct peer__tlsc *tls;   /* peer TLS of this connection, or NULL
                                 (tls.h); set from connect to close */
    /* Datagrams (datagram.c). */
    uint8_t dg_key[PEER__KEY_LEN]; /* the acceptor of this connection
                                 gave it to us: datagrams to it may go */
    struct peer__dgmac *dg_mac; /* dg_key made ready; NULL: no key (yet) */
    uint64_t dg_seq;          /* datagrams sent under dg_key */
    uint64_t next_copy_at;    /* uv_now before which an urgent frame whose
                                 datagram went may go without its TCP copy
                                 (peer_send_urgent's copy_gap_ms) */
    uint64_t alone_at;        /* uv_now of the first urgent frame sent as a
                                 datagram alone since a frame last came from
                                 this peer; 0: none is waiting */
    unsigned alone_gap;       /* its copy_gap_ms */
    uint64_t copies_until;    /* uv_now before which every urgent frame
                                 keeps its copy: one sent alone was not
                                 followed by a frame from the peer within a
                                 gap (our datagrams may not reach it) */
    struct sockaddr_storage addr; /* where the last connect went (set
                                     before it; datagrams go there too) */
};

/* What logs call peer id: its name, else its id in hex; in buf. */
const char *peer__name(const struct peer_transport *t, uint64_t id, char *buf,
                       size_t cap);
struct peer__out *peer__out_new(struct peer_transport *t, uint64_t id,
                                uint64_t tag, const char *host, uint16_t port);
/* The address changed: reconnect there, keeping the queue. */
void peer__out_readdr(struct peer__out *p, const char *host, uint16_t port);
/* Queue a frame (see peer_send); it goes out at the next flush. */
int peer__out_send(struct peer__out *p, const uint8_t *buf, size_t len);
/* Start a write of everything queued, if connected and none in flight. */
void peer__out_flush(struct peer__out *p);
/* Close everything of p; it unlinks and frees itself when done. */
void peer__out_remove(struct peer__out *p);

/* ---- accepted connections (inbound.c) ---- */

enum peer__in_state {
    PEER__IN_HELLO = 0,       /* waiting for the hello */
    PEER__IN_PROOF,           /* challenge sent, waiting for the proof */
    PEER__IN_OPEN,            /* authenticated (or no token): frames */
};

/* peer_send_urgent leaves TCP copies out only while datagrams from that
 * peer came within the last this many copy gaps: where UDP is dropped
 * (both ways, as a firewall open to the TCP port alone does), every frame
 * keeps its copy. */
#define PEER__HEARD_GAPS 10
/* ... and not for this many gaps after a frame that went as a datagram
 * alone was not followed by any frame from the peer within a gap: where
 * UDP is dropped one way only, the peer's datagrams reach us but ours do
 * not reach it (or the other way round, for its answers), and a heartbeat
 * round sent alone is lost until a round with a copy (a tick). */
#define PEER__MISS_GAPS 200
/* A frame from peer id came (as a datagram or on a connection): what
 * peer_send_urgent learns about its datagrams sent alone. */
void peer__heard_from(struct peer_transport *t, uint64_t id);

/* A datagram taken, remembered until its copy on TCP arrives, so that Raft
 * gets one of the two (datagram.c). Urgent frames are small; a longer one
 * is not remembered and both copies go up. */
#define PEER__TWINS 8
#define PEER__TWIN_MAX 64
struct peer__twin {
    uint8_t len; /* 0: empty */
    uint8_t bytes[PEER__TWIN_MAX];
};

struct peer__in {
    struct peer__in *next, *prev; /* transport's list of inbound conns,
                                     newest first */
    struct peer_transport *t;
    uv_tcp_t tcp;
    struct peer__buf rbuf;    /* bytes read, not yet dispatched; before
                                 hello_done only handshake bytes are read */
    enum peer__in_state state;
    bool hello_done;          /* state == PEER__IN_OPEN: from is proved */
    bool closing;
    bool partial;             /* rbuf holds part of a frame since ... */
    uint64_t partial_since;   /* ... this uv_now */
    uint64_t accepted_at;     /* uv_now at accept (handshake deadline) */
    uint64_t from;            /* sender id, once hello_done */
    unsigned flags;           /* its hello's PEER__HELLO_* bits */
    struct peer__tlsc *tls;   /* peer TLS of this connection, or NULL */
    uint8_t dg_key[PEER__KEY_LEN]; /* given to the dialer (datagram.c) */
    struct peer__dgmac *dg_mac; /* dg_key made ready; NULL: none given */
    uint64_t dg_seq;          /* the last datagram taken under it */
    uint64_t dg_taken_at;     /* uv_now when it was taken */
    struct peer__twin twins[PEER__TWINS]; /* datagrams taken, TCP copy due */
    unsigned twin_next;       /* the slot the next one goes in */
    uint8_t kout[PEER__DGKEY_LEN]; /* the key record being written */
    uv_write_t kreq;
    uint8_t hello[PEER__HELLO3_LEN]; /* the v3 hello (the MACs cover it) */
    uint8_t nonce_a[PEER__NONCE_LEN];
    uint8_t out[PEER__CHALLENGE_LEN]; /* the challenge being written */
    uv_write_t wreq;
};

int peer__listen(struct peer_transport *t, const char *addr);
/* Close connections past their handshake or frame deadline (the reaper
 * timer runs it). */
void peer__in_reap(struct peer_transport *t);
void peer__in_close(struct peer__in *c);
void peer__listener_close(struct peer_transport *t);

/* ---- the transport (transport.c) ---- */

struct peer_transport {
    uv_loop_t *loop;
    uint64_t self_id;
    uint64_t self_tag;
    uint64_t cluster_id;      /* 0: none yet (any dialer's cluster is fine) */
    peer_refused_cb on_refused;
    size_t max_queue;
    size_t max_frame;
    bool have_key;            /* a cluster token was given */
    uint8_t key[PEER__KEY_LEN]; /* derived from it (wire.c) */
    unsigned max_conns, max_unauth;
    unsigned handshake_timeout_ms, frame_timeout_ms;
    unsigned n_live;          /* inbound conns not closing */
    unsigned n_unauth;        /* of them not yet hello_done */
    uv_timer_t reaper;        /* deadlines of inbound connections */
    struct craft_ratelimit rl_bad;  /* lines about bad or refused dialers */
    struct craft_ratelimit rl_conn; /* "peer X connected" lines */
    unsigned backoff_min_ms, backoff_max_ms, connect_timeout_ms;
    uint64_t seed;
    bool have_bind;
    struct sockaddr_storage bind_addr;
    const struct craft_logger *log;
    peer_frame_cb on_frame;
    void *ud;

    uv_tcp_t listener;
    bool listening;           /* listener handle open */
    uint16_t port;
    uv_tcp_t spare;           /* accepts and closes when out of memory */
    bool spare_busy;          /* spare is closing */
    bool refuse_pending;      /* a connection waits for the spare */
    uv_check_t flusher;       /* writes what one loop iteration queued;
                                 always open, so close is always async */
    struct peer__out *peers;
    struct peer__in *ins;
    unsigned refs;            /* open handles, peers and inbound conns */
    bool closing;
    void (*close_cb)(void *);
    void *close_ud;
    struct peer_transport_stats st;
    /* Peer TLS (tls.h): NULL when off. */
    struct peer__tls_ctx *tls;
    uint64_t self_incarnation; /* sent in the TLS handshake */
    uint8_t *tls_in;          /* ciphertext read buffer, PEER__TLS_IN bytes,
                                 shared by all connections (tlsconn.c) */
    struct craft_ratelimit tls_rl; /* failed sessions' log lines */
    /* Datagrams (datagram.c): the UDP socket at the listen address. */
    bool no_dgram;            /* none: opts.no_datagrams */
    bool udp_open;            /* udp is bound: we take datagrams */
    uv_udp_t udp;
    struct craft_ratelimit rl_dgram; /* lines about rejected datagrams */
    uint8_t dg_in[PEER__DGRAM_MAX + 1]; /* receive buffer (+1: too long) */
};

/* Run peer__out_flush on every peer at the end of this loop iteration. */
void peer__want_flush(struct peer_transport *t);
/* The first address of family in ai, else the first of any family. */
const struct sockaddr *peer__pick_addr(const struct addrinfo *ai, int family);
/* Drop one reference; finishes peer_transport_close at zero. */
void peer__unref(struct peer_transport *t);

/* Bind the UDP socket at sa (the listener's address and port); a failure
 * is logged and leaves datagrams off. */
void peer__dgram_open(struct peer_transport *t, const struct sockaddr *sa);
void peer__dgram_close(struct peer_transport *t);
/* A dialer's connection c is established: if its hello asked for one, give
 * it a fresh key for its datagrams along c (the key record, written on c).
 * 0, or an error (c is closed). */
int peer__dgram_give_key(struct peer__in *c);
/* Whether a datagram from id was taken since uv_now `since`: a sign that
 * UDP gets through between us (peer_send_urgent's copy gap). */
bool peer__dgram_heard(const struct peer_transport *t, uint64_t id,
                       uint64_t since);
/* p's connection is gone, or has a new key: forget the old key. */
void peer__dgram_unkey(struct peer__out *p);
/* Send buf to p as one datagram, if p's acceptor gave us a key: 0,
 * CRAFT_ENOTFOUND (no key), CRAFT_ETOOBIG, or a libuv
 * error (the socket's buffer is full: dropped, as the network may). */
int peer__dgram_send(struct peer_transport *t, struct peer__out *p,
                     const uint8_t *buf, size_t len);
/* A frame of len bytes came on c's TCP stream: whether it is the copy of a
 * datagram already taken (then it is forgotten, and the caller drops the
 * frame). */
bool peer__dgram_twin(struct peer__in *c, const uint8_t *frame, size_t len);

#endif
