/* What keeps outsiders from starving the HTTP server: the per-address cap on
 * open connections, the idle reaper (above 7/8 of the connection limit,
 * connections with no request in a handler for idle_reap_ms are shut,
 * oldest first; at the limit itself, those idle for a quarter of it, so
 * that a new client is served rather than refused), and the detection of
 * clients gone while the node works on their request (a sweep of the
 * pending requests' sockets with poll(POLLRDHUP), which sees a FIN or RST
 * even behind pipelined bytes still unread; at hand-over, only on
 * connections that pipeline or multiplex, http__guard_req_left): the
 * connection then loses keep-alive, so that h2o drops what it has
 * buffered, and the node is told
 * (handlers.cancel) so that it drops what it has not started.
 *
 * Owns the address table and the fd -> connection map of the server. */
#include "http/internal.h"

#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"

#define SWEEP_MS 100

struct http__ip {
    struct http__ip *next;
    uint8_t addr[16];
    uint8_t len; /* 4 or 16 */
    unsigned count;
};

static uint32_t ip_hash(const uint8_t *a, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ a[i]) * 16777619u;
    return h % HTTP__IP_BUCKETS;
}

/* The entry of c's peer address, created if new (NULL: unknown address or
 * out of memory; the connection is then not capped per address). */
static struct http__ip *ip_get(struct http_server *s, struct http__conn *c)
{
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) != 0)
        return NULL;
    uint8_t a[16];
    uint8_t len;
    if (ss.ss_family == AF_INET) {
        memcpy(a, &((struct sockaddr_in *)&ss)->sin_addr, 4);
        len = 4;
    } else if (ss.ss_family == AF_INET6) {
        memcpy(a, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
        len = 16;
    } else {
        return NULL;
    }
    if (s->ip_tab == NULL && (s->ip_tab = craft_calloc(HTTP__IP_BUCKETS, sizeof *s->ip_tab)) == NULL)
        return NULL;
    struct http__ip **b = &s->ip_tab[ip_hash(a, len)];
    for (struct http__ip *e = *b; e != NULL; e = e->next)
        if (e->len == len && memcmp(e->addr, a, len) == 0)
            return e;
    struct http__ip *e = craft_calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    memcpy(e->addr, a, len);
    e->len = len;
    e->next = *b;
    *b = e;
    return e;
}

static void ip_put(struct http_server *s, struct http__ip *e)
{
    if (--e->count > 0)
        return;
    struct http__ip **p = &s->ip_tab[ip_hash(e->addr, e->len)];
    while (*p != e)
        p = &(*p)->next;
    *p = e->next;
    craft_free(e);
}

static int map_fd(struct http_server *s, struct http__conn *c)
{
    size_t fd = (size_t)c->fd;
    if (fd >= s->by_fd_cap) {
        size_t cap = s->by_fd_cap ? s->by_fd_cap : 1024;
        while (cap <= fd)
            cap *= 2;
        struct http__conn **m = craft_realloc(s->by_fd, cap * sizeof *m);
        if (m == NULL)
            return -1;
        memset(m + s->by_fd_cap, 0, (cap - s->by_fd_cap) * sizeof *m);
        s->by_fd = m;
        s->by_fd_cap = cap;
    }
    s->by_fd[fd] = c;
    return 0;
}

static void set_idle(struct http_server *s, struct http__conn *c)
{
    c->busy = false;
    c->idle_since = uv_now(s->loop);
    http__list_unlink(&c->idle);
    http__list_push(&s->idle, &c->idle); /* the newest idle at the tail */
}

/* Shuts the oldest idle connections down while more than target are open
 * (not counting those already shut), taking only those idle for at least
 * idle_reap_ms. h2o sees EOF and closes them on its next read. */
static void reap(struct http_server *s, unsigned target, uint64_t min_idle)
{
    uint64_t now = uv_now(s->loop);
    unsigned n = 0;
    while (s->nconns - s->ndoomed > target && !http__list_empty(&s->idle)) {
        struct http__conn *c = HTTP__CONTAINER(s->idle.next, struct http__conn, idle);
        if (now - c->idle_since < min_idle)
            break;
        http__list_unlink(&c->idle);
        if (c->fd < 0 || c->lingering || uv_is_closing((uv_handle_t *)&c->tcp))
            continue;
        shutdown(c->fd, SHUT_RDWR);
        c->reaped = true;
        s->ndoomed++;
        s->reaped_total++;
        n++;
    }
    uint64_t dropped;
    if (n > 0 && craft_ratelimit_allow(&s->rl_refuse, now, &dropped))
        CRAFT_INFO(s->log, "http: %u connections open, closed %u idle for %" PRIu64 " ms or more "
                   "(%" PRIu64 " reaped in all; %" PRIu64 " similar lines suppressed)",
                   s->nconns, n, min_idle, s->reaped_total, dropped);
}

const char *http__guard_admit(struct http_server *s, struct http__conn *c)
{
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0 || map_fd(s, (c->fd = fd, c)) != 0) {
        c->fd = -1;
        return "out of memory";
    }
    set_idle(s, c);
    c->ip = ip_get(s, c);
    if (c->ip != NULL && ++c->ip->count > s->max_per_ip)
        return "too many connections from your address";
    unsigned high = s->max_conns - s->max_conns / 8;
    if (s->nconns - s->ndoomed > high)
        reap(s, high, s->idle_reap_ms);
    /* Full: rather than refusing, take an idle one sooner. */
    if (s->nconns - s->ndoomed > s->max_conns)
        reap(s, s->max_conns, s->idle_reap_ms / 4);
    if (s->nconns - s->ndoomed > s->max_conns)
        return "too many connections";
    return NULL;
}

void http__guard_closed(struct http__conn *c)
{
    struct http_server *s = c->srv;
    if (c->fd >= 0 && (size_t)c->fd < s->by_fd_cap && s->by_fd[c->fd] == c)
        s->by_fd[c->fd] = NULL;
    c->fd = -1;
    http__list_unlink(&c->idle);
    if (c->ip != NULL) {
        ip_put(s, c->ip);
        c->ip = NULL;
    }
    if (c->reaped) {
        c->reaped = false;
        s->ndoomed--;
    }
}

static int fd_of(h2o_req_t *req)
{
    if (req->conn == NULL || req->conn->callbacks->get_socket == NULL)
        return -1;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    return sock != NULL ? h2o_socket_get_fd(sock) : -1;
}

struct http__conn *http__guard_conn_of(struct http_server *s, h2o_req_t *req)
{
    int fd = fd_of(req);
    if (fd < 0 || (size_t)fd >= s->by_fd_cap)
        return NULL;
    return s->by_fd[fd];
}

struct busy_hook {
    struct http_server *srv;
    int fd;
    struct http__conn *conn;
};

static void on_busy_dispose(void *p)
{
    struct busy_hook *h = p;
    struct http_server *s = h->srv;
    /* still the same connection (it may have closed and its fd be reused) */
    if ((size_t)h->fd < s->by_fd_cap && s->by_fd[h->fd] == h->conn && h->conn->busy)
        set_idle(s, h->conn);
}

void http__guard_busy(struct http_server *s, h2o_req_t *req)
{
    struct http__conn *c = http__guard_conn_of(s, req);
    if (c == NULL || c->busy)
        return;
    struct busy_hook *h = h2o_mem_alloc_shared(&req->pool, sizeof *h, on_busy_dispose);
    *h = (struct busy_hook){s, c->fd, c};
    c->busy = true;
    http__list_unlink(&c->idle);
}

static bool revents_gone(short re)
{
    return (re & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

bool http__guard_req_gone(h2o_req_t *req)
{
    int fd = fd_of(req);
    if (fd < 0)
        return true;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && revents_gone(p.revents);
}

/* The end of v when it lies in [b, e), or NULL. */
static const char *end_within(h2o_iovec_t v, const char *b, const char *e)
{
    if (v.base == NULL || v.base < b || v.base > e || v.len > (size_t)(e - v.base))
        return NULL;
    return v.base + v.len;
}

/* Whether h2o has read bytes of req's connection beyond req itself. While
 * req is handled, h2o keeps its head and Content-Length body in the input
 * buffer, with req->entity at the body (empty, right after the head, when
 * there is none); without an entity, the head ends with the CRLFCRLF after
 * the last of its fields that points into the buffer (the last header, or
 * the Host kept as the authority). When in doubt, yes. */
static bool bytes_behind(h2o_req_t *req, h2o_socket_t *sock)
{
    h2o_buffer_t *in = sock->input;
    if (in == NULL || in->size == 0)
        return false;
    const char *b = in->bytes, *e = b + in->size;
    const char *end = end_within(req->entity, b, e);
    if (end != NULL)
        return end < e;
    if (req->entity.base != NULL)
        return true;
    const char *last = end_within(req->authority, b, e);
    if (req->headers.size > 0) {
        const char *h = end_within(req->headers.entries[req->headers.size - 1].value, b, e);
        if (h != NULL && (last == NULL || h > last))
            last = h;
    }
    if (last == NULL)
        return true;
    end = memmem(last, (size_t)(e - last), "\r\n\r\n", 4);
    return end == NULL || end + 4 < e;
}

bool http__guard_req_left(struct http_server *s, h2o_req_t *req)
{
    struct http__conn *c = http__guard_conn_of(s, req);
    if (c == NULL || req->version >= 0x200 || c->pipelined)
        return http__guard_req_gone(req);
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    if (sock == NULL)
        return true;
    if (!bytes_behind(req, sock))
        return false;
    c->pipelined = true; /* from now on, every request of it is checked */
    return http__guard_req_gone(req);
}

void http__guard_cancel(struct http_req *r)
{
    if (r->cancelled)
        return;
    r->cancelled = true;
    struct http_server *s = r->srv;
    if (r->h2o != NULL)
        r->h2o->http1_is_persistent = 0; /* nothing more is read from it */
    s->cancelled_total++;
    if (s->handlers.cancel != NULL)
        s->handlers.cancel(s->ud, r); /* r may be freed */
}

static void on_sweep(uv_timer_t *t)
{
    struct http_server *s = HTTP__CONTAINER(t, struct http_server, sweep_timer);
    size_t n = 0;
    for (struct http__link *l = s->pending.next; l != &s->pending; l = l->next)
        n++;
    if (n == 0) {
        uv_timer_stop(t);
        s->sweeping = false;
        return;
    }
    struct pollfd *p = craft_malloc(n * sizeof *p);
    struct http_req **rs = craft_malloc(n * sizeof *rs);
    if (p == NULL || rs == NULL) {
        craft_free(p);
        craft_free(rs);
        return;
    }
    size_t k = 0;
    for (struct http__link *l = s->pending.next; l != &s->pending; l = l->next) {
        struct http_req *r = HTTP__CONTAINER(l, struct http_req, link);
        int fd = fd_of(r->h2o);
        if (r->cancelled || fd < 0)
            continue;
        p[k] = (struct pollfd){.fd = fd, .events = POLLRDHUP};
        rs[k++] = r;
    }
    size_t gone = 0;
    if (k > 0 && poll(p, k, 0) > 0) {
        /* Cancelling may answer a request and so close its connection, but
         * it does not free another pending request: rs stays valid. */
        for (size_t i = 0; i < k; i++) {
            if (!revents_gone(p[i].revents))
                continue;
            gone++;
            http__guard_cancel(rs[i]);
        }
    }
    uint64_t dropped;
    if (gone > 0 && craft_ratelimit_allow(&s->rl_gone, uv_now(s->loop), &dropped))
        CRAFT_DEBUG(s->log, "http: %zu clients went away while their request waited "
                    "(%" PRIu64 " similar lines suppressed)", gone, dropped);
    craft_free(p);
    craft_free(rs);
}

void http__guard_sweep_start(struct http_server *s)
{
    if (s->sweeping || s->closing)
        return;
    s->sweeping = true;
    uv_timer_start(&s->sweep_timer, on_sweep, SWEEP_MS, SWEEP_MS);
}

void http__guard_free(struct http_server *s)
{
    if (s->ip_tab != NULL) {
        for (size_t i = 0; i < HTTP__IP_BUCKETS; i++) {
            while (s->ip_tab[i] != NULL) {
                struct http__ip *e = s->ip_tab[i];
                s->ip_tab[i] = e->next;
                craft_free(e);
            }
        }
    }
    craft_free(s->ip_tab);
    craft_free(s->by_fd);
    s->ip_tab = NULL;
    s->by_fd = NULL;
    s->by_fd_cap = 0;
}
