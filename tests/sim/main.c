/* The simulator's command line: replay one seed with its trace, run many
 * seeds in forked worker processes (each reporting over a pipe), or run the
 * checkers' selftest. */
#include "sim/sim.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SEED_TIMEOUT_S 120 /* a seed running longer than this is a hang */
#define FULL_REPORTS 5     /* failures printed in full; then one line each */

enum { REC_DONE = 1, REC_FAIL = 2 };

struct rec {
    uint32_t kind;
    uint32_t len; /* bytes of report text following */
    uint64_t seed;
};

struct worker {
    pid_t pid;
    int fd;
    uint64_t next;  /* next seed it will run */
    uint64_t end;   /* one past the last seed of the whole run */
    char *buf;      /* partial records read so far */
    size_t n, cap;
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sim --seeds N [--jobs J] [--first S]   run seeds S..S+N-1\n"
            "       sim --seed X [--verbose]               replay one seed\n"
            "       sim --selftest                         check the checkers\n"
            "options: --nodes N (cluster size), --steps N (main phase),\n"
            "         --trace N (events printed on failure), --no-lease,\n"
            "         --scenario K (0 none, 1 figure8, 2 lease, 3 membership,\n"
            "                       4 pause, 5 drift, 6 transfer, 7 wipe,\n"
            "                       8 early-conf),\n"
            "         --io-first (a woken node steps frames before its owed\n"
            "                     ticks, against the core's contract),\n"
            "         --leases (the lease workload on every seed, not a third)\n");
}

static int write_all(int fd, const void *p, size_t len)
{
    const char *b = p;
    while (len) {
        ssize_t w = write(fd, b, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Run one seed; on failure the report goes to *report (malloc'd). */
static int run_seed(uint64_t seed, const struct sim_opts *o, char **report,
                    size_t *len)
{
    struct sim *s = malloc(sizeof(*s));
    if (!s)
        return -1;
    sim_init(s, seed, o, stdout);
    int rc = s->failed ? -1 : sim_run(s);
    if (rc) {
        FILE *f = open_memstream(report, len);
        if (f) {
            sim_report(s, f);
            fclose(f);
        }
    }
    sim_destroy(s);
    free(s);
    return rc;
}

static void worker_main(int fd, uint64_t first, uint64_t end, unsigned stride,
                        const struct sim_opts *o)
{
    for (uint64_t seed = first; seed < end; seed += stride) {
        alarm(SEED_TIMEOUT_S);
        char *report = NULL;
        size_t len = 0;
        int rc = run_seed(seed, o, &report, &len);
        struct rec r = {rc ? REC_FAIL : REC_DONE, rc ? (uint32_t)len : 0, seed};
        if (write_all(fd, &r, sizeof(r)) ||
            (rc && len && write_all(fd, report, len)))
            _exit(3);
        free(report);
    }
    _exit(0);
}

static int spawn(struct worker *w, uint64_t first, uint64_t end,
                 unsigned stride, const struct sim_opts *o)
{
    int p[2];
    if (pipe(p))
        return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        close(p[0]);
        worker_main(p[1], first, end, stride, o);
    }
    close(p[1]);
    w->pid = pid;
    w->fd = p[0];
    w->next = first;
    w->end = end;
    w->n = 0;
    return 0;
}

struct tally {
    uint64_t done, failed, total;
    uint64_t shown;
    uint64_t listed[20];
    double t0, last_progress;
};

static void note_failure(struct tally *t, uint64_t seed)
{
    if (t->failed < 20)
        t->listed[t->failed] = seed;
    t->failed++;
}

/* Consume the complete records in w->buf. */
static void drain(struct worker *w, struct tally *t, unsigned stride)
{
    size_t off = 0;
    while (w->n - off >= sizeof(struct rec)) {
        struct rec r;
        memcpy(&r, w->buf + off, sizeof(r));
        if (w->n - off < sizeof(r) + r.len)
            break;
        const char *text = w->buf + off + sizeof(r);
        t->done++;
        w->next = r.seed + stride;
        if (r.kind == REC_FAIL) {
            note_failure(t, r.seed);
            if (t->shown++ < FULL_REPORTS) {
                fwrite(text, 1, r.len, stdout);
            } else {
                const char *nl = memchr(text, '\n', r.len);
                fwrite(text, 1, nl ? (size_t)(nl - text + 1) : r.len, stdout);
            }
            fflush(stdout);
        }
        off += sizeof(r) + r.len;
    }
    memmove(w->buf, w->buf + off, w->n - off);
    w->n -= off;
}

static int read_into(struct worker *w)
{
    if (w->cap - w->n < 4096) {
        size_t cap = w->cap ? w->cap * 2 : 65536;
        char *b = realloc(w->buf, cap);
        if (!b)
            return -1;
        w->buf = b;
        w->cap = cap;
    }
    ssize_t r;
    do
        r = read(w->fd, w->buf + w->n, w->cap - w->n);
    while (r < 0 && errno == EINTR);
    if (r > 0)
        w->n += (size_t)r;
    return (int)r;
}

/* A worker ended: if it died in the middle of a seed, report that seed and
 * start a replacement for the rest of its share. */
static void reap(struct worker *w, struct tally *t, unsigned stride,
                 const struct sim_opts *o)
{
    int st = 0;
    close(w->fd);
    w->fd = -1;
    waitpid(w->pid, &st, 0);
    w->pid = 0;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return;
    uint64_t seed = w->next;
    if (seed >= w->end)
        return;
    t->done++;
    note_failure(t, seed);
    if (WIFSIGNALED(st))
        printf("sim: seed %" PRIu64 " FAILED: the worker died of signal %d"
               " (%s)%s\n  replay: make sim SEED=%" PRIu64 "\n", seed,
               WTERMSIG(st), strsignal(WTERMSIG(st)),
               WTERMSIG(st) == SIGALRM ? ", the seed hung" : "", seed);
    else
        printf("sim: seed %" PRIu64 " FAILED: the worker exited with status %d"
               "\n  replay: make sim SEED=%" PRIu64 "\n", seed,
               WEXITSTATUS(st), seed);
    fflush(stdout);
    if (seed + stride < w->end &&
        spawn(w, seed + stride, w->end, stride, o) != 0)
        fprintf(stderr, "sim: cannot start a worker: %s\n", strerror(errno));
}

static int run_many(uint64_t first, uint64_t count, unsigned jobs,
                    const struct sim_opts *o)
{
    if (jobs < 1)
        jobs = 1;
    if (jobs > count)
        jobs = (unsigned)(count ? count : 1);
    struct worker *ws = calloc(jobs, sizeof(*ws));
    struct tally t = {.total = count, .t0 = now_s()};
    t.last_progress = t.t0;
    if (!ws)
        return 2;
    uint64_t end = first + count;
    for (unsigned j = 0; j < jobs; j++) {
        ws[j].fd = -1;
        if (first + j < end && spawn(&ws[j], first + j, end, jobs, o)) {
            fprintf(stderr, "sim: fork: %s\n", strerror(errno));
            return 2;
        }
    }
    printf("sim: running seeds %" PRIu64 "..%" PRIu64 " on %u workers\n",
           first, end - 1, jobs);
    fflush(stdout);
    for (;;) {
        struct pollfd pf[64];
        unsigned idx[64], np = 0;
        for (unsigned j = 0; j < jobs && np < 64; j++)
            if (ws[j].fd >= 0) {
                pf[np].fd = ws[j].fd;
                pf[np].events = POLLIN;
                idx[np++] = j;
            }
        if (np == 0)
            break;
        if (poll(pf, np, 1000) < 0 && errno != EINTR)
            break;
        for (unsigned k = 0; k < np; k++) {
            if (!(pf[k].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            struct worker *w = &ws[idx[k]];
            if (read_into(w) > 0) {
                drain(w, &t, jobs);
            } else {
                drain(w, &t, jobs);
                reap(w, &t, jobs, o);
            }
        }
        double now = now_s();
        if (now - t.last_progress >= 10) {
            t.last_progress = now;
            printf("sim: %" PRIu64 "/%" PRIu64 " seeds, %" PRIu64 " failed, %.0f"
                   " s\n", t.done, t.total, t.failed, now - t.t0);
            fflush(stdout);
        }
    }
    double el = now_s() - t.t0;
    if (t.failed) {
        printf("sim: failing seeds:");
        for (uint64_t i = 0; i < t.failed && i < 20; i++)
            printf(" %" PRIu64, t.listed[i]);
        printf("%s\n", t.failed > 20 ? " ..." : "");
    }
    printf("sim: %" PRIu64 " passed, %" PRIu64 " failed (%.1f s, %.2f ms per"
           " seed per worker)\n", t.done - t.failed, t.failed, el,
           t.done ? el * 1000.0 * jobs / (double)t.done : 0.0);
    for (unsigned j = 0; j < jobs; j++)
        free(ws[j].buf);
    free(ws);
    return t.failed || t.done != count ? 1 : 0;
}

static int replay(uint64_t seed, const struct sim_opts *o)
{
    struct sim *s = malloc(sizeof(*s));
    if (!s)
        return 2;
    double t0 = now_s();
    printf("sim: seed %" PRIu64 "\n", seed);
    sim_init(s, seed, o, stdout);
    int rc = s->failed ? -1 : sim_run(s);
    double el = now_s() - t0;
    if (rc) {
        sim_report(s, stdout);
    } else {
        const struct sim_stats *st = &s->st;
        if (!o->verbose)
            sim_print_params(s, stdout);
        printf("sim: seed %" PRIu64 " passed in %.1f ms: %" PRIu64 " steps, %"
               PRIu64 " ticks, %" PRIu64 " elections, %" PRIu64 " msgs (%"
               PRIu64 " dropped, %" PRIu64 " dup), %" PRIu64 " crashes, %"
               PRIu64 " stops, %" PRIu64 " snapshots taken, %" PRIu64
               " installed, %" PRIu64 " conf changes, %" PRIu64 " wipes (%"
               PRIu64 " refused starts, %" PRIu64 " rejoins), writes %" PRIu64
               " ok %"
               PRIu64 " failed %" PRIu64 " unknown, reads %" PRIu64 " ok (%"
               PRIu64 " lease) %" PRIu64 " dropped, %" PRIu64 " pauses, %"
               PRIu64 " late msgs, %" PRIu64 " forged, CAS %" PRIu64
               " ok %" PRIu64 " refused, %" PRIu64 " listings, converged in %"
               PRIu64 " ticks\n", seed,
               el * 1000, s->now, s->ticks, s->chk.elections, st->msgs,
               st->dropped, st->dups, st->crashes, st->stops, st->snaps_taken,
               st->snaps_installed, st->confs_applied, st->wipes,
               st->refusals, st->rejoins, st->ops_ok, st->ops_fail,
               st->ops_unknown, st->reads_ok, st->lease_reads,
               st->reads_dropped, st->pauses, st->late_msgs, st->forged,
               st->cas_ok, st->cas_refused, st->lists, st->final_ticks);
    }
    sim_destroy(s);
    free(s);
    return rc ? 1 : 0;
}

static int num(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    struct sim_opts o;
    memset(&o, 0, sizeof(o));
    uint64_t seeds = 0, seed = 0, first = 1, jobs = 1, v;
    bool have_seed = false, selftest = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = true;
        if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
            o.verbose = true;
            takes = false;
        } else if (!strcmp(a, "--no-lease")) {
            o.no_lease = true;
            takes = false;
        } else if (!strcmp(a, "--io-first")) {
            o.io_first = true;
            takes = false;
        } else if (!strcmp(a, "--leases")) {
            o.leases = true;
            takes = false;
        } else if (!strcmp(a, "--selftest")) {
            selftest = true;
            takes = false;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!takes)
            continue;
        if (!val || num(val, &v)) {
            usage(stderr);
            return 2;
        }
        i++;
        if (!strcmp(a, "--seeds"))
            seeds = v;
        else if (!strcmp(a, "--seed"))
            seed = v, have_seed = true;
        else if (!strcmp(a, "--first"))
            first = v;
        else if (!strcmp(a, "--jobs"))
            jobs = v;
        else if (!strcmp(a, "--nodes") && v >= 1 && v <= SIM_MAX_NODES)
            o.nodes = (unsigned)v;
        else if (!strcmp(a, "--steps"))
            o.steps = (unsigned)v;
        else if (!strcmp(a, "--scenario") && v < SIM_SC__COUNT)
            o.scenario = (unsigned)v + 1;
        else if (!strcmp(a, "--trace"))
            o.trace_lines = (unsigned)v;
        else {
            usage(stderr);
            return 2;
        }
    }
    if (selftest)
        return sim_selftest(stdout) ? 1 : 0;
    if (have_seed)
        return replay(seed, &o);
    if (seeds == 0) {
        usage(stderr);
        return 2;
    }
    if (jobs > 64)
        jobs = 64;
    return run_many(first, seeds, (unsigned)jobs, &o);
}
