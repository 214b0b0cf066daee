/* The craftd command-line parser: Go `flag` rules (see flags.h), one table
 * of flags with their kind, bounds and help text, and the usage text. */
#include "node/flags.h"

#include <stdarg.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"

enum kind {
    K_STR,   /* any string, possibly empty */
    K_ADDR,  /* a non-empty string */
    K_BOOL,  /* Go ParseBool; a lone -name means true */
    K_UINT,  /* decimal, within [min, max] */
    K_LEVEL, /* debug|info|warn|error */
    K_LOGFMT, /* text|json: a bool, true for json */
};

struct flag_def {
    const char *name;
    enum kind kind;
    size_t off;    /* offset of the field in struct flags */
    size_t size;   /* its size, for K_UINT (4 or 8 bytes) */
    uint64_t min, max;
    const char *arg;  /* placeholder in the usage ("addr", "N"), NULL for bools */
    const char *help; /* one line, with the default */
};

#define FIELD(m) offsetof(struct flags, m), sizeof(((struct flags *)0)->m)

static const struct flag_def DEFS[] = {
    {"auth-file", K_ADDR, FIELD(auth_file), 0, 0, "file",
     "users and roles, user:crypt-hash:role a line (default: no authentication)"},
    {"blocking-max", K_UINT, FIELD(blocking_max), 1, 10000000, "N",
     "blocking queries (?index=) waiting at once at most; more: 503 (default 10000)"},
    {"check-quorum-rounds", K_UINT, FIELD(check_quorum_rounds), 1, 1000, "N",
     "a leader steps down after N election timeouts in a row without hearing "
     "from a quorum (default 2)"},
    {"cluster-token", K_STR, FIELD(cluster_token), 0, 0, "secret",
     "shared secret that authenticates peer connections (default: "
     "$CRAFTD_CLUSTER_TOKEN; none: the Raft port is open to anyone)"},
    {"election-jitter-ticks", K_UINT, FIELD(election_jitter_ticks), 2, 1000000, "N",
     "the election timeout's random part: each wait is -election-ticks plus "
     "0 to N-1 ticks, 2 <= N <= -election-ticks (default 6, or -election-ticks "
     "if that is less)"},
    {"election-ticks", K_UINT, FIELD(election_ticks), 3, 1000000, "N",
     "ticks without a leader before an election, >= 3 (default 18)"},
    {"force-new-cluster", K_BOOL, FIELD(force_new), 0, 0, NULL,
     "make this node's state a new one-member cluster, keeping its whole log and "
     "dropping every other member: only when a quorum is lost for good"},
    {"haddr", K_ADDR, FIELD(haddr), 0, 0, "addr", "HTTP bind address (default \"localhost:11000\")"},
    {"http-max-conns", K_UINT, FIELD(http_max_conns), 1, 1000000, "N",
     "open HTTP connections at most; idle ones are closed near it (default 1024)"},
    {"http-max-conns-per-ip", K_UINT, FIELD(http_max_conns_per_ip), 1, 1000000, "N",
     "open HTTP connections of one client address at most (default 256)"},
    {"id", K_STR, FIELD(id), 0, 0, "id", "node id (default: the -raddr string)"},
    {"inmem", K_BOOL, FIELD(inmem), 0, 0, NULL, "keep the log, snapshots and identity in memory only (nothing is written to the data directory)"},
    {"join", K_STR, FIELD(join), 0, 0, "addr", "HTTP address of a cluster member to join"},
    {"join-ca", K_ADDR, FIELD(join_ca), 0, 0, "file",
     "PEM CAs to trust for members' HTTPS (default: -tls-client-ca, else the system's)"},
    {"join-user", K_ADDR, FIELD(join_user), 0, 0, "user:password",
     "credentials for the node's own requests to members (or $CRAFTD_JOIN_USER)"},
    {"log-format", K_LOGFMT, FIELD(log_json), 0, 0, "format",
     "text, or json: one object a line, {\"ts\",\"level\",\"node\",\"msg\"} (default \"text\")"},
    {"log-level", K_LEVEL, FIELD(log_level), 0, 0, "level",
     "debug, info, warn or error (default \"info\")"},
    {"max-body", K_UINT, FIELD(max_body), 1, SIZE_MAX, "bytes",
     "largest accepted HTTP request body (default 1048576)"},
    {"peer-max-conns", K_UINT, FIELD(peer_max_conns), 1, 100000, "N",
     "inbound peer connections at most (default 64)"},
    {"peer-max-unauth-conns", K_UINT, FIELD(peer_max_unauth_conns), 1, 100000, "N",
     "of them still in their handshake at most; the oldest is closed for a new one "
     "(default 16)"},
    {"peer-tls-ca", K_STR, FIELD(peer_tls_ca), 0, 0, "file",
     "CA (PEM) that peers' certificates must chain to; with -peer-tls-cert and -peer-tls-key"},
    {"peer-tls-cert", K_STR, FIELD(peer_tls_cert), 0, 0, "file",
     "this node's certificate (PEM), naming its -id: mutual TLS between nodes"},
    {"peer-tls-key", K_STR, FIELD(peer_tls_key), 0, 0, "file",
     "the private key (PEM) of -peer-tls-cert"},
    {"raddr", K_ADDR, FIELD(raddr), 0, 0, "addr",
     "Raft bind address, announced to peers (default \"localhost:12000\")"},
    {"request-timeout-ms", K_UINT, FIELD(request_timeout_ms), 1, UINT32_MAX, "N",
     "how long a write or read may wait for the cluster (default 5000)"},
    {"restore", K_ADDR, FIELD(restore), 0, 0, "file",
     "make a new one-member cluster from this backup (GET /backup) in the empty data "
     "directory, then serve it"},
    {"snapshot-log-bytes", K_UINT, FIELD(snapshot_log_bytes), 0, UINT64_MAX, "N",
     "a log taking this much memory since the last snapshot (its entries' bytes and 48 "
     "more for each) is snapshotted, whatever its entry count "
     "(default 0: the larger of 4 MiB and an eighth of the last snapshot, or of 1 MiB and "
     "a sixteenth once writes pause for a second)"},
    {"snapshot-threshold", K_UINT, FIELD(snapshot_threshold), 1, UINT64_MAX, "N",
     "log entries between snapshots (default 8192)"},
    {"tick-ms", K_UINT, FIELD(tick_ms), 1, 60000, "N", "milliseconds per Raft tick (default 25)"},
    {"tls-cert", K_ADDR, FIELD(tls_cert), 0, 0, "file",
     "PEM certificate chain: serve HTTPS (with -tls-key)"},
    {"tls-client-ca", K_ADDR, FIELD(tls_client_ca), 0, 0, "file",
     "PEM CA certificates: require client certificates they signed"},
    {"tls-key", K_ADDR, FIELD(tls_key), 0, 0, "file", "PEM private key of -tls-cert"},
    {"version", K_BOOL, FIELD(version), 0, 0, NULL, "print the version and exit"},
    {"watch-history-bytes", K_UINT, FIELD(watch_history_bytes), 1, UINT64_MAX, "N",
     "bytes of change history kept for watches and blocking queries (default 67108864)"},
    {"watch-history-events", K_UINT, FIELD(watch_history_events), 0, 1000000000, "N",
     "change events kept in that history at most (default 100000)"},
    {"watch-max", K_UINT, FIELD(watch_max), 1, 10000000, "N",
     "open GET /watch streams at most; more: 503 (default 10000); each is an HTTP "
     "connection too (-http-max-conns)"},
    {"watch-progress-ms", K_UINT, FIELD(watch_progress_ms), 1, 3600000, "N",
     "an idle watch stream gets a progress event this often (default 5000)"},
};

#define NDEFS (sizeof DEFS / sizeof DEFS[0])

static void set_defaults(struct flags *f)
{
    memset(f, 0, sizeof *f);
    f->haddr = "localhost:11000";
    f->raddr = "localhost:12000";
    f->log_level = CRAFT_LOG_INFO;
    f->snapshot_threshold = 8192;
    f->tick_ms = 25;
    f->watch_history_events = 100000;
    f->watch_history_bytes = 64u << 20;
    f->election_ticks = 18;
    f->election_jitter_ticks = 0; /* 6, or -election-ticks if that is less */
    f->request_timeout_ms = 5000;
    f->max_body = 1024 * 1024;
    f->http_max_conns = 1024;
    f->http_max_conns_per_ip = 256;
    f->peer_max_conns = 64;
    f->peer_max_unauth_conns = 16;
    f->watch_max = 10000;
    f->blocking_max = 10000;
    f->watch_progress_ms = 5000;
}

__attribute__((format(printf, 3, 4))) static enum flags_outcome fail(char *err, size_t errcap,
                                                                     const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errcap, fmt, ap);
    va_end(ap);
    return FLAGS_BAD;
}

static const struct flag_def *find(const char *name, size_t len)
{
    for (size_t i = 0; i < NDEFS; i++)
        if (strlen(DEFS[i].name) == len && memcmp(DEFS[i].name, name, len) == 0)
            return &DEFS[i];
    return NULL;
}

/* Go's strconv.ParseBool. */
static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const no[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

/* A plain decimal number: digits only, no sign, no overflow. */
static int parse_uint(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (*s == '\0')
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int parse_level(const char *s, int *out)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out = CRAFT_LOG_DEBUG + i;
            return 0;
        }
    }
    return -1;
}

/* Stores value into the field of d; FLAGS_RUN or FLAGS_BAD. */
static enum flags_outcome store(const struct flag_def *d, const char *value, struct flags *f,
                                char *err, size_t errcap)
{
    char *field = (char *)f + d->off;
    uint64_t n;
    switch (d->kind) {
    case K_ADDR:
        if (*value == '\0')
            return fail(err, errcap, "invalid value \"\" for flag -%s: must not be empty",
                        d->name);
        /* fall through */
    case K_STR:
        *(const char **)field = value;
        return FLAGS_RUN;
    case K_BOOL:
        if (parse_bool(value, (bool *)field) != 0)
            return fail(err, errcap, "invalid boolean value \"%s\" for -%s: use true or false",
                        value, d->name);
        return FLAGS_RUN;
    case K_LEVEL:
        if (parse_level(value, (int *)field) != 0)
            return fail(err, errcap,
                        "invalid value \"%s\" for flag -%s: use debug, info, warn or error",
                        value, d->name);
        return FLAGS_RUN;
    case K_LOGFMT:
        if (strcmp(value, "text") != 0 && strcmp(value, "json") != 0)
            return fail(err, errcap, "invalid value \"%s\" for flag -%s: use text or json",
                        value, d->name);
        *(bool *)field = strcmp(value, "json") == 0;
        return FLAGS_RUN;
    case K_UINT:
        if (parse_uint(value, &n) != 0 || n < d->min || n > d->max)
            return fail(err, errcap,
                        "invalid value \"%s\" for flag -%s: expected a whole number from "
                        "%llu to %llu",
                        value, d->name, (unsigned long long)d->min, (unsigned long long)d->max);
        if (d->size == sizeof(uint64_t))
            *(uint64_t *)field = n;
        else
            *(unsigned *)field = (unsigned)n;
        return FLAGS_RUN;
    }
    return fail(err, errcap, "internal error: flag -%s", d->name);
}

/* The value of the variable name in envp, or NULL (also when empty). */
static const char *env_get(char *const envp[], const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; envp != NULL && envp[i] != NULL; i++)
        if (strncmp(envp[i], name, len) == 0 && envp[i][len] == '=')
            return envp[i][len + 1] ? envp[i] + len + 1 : NULL;
    return NULL;
}

/* CRAFTD_<FLAG> for every flag that may come from the environment. */
static enum flags_outcome parse_env(char *const envp[], struct flags *f, char *err,
                                    size_t errcap)
{
    for (size_t i = 0; i < NDEFS; i++) {
        const struct flag_def *d = &DEFS[i];
        /* -restore is a one-off: a variable left set would make every
         * restart refuse the directory it restored. So is
         * -force-new-cluster: left set, every restart would make yet
         * another cluster and drop the members that joined since. */
        if (strcmp(d->name, "version") == 0 || strcmp(d->name, "cluster-token") == 0 ||
            strcmp(d->name, "join-user") == 0 || strcmp(d->name, "restore") == 0 ||
            strcmp(d->name, "force-new-cluster") == 0)
            continue;
        char name[64] = "CRAFTD_";
        size_t n = strlen(name);
        for (const char *c = d->name; *c && n + 1 < sizeof name; c++)
            name[n++] = *c == '-' ? '_' : (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
        name[n] = '\0';
        const char *v = env_get(envp, name);
        if (v != NULL && store(d, v, f, err, errcap) != FLAGS_RUN) {
            size_t len = strlen(err);
            snprintf(err + len, errcap - len, " (from the environment: %s)", name);
            return FLAGS_BAD;
        }
    }
    return FLAGS_RUN;
}

/* Parses the flag argv[*i] (which starts with '-' and is not "-" or "--"),
 * taking its value from argv[*i + 1] when needed. */
static enum flags_outcome parse_one(int argc, char *const argv[], int *i, struct flags *f,
                                    char *err, size_t errcap)
{
    const char *arg = argv[*i];
    const char *name = arg + (arg[1] == '-' ? 2 : 1);
    if (*name == '-' || *name == '=')
        return fail(err, errcap, "bad flag syntax: %s", arg);
    const char *eq = strchr(name, '=');
    size_t nlen = eq ? (size_t)(eq - name) : strlen(name);

    const struct flag_def *d = find(name, nlen);
    if (d == NULL) {
        if ((nlen == 1 && name[0] == 'h') || (nlen == 4 && memcmp(name, "help", 4) == 0))
            return FLAGS_HELP;
        return fail(err, errcap, "flag provided but not defined: -%.*s", (int)nlen, name);
    }
    if (eq != NULL)
        return store(d, eq + 1, f, err, errcap);
    if (d->kind == K_BOOL)
        return store(d, "true", f, err, errcap);
    if (*i + 1 >= argc)
        return fail(err, errcap, "flag needs an argument: -%s", d->name);
    *i += 1;
    return store(d, argv[*i], f, err, errcap);
}

enum flags_outcome flags_parse(int argc, char *const argv[], char *const envp[],
                               struct flags *f, char *err, size_t errcap)
{
    set_defaults(f);
    err[0] = '\0';
    if (parse_env(envp, f, err, errcap) != FLAGS_RUN)
        return FLAGS_BAD;

    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || a[1] == '\0')
            break; /* the first positional argument ends the flags */
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        enum flags_outcome o = parse_one(argc, argv, &i, f, err, errcap);
        if (o != FLAGS_RUN)
            return o;
    }
    if (f->version)
        return FLAGS_VERSION;
    if (f->id == NULL || f->id[0] == '\0')
        f->id = f->raddr;
    if (f->join != NULL && f->join[0] == '\0')
        f->join = NULL;
    if (f->cluster_token != NULL && f->cluster_token[0] == '\0')
        f->cluster_token = NULL;

    /* Peer TLS takes all three files or none. */
    const char **tls[3] = {&f->peer_tls_cert, &f->peer_tls_key, &f->peer_tls_ca};
    static const char *const tls_names[3] = {"-peer-tls-cert", "-peer-tls-key",
                                             "-peer-tls-ca"};
    for (int k = 0; k < 3; k++)
        if (*tls[k] != NULL && (*tls[k])[0] == '\0')
            *tls[k] = NULL;
    for (int k = 0; k < 3; k++) {
        if (*tls[k] == NULL && (*tls[0] || *tls[1] || *tls[2]))
            return fail(err, errcap, "peer TLS needs %s too (give "
                        "-peer-tls-cert, -peer-tls-key and -peer-tls-ca together)",
                        tls_names[k]);
    }

    if (f->election_jitter_ticks > f->election_ticks)
        return fail(err, errcap, "-election-jitter-ticks %u is more than -election-ticks "
                    "%u: the longest wait must stay under two election timeouts",
                    f->election_jitter_ticks, f->election_ticks);

    if (f->restore != NULL && (f->join != NULL || f->inmem))
        return fail(err, errcap, "-restore makes a new cluster in the data directory: it "
                    "takes neither %s", f->join != NULL ? "-join" : "-inmem");
    if (f->force_new && (f->join != NULL || f->restore != NULL || f->inmem))
        return fail(err, errcap, "-force-new-cluster makes a new cluster of this node's own "
                    "data directory: it cannot be combined with %s",
                    f->join != NULL      ? "-join (it joins nobody)"
                    : f->restore != NULL ? "-restore (which makes a new cluster from a "
                                           "backup in an empty directory)"
                                         : "-inmem (which has no state to keep)");

    const char *env_dir = env_get(envp, "CRAFTD_DATA_DIR");
    if ((i >= argc || argv[i][0] == '\0') && env_dir == NULL) {
        snprintf(err, errcap, "no data directory specified");
        return FLAGS_NO_DIR;
    }
    f->dir = i < argc && argv[i][0] != '\0' ? argv[i] : env_dir;
    if (i + 1 < argc)
        return fail(err, errcap,
                    "unexpected argument \"%s\" after the data directory \"%s\" "
                    "(flags must come before the data directory)",
                    argv[i + 1], f->dir);
    return FLAGS_RUN;
}

int flags_exit_code(enum flags_outcome o)
{
    switch (o) {
    case FLAGS_RUN:
    case FLAGS_HELP:
    case FLAGS_VERSION: return 0;
    case FLAGS_NO_DIR: return 1;
    case FLAGS_BAD: return 2;
    }
    return 2;
}

void flags_usage(FILE *out, const char *prog)
{
    fprintf(out, "Usage: %s [flags] <data-directory>\n", prog);
    for (size_t i = 0; i < NDEFS; i++) {
        const struct flag_def *d = &DEFS[i];
        if (d->arg)
            fprintf(out, "  -%s %s\n", d->name, d->arg);
        else
            fprintf(out, "  -%s\n", d->name);
        fprintf(out, "    \t%s\n", d->help);
    }
    fprintf(out, "  -h, -help\n    \tprint this help and exit\n");
    fprintf(out, "Every flag but -version, -restore, -force-new-cluster, -cluster-token and\n"
                 "-join-user may be set in the environment as CRAFTD_<FLAG> (CRAFTD_TICK_MS=20,\n"
                 "CRAFTD_INMEM=true), the data directory as CRAFTD_DATA_DIR; the command line\n"
                 "wins. The two secrets come from CRAFTD_CLUSTER_TOKEN and CRAFTD_JOIN_USER.\n");
}
