/* A bounded Server-Sent Events reader (ctl_sse.c), for craftctl watch. */
#ifndef CRAFTCTL_SSE_H
#define CRAFTCTL_SSE_H

#include <stdbool.h>
#include <stddef.h>

/* One event: id (NULL when the event had none), its type ("message" when
 * unnamed) and its data (NUL-terminated, len bytes). Returns 0 to go on,
 * nonzero to stop (ctl_sse_feed returns it). */
typedef int (*ctl_sse_fn)(void *ud, const char *id, const char *event, const char *data,
                          size_t len);

struct ctl_sse_buf {
    char *p;
    size_t len, size;
};

struct ctl_sse {
    size_t cap;              /* the longest line, and the longest data */
    ctl_sse_fn fn;
    void *ud;
    struct ctl_sse_buf line; /* the partial line */
    struct ctl_sse_buf data; /* the event's data so far */
    bool has_data, has_id;
    char id[32], event[32];
};

void ctl_sse_init(struct ctl_sse *s, size_t cap, ctl_sse_fn fn, void *ud);
/* Forgets a partial line and event (a new connection). */
void ctl_sse_reset(struct ctl_sse *s);
void ctl_sse_free(struct ctl_sse *s);
/* Feeds len bytes: 0, the callback's nonzero, or -1 when a line or an
 * event's data passes cap (or memory runs out). */
int ctl_sse_feed(struct ctl_sse *s, const char *p, size_t len);

#endif
