/* The peer transport: opaque byte frames between craftd nodes over TCP.
 *
 * Owns: one listening socket and the connections accepted on it (read only:
 * frames from a peer arrive on the connection that peer opened), and for
 * every configured peer one outgoing connection (we only write on it) with
 * its send queue, reconnect timer and backoff state; and a UDP socket at
 * the listen address for the datagrams of peer_send_urgent. The wire format
 * (handshake, [u32 len][u32 crc32c][payload] frames) is described in wire.c
 * and docs/transport.md. The transport never looks inside a payload.
 *
 * Authentication (opts.token): with a cluster token, every connection
 * proves both ways that its ends hold the same token (challenge-response
 * with HMAC-SHA256, wire.c) before any frame on it is decoded, and a node
 * refuses dialers that do not. The token is never sent nor logged; the
 * transport keeps only a key derived from it. Without a token anybody who
 * reaches the port can claim any id (docs/security.md).
 *
 * Limits on the listening side, all against outsiders: inbound connections
 * in total and of them still in the handshake (a new one evicts the oldest
 * unauthenticated if that one has been in its handshake for a fifth of the
 * handshake deadline, else is refused: strangers cannot cut a real peer's
 * handshake short), a handshake deadline, a deadline for a frame to arrive
 * whole once it has begun, and max_frame_bytes. Every log line an outsider
 * can cause there is rate-limited.
 *
 * Identity checks: each handshake names the dialer (its id and cluster id)
 * and the node it means to reach (an id and a tag). The acceptor refuses a
 * dialer of another cluster and one that means to reach another id, tells
 * the dialer why (best effort) and reports both sides through on_refused.
 *
 * Threading: one thread. Every call, and every callback (on_frame, the close
 * callback), happens on the thread running opts.loop. The process must
 * ignore SIGPIPE: libuv writes to peers that reset their connections.
 *
 * Ownership: peer_send copies buf; the caller keeps its buffer. The buffer
 * handed to on_frame belongs to the transport and is valid only until
 * on_frame returns (copy what must outlive it). The struct peer_transport is
 * allocated by peer_transport_start and freed by the transport itself, just
 * before the close callback runs; it must not be used after
 * peer_transport_close. Strings in opts are copied at start.
 *
 * Send queue (per peer, max_queue_bytes): frames are queued in order, kept
 * while the peer is disconnected, and written as one batch per uv_write.
 * When a frame does not fit, the NEWEST frame (the one being sent) is
 * refused with -ENOBUFS and counted as dropped; see docs/transport.md for
 * why newest rather than oldest. Frames that were being written when a
 * connection broke are lost (counted as dropped): Raft tolerates loss.
 */
#ifndef CRAFT_TRANSPORT_H
#define CRAFT_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/log.h"

/* Longest host name peer_parse_addr accepts (without the NUL). */
#define PEER_HOST_MAX 255
/* Defaults for the zero fields of struct peer_opts. */
#define PEER_DEFAULT_MAX_QUEUE (64u << 20)   /* bytes queued per peer */
/* Payload bytes per frame. The largest frame craftd sends is an append:
 * at most 1 MiB of entry data (raft max_msg_bytes) plus 21 bytes per entry
 * and a small header; a snapshot chunk is 256 KiB plus under 100 bytes of
 * headers (raft snap_chunk_bytes). 4 MiB holds an append of entries of 8
 * bytes or more, and bounds what a peer can make a connection hold. */
#define PEER_DEFAULT_MAX_FRAME (4u << 20)
#define PEER_DEFAULT_BACKOFF_MIN_MS 50
#define PEER_DEFAULT_BACKOFF_MAX_MS 2000
#define PEER_DEFAULT_CONNECT_TIMEOUT_MS 2000
#define PEER_DEFAULT_MAX_CONNS 64          /* inbound connections at most */
#define PEER_DEFAULT_MAX_UNAUTH 16         /* of them, still in handshake */
#define PEER_DEFAULT_HANDSHAKE_TIMEOUT_MS 5000
#define PEER_DEFAULT_FRAME_TIMEOUT_MS 10000 /* plus 1 s per MiB of the frame */

struct peer_transport;

/* A frame from peer from_id; buf is valid only during the call. */
typedef void (*peer_frame_cb)(void *ud, uint64_t from_id, const uint8_t *buf,
                              size_t len);

enum peer_refusal_reason {
    PEER_REFUSED_CLUSTER = 1, /* the dialer is of another cluster */
    PEER_REFUSED_TARGET = 2,  /* the dialer means to reach another node id */
};

/* A connection refused for its identity, on either side. */
struct peer_refusal {
    bool inbound;          /* true: we refused a dialer; false: a peer
                              refused our connection and said why */
    int reason;            /* enum peer_refusal_reason */
    uint64_t peer_id;      /* inbound: the dialer; outbound: the node that
                              answered at the peer's address */
    uint64_t peer_cluster; /* that node's cluster id (0: none) */
    uint64_t peer_tag;     /* outbound: the answering node's own tag */
    uint64_t target;       /* the id the dialer meant to reach */
    uint64_t target_tag;   /* the tag the dialer gave for it */
    const char *addr;      /* inbound: the dialer's "ip:port"; outbound: the
                              peer's configured "host:port" */
};
/* r and its strings are valid only during the call. */
typedef void (*peer_refused_cb)(void *ud, const struct peer_refusal *r);

struct peer_opts {
    uv_loop_t *loop;          /* required */
    const char *listen_addr;  /* "host:port"; empty host = all interfaces;
                                 port 0 = ephemeral; NULL = do not listen */
    const char *bind_host;    /* numeric source address for outgoing
                                 connections (e.g. "127.0.0.2"); NULL/"" = any */
    uint64_t self_id;         /* sent in the handshake of each connection;
                                 a dialer meaning to reach another id is
                                 refused */
    uint64_t self_tag;        /* this node's tag (told to refused dialers) */
    uint64_t cluster_id;      /* sent in handshakes; dialers of another
                                 cluster are refused. 0: none yet, any
                                 dialer's cluster is accepted */
    peer_refused_cb on_refused; /* may be NULL (refusals are then only
                                   logged at debug level) */
    const void *token;        /* cluster token (token_len bytes, any bytes);
                                 NULL or token_len 0: none. Not kept: only
                                 a key derived from it */
    size_t token_len;
    unsigned max_conns;       /* inbound connections at most; 0 = default */
    unsigned max_unauth_conns;/* of them in handshake at most; 0 = default */
    unsigned handshake_timeout_ms; /* inbound handshake deadline; 0 = default */
    unsigned frame_timeout_ms; /* a begun frame must be whole within this
                                  plus 1 s per MiB; 0 = default */
    size_t max_queue_bytes;   /* per peer, header bytes included; 0 = default */
    size_t max_frame_bytes;   /* largest payload sent or accepted; 0 = default */
    unsigned backoff_min_ms;  /* first reconnect delay; 0 = default */
    unsigned backoff_max_ms;  /* reconnect delay cap; 0 = default */
    unsigned connect_timeout_ms; /* give up a connect after; 0 = default */
    uint64_t seed;            /* backoff jitter seed (mixed with the peer id) */
    const struct craft_logger *log; /* NULL = silent */
    peer_frame_cb on_frame;   /* required */
    void *ud;                 /* passed to on_frame */
    /* Mutual TLS on every peer connection (docs/security.md): all three
     * PEM files, or none (NULL: plain TCP). Each side's certificate must
     * chain to tls_ca and name its node (a DNS subject alternative name or
     * the CN): a dialer accepts only the node whose tag it dials, an
     * acceptor only a dialer whose claimed id is craft_member_id(a name of
     * its certificate, the incarnation it sends in the TLS handshake). */
    const char *tls_cert, *tls_key, *tls_ca;
    uint64_t self_incarnation; /* sent in the TLS handshake (with TLS) */
    /* No datagrams (peer_send_urgent sends on the connection only): the
     * handshakes neither ask for a key nor give one, as a node before
     * datagrams. */
    bool no_datagrams;
};

/* Counters for one outgoing peer (for /status). */
struct peer_stats {
    uint64_t id;
    bool connected;           /* TCP connection established */
    uint64_t frames_sent;     /* frames whose write completed */
    uint64_t bytes_sent;      /* their payload bytes */
    uint64_t frames_dropped;  /* refused (queue full) or lost in a broken write */
    uint64_t bytes_dropped;
    uint64_t connects;        /* successful connections so far */
    uint64_t writes;          /* uv_write calls (frames_sent/writes = batch) */
    size_t queued_bytes;      /* waiting or being written, headers included */
    int last_error;           /* last connection error (negative errno,
                                 CRAFT_E* or UV_EAI_*), 0 if none */
    uint64_t refusals;        /* connections the peer refused, saying why */
    uint64_t dgram_misses;    /* an urgent frame went as a datagram alone
                                 and nothing came from the peer within its
                                 copy gap: copies again for a while */
};

/* Counters for the receiving side. */
struct peer_transport_stats {
    uint64_t frames_received;
    uint64_t bytes_received;  /* payload bytes */
    uint64_t conns_accepted;
    uint64_t conns_rejected;  /* bad magic/version/length/CRC */
    uint64_t conns_refused;   /* another cluster or another target */
    uint64_t conns_auth_failed; /* no or a wrong cluster-token proof */
    uint64_t conns_limited;   /* closed for the connection limits */
    uint64_t conns_timed_out; /* handshake or frame deadline passed */
    unsigned conns_open;      /* inbound connections open now */
    unsigned peers;           /* outgoing peers configured */
    uint64_t dgrams_sent;     /* datagrams (peer_send_urgent) */
    uint64_t dgrams_unsent;   /* the socket refused them (buffer full) */
    uint64_t dgrams_received; /* taken and handed to on_frame */
    uint64_t dgrams_stale;    /* not newer than the last taken: dropped */
    uint64_t dgrams_rejected; /* bad format or MAC, or from a sender given
                                 no key: dropped */
    uint64_t dgrams_unanswered; /* sent alone, no frame from the peer within
                                   the copy gap: copies again for a while
                                   (peer_stats.dgram_misses, all peers) */
    uint64_t frames_twins;    /* TCP copies of datagrams already taken:
                                 dropped (not in frames_received) */
};

/* Parse "host:port" or "[v6addr]:port" into host (NUL-terminated, may be
 * empty for ":port") and port. Returns 0, CRAFT_EINVAL (no ':', empty,
 * non-numeric or out-of-range port, bad brackets) or CRAFT_ETOOBIG (host
 * does not fit in hostlen). Pure; any thread. */
int peer_parse_addr(const char *addr, char *host, size_t hostlen,
                    uint16_t *port);

/* A message for any error this module returns or records (craft_strerror
 * plus libuv's resolver codes). Never NULL. */
const char *peer_strerror(int err);

/* Load the three peer TLS files as peer_transport_start would and say
 * what is wrong with them, also a certificate that does not name this
 * node (name: its -id; NULL: not checked): 0, or CRAFT_EINVAL with a
 * one-line reason in err (CRAFT_ENOMEM). For a check at start, before
 * anything else. */
int peer_tls_check(const char *cert, const char *key, const char *ca,
                   const char *name, char *err, size_t errlen);

/* Create the transport and start listening. On success *out owns the
 * transport until peer_transport_close. Returns 0, CRAFT_EINVAL (bad opts or
 * address), CRAFT_ENOMEM, or a negative errno (e.g. -EADDRINUSE). */
int peer_transport_start(struct peer_transport **out,
                         const struct peer_opts *o);

/* The port the transport listens on (useful with port 0), or 0. */
uint16_t peer_transport_port(const struct peer_transport *t);

/* True if peer connections are authenticated (a cluster token is set). */
bool peer_transport_authenticated(const struct peer_transport *t);
/* The proof of the cluster token that a /join request carries (it goes
 * over HTTP, not over a peer connection): the lowercase hex HMAC-SHA256,
 * under the transport's key, of a fixed label and the request body, so it
 * vouches for exactly that body (the joiner's name, addresses and Raft id).
 * The token itself is never sent. Unlike the peer handshake it has no
 * nonce: a recorded join can be sent again, and adds again the same node,
 * which still cannot take part without the token (the peer handshake).
 * 0 and out, or CRAFT_EINVAL when the transport has no token. */
#define PEER_JOIN_PROOF_LEN 64
int peer_join_proof(const struct peer_transport *t, const void *body,
                    size_t len, char out[PEER_JOIN_PROOF_LEN + 1]);
/* Whether proof (proof_len bytes, not NUL-terminated) is the proof of
 * body; compared in constant time. False without a token. */
bool peer_join_proof_ok(const struct peer_transport *t, const void *body,
                        size_t len, const char *proof, size_t proof_len);
/* True if the listener is bound to a loopback address (127.0.0.0/8, ::1),
 * so that only local processes reach it; false when not listening. */
bool peer_transport_loopback(const struct peer_transport *t);

/* Add peer id at addr ("host:port"; empty host = 127.0.0.1; names are
 * resolved at every connect), or change its address (the connection is
 * re-established; queued frames are kept). tag goes into the handshake as
 * the target's tag (opaque here; craftd: a hash of the member's name); a
 * new tag is used from the next connection on. Returns 0, CRAFT_EINVAL,
 * CRAFT_ENOMEM, CRAFT_ESHUTDOWN. */
int peer_set(struct peer_transport *t, uint64_t id, uint64_t tag,
             const char *addr);

/* The name logs call peer id by (craftd: the member's id string; at most
 * PEER_NAME_MAX bytes are kept); until one is given, its id in hex.
 * 0, or CRAFT_ENOTFOUND when id is not a peer. */
#define PEER_NAME_MAX 63
int peer_set_name(struct peer_transport *t, uint64_t id, const char *name);

/* This node learned its cluster id (0 forgets it): dialers of other
 * clusters are refused from now on, and the next handshakes carry it.
 * Connections already accepted are kept. */
void peer_set_cluster(struct peer_transport *t, uint64_t cluster_id);

/* Forget peer id: its connection is closed and its queue discarded.
 * Returns 0 or CRAFT_ENOTFOUND. */
int peer_remove(struct peer_transport *t, uint64_t id);

/* Queue a copy of buf[0..len) for peer id. Returns 0 (queued),
 * CRAFT_ENOTFOUND (unknown peer), CRAFT_ETOOBIG (len > max_frame_bytes),
 * -ENOBUFS (queue full: the frame is dropped and counted), CRAFT_ENOMEM,
 * CRAFT_ESHUTDOWN. Never blocks. */
int peer_send(struct peer_transport *t, uint64_t id, const uint8_t *buf,
              size_t len);

/* As peer_send, and also as one UDP datagram to the peer if it gave us a
 * key for them on our connection (docs/transport.md, "Datagrams"): a
 * frame held up behind a lost TCP segment, 200 ms or more, still arrives
 * at once that way. For small frames (at most 1,160 bytes go as a
 * datagram) that may arrive twice and out of order with the others: Raft
 * heartbeats, votes and their answers. With copy_gap_ms > 0, a frame
 * whose datagram went out goes without its TCP copy if a copy went to
 * this peer less than copy_gap_ms ago and the peer's own datagrams reach
 * us (one came within the last 10 gaps): frames that follow each other
 * closely (a heartbeat round for each linearizable read) then cost one
 * send and one wake-up each, not two. Where no datagram comes from the
 * peer, every frame has its copy; and for PEER__MISS_GAPS gaps after a
 * frame sent as a datagram alone that no frame from the peer followed
 * within its gap (UDP lost one way: ours do not arrive, or its answers
 * do not).
 * Returns what peer_send returns (0 for a datagram alone). */
int peer_send_urgent(struct peer_transport *t, uint64_t id, const uint8_t *buf,
                     size_t len, unsigned copy_gap_ms);
/* Start writing everything queued now, instead of at the end of this loop
 * iteration. For callers that send from a uv_check callback of their own
 * (a check started during the check phase runs only after the next poll). */
void peer_transport_flush(struct peer_transport *t);

/* Counters of peer id. Returns 0 or CRAFT_ENOTFOUND. */
int peer_get_stats(const struct peer_transport *t, uint64_t id,
                   struct peer_stats *out);
/* Counters of up to max peers, in no particular order; returns how many
 * peers there are (may exceed max). */
size_t peer_list_stats(const struct peer_transport *t, struct peer_stats *out,
                       size_t max);
void peer_transport_get_stats(const struct peer_transport *t,
                              struct peer_transport_stats *out);

/* Close every handle and free everything, asynchronously: cb(ud) runs (on
 * the loop) once all handles are closed and the transport is freed; cb may
 * be NULL. No on_frame callback runs after this call. Call it once. */
void peer_transport_close(struct peer_transport *t, void (*cb)(void *),
                          void *ud);

#endif
