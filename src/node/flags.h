/* The craftd command line, parsed the way Go's `flag` package parses
 * hraftd's (see docs/http-api.md):
 *  - `-name value`, `--name value`, `-name=value`, `--name=value`;
 *  - bool flags (-inmem, -version): `-inmem` alone, or `-inmem=true|false`
 *    (also 1/0, t/f, T/F, TRUE/FALSE, True/False, as Go's ParseBool);
 *  - flags stop at the first argument that is not one (`-` alone is an
 *    argument) or after `--`; the last of a repeated flag wins;
 *  - `-h`, `-help` (also with `--` and `=...`): usage, exit 0;
 *  - exactly one positional argument: the data directory.
 *
 * Owns nothing: the strings in struct flags point into argv or to string
 * literals, so they live as long as argv. No allocation, no global state;
 * any thread may call it. */
#ifndef CRAFT_NODE_FLAGS_H
#define CRAFT_NODE_FLAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/version.h"

/* What main() should do after flags_parse. */
enum flags_outcome {
    FLAGS_RUN = 0, /* start the daemon with the parsed flags */
    FLAGS_HELP,    /* -h / -help: print the usage on stdout, exit 0 */
    FLAGS_VERSION, /* -version: print "craftd <version>", exit 0 */
    FLAGS_BAD,     /* unknown flag, bad value, extra argument: message + usage, exit 2 */
    FLAGS_NO_DIR,  /* no data directory given: message, exit 1 */
};

struct flags {
    const char *id;    /* -id; defaults to the -raddr string (also when empty) */
    const char *haddr; /* -haddr, default "localhost:11000" */
    const char *raddr; /* -raddr, default "localhost:12000" */
    const char *join;  /* -join, NULL when absent or empty */
    const char *dir;   /* the positional data directory */
    bool inmem;        /* -inmem */
    bool version;      /* -version (flags_parse then returns FLAGS_VERSION) */
    int log_level;     /* -log-level debug|info|warn|error: CRAFT_LOG_*, default info */
    bool log_json;     /* -log-format json (default text) */
    uint64_t snapshot_threshold;  /* -snapshot-threshold, default 8192, >= 1 */
    uint64_t snapshot_log_bytes;  /* -snapshot-log-bytes, default 0 (automatic) */
    unsigned tick_ms;             /* -tick-ms, default 25, >= 1 */
    uint64_t watch_history_events; /* -watch-history-events, default 100000 */
    uint64_t watch_history_bytes;  /* -watch-history-bytes, default 64 MiB */
    unsigned election_ticks;      /* -election-ticks, default 18, >= 3 (the core needs a lease of one tick past its margin) */
    unsigned election_jitter_ticks; /* -election-jitter-ticks, 2..election_ticks;
                                       0: min(6, election_ticks) */
    unsigned check_quorum_rounds; /* -check-quorum-rounds, 0: 2 */
    unsigned request_timeout_ms;  /* -request-timeout-ms, default 5000, >= 1 */
    size_t max_body;              /* -max-body (bytes), default 1 MiB, >= 1 */
    unsigned http_max_conns;      /* -http-max-conns, default 1024, >= 1 */
    unsigned http_max_conns_per_ip; /* -http-max-conns-per-ip, default 256, >= 1 */
    const char *auth_file;        /* -auth-file: users and roles; NULL: open */
    const char *join_user;        /* -join-user user:password; NULL */
    const char *join_ca;          /* -join-ca PEM; NULL: -tls-client-ca or the system's */
    const char *tls_cert;         /* -tls-cert PEM; NULL: plain HTTP */
    const char *tls_key;          /* -tls-key PEM */
    const char *tls_client_ca;    /* -tls-client-ca PEM; NULL: no client certificates */
    /* -peer-tls-cert, -peer-tls-key, -peer-tls-ca: all three or none
     * (flags_parse refuses some without the others), NULL when absent. */
    const char *peer_tls_cert, *peer_tls_key, *peer_tls_ca;
    const char *cluster_token;    /* -cluster-token, NULL when absent or empty (main
                                     then reads $CRAFTD_CLUSTER_TOKEN) */
    unsigned peer_max_conns;      /* -peer-max-conns, default 64, >= 1 */
    unsigned peer_max_unauth_conns; /* -peer-max-unauth-conns, default 16, >= 1 */
    unsigned watch_max;           /* -watch-max, default 10000, >= 1 */
    unsigned blocking_max;        /* -blocking-max, default 10000, >= 1 */
    unsigned watch_progress_ms;   /* -watch-progress-ms, default 5000, >= 1 */
    const char *restore;          /* -restore <backup file>: make a new one-member
                                     cluster from it in the (empty) data directory;
                                     never with -join or -inmem. NULL when absent */
    bool force_new;               /* -force-new-cluster: the node's state becomes a
                                     one-member cluster (docs/operations.md); never
                                     with -join, -restore or -inmem */
};

/* Parses argv[1..argc-1] into *f (argv[0] is the program name). Every
 * flag but -version, -restore and -force-new-cluster (one-offs),
 * -cluster-token and -join-user
 * (main reads and wipes those two secrets itself) may also come from the environment envp
 * ("NAME=value" strings, NULL-terminated; NULL: none) as CRAFTD_<FLAG>,
 * upper case with '_' for '-' (CRAFTD_TICK_MS=20), and the data directory
 * as CRAFTD_DATA_DIR; the command line wins, an empty variable counts as
 * unset. On FLAGS_BAD and FLAGS_NO_DIR a one-line message (no newline) is
 * written to err (errcap > 0); err is "" otherwise. *f always holds the
 * defaults overridden by whatever was parsed before a failure. */
enum flags_outcome flags_parse(int argc, char *const argv[], char *const envp[],
                               struct flags *f, char *err, size_t errcap);

/* The process exit code main() uses for an outcome other than FLAGS_RUN
 * (0 for help and version, 2 for FLAGS_BAD, 1 for FLAGS_NO_DIR). */
int flags_exit_code(enum flags_outcome o);

/* Writes the usage text (every flag, its default, what it does) to out. */
void flags_usage(FILE *out, const char *prog);

#endif
