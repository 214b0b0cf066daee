/* The addresses a POST /join names: their syntax (host:port, a port in
 * 1..65535, a host that is an IP address or a host name, not a wildcard),
 * their resolution (host names through uv_getaddrinfo, off the loop), and
 * their comparison with the members' addresses. A resolution belongs to
 * its join request: a request that ends first (timeout, client gone,
 * shutdown) detaches it, and its callback then only frees it. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/alloc.h"
#include "node/internal.h"

struct node__resolve {
    uv_getaddrinfo_t gai;
    struct node *n;       /* NULL: the request is gone */
    struct node__req *q;
    const char *what;     /* "addr" or "http_addr" */
    char host[PEER_HOST_MAX + 1];
};

static bool host_chars_ok(const char *h)
{
    /* RFC 1123 labels: letters, digits, '-', dots between them. */
    size_t len = strlen(h);
    if (len == 0 || h[0] == '.' || h[0] == '-' || h[len - 1] == '-')
        return false;
    for (const char *p = h; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!isalnum(c) && c != '-' && c != '.')
            return false;
        if (c == '.' && p[1] == '.')
            return false;
    }
    return true;
}

int node__join_addr_check(const char *what, const char *addr, char *host,
                          size_t hostlen, bool *needs_dns, char *err,
                          size_t errlen)
{
    uint16_t port;
    *needs_dns = false;
    int rv = peer_parse_addr(addr, host, hostlen, &port);
    if (rv) {
        snprintf(err, errlen, "%s \"%s\" is not host:port (a host name, an "
                 "IPv4 address or [IPv6], then a port 1-65535)%s", what,
                 addr, rv == CRAFT_ETOOBIG ? ": host name too long" : "");
        return -1;
    }
    if (port == 0) {
        snprintf(err, errlen, "%s \"%s\": port 0 is not a port one can "
                 "reach", what, addr);
        return -1;
    }
    if (host[0] == '\0')
        return 0; /* ":port": this host, as craftd's flags take it */
    unsigned char buf[16];
    bool v6 = addr[0] == '[';
    if (inet_pton(v6 ? AF_INET6 : AF_INET, host, buf) == 1) {
        static const unsigned char zero[16];
        if (memcmp(buf, zero, v6 ? 16 : 4) == 0) {
            snprintf(err, errlen, "%s \"%s\" is a wildcard address: name "
                     "one the other members can reach", what, addr);
            return -1;
        }
        return 0;
    }
    if (v6) {
        snprintf(err, errlen, "%s \"%s\": [%s] is not an IPv6 address",
                 what, addr, host);
        return -1;
    }
    if (!host_chars_ok(host)) {
        snprintf(err, errlen, "%s \"%s\": \"%s\" is neither an IP address "
                 "nor a host name", what, addr, host);
        return -1;
    }
    *needs_dns = true;
    return 0;
}

/* Same member address? By port and host text (host names without regard
 * to case); no resolution, so "localhost:1" and "127.0.0.1:1" differ. */
bool node__same_addr(const char *a, const char *b)
{
    char ha[PEER_HOST_MAX + 1], hb[PEER_HOST_MAX + 1];
    uint16_t pa, pb;
    if (a == NULL || b == NULL || a[0] == '\0' || b[0] == '\0')
        return false;
    if (peer_parse_addr(a, ha, sizeof ha, &pa) != 0 ||
        peer_parse_addr(b, hb, sizeof hb, &pb) != 0)
        return strcmp(a, b) == 0;
    return pa == pb && strcasecmp(ha, hb) == 0;
}

static void resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *ai);

static int start(struct node *n, struct node__req *q, const char *what,
                 const char *host)
{
    struct node__resolve *r = craft_calloc(1, sizeof *r);
    if (r == NULL)
        return CRAFT_ENOMEM;
    r->n = n;
    r->q = q;
    r->what = what;
    snprintf(r->host, sizeof r->host, "%s", host);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM};
    int rv = uv_getaddrinfo(n->loop, &r->gai, resolved, r->host, NULL,
                            &hints);
    if (rv) {
        craft_free(r);
        return CRAFT_EIO;
    }
    q->resolve = r;
    return 0;
}

/* What is left to resolve for q: its http_addr's host, if it has one that
 * needs it, once addr's is done. */
static int next_host(const struct node__req *q, const char *after,
                     char *host, size_t hostlen)
{
    char err[64];
    bool dns;
    if (after == NULL &&
        node__join_addr_check("addr", q->jaddr, host, hostlen, &dns, err,
                              sizeof err) == 0 && dns)
        return 1;
    if (q->jhttp && q->jhttp[0] &&
        node__join_addr_check("http_addr", q->jhttp, host, hostlen, &dns,
                              err, sizeof err) == 0 && dns)
        return 2;
    return 0;
}

static void resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *ai)
{
    struct node__resolve *r = (struct node__resolve *)g;
    uv_freeaddrinfo(ai);
    struct node *n = r->n;
    struct node__req *q = r->q;
    const char *what = r->what;
    char host[PEER_HOST_MAX + 1];
    snprintf(host, sizeof host, "%s", r->host);
    craft_free(r);
    if (n == NULL)
        return; /* the join ended meanwhile */
    q->resolve = NULL;
    if (status != 0) {
        http_reply_error(q->http, 400, "%s \"%s\": cannot resolve %s: %s",
                         what, strcmp(what, "addr") ? q->jhttp : q->jaddr,
                         host, uv_strerror(status));
        node__req_done(n, q);
        return;
    }
    if (strcmp(what, "addr") == 0 &&
        next_host(q, "addr", host, sizeof host) == 2) {
        if (start(n, q, "http_addr", host) != 0) {
            http_reply_error(q->http, 503, "cannot resolve http_addr now");
            node__req_done(n, q);
        }
        return;
    }
    node__join_resolved(n, q);
}

int node__join_resolve(struct node *n, struct node__req *q)
{
    char host[PEER_HOST_MAX + 1];
    int k = next_host(q, NULL, host, sizeof host);
    if (k == 0)
        return 0;
    int rv = start(n, q, k == 1 ? "addr" : "http_addr", host);
    return rv ? rv : 1;
}

void node__join_resolve_detach(struct node__req *q)
{
    if (q->resolve == NULL)
        return;
    q->resolve->n = NULL;
    (void)uv_cancel((uv_req_t *)&q->resolve->gai); /* or it runs to its end */
    q->resolve = NULL;
}
