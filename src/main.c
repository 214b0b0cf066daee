/* craftd's entry point: parse the command line, create the data directory,
 * start a node on the default libuv loop, stop it cleanly on SIGINT/SIGTERM. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>
#include <uv.h>

#include "auth/auth.h"
#include "common/jsonstr.h"
#include "common/error.h"
#include "common/log.h"
#include "node/flags.h"
#include "kv/kv.h"
#include "node/node.h"
#include "storage/storage.h"

/* Everything main() shares with its callbacks; lives on main's stack. */
struct daemon {
    struct craft_logger log;
    const char *id;         /* node id, printed on every log line */
    struct node *node;
    uv_signal_t sigint, sigterm;
    uv_signal_t sigstall;   /* SIGUSR2 with CRAFTD_TEST_LOOP_STALL_MS */
    unsigned stall_ms;      /* that knob; 0: off (SIGUSR2 not handled) */
    uv_timer_t notify;      /* under systemd (Type=notify): polls readiness */
    bool notifying;         /* notify runs */
    bool stopping;          /* a first signal arrived */
    bool stopped;           /* node_stop finished */
    bool log_json;          /* -log-format json */
};

/* CRAFTD_TEST_FSYNC_DELAY_MS=N (a test knob, not a flag): every fdatasync
 * and fsync of the store sleeps N ms first, as a slow disk would
 * (tests/cluster/test_slow_fsync.py); with CRAFTD_TEST_FSYNC_DELAY_AFTER_MS=M
 * only from M ms after start (so that a cluster can form first). Set once
 * in main, before the node starts; read by the store's worker thread. */
static unsigned test_fsync_delay_ms;
static struct timespec test_fsync_from; /* CLOCK_MONOTONIC */

static void test_fsync_sleep(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec < test_fsync_from.tv_sec ||
        (now.tv_sec == test_fsync_from.tv_sec && now.tv_nsec < test_fsync_from.tv_nsec))
        return;
    struct timespec ts = {.tv_sec = test_fsync_delay_ms / 1000,
                          .tv_nsec = (long)(test_fsync_delay_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int slow_fdatasync(int fd)
{
    test_fsync_sleep();
    return fdatasync(fd);
}

static int slow_fsync(int fd)
{
    test_fsync_sleep();
    return fsync(fd);
}

/* The store's system calls: libc, or with the test delay. */
static const struct stor_sys *store_sys(struct stor_sys *buf)
{
    const char *v = getenv("CRAFTD_TEST_FSYNC_DELAY_MS");
    char *end;
    unsigned long ms = v ? strtoul(v, &end, 10) : 0;
    if (v == NULL || *v == 0 || *end != 0 || ms == 0 || ms > 60000)
        return NULL;
    test_fsync_delay_ms = (unsigned)ms;
    const char *a = getenv("CRAFTD_TEST_FSYNC_DELAY_AFTER_MS");
    unsigned long after = a ? strtoul(a, &end, 10) : 0;
    clock_gettime(CLOCK_MONOTONIC, &test_fsync_from);
    if (a != NULL && *end == 0 && after <= 3600000) {
        test_fsync_from.tv_sec += (time_t)(after / 1000);
        test_fsync_from.tv_nsec += (long)(after % 1000) * 1000000L;
        if (test_fsync_from.tv_nsec >= 1000000000L) {
            test_fsync_from.tv_sec++;
            test_fsync_from.tv_nsec -= 1000000000L;
        }
    }
    *buf = *stor_sys_default();
    buf->fdatasync = slow_fdatasync;
    buf->fsync = slow_fsync;
    return buf;
}

/* CRAFTD_TEST_LOOP_STALL_MS=N (a test knob, not a flag): each SIGUSR2 makes
 * the event loop sleep N ms in its callback, as a long computation on the
 * loop would (tests/cluster/test_ops.py: the loop meter must see it).
 * Unset, SIGUSR2 is not handled. 0 when unset or invalid. */
static unsigned test_loop_stall_ms(void)
{
    const char *v = getenv("CRAFTD_TEST_LOOP_STALL_MS");
    char *end;
    unsigned long ms = v ? strtoul(v, &end, 10) : 0;
    if (v == NULL || *v == 0 || *end != 0 || ms > 60000)
        return 0;
    return (unsigned)ms;
}

static void on_stall_signal(uv_signal_t *h, int signum)
{
    const struct daemon *d = h->data;
    struct timespec ts = {.tv_sec = d->stall_ms / 1000,
                          .tv_nsec = (long)(d->stall_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* "2026-11-26T10:00:00.123Z INFO node0 message" on stderr, in one write. */
/* One log line on stderr: "<time> <LEVEL> <node> <message>", or with
 * -log-format json {"ts":"<time>","level":"info","node":"<id>","msg":"..."}. */
static void log_sink(void *ud, int level, const char *msg)
{
    static const char *const names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    static const char *const lower[] = {"debug", "info", "warn", "error"};
    const struct daemon *d = ud;
    struct timespec ts;
    struct tm tm;
    char stamp[40], line[1400];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t sl = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + sl, sizeof stamp - sl, ".%03ldZ", ts.tv_nsec / 1000000);
    bool known = level >= CRAFT_LOG_DEBUG && level <= CRAFT_LOG_ERROR;
    int n;
    if (d->log_json) {
        /* Quoted with room for the worst case; a message is cut at 1000
         * bytes before quoting so that the line stays one object. */
        char q[CRAFT_JSON_QUOTED_MAX(1000)], qid[CRAFT_JSON_QUOTED_MAX(64)];
        size_t mlen = strlen(msg), ilen = strlen(d->id);
        q[craft_json_quote(q, msg, mlen > 1000 ? 1000 : mlen)] = 0;
        qid[craft_json_quote(qid, d->id, ilen > 64 ? 64 : ilen)] = 0;
        char out[sizeof q + sizeof qid + 96];
        n = snprintf(out, sizeof out,
                     "{\"ts\":\"%s\",\"level\":\"%s\",\"node\":%s,\"msg\":%s}\n", stamp,
                     known ? lower[level] : "?", qid, q);
        fwrite(out, 1, (size_t)n, stderr);
        return;
    }
    n = snprintf(line, sizeof line, "%s %s %s %s\n", stamp, known ? names[level] : "?", d->id,
                 msg);
    if (n > (int)sizeof line - 1) { /* cut: keep the newline */
        n = (int)sizeof line - 1;
        line[n - 1] = '\n';
    }
    fwrite(line, 1, (size_t)n, stderr);
}

/* mkdir -p path, the last component with mode 0700 (as hraftd's MkdirAll). */
static int make_dirs(const char *path)
{
    char buf[4096];
    size_t len = strlen(path);
    if (len >= sizeof buf)
        return -ENAMETOOLONG;
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return -errno;
        buf[i] = c;
    }
    struct stat st;
    if (stat(path, &st) != 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

static void on_closed(uv_handle_t *h) { (void)h; }

/* systemd's readiness protocol (sd_notify; a no-op outside a unit with
 * Type=notify): READY=1 once the node is ready as /readyz says, checked
 * every 200 ms until then; STOPPING=1 when a shutdown begins. */
static void stop_notify(struct daemon *d)
{
    if (d->notifying) {
        d->notifying = false;
        uv_close((uv_handle_t *)&d->notify, on_closed);
    }
}

static void on_notify_timer(uv_timer_t *t)
{
    struct daemon *d = t->data;
    if (d->node == NULL || !node_ready(d->node))
        return;
    sd_notify(0, "READY=1\nSTATUS=serving: a member that knows its leader");
    CRAFT_INFO(&d->log, "told systemd the node is ready");
    stop_notify(d);
}

static int start_notify(uv_loop_t *loop, struct daemon *d)
{
    if (getenv("NOTIFY_SOCKET") == NULL)
        return 0;
    int err = uv_timer_init(loop, &d->notify);
    if (err)
        return err;
    d->notify.data = d;
    d->notifying = true;
    return uv_timer_start(&d->notify, on_notify_timer, 0, 200);
}

static void on_stopped(void *ud)
{
    struct daemon *d = ud;
    d->node = NULL;
    d->stopped = true;
    stop_notify(d);
    uv_close((uv_handle_t *)&d->sigint, on_closed);
    uv_close((uv_handle_t *)&d->sigterm, on_closed);
    if (d->stall_ms > 0)
        uv_close((uv_handle_t *)&d->sigstall, on_closed);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct daemon *d = h->data;
    if (d->stopping) {
        CRAFT_WARN(&d->log, "second %s: exiting at once", strsignal(signum));
        exit(1);
    }
    d->stopping = true;
    CRAFT_INFO(&d->log, "shutting down (%s)", strsignal(signum));
    sd_notify(0, "STOPPING=1");
    node_stop(d->node, on_stopped, d);
}

/* Every watcher (GET /watch) holds a connection: the soft limit on open
 * files is raised to the hard one, so that -watch-max and -http-max-conns
 * are what bounds them. A failure only costs a warning. */
static void raise_nofile(const struct craft_logger *log)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        CRAFT_WARN(log, "cannot raise the open files limit from %llu to %llu: %s",
                   (unsigned long long)was, (unsigned long long)rl.rlim_max, strerror(errno));
}

static int watch_signals(uv_loop_t *loop, struct daemon *d)
{
    int err = uv_signal_init(loop, &d->sigint);
    if (!err)
        err = uv_signal_init(loop, &d->sigterm);
    d->sigint.data = d->sigterm.data = d;
    if (!err)
        err = uv_signal_start(&d->sigint, on_signal, SIGINT);
    if (!err)
        err = uv_signal_start(&d->sigterm, on_signal, SIGTERM);
    if (!err && d->stall_ms > 0) {
        err = uv_signal_init(loop, &d->sigstall);
        d->sigstall.data = d;
        if (!err)
            err = uv_signal_start(&d->sigstall, on_stall_signal, SIGUSR2);
    }
    return err;
}

int main(int argc, char **argv)
{
    struct flags f;
    char err[512];
    enum flags_outcome o = flags_parse(argc, argv, environ, &f, err, sizeof err);
    if (o == FLAGS_VERSION) {
        printf("craftd %s\n", CRAFT_VERSION);
        return 0;
    }
    if (o != FLAGS_RUN) {
        if (err[0])
            fprintf(stderr, "craftd: %s\n", err);
        if (o == FLAGS_HELP) /* asked for: on stdout, so that | less works */
            flags_usage(stdout, "craftd");
        else if (o != FLAGS_NO_DIR)
            flags_usage(stderr, "craftd");
        else
            fprintf(stderr, "usage: craftd [flags] <data-directory> (craftd -h for help)\n");
        return flags_exit_code(o);
    }

    /* The token: copied out of argv, whose copy is then overwritten so
     * that it does not show in ps or /proc/<pid>/cmdline. */
    char *token = NULL;
    const char *tsrc = f.cluster_token ? f.cluster_token : getenv("CRAFTD_CLUSTER_TOKEN");
    if (tsrc != NULL && tsrc[0] != '\0') {
        token = strdup(tsrc);
        if (token == NULL) {
            fprintf(stderr, "craftd: out of memory\n");
            return 1;
        }
        /* The source is overwritten where it lies: argv, or the
         * environment block (which /proc/<pid>/environ shows), then the
         * variable is dropped so that no child inherits it. */
        memset((char *)tsrc, 'x', strlen(tsrc));
        if (f.cluster_token == NULL)
            unsetenv("CRAFTD_CLUSTER_TOKEN");
    }

    struct daemon d = {.id = f.id, .log_json = f.log_json};
    d.log = (struct craft_logger){.fn = log_sink, .ud = &d, .min_level = f.log_level};
    signal(SIGPIPE, SIG_IGN);

    if ((f.tls_cert != NULL) != (f.tls_key != NULL) ||
        ((f.tls_client_ca != NULL || f.join_ca != NULL) && f.tls_cert == NULL)) {
        CRAFT_ERROR(&d.log, "-tls-cert and -tls-key go together, and -tls-client-ca and "
                            "-join-ca need them");
        return 1;
    }
    int rc;
    struct auth_db *auth = NULL;
    if (f.auth_file != NULL) {
        char aerr[320], awarn[200];
        rc = auth_db_load(&auth, f.auth_file, aerr, sizeof aerr, awarn, sizeof awarn);
        if (rc != 0) {
            CRAFT_ERROR(&d.log, "-auth-file %s: %s", f.auth_file,
                        aerr[0] ? aerr : craft_strerror(rc));
            return 1;
        }
        if (awarn[0])
            CRAFT_WARN(&d.log, "-auth-file %s: %s", f.auth_file, awarn);
        CRAFT_INFO(&d.log, "-auth-file %s: %zu users; HTTP Basic authentication on",
                   f.auth_file, auth_db_count(auth));
    }
    /* The node's credentials: copied out, and the source overwritten where
     * it lies (argv, shown by ps and /proc/<pid>/cmdline, or the
     * environment block, shown by /proc/<pid>/environ) and the variable
     * dropped, as for the token. */
    const char *usrc = f.join_user ? f.join_user : getenv("CRAFTD_JOIN_USER");
    char *join_user = usrc != NULL && usrc[0] != 0 ? strdup(usrc) : NULL;
    if (usrc != NULL && usrc[0] != 0 && join_user == NULL) {
        CRAFT_ERROR(&d.log, "out of memory");
        auth_db_free(auth);
        return 1;
    }
    if (usrc != NULL) {
        memset((char *)usrc, 'x', strlen(usrc));
        if (f.join_user == NULL)
            unsetenv("CRAFTD_JOIN_USER");
    }
    if (join_user != NULL && strchr(join_user, ':') == NULL) {
        CRAFT_ERROR(&d.log, "-join-user (or CRAFTD_JOIN_USER) must be user:password");
        free(join_user);
        auth_db_free(auth);
        return 1;
    }
    /* -restore: the whole file is checked, and the directory found empty,
     * before anything is written. */
    struct kv *restored = NULL;
    if (f.restore != NULL) {
        char why[640];
        if (node_backup_load(f.restore, &restored, why, sizeof why) != 0 ||
            node_restore_dir_check(f.dir, why, sizeof why) != 0) {
            CRAFT_ERROR(&d.log, "-restore: %s; nothing was written", why);
            kv_free(restored);
            free(join_user);
            auth_db_free(auth);
            return 1;
        }
    }

    /* -force-new-cluster keeps a node's state: a missing or empty directory
     * has none, and is refused before anything creates it. */
    if (f.force_new) {
        char why[640];
        if (node_force_dir_check(f.dir, why, sizeof why) != 0) {
            CRAFT_ERROR(&d.log, "-force-new-cluster: %s; nothing was written", why);
            free(join_user);
            auth_db_free(auth);
            return 1;
        }
    }

    rc = make_dirs(f.dir);
    if (rc != 0) {
        CRAFT_ERROR(&d.log, "cannot create data directory %s: %s", f.dir, craft_strerror(rc));
        kv_free(restored);
        free(join_user);
        auth_db_free(auth);
        return 1;
    }
    struct stor_sys sys_buf;
    const struct stor_sys *sys = store_sys(&sys_buf);
    if (sys != NULL)
        CRAFT_WARN(&d.log, "CRAFTD_TEST_FSYNC_DELAY_MS: every fsync of the store sleeps %u ms first",
                   test_fsync_delay_ms);
    d.stall_ms = test_loop_stall_ms();
    if (d.stall_ms > 0)
        CRAFT_WARN(&d.log, "CRAFTD_TEST_LOOP_STALL_MS: each SIGUSR2 blocks the event loop for "
                   "%u ms", d.stall_ms);
    struct node_opts opts = {
        .id = f.id,
        .http_addr = f.haddr,
        .raft_addr = f.raddr,
        .join = f.join,
        .dir = f.dir,
        .inmem = f.inmem,
        .stor_sys = sys,
        .snapshot_threshold = f.snapshot_threshold,
        .snapshot_log_bytes = f.snapshot_log_bytes,
        .tick_ms = f.tick_ms,
        .watch_history_events = f.watch_history_events,
        .watch_history_bytes = f.watch_history_bytes,
        .election_ticks = f.election_ticks,
        .election_jitter_ticks = f.election_jitter_ticks,
        .check_quorum_rounds = f.check_quorum_rounds,
        .request_timeout_ms = f.request_timeout_ms,
        .max_body = f.max_body,
        .http_max_conns = f.http_max_conns,
        .http_max_conns_per_ip = f.http_max_conns_per_ip,
        .auth = auth,
        .join_user = join_user,
        .tls_cert = f.tls_cert,
        .tls_key = f.tls_key,
        .tls_client_ca = f.tls_client_ca,
        .join_ca = f.join_ca,
        .peer_tls_cert = f.peer_tls_cert,
        .peer_tls_key = f.peer_tls_key,
        .peer_tls_ca = f.peer_tls_ca,
        .cluster_token = token,
        .peer_max_conns = f.peer_max_conns,
        .peer_max_unauth_conns = f.peer_max_unauth_conns,
        .watch_max = f.watch_max,
        .blocking_max = f.blocking_max,
        .watch_progress_ms = f.watch_progress_ms,
        .restore = restored,
        .force_new = f.force_new,
        .log = &d.log,
    };
    CRAFT_INFO(&d.log, "craftd %s starting: http %s, raft %s, data %s%s%s%s%s%s", CRAFT_VERSION,
               f.haddr, f.raddr, f.dir, f.inmem ? " (log in memory)" : "",
               f.force_new ? ", forcing a new one-member cluster" : "",
               f.join ? ", joining " : "", f.join ? f.join : "",
               token ? ", peers authenticated by the cluster token" : "");

    raise_nofile(&d.log);
    uv_loop_t *loop = uv_default_loop();
    rc = node_start(loop, &opts, &d.node);
    if (join_user != NULL) { /* the node keeps its own encoded copy */
        explicit_bzero(join_user, strlen(join_user));
        free(join_user);
    }
    if (token != NULL) { /* the transport keeps only a key derived from it */
        explicit_bzero(token, strlen(token));
        free(token);
    }
    if (rc != 0) {
        CRAFT_ERROR(&d.log, "cannot start: %s", craft_strerror(rc));
        auth_db_free(auth);
        return 1;
    }
    rc = watch_signals(loop, &d);
    if (rc == 0)
        rc = start_notify(loop, &d);
    if (rc != 0) {
        CRAFT_ERROR(&d.log, "cannot watch signals: %s", uv_strerror(rc));
        return 1;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    if (!d.stopped) {
        CRAFT_ERROR(&d.log, "event loop ended without a shutdown");
        return 1;
    }
    rc = uv_loop_close(loop);
    auth_db_free(auth); /* the node that used it is gone */
    if (rc != 0)
        CRAFT_WARN(&d.log, "loop closed with handles still open: %s", uv_strerror(rc));
    CRAFT_INFO(&d.log, "stopped");
    return 0;
}
