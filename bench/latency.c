/* Single-client latency: one keep-alive HTTP/1.1 connection, N sequential
 * requests, each timed from its first byte sent to its last byte received.
 * Prints one line: name, count, p50/p90/p99/max and mean in microseconds.
 *
 *   latency NAME HOST:PORT N METHOD PATH [BODY]
 *
 * "%d" in PATH or BODY (at most once each) becomes the request's number, so
 * that every write has its own key. Only 2xx answers count; anything else
 * stops the run with exit status 1. Responses must carry Content-Length or
 * be chunked (craftd and etcd's JSON gateway do both for small bodies). A
 * benchmark helper, not part of craftd: plain blocking sockets. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF_CAP 65536

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int dial(const char *hostport)
{
    char host[64];
    const char *colon = strrchr(hostport, ':');
    if (colon == NULL || (size_t)(colon - hostport) >= sizeof host)
        return -1;
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, 0);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The value of header name in the head [h, h+n), or NULL. */
static const char *header(const char *h, size_t n, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = h; p + nl + 1 < h + n; p++)
        if ((p == h || p[-1] == '\n') && strncasecmp(p, name, nl) == 0 && p[nl] == ':')
            return p + nl + 1;
    return NULL;
}

/* Reads one response into buf; returns its status, or -1. */
static int read_response(int fd, char *buf)
{
    size_t have = 0, head = 0;
    long body = -1;
    int chunked = 0;
    for (;;) {
        if (head == 0) {
            char *e = memmem(buf, have, "\r\n\r\n", 4);
            if (e != NULL) {
                head = (size_t)(e - buf) + 4;
                const char *cl = header(buf, head, "content-length");
                const char *te = header(buf, head, "transfer-encoding");
                if (cl != NULL)
                    body = strtol(cl, NULL, 10);
                else if (te != NULL && strncasecmp(te + strspn(te, " "), "chunked", 7) == 0)
                    chunked = 1;
                else
                    body = 0;
            }
        }
        if (head > 0 && body >= 0 && have >= head + (size_t)body)
            break;
        if (head > 0 && chunked && have >= head + 5 && memcmp(buf + have - 5, "0\r\n\r\n", 5) == 0)
            break;
        if (have == BUF_CAP)
            return -1;
        ssize_t r = recv(fd, buf + have, BUF_CAP - have, 0);
        if (r <= 0)
            return -1;
        have += (size_t)r;
    }
    if (have > head + (size_t)(body > 0 ? body : 0) && !chunked)
        return -1; /* bytes beyond the response: not sequential */
    int status = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    return status;
}

/* buf = tmpl with its "%d" (if any) replaced by i. */
static size_t fill(char *buf, size_t cap, const char *tmpl, long i)
{
    const char *pct = strstr(tmpl, "%d");
    if (pct == NULL)
        return (size_t)snprintf(buf, cap, "%s", tmpl);
    return (size_t)snprintf(buf, cap, "%.*s%ld%s", (int)(pct - tmpl), tmpl, i, pct + 2);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const uint64_t *v, long n, double q)
{
    long i = (long)(q * (double)(n - 1) + 0.5);
    return (double)v[i] / 1000.0;
}

int main(int argc, char **argv)
{
    if (argc < 6 || argc > 7) {
        fprintf(stderr, "usage: latency NAME HOST:PORT N METHOD PATH [BODY]\n");
        return 2;
    }
    const char *name = argv[1], *addr = argv[2], *method = argv[4];
    long n = atol(argv[3]);
    int fd = dial(addr);
    if (n <= 0 || fd < 0) {
        fprintf(stderr, "latency: bad count or cannot connect to %s\n", addr);
        return 2;
    }
    const char *authz = getenv("BENCH_AUTHZ"); /* base64(user:password), optional */
    uint64_t *lat = malloc((size_t)n * sizeof *lat);
    char *buf = malloc(BUF_CAP), *req = malloc(BUF_CAP);
    char path[1024], body[4096];
    if (lat == NULL || buf == NULL || req == NULL)
        return 2;
    for (long i = 0; i < n; i++) {
        fill(path, sizeof path, argv[5], i);
        size_t blen = argc == 7 ? fill(body, sizeof body, argv[6], i) : 0;
        int len = snprintf(req, BUF_CAP,
                           "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s%s%sContent-Length: %zu\r\n\r\n%.*s",
                           method, path, addr, blen ? "Content-Type: application/json\r\n" : "",
                           authz && *authz ? "Authorization: Basic " : "", authz ? authz : "",
                           authz && *authz ? "\r\n" : "", blen, (int)blen, body);
        uint64_t t0 = now_ns();
        int status = send_all(fd, req, (size_t)len) == 0 ? read_response(fd, buf) : -1;
        lat[i] = now_ns() - t0;
        if (status < 200 || status > 299) {
            fprintf(stderr, "latency %s: request %ld (%s %s): status %d: %.200s\n", name, i,
                    method, path, status, status > 0 ? buf : "connection error");
            return 1;
        }
    }
    double sum = 0;
    for (long i = 0; i < n; i++)
        sum += (double)lat[i] / 1000.0;
    qsort(lat, (size_t)n, sizeof *lat, cmp_u64);
    printf("%-16s n=%ld p50=%.1f p90=%.1f p99=%.1f max=%.1f mean=%.1f us\n", name, n,
           pct(lat, n, 0.50), pct(lat, n, 0.90), pct(lat, n, 0.99), (double)lat[n - 1] / 1000.0,
           sum / (double)n);
    free(lat);
    free(buf);
    free(req);
    close(fd);
    return 0;
}
