/* The measuring client of bench/watch.sh: holds many watch streams on one
 * epoll loop (one thread, non-blocking sockets, no library) against craftd
 * (GET /watch, Server-Sent Events) or etcd (POST /v3/watch on its JSON
 * gateway, one JSON object per line), and prints one JSON object on stdout.
 *
 *   watch_client idle   -proto P -addr H:PORT -n N -what keys|prefix -pid PID
 *                       [-hold S]
 *     the server's CPU time (utime+stime of /proc/PID/stat) and VmRSS over S
 *     seconds (30) with no watcher of ours, then N watchers are opened (on N
 *     distinct keys idle-00000.., or all on the prefix idle-), and the same
 *     S seconds are measured with them open and idle: no write happens, so
 *     all they get is progress events, which are counted.
 *   watch_client fanout -proto P -addr H:PORT -waddr H:PORT -n N
 *                       [-writes W] [-gap-ms G]
 *     N watchers of the key fankey on addr, then W writes of that key, one at
 *     a time, to waddr (the leader), each G ms (20) after the previous one
 *     reached every watcher: for each (write, watcher) the time from sending
 *     the write and from its 200 answer to the moment this process read the
 *     event from that watcher's socket.
 *
 * Two times for each event: when this process read it (the clock right after
 * the recvmsg() that brought it, so a watcher read late because the loop
 * was busy with the others counts late, as it would for any client), and
 * when the kernel queued it on the socket (SO_TIMESTAMPNS: on loopback,
 * right after the server's write), which leaves the client's reading out.
 * Both are CLOCK_REALTIME, the clock of those kernel timestamps. A socket
 * is read once per readiness (level-triggered epoll), not until EAGAIN.
 * Connections are opened at most OPEN_WINDOW at a time, so that the server's
 * listen backlog never drops a SYN. Every failure exits 1 with a message. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define OPEN_WINDOW 128
#define LINE_MAX_LEN 512
#define HEAD_MAX 2048
#define WRITER_ID (-1)

enum proto { CRAFTD, ETCD };
enum state { CONNECTING, HEADERS, STREAM, CLOSED };
enum chunk { CH_SIZE, CH_EXT, CH_DATA, CH_CRLF, CH_NONE };

struct conn {
    int fd;
    int id; /* watcher number, or WRITER_ID */
    enum state state;
    char *head; /* response head until it is complete, then NULL */
    size_t head_len;
    enum chunk ch;
    size_t ch_left;
    char line[LINE_MAX_LEN];
    size_t line_len;
    int put_pending; /* craftd: the last event line was "event: put" */
    long progress;   /* progress events received */
    long events;     /* put events received */
    long body_left;  /* writer: bytes of the answer body still to come */
    int in_body;     /* writer: past the head of the current answer */
    int status;
};

struct run {
    enum proto proto;
    struct sockaddr_in addr, waddr;
    int n;
    int ep;
    struct conn *c;  /* n watchers */
    struct conn w;   /* the writer (fanout) */
    int opened;      /* watchers connected or connecting */
    int ready;       /* watchers whose stream started */
    int closed;      /* watchers whose stream ended */
    /* fanout */
    int writes;
    int cur;         /* the write in flight, -1 none */
    double *t_recv;  /* writes x n, 0 = not received */
    double *t_arr;   /* the same, the kernel's receive timestamps */
    double rx_ts;    /* the kernel's timestamp of the bytes being parsed */
    double *t_send, *t_ok;
    int got_cur;     /* watchers that got write cur */
    char rbuf[65536];
};

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("watch_client: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL)
        die("out of memory");
    return p;
}

static struct sockaddr_in parse_addr(const char *s)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    char host[64];
    const char *colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= sizeof host)
        die("bad address %s (host:port)", s);
    memcpy(host, s, colon - s);
    host[colon - s] = 0;
    a.sin_port = htons((unsigned short)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
        die("bad address %s (an IPv4 host)", s);
    return a;
}

/* ---- base64 (etcd's JSON gateway carries keys and values so) */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64_encode(const char *in, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned char)in[i] << 16;
        if (i + 1 < len)
            v |= (unsigned char)in[i + 1] << 8;
        if (i + 2 < len)
            v |= (unsigned char)in[i + 2];
        out[o++] = B64[v >> 18];
        out[o++] = B64[(v >> 12) & 63];
        out[o++] = i + 1 < len ? B64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? B64[v & 63] : '=';
    }
    out[o] = 0;
}

/* Decodes exactly 12 characters (9 bytes) of base64; -1 if not base64. */
static int b64_decode12(const char *in, char out[10])
{
    for (int g = 0; g < 3; g++) {
        unsigned v = 0;
        for (int k = 0; k < 4; k++) {
            const char *p = in[g * 4 + k] ? strchr(B64, in[g * 4 + k]) : NULL;
            if (p == NULL)
                return -1;
            v = v << 6 | (unsigned)(p - B64);
        }
        out[g * 3] = (char)(v >> 16);
        out[g * 3 + 1] = (char)(v >> 8);
        out[g * 3 + 2] = (char)v;
    }
    out[9] = 0;
    return 0;
}

/* ---- requests */

/* The watch request of watcher i: a key of its own, the shared prefix, or
 * the fan-out key. */
static int watch_request(const struct run *r, const char *what, int i, char *buf, size_t cap)
{
    char key[32], end[32], kb[64], eb[64], body[192];
    int prefix = strcmp(what, "prefix") == 0;
    if (strcmp(what, "fanout") == 0)
        snprintf(key, sizeof key, "fankey");
    else if (prefix)
        snprintf(key, sizeof key, "idle-");
    else
        snprintf(key, sizeof key, "idle-%05d", i);
    if (r->proto == CRAFTD)
        return snprintf(buf, cap, "GET /watch?%s=%s HTTP/1.1\r\nHost: bench\r\n\r\n",
                        prefix ? "prefix" : "key", key);
    b64_encode(key, strlen(key), kb);
    if (prefix) { /* [idle-, idle.) */
        snprintf(end, sizeof end, "%s", key);
        end[strlen(end) - 1]++;
        b64_encode(end, strlen(end), eb);
        snprintf(body, sizeof body, "{\"create_request\":{\"key\":\"%s\",\"range_end\":\"%s\"}}", kb,
                 eb);
    } else {
        snprintf(body, sizeof body, "{\"create_request\":{\"key\":\"%s\"}}", kb);
    }
    return snprintf(buf, cap,
                    "POST /v3/watch HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                    "Content-Length: %zu\r\n\r\n%s",
                    strlen(body), body);
}

/* Write i's value: 9 bytes, so that its base64 has no padding. */
static void value_of(int i, char out[10])
{
    snprintf(out, 10, "fan%06u", (unsigned)i % 1000000u); /* -writes is at most 10^6 */
}

static int write_request(const struct run *r, int i, char *buf, size_t cap)
{
    char v[10], kb[16], vb[16], body[128];
    value_of(i, v);
    if (r->proto == CRAFTD) {
        snprintf(body, sizeof body, "{\"fankey\":\"%s\"}", v);
        return snprintf(buf, cap,
                        "POST /key HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                        "Content-Length: %zu\r\n\r\n%s",
                        strlen(body), body);
    }
    b64_encode("fankey", 6, kb);
    b64_encode(v, 9, vb);
    snprintf(body, sizeof body, "{\"key\":\"%s\",\"value\":\"%s\"}", kb, vb);
    return snprintf(buf, cap,
                    "POST /v3/kv/put HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                    "Content-Length: %zu\r\n\r\n%s",
                    strlen(body), body);
}

/* ---- connections */

static void ep_add(struct run *r, struct conn *c, unsigned events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(r->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
        die("epoll_ctl: %s", strerror(errno));
}

static void ep_mod(struct run *r, struct conn *c, unsigned events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(r->ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        die("epoll_ctl: %s", strerror(errno));
}

static void conn_open(struct run *r, struct conn *c, const struct sockaddr_in *a)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket: %s (open files limit?)", strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (c->id != WRITER_ID)
        setsockopt(c->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
    if (connect(c->fd, (const struct sockaddr *)a, sizeof *a) != 0 && errno != EINPROGRESS)
        die("connect: %s", strerror(errno));
    c->state = CONNECTING;
    c->head = xcalloc(1, HEAD_MAX + 1);
    c->head_len = 0;
    ep_add(r, c, EPOLLOUT);
}

static void send_all(int fd, const char *buf, int len)
{
    while (len > 0) {
        ssize_t k = send(fd, buf, (size_t)len, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) /* a request of a few hundred bytes on a new socket */
            die("send: %s", k < 0 ? strerror(errno) : "short");
        buf += k;
        len -= (int)k;
    }
}

static void conn_close(struct run *r, struct conn *c)
{
    if (c->state == CLOSED)
        return;
    epoll_ctl(r->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->head);
    c->head = NULL;
    if (c->id != WRITER_ID)
        r->closed++;
    c->state = CLOSED;
}

/* One complete line of a watcher's stream (without its '\n'). */
static void on_line(struct run *r, struct conn *c, const char *line, size_t len, double t)
{
    int idx = -1;
    char v[10];
    if (r->proto == CRAFTD) {
        if (len >= 7 && memcmp(line, "event: ", 7) == 0) {
            c->put_pending = len == 10 && memcmp(line + 7, "put", 3) == 0;
            if (len == 15 && memcmp(line + 7, "progress", 8) == 0)
                c->progress++;
            return;
        }
        if (!c->put_pending || len < 6 || memcmp(line, "data: ", 6) != 0)
            return;
        c->put_pending = 0;
        c->events++;
        const char *p = memmem(line, len, "\"value\":\"fan", 12);
        if (p != NULL)
            idx = atoi(p + 12);
    } else {
        if (memmem(line, len, "\"events\"", 8) == NULL) {
            if (memmem(line, len, "\"created\":true", 14) != NULL && c->state != STREAM) {
                c->state = STREAM;
                r->ready++;
            }
            return;
        }
        c->events++;
        const char *p = memmem(line, len, "\"value\":\"", 9);
        if (p != NULL && (size_t)(p - line) + 9 + 12 <= len && b64_decode12(p + 9, v) == 0 &&
            memcmp(v, "fan", 3) == 0)
            idx = atoi(v + 3);
    }
    if (idx < 0 || r->t_recv == NULL || idx >= r->writes)
        return;
    double *slot = &r->t_recv[(size_t)idx * r->n + c->id];
    if (*slot == 0) {
        *slot = t;
        r->t_arr[(size_t)idx * r->n + c->id] = r->rx_ts;
        if (idx == r->cur)
            r->got_cur++;
    }
}

/* Body bytes of a watcher, after the chunked framing: split into lines. */
static void on_body(struct run *r, struct conn *c, const char *p, size_t len, double t)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\n') {
            size_t l = c->line_len;
            if (l > 0 && c->line[l - 1] == '\r')
                l--;
            on_line(r, c, c->line, l, t);
            c->line_len = 0;
        } else if (c->line_len < LINE_MAX_LEN) {
            c->line[c->line_len++] = p[i]; /* longer lines are cut: only their start counts */
        }
    }
}

/* Chunked transfer decoding, byte stream to body bytes. */
static void on_stream(struct run *r, struct conn *c, const char *p, size_t len, double t)
{
    size_t i = 0;
    while (i < len) {
        switch (c->ch) {
        case CH_NONE:
            on_body(r, c, p + i, len - i, t);
            return;
        case CH_SIZE:
        case CH_EXT: {
            char x = p[i++];
            if (x == '\n') {
                c->ch = c->ch_left ? CH_DATA : CH_NONE;
                if (c->ch == CH_NONE) /* the last chunk: the stream ended */
                    return;
            } else if (c->ch == CH_SIZE && x != '\r') {
                const char *d = strchr("0123456789abcdef", x | 0x20);
                if (d == NULL || x == 0)
                    c->ch = CH_EXT;
                else
                    c->ch_left = c->ch_left * 16 + (size_t)(d - "0123456789abcdef");
            }
            break;
        }
        case CH_DATA: {
            size_t k = len - i < c->ch_left ? len - i : c->ch_left;
            on_body(r, c, p + i, k, t);
            i += k;
            c->ch_left -= k;
            if (c->ch_left == 0)
                c->ch = CH_CRLF;
            break;
        }
        case CH_CRLF:
            if (p[i++] == '\n')
                c->ch = CH_SIZE;
            break;
        }
    }
}

static long header_num(const char *head, const char *name)
{
    const char *p = strcasestr(head, name);
    return p ? atol(p + strlen(name)) : -1;
}

/* The head is complete (head[..end] up to and with the blank line). */
static void on_head(struct run *r, struct conn *c, size_t end, double t)
{
    c->head[end] = 0;
    if (sscanf(c->head, "HTTP/1.%*d %d", &c->status) != 1)
        die("not an HTTP answer: %.80s", c->head);
    if (c->id == WRITER_ID) {
        if (c->status != 200)
            die("write %d answered %d: %.200s", r->cur, c->status, c->head);
        c->body_left = header_num(c->head, "\r\nContent-Length:");
        if (c->body_left < 0)
            die("write answer without Content-Length");
        return;
    }
    if (c->status != 200)
        die("watcher %d answered %d: %.300s", c->id, c->status, c->head + end + 1);
    c->ch = strcasestr(c->head, "\r\nTransfer-Encoding: chunked") ? CH_SIZE : CH_NONE;
    if (r->proto == CRAFTD) { /* craftd's stream starts with its head */
        c->state = STREAM;
        r->ready++;
    } else {
        c->state = HEADERS; /* etcd: ready at its "created" message */
    }
    (void)t;
}

/* len bytes of the write's answer body: the answer is complete (its time
 * taken) with its last byte. One write is in flight at a time. */
static void writer_body(struct run *r, struct conn *c, size_t len, double t)
{
    c->body_left -= (long)len;
    if (c->body_left > 0)
        return;
    if (c->body_left < 0)
        die("bytes after the write's answer");
    c->in_body = 0;
    r->t_ok[r->cur] = t;
}

static void on_readable(struct run *r, struct conn *c)
{
    for (;;) {
        char cbuf[CMSG_SPACE(sizeof(struct timespec))];
        struct iovec iov = {.iov_base = r->rbuf, .iov_len = sizeof r->rbuf};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                            .msg_controllen = sizeof cbuf};
        ssize_t k = recvmsg(c->fd, &mh, 0);
        double t = now();
        r->rx_ts = t;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); k > 0 && cm; cm = CMSG_NXTHDR(&mh, cm))
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
                struct timespec ts;
                memcpy(&ts, CMSG_DATA(cm), sizeof ts);
                r->rx_ts = ts.tv_sec + ts.tv_nsec / 1e9;
            }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (k <= 0) {
            if (c->id == WRITER_ID)
                die("the write connection closed (%s)", k < 0 ? strerror(errno) : "EOF");
            conn_close(r, c);
            return;
        }
        const char *p = r->rbuf;
        size_t len = (size_t)k;
        if (c->id == WRITER_ID && c->in_body) {
            writer_body(r, c, len, t);
            continue;
        }
        if (c->head != NULL) { /* still in the response head */
            size_t room = HEAD_MAX - c->head_len, take = len < room ? len : room;
            memcpy(c->head + c->head_len, p, take);
            c->head_len += take;
            c->head[c->head_len] = 0;
            char *e = strstr(c->head, "\r\n\r\n");
            if (e == NULL) {
                if (c->head_len == HEAD_MAX)
                    die("response head over %d bytes", HEAD_MAX);
                continue;
            }
            size_t end = (size_t)(e - c->head) + 4;
            size_t rest = c->head_len - end; /* bytes after the head, in this read */
            on_head(r, c, end, t);
            p = p + take - rest;
            len = rest + (len - take);
            if (c->id == WRITER_ID) {
                c->head_len = 0; /* keep the buffer for the next answer */
            } else {
                free(c->head);
                c->head = NULL;
            }
        }
        if (c->id == WRITER_ID) {
            c->in_body = 1;
            writer_body(r, c, len, t);
            continue;
        }
        if (len > 0)
            on_stream(r, c, p, len, t);
        if ((size_t)k < sizeof r->rbuf)
            return; /* epoll says so if more is there */
    }
}

static void on_writable(struct run *r, struct conn *c, const char *what)
{
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0)
        die("connect: %s", strerror(err));
    char req[512];
    int len = c->id == WRITER_ID ? 0 : watch_request(r, what, c->id, req, sizeof req);
    if (len > 0)
        send_all(c->fd, req, len);
    c->state = HEADERS;
    ep_mod(r, c, EPOLLIN);
}

/* Runs the loop for up to ms milliseconds, or until done(r) is true. */
static void loop(struct run *r, const char *what, double ms, int (*done)(struct run *))
{
    struct epoll_event evs[256];
    double end = now() + ms / 1000.0;
    while (done == NULL || !done(r)) {
        double left = end - now();
        if (left <= 0)
            return;
        int k = epoll_wait(r->ep, evs, 256, (int)(left * 1000) + 1);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < k; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->state == CLOSED)
                continue;
            if (c->state == CONNECTING)
                on_writable(r, c, what);
            else
                on_readable(r, c);
        }
    }
}

/* Opens every watcher, at most OPEN_WINDOW not yet streaming at a time;
 * returns the seconds it took. */
static double open_all(struct run *r, const char *what)
{
    double t0 = now();
    while (r->ready < r->n) {
        while (r->opened < r->n && r->opened - r->ready < OPEN_WINDOW) {
            struct conn *c = &r->c[r->opened];
            c->id = r->opened++;
            conn_open(r, c, &r->addr);
        }
        loop(r, what, 50, NULL);
        if (r->closed > 0)
            die("%d watch streams ended while opening", r->closed);
        if (now() - t0 > 120)
            die("only %d of %d watchers started in 120 s", r->ready, r->n);
    }
    return now() - t0;
}

/* ---- /proc */

static double cpu_s(int pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        die("%s: %s", path, strerror(errno));
    size_t k = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[k] = 0;
    char *p = strrchr(buf, ')'); /* fields after the command name */
    unsigned long ut, st;
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
                            &st) != 2)
        die("cannot parse %s", path);
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long rss_kib(int pid)
{
    char path[64], line[256];
    long v = -1;
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        die("%s: %s", path, strerror(errno));
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &v) == 1)
            break;
    fclose(f);
    return v;
}

/* The 1-minute load average, to say how busy the machine was. */
static double loadavg(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f != NULL) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

/* This process's CPU seconds (user + system). */
static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static long progress_total(const struct run *r)
{
    long n = 0;
    for (int i = 0; i < r->n; i++)
        n += r->c[i].progress;
    return n;
}

/* ---- the two measurements */

static int cmd_idle(struct run *r, const char *what, int pid, double hold)
{
    /* without watchers */
    long rss0 = rss_kib(pid);
    double c0 = cpu_s(pid), t0 = now();
    usleep((useconds_t)(hold * 1e6));
    double c1 = cpu_s(pid), t1 = now();
    long rss1 = rss_kib(pid);
    /* with them */
    double open_s = open_all(r, what);
    loop(r, what, 2000, NULL); /* settle: the opening's work is not counted */
    long rss2 = rss_kib(pid), p0 = progress_total(r);
    double c2 = cpu_s(pid), t2 = now();
    loop(r, what, hold * 1000, NULL);
    double c3 = cpu_s(pid), t3 = now();
    long rss3 = rss_kib(pid), p1 = progress_total(r);
    int still = r->n - r->closed;
    printf("{\"proto\":\"%s\",\"what\":\"%s\",\"n\":%d,\"hold_s\":%.1f,\"open_s\":%.3f,"
           "\"cpu_without_ms\":%.0f,\"cpu_with_ms\":%.0f,\"wall_without_s\":%.2f,"
           "\"wall_with_s\":%.2f,\"rss_before_kib\":%ld,\"rss_without_end_kib\":%ld,"
           "\"rss_opened_kib\":%ld,\"rss_end_kib\":%ld,\"progress_events\":%ld,\"still_open\":%d,"
           "\"loadavg_end\":%.2f}\n",
           r->proto == CRAFTD ? "craftd" : "etcd", what, r->n, hold, open_s, (c1 - c0) * 1000,
           (c3 - c2) * 1000, t1 - t0, t3 - t2, rss0, rss1, rss2, rss3, p1 - p0, still, loadavg());
    if (still != r->n)
        die("%d watch streams ended during the idle period", r->n - still);
    return 0;
}

static int write_done(struct run *r)
{
    return r->t_ok[r->cur] != 0 && r->got_cur >= r->n - r->closed;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

static void print_dist(const char *name, double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    printf("\"%s\":{\"n\":%zu,\"min_ms\":%.3f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f},",
           name, n, pct(v, n, 0) * 1000, pct(v, n, 0.5) * 1000, pct(v, n, 0.99) * 1000,
           n ? v[n - 1] * 1000 : 0);
}

static int cmd_fanout(struct run *r, int writes, double gap_ms)
{
    r->writes = writes;
    r->cur = -1;
    r->t_recv = xcalloc((size_t)writes * r->n, sizeof(double));
    r->t_arr = xcalloc((size_t)writes * r->n, sizeof(double));
    r->t_send = xcalloc((size_t)writes, sizeof(double));
    r->t_ok = xcalloc((size_t)writes, sizeof(double));
    double open_s = open_all(r, "fanout");
    loop(r, "fanout", 500, NULL);
    r->w.id = WRITER_ID;
    conn_open(r, &r->w, &r->waddr);
    while (r->w.state == CONNECTING)
        loop(r, "fanout", 100, NULL);
    char req[512];
    int timeouts = 0;
    double cpu0 = self_cpu_s(), wall0 = now();
    for (int i = 0; i < writes; i++) {
        int len = write_request(r, i, req, sizeof req);
        r->cur = i;
        r->got_cur = 0;
        r->t_send[i] = now();
        send_all(r->w.fd, req, len);
        loop(r, "fanout", 5000, write_done);
        if (!write_done(r))
            timeouts++;
        if (r->closed > 0)
            die("%d watch streams ended during the writes", r->closed);
        loop(r, "fanout", gap_ms, NULL);
    }
    double client_cpu = self_cpu_s() - cpu0, wall = now() - wall0;
    size_t n = (size_t)writes * r->n, k = 0, lost = 0;
    double *from_ok = xcalloc(n, sizeof(double)), *from_send = xcalloc(n, sizeof(double));
    double *last_ok = xcalloc((size_t)writes, sizeof(double));
    double *last_send = xcalloc((size_t)writes, sizeof(double));
    double *answer = xcalloc((size_t)writes, sizeof(double));
    double *arr_ok = xcalloc(n, sizeof(double));
    double *last_arr_ok = xcalloc((size_t)writes, sizeof(double));
    size_t nw = 0;
    for (int i = 0; i < writes; i++) {
        double last = 0, last_arr = 0;
        int all = 1;
        for (int j = 0; j < r->n; j++) {
            double t = r->t_recv[(size_t)i * r->n + j];
            if (t == 0) {
                lost++;
                all = 0;
                continue;
            }
            double ta = r->t_arr[(size_t)i * r->n + j];
            arr_ok[k] = ta - r->t_ok[i];
            if (ta > last_arr)
                last_arr = ta;
            from_send[k] = t - r->t_send[i];
            from_ok[k++] = t - r->t_ok[i];
            if (t > last)
                last = t;
        }
        if (r->t_ok[i] != 0)
            answer[nw] = r->t_ok[i] - r->t_send[i];
        if (all && r->t_ok[i] != 0) {
            last_send[nw] = last - r->t_send[i];
            last_ok[nw] = last - r->t_ok[i];
            last_arr_ok[nw] = last_arr - r->t_ok[i];
            nw++;
        }
    }
    printf("{\"proto\":\"%s\",\"n\":%d,\"writes\":%d,\"gap_ms\":%.0f,\"open_s\":%.3f,",
           r->proto == CRAFTD ? "craftd" : "etcd", r->n, writes, gap_ms, open_s);
    print_dist("write_answer", answer, nw);
    print_dist("from_send", from_send, k);
    print_dist("from_answer", from_ok, k);
    print_dist("last_from_send", last_send, nw);
    print_dist("last_from_answer", last_ok, nw);
    print_dist("arrival_from_answer", arr_ok, k);
    print_dist("last_arrival_from_answer", last_arr_ok, nw);
    printf("\"client_cpu_ms\":%.0f,\"wall_s\":%.2f,\"loadavg_end\":%.2f,", client_cpu * 1000,
           wall, loadavg());
    printf("\"lost\":%zu,\"timeouts\":%d}\n", lost, timeouts);
    return lost ? 1 : 0;
}

static void raise_nofile(int need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        die("getrlimit: %s", strerror(errno));
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        die("setrlimit: %s", strerror(errno));
    if (rl.rlim_cur < (rlim_t)need + 16)
        die("open files limit %lu is below %d watchers", (unsigned long)rl.rlim_cur, need);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        die("usage: watch_client idle|fanout -proto craftd|etcd -addr H:P ... (see the source)");
    const char *mode = argv[1], *proto = "craftd", *addr = NULL, *waddr = NULL, *what = "keys";
    int n = 1000, pid = 0, writes = 200;
    double hold = 30, gap = 20;
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "-proto")) proto = v;
        else if (!strcmp(k, "-addr")) addr = v;
        else if (!strcmp(k, "-waddr")) waddr = v;
        else if (!strcmp(k, "-what")) what = v;
        else if (!strcmp(k, "-n")) n = atoi(v);
        else if (!strcmp(k, "-pid")) pid = atoi(v);
        else if (!strcmp(k, "-writes")) writes = atoi(v);
        else if (!strcmp(k, "-hold")) hold = atof(v);
        else if (!strcmp(k, "-gap-ms")) gap = atof(v);
        else die("unknown option %s", k);
    }
    struct run *r = xcalloc(1, sizeof *r);
    if (!strcmp(proto, "craftd")) r->proto = CRAFTD;
    else if (!strcmp(proto, "etcd")) r->proto = ETCD;
    else die("-proto craftd or etcd");
    if (addr == NULL || n <= 0)
        die("-addr and -n > 0 are needed");
    r->addr = parse_addr(addr);
    r->n = n;
    r->c = xcalloc((size_t)n, sizeof *r->c);
    raise_nofile(n + 1);
    r->ep = epoll_create1(EPOLL_CLOEXEC);
    if (r->ep < 0)
        die("epoll_create1: %s", strerror(errno));
    int rc;
    if (!strcmp(mode, "idle")) {
        if (pid <= 0 || (strcmp(what, "keys") && strcmp(what, "prefix")))
            die("idle needs -pid and -what keys|prefix");
        rc = cmd_idle(r, what, pid, hold);
    } else if (!strcmp(mode, "fanout")) {
        if (waddr == NULL || writes <= 0 || writes > 1000000)
            die("fanout needs -waddr and -writes in 1..10^6");
        r->waddr = parse_addr(waddr);
        rc = cmd_fanout(r, writes, gap);
    } else {
        die("unknown mode %s", mode);
    }
    fflush(stdout);
    return rc; /* the kernel closes every socket */
}
