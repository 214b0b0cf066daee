/* build/lincheck: checks a recorded key-value history for linearizability
 * (the library in lincheck.h does the work; this file parses and reports).
 *
 * Usage: lincheck [--max-steps N] [--max-cache-mb M] [--quiet] [FILE]
 *   FILE absent or "-": read standard input.
 *   --max-steps N: search budget per key (default 10,000,000).
 *   --max-cache-mb M: memory for explored states per key (default 256);
 *                     a key with tens of thousands of ops needs more.
 *   --quiet: print only the summary line, not the failing key's report.
 *
 * Input: JSON lines, one operation per line; blank lines are skipped, other
 * members of an object are ignored:
 *   {"client":1,"key":"k","op":"put","value":"v","invoke":123,
 *    "complete":456,"outcome":"ok"}
 *   client    integer >= 0, only used in reports
 *   key       string
 *   op        "put" | "delete" | "get" | "cas"
 *   value     put, cas: the string written (required); get: the string
 *             read, or null / missing when the key was absent; delete:
 *             null / missing
 *   mod       optional integer >= 0: an ok put's or cas's mod_index, the one
 *             a get read (0: absent), the current one a failed cas reported
 *   expect    cas: the mod_index it requires (0: the key is absent); the
 *             cas writes value iff the key's mod_index is that
 *   invoke    integer >= 0, when the request was sent (any unit)
 *   complete  integer >= invoke, when the answer came; required for "ok";
 *             null / missing otherwise (ignored for "unknown": such an op
 *             may take effect at any time after invoke)
 *   outcome   "ok" | "fail" (definitely not applied; gets that failed are
 *             dropped; a failed cas is checked as a read: its mod_index
 *             was not expect) | "unknown" (timed out: may or may not have
 *             applied)
 * An atomic multi-key batch is recorded as one put/delete line per key with
 * the same times and outcome; it is then checked key by key only.
 *
 * Output (stdout): "lincheck: N ops, K keys: VERDICT in T ms", then on a
 * violation or an undecided key the report on the first such key.
 * Exit status: 0 linearizable, 1 violation, 2 bad input, usage or internal
 * error (message on stderr), 3 undecided within the budget.
 *
 * Memory: plain malloc/free here; build/lincheck is linked without
 * libcraft.a (see the Makefile), so craft_malloc is not available. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "lincheck/lincheck.h"

enum { EXIT_LIN = 0, EXIT_VIOLATION = 1, EXIT_BAD = 2, EXIT_UNDECIDED = 3 };

/* The parsed history; key and value strings are owned here. */
struct history {
    struct lincheck_op *ops;
    size_t len, cap;
};

static void history_free(struct history *h)
{
    for (size_t i = 0; i < h->len; i++) {
        free((char *)h->ops[i].key);
        free((char *)h->ops[i].value);
    }
    free(h->ops);
}

/* Read member name of obj as an integer >= 0 into *out. Missing or null:
 * returns 1 (nothing stored); 0 on success; -1 if it is something else. */
static int get_uint(json_t *obj, const char *name, uint64_t *out)
{
    json_t *v = json_object_get(obj, name);
    if (v == NULL || json_is_null(v))
        return 1;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int name_index(const char *s, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (s && strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

/* Fill op from one JSON object; NULL on success or a message. The strings
 * it copies belong to op even when it fails. */
static const char *parse_op(json_t *obj, struct lincheck_op *op)
{
    static const char *const kinds[] = {"put", "delete", "get", "cas"};
    static const char *const outcomes[] = {"ok", "fail", "unknown"};

    memset(op, 0, sizeof(*op));
    if (!json_is_object(obj))
        return "not a JSON object";
    if (get_uint(obj, "client", &op->client) != 0)
        return "\"client\" must be an integer >= 0";
    const char *key = json_string_value(json_object_get(obj, "key"));
    if (key == NULL)
        return "\"key\" must be a string";
    const char *name = json_string_value(json_object_get(obj, "op"));
    int kind = name_index(name, kinds, 4);
    if (kind < 0)
        return "\"op\" must be \"put\", \"delete\", \"get\" or \"cas\"";
    op->kind = LINCHECK_PUT + kind;
    name = json_string_value(json_object_get(obj, "outcome"));
    int outcome = name_index(name, outcomes, 3);
    if (outcome < 0)
        return "\"outcome\" must be \"ok\", \"fail\" or \"unknown\"";
    op->outcome = LINCHECK_OUTCOME_OK + outcome;
    if (get_uint(obj, "invoke", &op->invoke) != 0)
        return "\"invoke\" must be an integer >= 0";
    op->complete = LINCHECK_INF;
    int rc = get_uint(obj, "complete", &op->complete);
    if (rc < 0 || (rc == 0 && op->complete < op->invoke))
        return "\"complete\" must be null or an integer >= invoke";
    if (rc == 1 && op->outcome == LINCHECK_OUTCOME_OK)
        return "an \"ok\" op needs \"complete\"";

    json_t *value = json_object_get(obj, "value");
    if (value != NULL && !json_is_null(value) && !json_is_string(value))
        return "\"value\" must be a string or null";
    if (op->kind == LINCHECK_DELETE && json_is_string(value))
        return "a delete has no \"value\"";
    if (op->kind == LINCHECK_PUT && !json_is_string(value))
        return "a put needs a string \"value\"";
    if (op->kind == LINCHECK_CAS && !json_is_string(value))
        return "a cas needs a string \"value\"";
    rc = get_uint(obj, "mod", &op->mod);
    if (rc < 0 || (rc == 0 && op->mod == LINCHECK_INF))
        return "\"mod\" must be null or an integer >= 0";
    op->has_mod = rc == 0;
    if (op->has_mod && op->kind == LINCHECK_DELETE)
        return "a delete has no \"mod\"";
    if (op->kind == LINCHECK_CAS && get_uint(obj, "expect", &op->expect) != 0)
        return "a cas needs an integer \"expect\" >= 0";
    if (op->kind == LINCHECK_CAS && op->outcome == LINCHECK_OUTCOME_FAIL &&
        op->has_mod && op->mod == op->expect)
        return "a failed cas cannot report the mod_index it expected";
    op->key = strdup(key);
    if (op->key == NULL)
        return "out of memory";
    if (json_is_string(value)) {
        op->value = strdup(json_string_value(value));
        if (op->value == NULL)
            return "out of memory";
        op->has_value = true;
    }
    return NULL;
}

static const char *history_push(struct history *h, json_t *obj)
{
    if (h->len == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 1024;
        struct lincheck_op *ops = realloc(h->ops, cap * sizeof(*ops));
        if (ops == NULL)
            return "out of memory";
        h->ops = ops;
        h->cap = cap;
    }
    struct lincheck_op *op = &h->ops[h->len++];
    return parse_op(obj, op); /* op's strings are freed with h either way */
}

/* Read every line of f into h. 0, or -1 after printing why. */
static int read_history(FILE *f, const char *name, struct history *h)
{
    char *line = NULL;
    size_t cap = 0;
    size_t lineno = 0;
    int rc = 0;
    ssize_t len;
    while (rc == 0 && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == (size_t)len)
            continue;
        json_error_t jerr;
        json_t *obj = json_loadb(line, (size_t)len, 0, &jerr);
        const char *msg = obj ? history_push(h, obj) : jerr.text;
        if (msg) {
            fprintf(stderr, "lincheck: %s:%zu: %s\n", name, lineno, msg);
            rc = -1;
        }
        json_decref(obj);
    }
    if (rc == 0 && ferror(f)) {
        fprintf(stderr, "lincheck: %s: %s\n", name, strerror(errno));
        rc = -1;
    }
    free(line);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: lincheck [--max-steps N] [--max-cache-mb M] [--quiet] "
               "[FILE|-]\n"
               "Checks a JSON-lines key-value history for linearizability.\n"
               "Exit: 0 linearizable, 1 violation, 2 bad input, "
               "3 undecided.\n");
}

struct args {
    const char *path; /* NULL: stdin */
    uint64_t max_steps;
    uint64_t max_cache_mb;
    bool quiet;
};

/* 0, or an exit status to leave with. */
static int parse_args(int argc, char **argv, struct args *a)
{
    memset(a, 0, sizeof(*a));
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return -1;
        } else if (strcmp(argv[i], "--quiet") == 0) {
            a->quiet = true;
        } else if (strcmp(argv[i], "--max-steps") == 0 && i + 1 < argc) {
            char *end;
            errno = 0;
            a->max_steps = strtoull(argv[++i], &end, 10);
            if (errno || *end || a->max_steps == 0 || argv[i][0] == '-') {
                fprintf(stderr, "lincheck: bad --max-steps %s\n", argv[i]);
                return EXIT_BAD;
            }
        } else if (strcmp(argv[i], "--max-cache-mb") == 0 && i + 1 < argc) {
            char *end;
            errno = 0;
            a->max_cache_mb = strtoull(argv[++i], &end, 10);
            if (errno || *end || a->max_cache_mb == 0 || argv[i][0] == '-' ||
                a->max_cache_mb > (SIZE_MAX >> 20)) {
                fprintf(stderr, "lincheck: bad --max-cache-mb %s\n", argv[i]);
                return EXIT_BAD;
            }
        } else if (argv[i][0] == '-' && strcmp(argv[i], "-") != 0) {
            usage(stderr);
            return EXIT_BAD;
        } else if (a->path == NULL) {
            a->path = argv[i];
        } else {
            usage(stderr);
            return EXIT_BAD;
        }
    }
    if (a->path && strcmp(a->path, "-") == 0)
        a->path = NULL;
    return 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Check h and report; returns the exit status. */
static int check(const struct history *h, const struct args *a)
{
    struct lincheck_opts opts = {.max_steps = a->max_steps,
                                 .max_cache_bytes = a->max_cache_mb << 20};
    struct lincheck_result res;
    double t0 = now_ms();
    int err = lincheck_check(h->ops, h->len, &opts, &res);
    double ms = now_ms() - t0;
    if (err) {
        fprintf(stderr, "lincheck: %s\n",
                err == CRAFT_EINVAL ? "invalid operation" : "out of memory");
        return EXIT_BAD;
    }
    printf("lincheck: %zu ops, %zu keys: %s in %.1f ms\n", res.n_ops,
           res.n_keys, lincheck_verdict_name(res.verdict), ms);
    if (!a->quiet && res.verdict != LINCHECK_OK)
        lincheck_result_print(&res, stdout);
    int status = res.verdict == LINCHECK_OK          ? EXIT_LIN
                 : res.verdict == LINCHECK_VIOLATION ? EXIT_VIOLATION
                                                     : EXIT_UNDECIDED;
    lincheck_result_free(&res);
    return status;
}

int main(int argc, char **argv)
{
    struct args a;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    FILE *f = a.path ? fopen(a.path, "r") : stdin;
    if (f == NULL) {
        fprintf(stderr, "lincheck: %s: %s\n", a.path, strerror(errno));
        return EXIT_BAD;
    }
    struct history h = {0};
    rc = read_history(f, a.path ? a.path : "<stdin>", &h);
    if (f != stdin)
        fclose(f);
    if (rc == 0)
        rc = check(&h, &a);
    else
        rc = EXIT_BAD;
    history_free(&h);
    return rc;
}
