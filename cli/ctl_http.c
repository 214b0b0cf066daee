/* craftctl's HTTP: one request over libcurl to the first endpoint that
 * answers, and what an answer's status means for the exit code. */
#include "ctl.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <errno.h>
#include <unistd.h>

void ctl_resp_free(struct ctl_resp *r)
{
    free(r->body);
    r->body = NULL;
    r->len = 0;
}

struct sink {
    char *buf;
    size_t len, cap;
    bool oom;
    int fd;        /* struct ctl's body_fd */
    CURL *h;       /* to ask the status of the answer being received */
    bool io_error; /* writing to fd failed */
    int io_errno;  /* and why */
};

/* A 2xx body to the file, all of it (short writes and EINTR retried). */
static size_t to_file(struct sink *s, const char *p, size_t add)
{
    for (size_t done = 0; done < add;) {
        ssize_t w = write(s->fd, p + done, add - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            s->io_error = true;
            s->io_errno = w < 0 ? errno : ENOSPC;
            return 0; /* curl stops with CURLE_WRITE_ERROR */
        }
        done += (size_t)w;
    }
    return add;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct sink *s = ud;
    size_t add = size * n;
    long status = 0;
    if (s->fd >= 0 && curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK &&
        status >= 200 && status < 300)
        return to_file(s, p, add);
    if (s->len + add + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + add + 1)
            cap *= 2;
        char *b = realloc(s->buf, cap);
        if (b == NULL) {
            s->oom = true;
            return 0; /* curl stops with CURLE_WRITE_ERROR */
        }
        s->buf = b;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, p, add);
    s->len += add;
    s->buf[s->len] = 0;
    return add;
}

bool ctl_header_index(const char *p, size_t len, uint64_t *index)
{
    static const char name[] = "x-craftd-index:";
    if (len <= sizeof name || strncasecmp(p, name, sizeof name - 1) != 0)
        return false;
    char v[32];
    size_t vl = len - (sizeof name - 1);
    if (vl >= sizeof v)
        vl = sizeof v - 1;
    memcpy(v, p + sizeof name - 1, vl);
    v[vl] = 0;
    *index = strtoull(v, NULL, 10);
    return true;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    (void)ctl_header_index(p, size * n, ud);
    return size * n;
}

void ctl_curl_common(struct ctl *c, CURL *h)
{
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->timeout_ms < 3000 ? c->timeout_ms : 3000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (c->user != NULL) {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(h, CURLOPT_USERPWD, c->user);
    }
    if (c->cacert != NULL)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->cacert);
    if (c->cert != NULL)
        curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert);
    if (c->key != NULL)
        curl_easy_setopt(h, CURLOPT_SSLKEY, c->key);
}

/* No byte of the request can have reached the server. */
static bool not_sent(CURLcode e)
{
    return e == CURLE_COULDNT_CONNECT || e == CURLE_COULDNT_RESOLVE_HOST ||
           e == CURLE_COULDNT_RESOLVE_PROXY || e == CURLE_SSL_CONNECT_ERROR;
}

static CURLcode perform(struct ctl *c, const char *base, const char *method, const char *path,
                        const void *body, size_t blen, struct curl_slist *hdrs,
                        struct sink *sink, uint64_t *index, long *status)
{
    CURL *h = c->curl;
    curl_easy_reset(h);
    size_t ulen = strlen(base) + strlen(path) + 1;
    char *url = malloc(ulen);
    if (url == NULL)
        return CURLE_OUT_OF_MEMORY;
    snprintf(url, ulen, "%s%s", base, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    if (body != NULL) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, sink);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, index);
    if (c->body_fd >= 0) { /* a download of any length: only a stall ends it */
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (c->timeout_ms + 999) / 1000);
    } else {
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    }
    ctl_curl_common(c, h);
    CURLcode e = curl_easy_perform(h);
    if (e == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    free(url);
    return e;
}

int ctl_request(struct ctl *c, const char *method, const char *path, const void *body,
                size_t blen, const char *const *headers, bool idempotent, struct ctl_resp *r)
{
    memset(r, 0, sizeof *r);
    struct curl_slist *hdrs = NULL;
    /* A write's body is sent at once, not after "Expect: 100-continue". */
    hdrs = curl_slist_append(hdrs, "Expect:");
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
        hdrs = curl_slist_append(hdrs, headers[i]);
    if (hdrs == NULL) {
        fprintf(stderr, "craftctl: out of memory\n");
        return CTL_UNAVAILABLE;
    }
    /* What went wrong at each endpoint tried: said only if none answers. */
    char why_all[2048] = "";
    size_t wlen = 0;
    int rv = CTL_UNAVAILABLE;
    for (size_t k = 0; k < c->n_endpoints; k++) {
        size_t i = (c->current + k) % c->n_endpoints;
        const char *base = c->endpoints[i];
        struct sink sink = {.fd = c->body_fd, .h = c->curl};
        if (c->body_fd >= 0 &&
            (ftruncate(c->body_fd, 0) != 0 || lseek(c->body_fd, 0, SEEK_SET) != 0)) {
            fprintf(stderr, "craftctl: cannot empty the output file: %s\n", strerror(errno));
            break;
        }
        uint64_t index = 0;
        long status = 0;
        CURLcode e = perform(c, base, method, path, body, blen, hdrs, &sink, &index, &status);
        bool next = k + 1 < c->n_endpoints;
        if (e == CURLE_OK && !(idempotent && status == 503 && next)) {
            c->current = i;
            r->status = status;
            r->body = sink.buf ? sink.buf : calloc(1, 1);
            r->len = sink.len;
            r->index = index;
            snprintf(r->endpoint, sizeof r->endpoint, "%s", base);
            rv = r->body ? 0 : CTL_UNAVAILABLE;
            break;
        }
        free(sink.buf);
        char io_why[160];
        if (sink.io_error)
            snprintf(io_why, sizeof io_why, "cannot write the output file: %s",
                     strerror(sink.io_errno));
        const char *why = e == CURLE_OK    ? "503"
                          : sink.oom       ? "out of memory"
                          : sink.io_error  ? io_why
                                           : curl_easy_strerror(e);
        bool local = sink.oom || sink.io_error; /* no other endpoint can help */
        if (e == CURLE_OK || not_sent(e) || (idempotent && !local)) {
            if (wlen < sizeof why_all)
                wlen += (size_t)snprintf(why_all + wlen, sizeof why_all - wlen,
                                         "craftctl: %s: %s\n", base, why);
            continue;
        }
        /* The request may have reached the server: sending it again could
         * apply a write twice. */
        fprintf(stderr, "%scraftctl: %s: %s%s\n", why_all, base, why,
                idempotent ? "" : " (the request may or may not have been applied)");
        why_all[0] = 0;
        break;
    }
    if (rv != 0 && why_all[0])
        fprintf(stderr, "%scraftctl: no endpoint answered (%zu tried)\n", why_all,
                c->n_endpoints);
    curl_slist_free_all(hdrs);
    return rv;
}

int ctl_status_exit(const struct ctl_resp *r, const char *what)
{
    if ((r->status >= 200 && r->status < 300) || r->status == 304)
        return CTL_OK;
    const char *msg = r->body;
    json_t *j = r->len ? json_loadb(r->body, r->len, 0, NULL) : NULL;
    json_t *e = j ? json_object_get(j, "error") : NULL;
    if (json_is_string(e))
        msg = json_string_value(e);
    fprintf(stderr, "craftctl: %s: %ld %s\n", what, r->status, msg && *msg ? msg : "");
    json_decref(j);
    if (r->status == 404 || r->status == 412)
        return CTL_FALSE;
    return r->status < 500 ? CTL_REFUSED : CTL_UNAVAILABLE;
}

bool ctl_parse_u64(const char *s, uint64_t *v)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        return false;
    *v = x;
    return true;
}

char *ctl_pct(const void *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = s;
    char *out = malloc(3 * len + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = p[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            *o++ = (char)ch;
        } else {
            *o++ = '%';
            *o++ = hex[ch >> 4];
            *o++ = hex[ch & 15];
        }
    }
    *o = 0;
    return out;
}
