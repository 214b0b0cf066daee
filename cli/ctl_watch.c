/* craftctl watch: follows GET /watch (docs/http-api.md, "Watch"), a stream
 * of Server-Sent Events, and prints each change as it comes.
 *
 * The stream is read through libcurl's write callback into a bounded SSE
 * reader (ctl_sse.c). What has been printed is tracked as a position:
 * every event up to `done` was printed, and `n_cur` events of the entry
 * `cur` after it (the events of one entry share its index as their id, and
 * a connection can break between them). When the stream breaks (the node
 * stopped or died, a stall past --timeout) craftctl moves to the next
 * endpoint and resumes with Last-Event-ID: done, skipping the n_cur events
 * of `cur` it printed already: no gap and no duplicate, as every node
 * applies the same log. A progress event (the node applied up to N, nothing
 * else under the watch) completes the entry in hand. It ends on SIGINT or
 * SIGTERM (exit 0), on an error event or a 410 (exit 5: events it needs
 * are gone), on another refusal (exit 3), and when no endpoint has opened
 * a stream for --timeout (exit 4). */
#include "ctl.h"
#include "ctl_sse.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* The longest SSE line (and event data) taken: a put event holds a value,
 * escaped, and -max-body is 1 MiB by default. */
#define WATCH_LINE_MAX (64u << 20)
/* The most of an error answer's body kept for its message. */
#define WATCH_ERRBODY_MAX (64u << 10)

static const char WATCH_HELP[] =
    "usage: craftctl watch [--from N] <key>\n"
    "       craftctl watch --prefix [--from N] <prefix>\n"
    "  prints every change of the key (or of every key under the prefix) as it\n"
    "  is applied: \"<index> put <key> <value>\" or \"<index> delete <key>\" lines\n"
    "  (tab-separated), or one JSON object per line with -o json. Starts with\n"
    "  the changes after index N (--from), else with new ones. When the stream\n"
    "  breaks it resumes at the next endpoint where it left off (Last-Event-ID),\n"
    "  with no gap and no duplicate. A stream silent for longer than --timeout\n"
    "  is taken as broken (nodes send progress every 5 s while idle).\n"
    "  Exit 0 on SIGINT or SIGTERM; 5 when the changes it needs are no longer\n"
    "  kept (410 compacted, or the node cut it off as too slow): read the keys\n"
    "  with craftctl list and watch again with --from the index it printed;\n"
    "  4 when no endpoint opened a stream for --timeout.\n";

struct watch {
    struct ctl *c;
    const char *key;
    bool prefix;
    /* the position (see the top of the file) */
    bool have_pos;
    uint64_t done, cur;
    size_t n_cur, skip; /* skip: events of cur to pass over after a resume */
    /* this connection */
    struct ctl_sse sse;
    uint64_t start_index; /* X-Craftd-Index */
    long status;
    bool streaming;       /* a 200 came: the stream was open */
    char *errbody;        /* the body of another answer, bounded */
    size_t errlen;
    int outcome;          /* set by the event callback to stop: an exit code */
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- printing ---- */

static void print_event(struct watch *w, const char *type, uint64_t index, json_t *data)
{
    if (w->c->output == CTL_OUT_JSON) {
        json_t *o = json_pack("{s:s, s:I}", "event", type, "index", (json_int_t)index);
        if (o != NULL) {
            json_object_update(o, data);
            char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
            if (s != NULL)
                printf("%s\n", s);
            free(s);
            json_decref(o);
        }
    } else {
        size_t klen, vlen;
        char *k = ctl_json_bytes(data, "key", &klen);
        char *v = strcmp(type, "put") == 0 ? ctl_json_bytes(data, "value", &vlen) : NULL;
        printf("%" PRIu64 "\t%s\t", index, type);
        if (k != NULL)
            ctl_write(k, klen);
        if (v != NULL) {
            ctl_write("\t", 1);
            ctl_write(v, vlen);
        }
        ctl_write("\n", 1);
        free(k);
        free(v);
    }
    fflush(stdout);
}

/* ---- events ---- */

/* A put or delete of entry index: printed unless it was already. */
static void on_change(struct watch *w, const char *type, uint64_t index, json_t *data)
{
    if (w->have_pos && index <= w->done)
        return;
    if (w->n_cur > 0 && index == w->cur && w->skip > 0) {
        w->skip--;
        return;
    }
    if (index != w->cur) {
        /* A new entry: the one in hand is complete. */
        if (w->n_cur > 0)
            w->done = w->cur;
        w->cur = index;
        w->n_cur = 0;
        w->skip = 0;
    }
    print_event(w, type, index, data);
    w->n_cur++;
}

static int on_event(void *ud, const char *id, const char *event, const char *data, size_t len)
{
    struct watch *w = ud;
    json_t *j = json_loadb(data, len, 0, NULL);
    if (!json_is_object(j)) {
        fprintf(stderr, "craftctl: watch: an event that is not JSON: %.200s\n", data);
        json_decref(j);
        w->outcome = CTL_UNAVAILABLE;
        return 1;
    }
    uint64_t index = 0;
    int rv = 0;
    if (strcmp(event, "put") == 0 || strcmp(event, "delete") == 0) {
        if (id == NULL || !ctl_parse_u64(id, &index)) {
            fprintf(stderr, "craftctl: watch: a %s event without an index\n", event);
            w->outcome = CTL_UNAVAILABLE;
            rv = 1;
        } else {
            on_change(w, event, index, j);
        }
    } else if (strcmp(event, "progress") == 0) {
        /* Applied up to index, nothing else under the watch. */
        index = (uint64_t)json_integer_value(json_object_get(j, "index"));
        if (w->n_cur > 0 && index >= w->cur) {
            w->done = index;
            w->cur = 0;
            w->n_cur = w->skip = 0;
        } else if (w->n_cur == 0 && index > w->done) {
            w->done = index;
        }
    } else if (strcmp(event, "error") == 0) {
        const char *e = json_string_value(json_object_get(j, "error"));
        json_int_t upto = json_integer_value(json_object_get(j, "index"));
        fprintf(stderr, "craftctl: watch: %s (every change up to index %" JSON_INTEGER_FORMAT
                " was sent): read the keys again (craftctl list) and watch from their "
                "index\n", e ? e : "error", upto);
        w->outcome = CTL_LOST;
        rv = 1;
    }
    json_decref(j);
    return rv;
}

/* ---- one connection ---- */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct watch *w = ud;
    size_t len = size * n;
    if (w->status == 0)
        curl_easy_getinfo(w->c->curl, CURLINFO_RESPONSE_CODE, &w->status);
    if (w->status != 200) {
        size_t keep = WATCH_ERRBODY_MAX - w->errlen;
        if (keep > len)
            keep = len;
        char *b = realloc(w->errbody, w->errlen + keep + 1);
        if (b == NULL)
            return 0;
        memcpy(b + w->errlen, p, keep);
        w->errlen += keep;
        b[w->errlen] = 0;
        w->errbody = b;
        return len;
    }
    int rv = ctl_sse_feed(&w->sse, p, len);
    if (rv < 0) {
        fprintf(stderr, "craftctl: watch: an event longer than %u bytes, or out of "
                "memory\n", WATCH_LINE_MAX);
        w->outcome = CTL_UNAVAILABLE;
    }
    return rv ? 0 : len; /* 0: curl stops with CURLE_WRITE_ERROR */
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct watch *w = ud;
    size_t len = size * n;
    if (len <= 2) { /* the end of the headers */
        curl_easy_getinfo(w->c->curl, CURLINFO_RESPONSE_CODE, &w->status);
        if (w->status == 200 && !w->streaming) {
            w->streaming = true;
            if (!w->have_pos) { /* no --from: the stream starts at the node's index */
                w->done = w->start_index;
                w->have_pos = true;
            }
        }
        return len;
    }
    (void)ctl_header_index(p, len, &w->start_index);
    return len;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    return ctl_interrupted() ? 1 : 0;
}

/* The path of the next request: a new string, or NULL. */
static char *watch_path(const struct watch *w, bool first_from)
{
    char *k = ctl_pct(w->key, strlen(w->key));
    if (k == NULL)
        return NULL;
    size_t cap = strlen(k) + 64;
    char *path = malloc(cap);
    if (path != NULL) {
        int at = snprintf(path, cap, "/watch?%s=%s", w->prefix ? "prefix" : "key", k);
        if (first_from)
            snprintf(path + at, cap - (size_t)at, "&from=%" PRIu64, w->done);
    }
    free(k);
    return path;
}

/* Runs one GET /watch on base until it ends: the curl code. */
static CURLcode stream(struct watch *w, const char *base, bool first_from)
{
    CURL *h = w->c->curl;
    char *path = watch_path(w, first_from);
    size_t ulen = strlen(base) + (path ? strlen(path) : 0) + 1;
    char *url = path ? malloc(ulen) : NULL;
    if (url == NULL) {
        free(path);
        return CURLE_OUT_OF_MEMORY;
    }
    snprintf(url, ulen, "%s%s", base, path);
    free(path);
    char resume[64];
    struct curl_slist *hdrs = NULL;
    if (w->have_pos && !first_from) {
        snprintf(resume, sizeof resume, "Last-Event-ID: %" PRIu64, w->done);
        hdrs = curl_slist_append(hdrs, resume);
    }
    hdrs = curl_slist_append(hdrs, "Accept: text/event-stream");
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, w);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, w);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    /* No limit on the whole stream; a silence longer than --timeout ends it. */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (w->c->timeout_ms + 999) / 1000);
    ctl_curl_common(w->c, h);
    ctl_sse_reset(&w->sse);
    w->status = 0;
    w->streaming = false;
    w->errlen = 0;
    w->start_index = 0;
    CURLcode e = curl_easy_perform(h);
    if (w->status == 0)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &w->status);
    curl_slist_free_all(hdrs);
    free(url);
    return e;
}

/* After an answer that is not a stream: the exit code, or -1 to try the
 * next endpoint. */
static int refused(struct watch *w, const char *base)
{
    json_t *j = w->errlen ? json_loadb(w->errbody, w->errlen, 0, NULL) : NULL;
    int rv = -1;
    if (w->status == 410) {
        json_t *oldest = json_object_get(j, "oldest_index");
        fprintf(stderr, "craftctl: watch: %s: 410 %s: the changes after index %" PRIu64
                " are no longer kept (the oldest --from it serves is %" JSON_INTEGER_FORMAT
                "): read the keys again (craftctl list) and watch from their index\n", base,
                json_string_value(json_object_get(j, "error")) ?: "compacted", w->done,
                json_integer_value(oldest));
        rv = CTL_LOST;
    } else if (w->status >= 400 && w->status < 500) {
        struct ctl_resp r = {.status = w->status, .body = w->errbody, .len = w->errlen};
        rv = ctl_status_exit(&r, "watch");
    }
    json_decref(j);
    return rv;
}

static int follow(struct watch *w)
{
    struct ctl *c = w->c;
    bool first_from = w->have_pos;
    int64_t since = now_ms(); /* when the last stream ended (or we started) */
    long backoff = 50;
    size_t tried = 0;
    for (;;) {
        const char *base = c->endpoints[c->current];
        CURLcode e = stream(w, base, first_from);
        if (ctl_interrupted())
            return CTL_OK;
        if (w->outcome)
            return w->outcome;
        if (w->streaming) {
            first_from = false;
            since = now_ms();
            backoff = 50;
            tried = 0;
            fprintf(stderr, "craftctl: watch: %s: %s; resuming after index %" PRIu64 "%s\n",
                    base, e == CURLE_OK ? "the stream ended" : curl_easy_strerror(e), w->done,
                    c->n_endpoints > 1 ? " at the next endpoint" : "");
        } else if (e == CURLE_OK) {
            int rv = refused(w, base);
            if (rv >= 0)
                return rv;
            fprintf(stderr, "craftctl: watch: %s: %ld%s%s\n", base, w->status,
                    w->errlen ? " " : "", w->errlen ? w->errbody : "");
        }
        if (!w->streaming) {
            tried++;
            if (now_ms() - since >= c->timeout_ms && tried >= c->n_endpoints) {
                fprintf(stderr, "craftctl: watch: %s: %s\ncraftctl: watch: no endpoint "
                        "opened a stream for %ld ms\n", base,
                        e == CURLE_OK ? "no stream" : curl_easy_strerror(e), c->timeout_ms);
                return CTL_UNAVAILABLE;
            }
        }
        c->current = (c->current + 1) % c->n_endpoints;
        if (w->n_cur > 0)
            w->skip = w->n_cur; /* the entry in hand is replayed from its start */
        if (tried > 0 && tried % c->n_endpoints == 0) {
            ctl_sleep_ms(backoff);
            backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
            if (ctl_interrupted())
                return CTL_OK;
        }
    }
}

int ctl_cmd_watch(struct ctl *c, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv))
        return ctl_help(WATCH_HELP);
    static const struct option opts[] = {{"prefix", no_argument, 0, 'p'},
                                         {"from", required_argument, 0, 'f'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    struct watch w = {.c = c};
    int ch;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        if (ch == 'p')
            w.prefix = true;
        else if (ch == 'f' && ctl_parse_u64(optarg, &w.done))
            w.have_pos = true;
        else
            return ctl_usage(WATCH_HELP);
    }
    if (optind != argc - 1 || (!w.prefix && argv[optind][0] == 0))
        return ctl_usage(WATCH_HELP);
    w.key = argv[optind];
    if (ctl_catch_signals() != 0) {
        fprintf(stderr, "craftctl: watch: cannot catch signals: %s\n", strerror(errno));
        return CTL_UNAVAILABLE;
    }
    ctl_sse_init(&w.sse, WATCH_LINE_MAX, on_event, &w);
    int rv = follow(&w);
    ctl_sse_free(&w.sse);
    free(w.errbody);
    return rv;
}
