/* The transport object: start, the peer table, sending, stats, and the
 * asynchronous close that waits for every handle of every part. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/alloc.h"
#include "common/error.h"
#include "common/member_id.h"
#include "transport/internal.h"
#include "transport/tls.h"

static int parse_bind_host(struct peer_transport *t, const char *host)
{
    if (host == NULL || host[0] == '\0')
        return 0;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&t->bind_addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&t->bind_addr;
    if (uv_ip4_addr(host, 0, v4) != 0 && uv_ip6_addr(host, 0, v6) != 0)
        return CRAFT_EINVAL;
    t->have_bind = true;
    return 0;
}

static unsigned or_default(unsigned v, unsigned def)
{
    return v ? v : def;
}

static void set_options(struct peer_transport *t, const struct peer_opts *o)
{
    t->loop = o->loop;
    t->self_id = o->self_id;
    t->self_tag = o->self_tag;
    t->cluster_id = o->cluster_id;
    t->on_refused = o->on_refused;
    t->max_queue = o->max_queue_bytes ? o->max_queue_bytes
                                      : PEER_DEFAULT_MAX_QUEUE;
    if (t->max_queue > UINT32_MAX) /* one uv_buf_t holds the whole queue */
        t->max_queue = UINT32_MAX;
    t->max_frame = o->max_frame_bytes ? o->max_frame_bytes
                                      : PEER_DEFAULT_MAX_FRAME;
    if (t->max_frame > UINT32_MAX)
        t->max_frame = UINT32_MAX;
    t->backoff_min_ms = o->backoff_min_ms ? o->backoff_min_ms
                                          : PEER_DEFAULT_BACKOFF_MIN_MS;
    t->backoff_max_ms = o->backoff_max_ms ? o->backoff_max_ms
                                          : PEER_DEFAULT_BACKOFF_MAX_MS;
    if (t->backoff_max_ms < t->backoff_min_ms)
        t->backoff_max_ms = t->backoff_min_ms;
    t->connect_timeout_ms = o->connect_timeout_ms
                                ? o->connect_timeout_ms
                                : PEER_DEFAULT_CONNECT_TIMEOUT_MS;
    t->max_conns = or_default(o->max_conns, PEER_DEFAULT_MAX_CONNS);
    t->max_unauth = or_default(o->max_unauth_conns, PEER_DEFAULT_MAX_UNAUTH);
    if (t->max_unauth > t->max_conns)
        t->max_unauth = t->max_conns;
    t->handshake_timeout_ms = or_default(o->handshake_timeout_ms,
                                         PEER_DEFAULT_HANDSHAKE_TIMEOUT_MS);
    t->frame_timeout_ms = or_default(o->frame_timeout_ms,
                                     PEER_DEFAULT_FRAME_TIMEOUT_MS);
    /* A burst of 5 lines, then one per 5 s, as on the HTTP port. */
    craft_ratelimit_init(&t->rl_bad, 5000, 5);
    craft_ratelimit_init(&t->rl_conn, 1000, 20);
    t->seed = o->seed;
    t->log = o->log;
    t->on_frame = o->on_frame;
    t->ud = o->ud;
    t->no_dgram = o->no_datagrams;
}

/* Peer TLS, if all three files are given: load them now, so that a bad
 * file stops the node at start with the reason. */
static int start_tls(struct peer_transport *t, const struct peer_opts *o)
{
    bool any = o->tls_cert || o->tls_key || o->tls_ca;
    if (!any)
        return 0;
    char why[512];
    int err = peer__tls_ctx_new(&t->tls, o->tls_cert, o->tls_key, o->tls_ca,
                                why, sizeof why);
    if (err) {
        CRAFT_ERROR(t->log, "%s", why);
        return err;
    }
    t->tls_in = craft_malloc(PEER__TLS_IN);
    if (t->tls_in == NULL)
        return CRAFT_ENOMEM;
    t->self_incarnation = o->self_incarnation;
    craft_ratelimit_init(&t->tls_rl, 10000, 5);
    CRAFT_INFO(t->log, "peer TLS on (certificate %s, CA %s)", o->tls_cert,
               o->tls_ca);
    return 0;
}

int peer_tls_check(const char *cert, const char *key, const char *ca,
                   const char *name, char *err, size_t errlen)
{
    struct peer__tls_ctx *ctx = NULL;
    int rc = peer__tls_ctx_new(&ctx, cert, key, ca, err, errlen);
    if (rc == 0 && name != NULL &&
        !peer__tls_ctx_has_tag(ctx, craft_member_id(name, 0))) {
        snprintf(err, errlen, "peer TLS certificate %s does not name this "
                 "node (-id %s) as a DNS subject alternative name or CN: "
                 "every peer would refuse it", cert, name);
        rc = CRAFT_EINVAL;
    }
    peer__tls_ctx_free(ctx);
    return rc;
}

/* The flusher runs after each loop iteration's callbacks, so everything
 * sent during one iteration goes out in one write per peer. A caller that
 * sends from its own check handle flushes itself (peer_transport_flush):
 * libuv does not run a check handle started during the check phase until
 * the next iteration, after the poll may have slept until a timer. */
static void on_flush(uv_check_t *h)
{
    peer_transport_flush(h->data);
}

void peer_transport_flush(struct peer_transport *t)
{
    uv_check_stop(&t->flusher);
    for (struct peer__out *p = t->peers; p != NULL; p = p->next)
        peer__out_flush(p);
}

void peer__want_flush(struct peer_transport *t)
{
    if (!uv_is_active((uv_handle_t *)&t->flusher))
        uv_check_start(&t->flusher, on_flush);
}

static void on_flusher_closed(uv_handle_t *h)
{
    peer__unref(h->data);
}

static void on_reap(uv_timer_t *h)
{
    peer__in_reap(h->data);
}

void peer__unref(struct peer_transport *t)
{
    if (--t->refs > 0 || !t->closing)
        return;
    void (*cb)(void *) = t->close_cb;
    void *ud = t->close_ud;
    peer__tls_ctx_free(t->tls);
    craft_free(t->tls_in);
    OPENSSL_cleanse(t->key, sizeof t->key);
    craft_free(t);
    if (cb != NULL)
        cb(ud);
}

int peer_transport_start(struct peer_transport **out,
                         const struct peer_opts *o)
{
    if (out == NULL || o == NULL || o->loop == NULL || o->on_frame == NULL)
        return CRAFT_EINVAL;
    struct peer_transport *t = craft_calloc(1, sizeof *t);
    if (t == NULL)
        return CRAFT_ENOMEM;
    set_options(t, o);
    int err = parse_bind_host(t, o->bind_host);
    if (err == 0)
        err = start_tls(t, o);
    if (err == 0 && o->token != NULL && o->token_len > 0) {
        err = peer__derive_key(t->key, o->token, o->token_len);
        t->have_key = err == 0;
    }
    if (err) {
        peer__tls_ctx_free(t->tls);
        craft_free(t->tls_in);
        OPENSSL_cleanse(t->key, sizeof t->key);
        craft_free(t);
        return err;
    }
    uv_check_init(t->loop, &t->flusher);
    t->flusher.data = t;
    t->refs = 1;
    /* Deadlines are checked a few times per the shortest of them. */
    unsigned period = t->handshake_timeout_ms < t->frame_timeout_ms
                          ? t->handshake_timeout_ms : t->frame_timeout_ms;
    period = period / 4 > 500 ? 500 : (period / 4 ? period / 4 : 1);
    uv_timer_init(t->loop, &t->reaper);
    t->reaper.data = t;
    t->refs++;
    uv_timer_start(&t->reaper, on_reap, period, period);
    if (o->listen_addr != NULL) {
        err = peer__listen(t, o->listen_addr);
        if (err) {
            /* Handles opened so far close on the loop, which frees t. */
            peer_transport_close(t, NULL, NULL);
            return err;
        }
    }
    *out = t;
    return 0;
}

uint16_t peer_transport_port(const struct peer_transport *t)
{
    return t->port;
}

bool peer_transport_authenticated(const struct peer_transport *t)
{
    return t->have_key;
}

int peer_join_proof(const struct peer_transport *t, const void *body,
                    size_t len, char out[PEER_JOIN_PROOF_LEN + 1])
{
    uint8_t mac[PEER__MAC_LEN];
    if (!t->have_key || peer__join_mac(mac, t->key, body, len) != 0)
        return CRAFT_EINVAL;
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < PEER__MAC_LEN; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    out[PEER_JOIN_PROOF_LEN] = '\0';
    OPENSSL_cleanse(mac, sizeof mac);
    return 0;
}

bool peer_join_proof_ok(const struct peer_transport *t, const void *body,
                        size_t len, const char *proof, size_t proof_len)
{
    char want[PEER_JOIN_PROOF_LEN + 1];
    if (proof_len != PEER_JOIN_PROOF_LEN ||
        peer_join_proof(t, body, len, want) != 0)
        return false;
    bool ok = CRYPTO_memcmp(want, proof, PEER_JOIN_PROOF_LEN) == 0;
    OPENSSL_cleanse(want, sizeof want);
    return ok;
}

bool peer_transport_loopback(const struct peer_transport *t)
{
    struct sockaddr_storage ss;
    int n = sizeof ss;
    if (!t->listening ||
        uv_tcp_getsockname(&t->listener, (struct sockaddr *)&ss, &n) != 0)
        return false;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)&ss;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)&ss;
        return IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
    }
    return false;
}

static struct peer__out *find_peer(const struct peer_transport *t,
                                   uint64_t id)
{
    for (struct peer__out *p = t->peers; p != NULL; p = p->next)
        if (p->id == id)
            return p;
    return NULL;
}


int peer_set(struct peer_transport *t, uint64_t id, uint64_t tag,
             const char *addr)
{
    if (t->closing)
        return CRAFT_ESHUTDOWN;
    char host[PEER_HOST_MAX + 1];
    uint16_t port;
    int err = peer_parse_addr(addr, host, sizeof host, &port);
    if (err)
        return err == CRAFT_ETOOBIG ? CRAFT_EINVAL : err;
    if (port == 0)
        return CRAFT_EINVAL;
    struct peer__out *p = find_peer(t, id);
    if (p != NULL) {
        p->tag = tag; /* used from the next handshake on */
        if (p->port != port || strcmp(p->host, host) != 0)
            peer__out_readdr(p, host, port);
        return 0;
    }
    p = peer__out_new(t, id, tag, host, port);
    if (p == NULL)
        return CRAFT_ENOMEM;
    p->next = t->peers;
    t->peers = p;
    t->st.peers++;
    return 0;
}

int peer_set_name(struct peer_transport *t, uint64_t id, const char *name)
{
    struct peer__out *p = find_peer(t, id);
    if (p == NULL)
        return CRAFT_ENOTFOUND;
    snprintf(p->name, sizeof p->name, "%s", name ? name : "");
    return 0;
}

const char *peer__name(const struct peer_transport *t, uint64_t id, char *buf,
                       size_t cap)
{
    const struct peer__out *p = find_peer(t, id);
    if (p != NULL && p->name[0])
        snprintf(buf, cap, "%s", p->name);
    else
        snprintf(buf, cap, "%016llx", (unsigned long long)id);
    return buf;
}

void peer_set_cluster(struct peer_transport *t, uint64_t cluster_id)
{
    t->cluster_id = cluster_id;
}

int peer_remove(struct peer_transport *t, uint64_t id)
{
    for (struct peer__out **pp = &t->peers; *pp != NULL; pp = &(*pp)->next) {
        struct peer__out *p = *pp;
        if (p->id == id) {
            *pp = p->next;
            t->st.peers--;
            peer__out_remove(p);
            return 0;
        }
    }
    return CRAFT_ENOTFOUND;
}

int peer_send(struct peer_transport *t, uint64_t id, const uint8_t *buf,
              size_t len)
{
    if (t->closing)
        return CRAFT_ESHUTDOWN;
    struct peer__out *p = find_peer(t, id);
    if (p == NULL)
        return CRAFT_ENOTFOUND;
    return peer__out_send(p, buf, len);
}

/* A frame sent as a datagram alone at p->alone_at: nothing came back from
 * the peer within its gap (by now, or until a frame came at now). */
static void check_alone(struct peer_transport *t, struct peer__out *p,
                        uint64_t now)
{
    if (p->alone_at == 0 || now - p->alone_at <= p->alone_gap)
        return;
    p->copies_until = now + (uint64_t)p->alone_gap * PEER__MISS_GAPS;
    p->alone_at = 0;
    p->st.dgram_misses++;
    t->st.dgrams_unanswered++;
}

void peer__heard_from(struct peer_transport *t, uint64_t id)
{
    struct peer__out *p = find_peer(t, id);
    if (p == NULL || p->alone_at == 0)
        return;
    check_alone(t, p, uv_now(t->loop));
    p->alone_at = 0;
}

int peer_send_urgent(struct peer_transport *t, uint64_t id, const uint8_t *buf,
                     size_t len, unsigned copy_gap_ms)
{
    struct peer__out *p = t->closing ? NULL : find_peer(t, id);
    if (p != NULL && peer__dgram_send(t, p, buf, len) == 0 && copy_gap_ms > 0) {
        uint64_t now = uv_now(t->loop);
        uint64_t window = (uint64_t)copy_gap_ms * PEER__HEARD_GAPS;
        bool heard = peer__dgram_heard(t, id, now > window ? now - window : 0);
        check_alone(t, p, now);
        if (heard && now < p->next_copy_at && now >= p->copies_until) {
            if (p->alone_at == 0) {
                p->alone_at = now;
                p->alone_gap = copy_gap_ms;
            }
            return 0; /* the datagram went, and a TCP copy went lately */
        }
        p->next_copy_at = now + copy_gap_ms;
    }
    return peer_send(t, id, buf, len);
}

static void fill_stats(const struct peer__out *p, struct peer_stats *out)
{
    *out = p->st;
    out->id = p->id;
    out->queued_bytes = p->pend.len + p->flight.len;
}

int peer_get_stats(const struct peer_transport *t, uint64_t id,
                   struct peer_stats *out)
{
    const struct peer__out *p = find_peer(t, id);
    if (p == NULL)
        return CRAFT_ENOTFOUND;
    fill_stats(p, out);
    return 0;
}

size_t peer_list_stats(const struct peer_transport *t, struct peer_stats *out,
                       size_t max)
{
    size_t n = 0;
    for (const struct peer__out *p = t->peers; p != NULL; p = p->next, n++)
        if (n < max)
            fill_stats(p, &out[n]);
    return n;
}

void peer_transport_get_stats(const struct peer_transport *t,
                              struct peer_transport_stats *out)
{
    *out = t->st;
}

void peer_transport_close(struct peer_transport *t, void (*cb)(void *),
                          void *ud)
{
    t->closing = true;
    t->close_cb = cb;
    t->close_ud = ud;
    uv_close((uv_handle_t *)&t->flusher, on_flusher_closed);
    uv_close((uv_handle_t *)&t->reaper, on_flusher_closed);
    peer__listener_close(t);
    while (t->peers != NULL) {
        struct peer__out *p = t->peers;
        t->peers = p->next;
        peer__out_remove(p);
    }
    t->st.peers = 0;
    for (struct peer__in *c = t->ins; c != NULL; c = c->next)
        peer__in_close(c);
}

const struct sockaddr *peer__pick_addr(const struct addrinfo *ai,
                                       int family)
{
    for (const struct addrinfo *a = ai; a != NULL; a = a->ai_next)
        if (a->ai_family == family)
            return a->ai_addr;
    return ai != NULL ? ai->ai_addr : NULL;
}
