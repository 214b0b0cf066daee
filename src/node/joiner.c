/* The client side of a join: a new node asks a member (-join, an HTTP
 * address) for /status to learn every member's Raft address, then POSTs
 * /join with its id and addresses, retrying with backoff until a member
 * accepts. A refusal (4xx) or too many failures is fatal: a node must never
 * sit silently outside the cluster it was told to join. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "node/internal.h"

#define JOIN_MAX_ATTEMPTS 60
#define JOIN_BACKOFF_MAX_MS 5000

struct node__joiner {
    struct node *n; /* NULL once stopped */
    char host[PEER_HOST_MAX + 1];
    char port[8];
    int phase; /* 0: GET /status, 1: POST /join */
    unsigned attempt;
    unsigned backoff_ms;
    unsigned refs; /* open handles and requests in flight */
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    char req[2048];
    char *resp;
    size_t resp_len, resp_cap;
};

static void attempt(struct node__joiner *j);

static void unref(struct node__joiner *j)
{
    if (--j->refs == 0 && j->n == NULL) {
        craft_free(j->resp);
        craft_free(j);
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    unref(h->data);
}

static void on_timer(uv_timer_t *t)
{
    attempt(t->data);
}

static void retry(struct node__joiner *j, const char *why)
{
    struct node *n = j->n;
    if (n == NULL)
        return;
    if (++j->attempt >= JOIN_MAX_ATTEMPTS) {
        CRAFT_ERROR(&n->log, "could not join via %s:%s after %u attempts "
                    "(last: %s); giving up", j->host, j->port, j->attempt, why);
        exit(1);
    }
    CRAFT_WARN(&n->log, "join via %s:%s: %s; retrying in %u ms", j->host,
               j->port, why, j->backoff_ms);
    uv_timer_start(&j->timer, on_timer, j->backoff_ms, 0);
    j->backoff_ms = j->backoff_ms * 2 > JOIN_BACKOFF_MAX_MS
                        ? JOIN_BACKOFF_MAX_MS : j->backoff_ms * 2;
}

/* Learn every member's Raft address from a /status body. */
static void learn_members(struct node__joiner *j, const char *body)
{
    json_t *root = json_loads(body, 0, NULL);
    json_t *members = json_object_get(root, "members");
    size_t i;
    json_t *m;
    json_array_foreach(members, i, m) {
        const char *id = json_string_value(json_object_get(m, "id"));
        const char *addr = json_string_value(json_object_get(m, "raft_addr"));
        if (id && addr && strcmp(id, j->n->id) != 0)
            peer_set(j->n->peers, node_raft_id(id), 0, addr);
    }
    json_decref(root);
}

static void handle_response(struct node__joiner *j)
{
    struct node *n = j->n;
    int status = 0;
    if (j->resp_len < 12 || sscanf(j->resp, "HTTP/1.%*d %d", &status) != 1) {
        retry(j, "no valid HTTP response");
        return;
    }
    char *body = strstr(j->resp, "\r\n\r\n");
    body = body ? body + 4 : j->resp + j->resp_len;
    if (status >= 400 && status < 500) {
        CRAFT_ERROR(&n->log, "join refused by %s:%s (HTTP %d): %s", j->host,
                    j->port, status, body);
        exit(1);
    }
    if (status != 200) {
        char why[64];
        snprintf(why, sizeof why, "HTTP %d", status);
        retry(j, why);
        return;
    }
    if (j->phase == 0) {
        learn_members(j, body);
        j->phase = 1;
        attempt(j);
        return;
    }
    CRAFT_INFO(&n->log, "joined the cluster via %s:%s", j->host, j->port);
    node__joiner_stop(n);
}

static void on_tcp_closed(uv_handle_t *h)
{
    struct node__joiner *j = h->data;
    if (j->n != NULL && j->resp_len > 0)
        handle_response(j);
    else if (j->n != NULL)
        retry(j, "connection failed");
    unref(j);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct node__joiner *j = h->data;
    if (j->resp_cap - j->resp_len < 4096) {
        size_t cap = j->resp_cap ? j->resp_cap * 2 : 8192;
        char *p = craft_realloc(j->resp, cap + 1);
        if (p == NULL) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
        j->resp = p;
        j->resp_cap = cap;
    }
    *buf = uv_buf_init(j->resp + j->resp_len,
                       (unsigned)(j->resp_cap - j->resp_len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct node__joiner *j = s->data;
    if (nread > 0) {
        j->resp_len += (size_t)nread;
        j->resp[j->resp_len] = 0;
        return;
    }
    if (nread < 0)
        uv_close((uv_handle_t *)s, on_tcp_closed);
}

static void on_write(uv_write_t *w, int status)
{
    struct node__joiner *j = w->data;
    if (status == 0 && j->n != NULL)
        uv_read_start((uv_stream_t *)&j->tcp, on_alloc, on_read);
    else
        uv_close((uv_handle_t *)&j->tcp, on_tcp_closed);
}

static void on_connect(uv_connect_t *c, int status)
{
    struct node__joiner *j = c->data;
    if (status != 0 || j->n == NULL) {
        uv_close((uv_handle_t *)&j->tcp, on_tcp_closed);
        return;
    }
    uv_buf_t b = uv_buf_init(j->req, (unsigned)strlen(j->req));
    j->wreq.data = j;
    if (uv_write(&j->wreq, (uv_stream_t *)&j->tcp, &b, 1, on_write) != 0)
        uv_close((uv_handle_t *)&j->tcp, on_tcp_closed);
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *ai)
{
    struct node__joiner *j = g->data;
    if (status != 0 || j->n == NULL) {
        if (j->n != NULL)
            retry(j, status ? uv_strerror(status) : "stopped");
        uv_freeaddrinfo(ai);
        unref(j);
        return;
    }
    uv_tcp_init(j->n->loop, &j->tcp);
    j->tcp.data = j;
    j->creq.data = j;
    j->resp_len = 0;
    int rv = uv_tcp_connect(&j->creq, &j->tcp, ai->ai_addr, on_connect);
    uv_freeaddrinfo(ai);
    if (rv != 0) {
        j->refs++;
        uv_close((uv_handle_t *)&j->tcp, on_tcp_closed);
        unref(j);
        return;
    }
    /* The gai reference passes to the tcp handle. */
}

static void attempt(struct node__joiner *j)
{
    struct node *n = j->n;
    if (n == NULL)
        return;
    if (j->phase == 0) {
        snprintf(j->req, sizeof j->req,
                 "GET /status HTTP/1.1\r\nHost: %s:%s\r\n"
                 "Connection: close\r\n\r\n", j->host, j->port);
    } else {
        json_t *o = json_pack("{s:s, s:s, s:s}", "id", n->id, "addr",
                              n->raft_addr, "http_addr", n->http_addr);
        char *body = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (body == NULL) {
            retry(j, "out of memory");
            return;
        }
        snprintf(j->req, sizeof j->req,
                 "POST /join HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: "
                 "application/json\r\nContent-Length: %zu\r\nConnection: "
                 "close\r\n\r\n%s", j->host, j->port, strlen(body), body);
        free(body);
    }
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    j->gai.data = j;
    j->refs++;
    int rv = uv_getaddrinfo(n->loop, &j->gai, on_resolved, j->host, j->port,
                            &hints);
    if (rv != 0) {
        j->refs--;
        retry(j, uv_strerror(rv));
    }
}

int node__joiner_start(struct node *n)
{
    struct node__joiner *j = craft_calloc(1, sizeof *j);
    if (j == NULL)
        return CRAFT_ENOMEM;
    uint16_t port;
    int rv = peer_parse_addr(n->o.join, j->host, sizeof j->host, &port);
    if (rv) {
        craft_free(j);
        return rv;
    }
    if (j->host[0] == 0)
        strcpy(j->host, "127.0.0.1"); /* ":11000" means this host */
    snprintf(j->port, sizeof j->port, "%u", port);
    j->n = n;
    j->backoff_ms = 100;
    uv_timer_init(n->loop, &j->timer);
    j->timer.data = j;
    j->refs = 1; /* the timer */
    n->joiner = j;
    CRAFT_INFO(&n->log, "joining the cluster via %s", n->o.join);
    attempt(j);
    return 0;
}

void node__joiner_stop(struct node *n)
{
    struct node__joiner *j = n->joiner;
    if (j == NULL)
        return;
    n->joiner = NULL;
    j->n = NULL;
    uv_close((uv_handle_t *)&j->timer, on_timer_closed);
}
