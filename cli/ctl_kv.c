/* craftctl's key commands: get, put, del, list, txn (docs/craftctl.md).
 * Each builds one request of docs/http-api.md (list: one per page) and
 * prints the answer as a table (plain lines) or as the server's JSON. */
#include "ctl.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every byte of f: a new buffer (NUL-terminated beyond len), or NULL after
 * printing why. */
static char *read_all(FILE *f, const char *name, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
        if (cap - n - 1 == 0) {
            char *b = realloc(buf, cap * 2);
            if (b == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = b;
            cap *= 2;
        }
    }
    if (buf == NULL || ferror(f)) {
        fprintf(stderr, "craftctl: cannot read %s: %s\n", name,
                buf ? strerror(errno) : "out of memory");
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static bool parse_u64(const char *s, uint64_t *v)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        return false;
    *v = x;
    return true;
}

static bool level_ok(const char *l)
{
    return strcmp(l, "linearizable") == 0 || strcmp(l, "weak") == 0 || strcmp(l, "none") == 0;
}

/* ---- get ---- */

static const char GET_HELP[] =
    "usage: craftctl get [--meta] [--level linearizable|weak|none] [--raw] <key>\n"
    "  prints the value and a newline (--raw: the value's bytes only);\n"
    "  --meta (or -o json): the key's revisions too. Exit 1 if there is no such key.\n";

int ctl_cmd_get(struct ctl *c, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv))
        return ctl_help(GET_HELP);
    static const struct option opts[] = {{"meta", no_argument, 0, 'm'},
                                         {"level", required_argument, 0, 'l'},
                                         {"raw", no_argument, 0, 'r'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    bool meta = c->output == CTL_OUT_JSON, raw = false;
    const char *level = NULL;
    int ch;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        if (ch == 'm')
            meta = true;
        else if (ch == 'r')
            raw = true;
        else if (ch == 'l' && level_ok(optarg))
            level = optarg;
        else
            return ctl_usage(GET_HELP);
    }
    if (optind != argc - 1 || argv[optind][0] == 0)
        return ctl_usage(GET_HELP);
    const char *key = argv[optind];
    char *k = ctl_pct(key, strlen(key));
    char path[16384];
    if (k == NULL || strlen(k) > sizeof path - 64) {
        free(k);
        fprintf(stderr, "craftctl: key too long\n");
        return CTL_USAGE;
    }
    snprintf(path, sizeof path, "/key/%s?%s%s%s", k, meta ? "meta" : "raw",
             level ? "&level=" : "", level ? level : "");
    free(k);
    struct ctl_resp r;
    int rv = ctl_request(c, "GET", path, NULL, 0, NULL, true, &r);
    if (rv)
        return rv;
    rv = ctl_status_exit(&r, "get");
    if (rv == CTL_OK && !meta) {
        ctl_write(r.body, r.len);
        if (!raw)
            ctl_write("\n", 1);
    } else if (rv == CTL_OK) {
        json_t *j = ctl_parse(&r);
        if (j == NULL) {
            rv = CTL_UNAVAILABLE;
        } else if (c->output == CTL_OUT_JSON) {
            ctl_print_json(j);
        } else {
            size_t vlen;
            char *v = ctl_json_bytes(j, "value", &vlen);
            printf("key: %s\nvalue: ", key);
            if (v)
                ctl_write(v, vlen);
            free(v);
            printf("\ncreate_index: %" JSON_INTEGER_FORMAT "\nmod_index: %" JSON_INTEGER_FORMAT
                   "\nversion: %" JSON_INTEGER_FORMAT "\nlease: %s\n",
                   json_integer_value(json_object_get(j, "create_index")),
                   json_integer_value(json_object_get(j, "mod_index")),
                   json_integer_value(json_object_get(j, "version")),
                   json_string_value(json_object_get(j, "lease")) ?: "0");
        }
        json_decref(j);
    }
    ctl_resp_free(&r);
    return rv;
}

/* ---- put ---- */

static const char PUT_HELP[] =
    "usage: craftctl put [--if-match N | --if-exists | --if-absent] [--lease ID] <key> [value]\n"
    "  writes the value (from standard input when not given; any bytes);\n"
    "  --if-match N: only if the key's mod_index is N; --if-exists / --if-absent:\n"
    "  only if the key exists / does not. Exit 1 if the condition failed.\n";

int ctl_cmd_put(struct ctl *c, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv))
        return ctl_help(PUT_HELP);
    static const struct option opts[] = {{"if-match", required_argument, 0, 'm'},
                                         {"if-exists", no_argument, 0, 'e'},
                                         {"if-absent", no_argument, 0, 'a'},
                                         {"lease", required_argument, 0, 'l'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    char cond[64] = "";
    uint64_t n, lease = 0;
    int ch, nconds = 0;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        if (ch == 'm' && parse_u64(optarg, &n))
            snprintf(cond, sizeof cond, "If-Match: \"%" PRIu64 "\"", n), nconds++;
        else if (ch == 'e')
            snprintf(cond, sizeof cond, "If-Match: *"), nconds++;
        else if (ch == 'a')
            snprintf(cond, sizeof cond, "If-None-Match: *"), nconds++;
        else if (ch == 'l' && parse_u64(optarg, &lease))
            ;
        else
            return ctl_usage(PUT_HELP);
    }
    if (nconds > 1 || optind >= argc || argc - optind > 2 || argv[optind][0] == 0)
        return ctl_usage(PUT_HELP);
    const char *key = argv[optind];
    size_t vlen;
    char *val;
    if (argc - optind == 2) {
        vlen = strlen(argv[optind + 1]);
        val = strdup(argv[optind + 1]);
    } else {
        val = read_all(stdin, "standard input", &vlen);
        if (val == NULL)
            return CTL_USAGE;
    }
    char *k = ctl_pct(key, strlen(key));
    char path[16384];
    if (val == NULL || k == NULL || strlen(k) > sizeof path - 64) {
        free(k);
        free(val);
        fprintf(stderr, "craftctl: key too long, or out of memory\n");
        return CTL_USAGE;
    }
    int at = snprintf(path, sizeof path, "/key/%s", k);
    if (lease)
        snprintf(path + at, sizeof path - (size_t)at, "?lease=%" PRIu64, lease);
    free(k);
    const char *hdrs[] = {"Content-Type: application/octet-stream", cond[0] ? cond : NULL, NULL};
    struct ctl_resp r;
    int rv = ctl_request(c, "PUT", path, val, vlen, hdrs, false, &r);
    free(val);
    if (rv)
        return rv;
    rv = ctl_status_exit(&r, "put");
    if (rv == CTL_OK) {
        json_t *j = ctl_parse(&r);
        if (j == NULL)
            rv = CTL_UNAVAILABLE;
        else if (c->output == CTL_OUT_JSON)
            ctl_print_json(j);
        else
            printf("%s, mod_index %" JSON_INTEGER_FORMAT "\n",
                   r.status == 201 ? "created" : "replaced",
                   json_integer_value(json_object_get(j, "mod_index")));
        json_decref(j);
    }
    ctl_resp_free(&r);
    return rv;
}

/* ---- del ---- */

static const char DEL_HELP[] =
    "usage: craftctl del [--if-match N] <key>\n"
    "       craftctl del --prefix <prefix>\n"
    "  deletes the key (--if-match N: only if its mod_index is N; exit 1 if not),\n"
    "  or every key under the prefix, in one entry; prints how many went.\n";

int ctl_cmd_del(struct ctl *c, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv))
        return ctl_help(DEL_HELP);
    static const struct option opts[] = {{"if-match", required_argument, 0, 'm'},
                                         {"prefix", no_argument, 0, 'p'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    char cond[64] = "";
    bool prefix = false;
    uint64_t n;
    int ch;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        if (ch == 'm' && parse_u64(optarg, &n))
            snprintf(cond, sizeof cond, "If-Match: \"%" PRIu64 "\"", n);
        else if (ch == 'p')
            prefix = true;
        else
            return ctl_usage(DEL_HELP);
    }
    if (optind != argc - 1 || (prefix && cond[0]) || (!prefix && argv[optind][0] == 0))
        return ctl_usage(DEL_HELP);
    char *k = ctl_pct(argv[optind], strlen(argv[optind]));
    char path[16384];
    if (k == NULL || strlen(k) > sizeof path - 64) {
        free(k);
        fprintf(stderr, "craftctl: key too long\n");
        return CTL_USAGE;
    }
    snprintf(path, sizeof path, prefix ? "/keys?prefix=%s" : "/key/%s", k);
    free(k);
    const char *hdrs[] = {cond[0] ? cond : NULL, NULL};
    struct ctl_resp r;
    int rv = ctl_request(c, "DELETE", path, NULL, 0, hdrs, false, &r);
    if (rv)
        return rv;
    rv = ctl_status_exit(&r, "del");
    if (rv == CTL_OK) {
        json_t *j = r.len ? ctl_parse(&r) : json_object();
        json_t *d = json_object_get(j, "deleted");
        if (c->output == CTL_OUT_JSON)
            ctl_print_json(j);
        else if (json_is_integer(d))
            printf("deleted %" JSON_INTEGER_FORMAT "\n", json_integer_value(d));
        else
            printf("deleted\n");
        json_decref(j);
    }
    ctl_resp_free(&r);
    return rv;
}

/* ---- list ---- */

static const char LIST_HELP[] =
    "usage: craftctl list [--start K] [--end K] [--limit N] [--keys-only] [--count]\n"
    "                     [--level linearizable|weak|none] [prefix]\n"
    "  the keys under the prefix (or in [start, end)), in byte-wise order, a\n"
    "  \"key<TAB>value\" line each, fetched a page at a time; --limit N: at most N.\n"
    "  Each page is consistent; pages may be at different indexes.\n";

struct list_args {
    const char *prefix, *start, *end, *level;
    uint64_t limit; /* 0: all */
    bool keys_only, count;
};

/* The query of one page: a new string or NULL. */
static char *list_query(const struct list_args *a, const char *after, size_t alen,
                        uint64_t page)
{
    const char *src[] = {a->prefix, a->start, a->end};
    const char *name[] = {"prefix", "start", "end"};
    size_t cap = 256 + (after ? 3 * alen : 0);
    for (int i = 0; i < 3; i++)
        cap += src[i] ? 3 * strlen(src[i]) + 8 : 0;
    char *q = malloc(cap);
    if (q == NULL)
        return NULL;
    size_t at = (size_t)snprintf(q, cap, "/keys?limit=%" PRIu64, page);
    for (int i = 0; i < 3; i++) {
        if (src[i] == NULL)
            continue;
        char *e = ctl_pct(src[i], strlen(src[i]));
        if (e == NULL) {
            free(q);
            return NULL;
        }
        at += (size_t)snprintf(q + at, cap - at, "&%s=%s", name[i], e);
        free(e);
    }
    if (after != NULL) {
        char *e = ctl_pct(after, alen);
        if (e == NULL) {
            free(q);
            return NULL;
        }
        at += (size_t)snprintf(q + at, cap - at, "&after=%s", e);
        free(e);
    }
    if (a->keys_only)
        at += (size_t)snprintf(q + at, cap - at, "&keys_only");
    if (a->count)
        at += (size_t)snprintf(q + at, cap - at, "&count_only");
    if (a->level)
        snprintf(q + at, cap - at, "&level=%s", a->level);
    return q;
}

/* Prints one page's keys (table) or appends them to all (JSON); the last
 * key goes to *last (a new buffer). Returns how many keys. */
static size_t print_page(struct ctl *c, const struct list_args *a, json_t *page, json_t *all,
                         char **last, size_t *llen)
{
    json_t *keys = json_object_get(page, "keys");
    size_t i;
    json_t *kv;
    json_array_foreach(keys, i, kv) {
        size_t klen, vlen;
        char *k = ctl_json_bytes(kv, "key", &klen);
        if (k == NULL)
            continue;
        if (c->output == CTL_OUT_JSON) {
            json_array_append(all, kv);
        } else {
            ctl_write(k, klen);
            char *v = a->keys_only ? NULL : ctl_json_bytes(kv, "value", &vlen);
            if (v != NULL) {
                ctl_write("\t", 1);
                ctl_write(v, vlen);
            }
            ctl_write("\n", 1);
            free(v);
        }
        free(*last);
        *last = k;
        *llen = klen;
    }
    return json_array_size(keys);
}

int ctl_cmd_list(struct ctl *c, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv))
        return ctl_help(LIST_HELP);
    static const struct option opts[] = {{"start", required_argument, 0, 's'},
                                         {"end", required_argument, 0, 'e'},
                                         {"limit", required_argument, 0, 'n'},
                                         {"keys-only", no_argument, 0, 'k'},
                                         {"count", no_argument, 0, 'c'},
                                         {"level", required_argument, 0, 'l'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    struct list_args a = {0};
    int ch;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        if (ch == 's')
            a.start = optarg;
        else if (ch == 'e')
            a.end = optarg;
        else if (ch == 'n' && parse_u64(optarg, &a.limit) && a.limit > 0)
            ;
        else if (ch == 'k')
            a.keys_only = true;
        else if (ch == 'c')
            a.count = true;
        else if (ch == 'l' && level_ok(optarg))
            a.level = optarg;
        else
            return ctl_usage(LIST_HELP);
    }
    if (argc - optind > 1 || (optind < argc && (a.start || a.end)))
        return ctl_usage(LIST_HELP);
    if (optind < argc)
        a.prefix = argv[optind];
    else if (!a.start && !a.end)
        a.prefix = "";
    json_t *all = json_array(), *first = NULL;
    char *last = NULL;
    size_t llen = 0;
    uint64_t done = 0, count = 0;
    int rv = CTL_OK;
    for (;;) {
        uint64_t page = 1000;
        if (a.limit && a.limit - done < page)
            page = a.limit - done;
        char *path = list_query(&a, last, llen, page);
        struct ctl_resp r;
        rv = path ? ctl_request(c, "GET", path, NULL, 0, NULL, true, &r) : CTL_UNAVAILABLE;
        free(path);
        if (rv)
            break;
        rv = ctl_status_exit(&r, "list");
        json_t *j = rv == CTL_OK ? ctl_parse(&r) : NULL;
        ctl_resp_free(&r);
        if (j == NULL) {
            rv = rv ? rv : CTL_UNAVAILABLE;
            break;
        }
        if (first == NULL)
            first = json_incref(j);
        bool more = json_is_true(json_object_get(j, "more"));
        if (a.count) {
            count += (uint64_t)json_integer_value(json_object_get(j, "count"));
            size_t nl;
            char *next = ctl_json_bytes(j, "next", &nl);
            free(last);
            last = next;
            llen = nl;
            more = more && next != NULL;
        } else {
            done += print_page(c, &a, j, all, &last, &llen);
        }
        json_decref(j);
        if (!more || (a.limit && done >= a.limit))
            break;
    }
    if (rv == CTL_OK && c->output == CTL_OUT_JSON) {
        json_t *out = json_object();
        json_object_set(out, "index", json_object_get(first, "index"));
        if (a.count)
            json_object_set_new(out, "count", json_integer((json_int_t)count));
        else
            json_object_set(out, "keys", all);
        ctl_print_json(out);
        json_decref(out);
    } else if (rv == CTL_OK && a.count) {
        printf("%" PRIu64 "\n", count);
    }
    free(last);
    json_decref(first);
    json_decref(all);
    return rv;
}

/* ---- txn ---- */

static const char TXN_HELP[] =
    "usage: craftctl txn [file]\n"
    "  sends the transaction (JSON, from the file or standard input; see\n"
    "  POST /txn in docs/http-api.md) and prints its outcome and results.\n"
    "  Exit 1 if a compare failed (the failure branch ran).\n";

int ctl_cmd_txn(struct ctl *c, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv))
        return ctl_help(TXN_HELP);
    if (argc > 2)
        return ctl_usage(TXN_HELP);
    FILE *f = argc == 2 ? fopen(argv[1], "rb") : stdin;
    const char *name = argc == 2 ? argv[1] : "standard input";
    if (f == NULL) {
        fprintf(stderr, "craftctl: cannot open %s: %s\n", name, strerror(errno));
        return CTL_USAGE;
    }
    size_t len;
    char *body = read_all(f, name, &len);
    if (f != stdin)
        fclose(f);
    if (body == NULL)
        return CTL_USAGE;
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    struct ctl_resp r;
    int rv = ctl_request(c, "POST", "/txn", body, len, hdrs, false, &r);
    free(body);
    if (rv)
        return rv;
    rv = ctl_status_exit(&r, "txn");
    json_t *j = rv == CTL_OK ? ctl_parse(&r) : NULL;
    if (rv == CTL_OK && j == NULL)
        rv = CTL_UNAVAILABLE;
    if (j != NULL) {
        bool ok = json_is_true(json_object_get(j, "succeeded"));
        if (c->output == CTL_OUT_JSON) {
            ctl_print_json(j);
        } else {
            printf("%s at index %" JSON_INTEGER_FORMAT "\n", ok ? "succeeded" : "failed",
                   json_integer_value(json_object_get(j, "index")));
            size_t i;
            json_t *res;
            json_array_foreach(json_object_get(j, "results"), i, res) {
                char *s = json_dumps(res, JSON_COMPACT | JSON_PRESERVE_ORDER);
                printf("%s\n", s ? s : "?");
                free(s);
            }
        }
        rv = ok ? CTL_OK : CTL_FALSE;
        json_decref(j);
    }
    ctl_resp_free(&r);
    return rv;
}
