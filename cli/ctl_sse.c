/* A Server-Sent Events reader for craftctl watch: bytes in as libcurl hands
 * them over, whole events out (id, event, data) through a callback. It holds
 * at most one partial line and the fields of one event, each bounded by the
 * cap given at init: a longer line is an error, never an unbounded buffer.
 * Lines end at "\n" (a "\r" before it is dropped); a blank line ends an
 * event; "field: value" lines set id, event or data (several data lines are
 * joined with "\n"); comments (":...") and other fields are ignored. */
#include "ctl_sse.h"

#include <stdlib.h>
#include <string.h>

void ctl_sse_init(struct ctl_sse *s, size_t cap, ctl_sse_fn fn, void *ud)
{
    memset(s, 0, sizeof *s);
    s->cap = cap;
    s->fn = fn;
    s->ud = ud;
}

void ctl_sse_free(struct ctl_sse *s)
{
    free(s->line.p);
    free(s->data.p);
    s->line = s->data = (struct ctl_sse_buf){0};
}

void ctl_sse_reset(struct ctl_sse *s)
{
    s->line.len = s->data.len = 0;
    s->has_data = false;
    s->id[0] = s->event[0] = 0;
    s->has_id = false;
}

/* Appends len bytes to b, growing it up to cap: 0, or -1 past cap or out of
 * memory. b->p stays NUL-terminated. */
static int buf_add(struct ctl_sse_buf *b, const char *p, size_t len, size_t cap)
{
    if (b->len + len > cap)
        return -1;
    if (b->len + len + 1 > b->size) {
        size_t size = b->size ? b->size : 256;
        while (size < b->len + len + 1)
            size *= 2;
        char *q = realloc(b->p, size);
        if (q == NULL)
            return -1;
        b->p = q;
        b->size = size;
    }
    memcpy(b->p + b->len, p, len);
    b->len += len;
    b->p[b->len] = 0;
    return 0;
}

/* Copies a short field value (id, event) into dst, cut to its size. */
static void set_short(char *dst, size_t size, const char *v, size_t len)
{
    if (len >= size)
        len = size - 1;
    memcpy(dst, v, len);
    dst[len] = 0;
}

/* One whole line (without its end): 0, or the callback's nonzero, or -1. */
static int on_line(struct ctl_sse *s, char *p, size_t len)
{
    if (len > 0 && p[len - 1] == '\r')
        len--;
    if (len == 0) { /* the event is complete */
        int rv = 0;
        if (s->has_data || s->event[0])
            rv = s->fn(s->ud, s->has_id ? s->id : NULL, s->event[0] ? s->event : "message",
                       s->data.p ? s->data.p : "", s->data.len);
        s->data.len = 0;
        if (s->data.p)
            s->data.p[0] = 0;
        s->has_data = s->has_id = false;
        s->event[0] = s->id[0] = 0;
        return rv;
    }
    if (p[0] == ':')
        return 0;
    char *colon = memchr(p, ':', len);
    size_t nlen = colon ? (size_t)(colon - p) : len;
    const char *v = colon ? colon + 1 : p + len;
    size_t vlen = colon ? len - nlen - 1 : 0;
    if (vlen > 0 && v[0] == ' ')
        v++, vlen--;
    if (nlen == 4 && memcmp(p, "data", 4) == 0) {
        if (s->has_data && buf_add(&s->data, "\n", 1, s->cap) != 0)
            return -1;
        if (buf_add(&s->data, v, vlen, s->cap) != 0)
            return -1;
        s->has_data = true;
    } else if (nlen == 2 && memcmp(p, "id", 2) == 0) {
        set_short(s->id, sizeof s->id, v, vlen);
        s->has_id = true;
    } else if (nlen == 5 && memcmp(p, "event", 5) == 0) {
        set_short(s->event, sizeof s->event, v, vlen);
    }
    return 0;
}

int ctl_sse_feed(struct ctl_sse *s, const char *p, size_t len)
{
    while (len > 0) {
        const char *nl = memchr(p, '\n', len);
        size_t take = nl ? (size_t)(nl - p) : len;
        if (buf_add(&s->line, p, take, s->cap) != 0)
            return -1;
        if (nl == NULL)
            return 0;
        int rv = on_line(s, s->line.p, s->line.len);
        s->line.len = 0;
        if (rv)
            return rv;
        p += take + 1;
        len -= take + 1;
    }
    return 0;
}
