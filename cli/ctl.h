/* craftctl, the command-line client of craftd: what its files share.
 *
 * A struct ctl holds the command line's global options and one libcurl
 * handle; ctl_request sends one HTTP request to the first endpoint that
 * answers (docs/craftctl.md: when it moves on to the next one). Commands
 * (ctl_kv.c, ctl_cluster.c) build requests, and print answers through
 * ctl_out.c. Everything runs on one thread; the process is short-lived,
 * but every buffer still has one owner and is freed by it. */
#ifndef CRAFTCTL_CTL_H
#define CRAFTCTL_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <jansson.h>

/* Exit codes (docs/craftctl.md). */
enum ctl_exit {
    CTL_OK = 0,
    CTL_FALSE = 1,       /* no such key, a precondition or txn compare
                            failed, an endpoint is not healthy */
    CTL_USAGE = 2,       /* bad command line or input file */
    CTL_REFUSED = 3,     /* the server refused the request (other 4xx) */
    CTL_UNAVAILABLE = 4, /* no endpoint answered, or 5xx: for a write, it
                            may or may not have been applied */
    CTL_LOST = 5,        /* watch: events it needs are no longer kept (410
                            compacted, or an error event: too slow) */
};

enum ctl_output { CTL_OUT_TABLE, CTL_OUT_JSON };

struct ctl {
    char **endpoints; /* base URLs ("http://host:port"), owned */
    size_t n_endpoints;
    size_t current;   /* the endpoint that answered last: tried first */
    const char *user; /* "user:password" for HTTP Basic, or NULL */
    const char *cacert, *cert, *key; /* PEM files, or NULL */
    long timeout_ms;
    int output; /* enum ctl_output */
    CURL *curl;
    /* >= 0: the body of a 2xx answer is written to this file (rewound and
     * emptied at each attempt) instead of memory, and the request's time
     * limit is a stall of timeout_ms, not its whole length (a large
     * download); the descriptor is the caller's. -1: kept in memory. */
    int body_fd;
};

/* One answer. body is NUL-terminated (not counted in len), owned by the
 * caller: ctl_resp_free. index: X-Craftd-Index, 0 if absent. */
struct ctl_resp {
    long status;
    char *body;
    size_t len;
    uint64_t index;
    char endpoint[256]; /* which endpoint answered */
};
void ctl_resp_free(struct ctl_resp *r);

/* Sends method path (with its query) and body (blen bytes; NULL: none)
 * with the extra headers (NULL-terminated list, or NULL). Tries each
 * endpoint in turn, starting with the last one that answered, while the
 * request certainly did not reach one (no connection), and for an
 * idempotent request also on any other failure of the exchange (a timeout,
 * a connection cut, a 503), but not on a local one (memory, the output
 * file). 0 and *r filled, or
 * CTL_UNAVAILABLE after printing why on stderr. */
int ctl_request(struct ctl *c, const char *method, const char *path, const void *body,
                size_t blen, const char *const *headers, bool idempotent, struct ctl_resp *r);

/* Sets on h what every request of c shares: credentials, TLS files, the
 * connect timeout, no signals (ctl_request; watch's own streaming). */
/* If the header line p (len bytes, as libcurl hands it over) is
 * X-Craftd-Index, its value in *index and true. */
bool ctl_header_index(const char *p, size_t len, uint64_t *index);
void ctl_curl_common(struct ctl *c, CURL *h);

/* The exit code an answer means, after printing the server's error on
 * stderr when it is one: 2xx/304 CTL_OK, 404 and 412 CTL_FALSE, other 4xx
 * CTL_REFUSED, 5xx CTL_UNAVAILABLE. */
int ctl_status_exit(const struct ctl_resp *r, const char *what);

/* A decimal number (no sign): true and *v set. */
bool ctl_parse_u64(const char *s, uint64_t *v);

/* path-segment percent-encoding of len bytes: a new string (malloc) or
 * NULL; everything but RFC 3986 unreserved characters is encoded. */
char *ctl_pct(const void *s, size_t len);

/* ---- output (ctl_out.c) ---- */

/* The bytes of a JSON object's string field name or, failing that, of
 * name_b64 decoded: *len set and a new buffer (malloc, NUL-terminated),
 * or NULL if neither is there or valid. */
char *ctl_json_bytes(json_t *obj, const char *name, size_t *len);
/* Prints the JSON text of v on stdout, indented, and a newline. */
void ctl_print_json(json_t *v);
/* Writes len bytes to stdout as they are. */
void ctl_write(const void *p, size_t len);
/* Parses r's body as JSON, or prints why on stderr and returns NULL. */
json_t *ctl_parse(const struct ctl_resp *r);

/* ---- commands ---- */

/* Each takes the arguments after its name (argv[0] = the command name)
 * and returns an exit code. */
int ctl_cmd_get(struct ctl *c, int argc, char **argv);
int ctl_cmd_put(struct ctl *c, int argc, char **argv);
int ctl_cmd_del(struct ctl *c, int argc, char **argv);
int ctl_cmd_list(struct ctl *c, int argc, char **argv);
int ctl_cmd_txn(struct ctl *c, int argc, char **argv);
int ctl_cmd_member(struct ctl *c, int argc, char **argv);
int ctl_cmd_transfer(struct ctl *c, int argc, char **argv);
int ctl_cmd_status(struct ctl *c, int argc, char **argv);
int ctl_cmd_health(struct ctl *c, int argc, char **argv);
int ctl_cmd_backup(struct ctl *c, int argc, char **argv);
int ctl_cmd_watch(struct ctl *c, int argc, char **argv);
int ctl_cmd_lease(struct ctl *c, int argc, char **argv);
int ctl_cmd_restore(struct ctl *c, int argc, char **argv);

/* ---- signals (ctl_signal.c) ---- */

/* SIGINT and SIGTERM set a flag instead of ending the process: 0 or -1. */
int ctl_catch_signals(void);
/* One of them came. */
bool ctl_interrupted(void);
/* Sleeps ms milliseconds, or less when a signal comes. */
void ctl_sleep_ms(long ms);

/* True when an argument before any "--" is -h or --help. */
bool ctl_wants_help(int argc, char **argv);
/* Prints a command's help text on stdout: CTL_OK (asked for help). */
int ctl_help(const char *text);
/* Prints it on stderr: CTL_USAGE (a bad command line). */
int ctl_usage(const char *text);

#endif
