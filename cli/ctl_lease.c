/* craftctl lease grant|keepalive|revoke|list|show (docs/craftctl.md), over
 * POST /lease, POST /lease/<id>/keepalive, DELETE /lease/<id>, GET /leases
 * and GET /lease/<id> (docs/http-api.md, "Leases"). A keepalive is sent
 * again to the next endpoint after a timeout or a 503 (restarting a TTL
 * twice is harmless); a grant or a revoke never is. */
#include "ctl.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char LEASE_HELP[] =
    "usage: craftctl lease grant <ttl-seconds>\n"
    "       craftctl lease keepalive [--every <seconds>] <id>\n"
    "       craftctl lease revoke <id>\n"
    "       craftctl lease list\n"
    "       craftctl lease show <id>\n"
    "  grant: a new lease (prints its id; the TTL granted may be raised to the\n"
    "  cluster's minimum); attach keys with craftctl put --lease <id>.\n"
    "  keepalive: restarts the lease's TTL once, or every <seconds> until SIGINT\n"
    "  (exit 0) or until the lease is gone (exit 1).\n"
    "  revoke: ends the lease and deletes its keys (prints how many).\n"
    "  list: every lease with its TTL; show: its TTL, what is left of it, its keys.\n"
    "  Exit 1 when the lease does not exist (expired or revoked).\n";

/* Sends one request and parses its 2xx answer: the JSON (*rv CTL_OK) or
 * NULL (*rv the exit code, the reason printed). */
static json_t *call(struct ctl *c, const char *method, const char *path, const char *body,
                    bool idempotent, const char *what, int *rv)
{
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    struct ctl_resp r;
    *rv = ctl_request(c, method, path, body, body ? strlen(body) : 0, body ? hdrs : NULL,
                      idempotent, &r);
    if (*rv)
        return NULL;
    *rv = ctl_status_exit(&r, what);
    json_t *j = *rv == CTL_OK ? ctl_parse(&r) : NULL;
    if (*rv == CTL_OK && j == NULL)
        *rv = CTL_UNAVAILABLE;
    ctl_resp_free(&r);
    return j;
}

static const char *id_of(json_t *j)
{
    return json_string_value(json_object_get(j, "id")) ?: "?";
}

static int grant(struct ctl *c, const char *arg)
{
    uint64_t ttl;
    if (!ctl_parse_u64(arg, &ttl) || ttl == 0)
        return ctl_usage(LEASE_HELP);
    char body[64];
    snprintf(body, sizeof body, "{\"ttl\":%" PRIu64 "}", ttl);
    int rv;
    json_t *j = call(c, "POST", "/lease", body, false, "lease grant", &rv);
    if (j == NULL)
        return rv;
    if (c->output == CTL_OUT_JSON) {
        ctl_print_json(j);
    } else {
        json_int_t got = json_integer_value(json_object_get(j, "ttl"));
        printf("%s\n", id_of(j));
        if ((uint64_t)got != ttl)
            fprintf(stderr, "craftctl: lease grant: the TTL was raised to %" JSON_INTEGER_FORMAT
                    " s, the cluster's minimum\n", got);
    }
    json_decref(j);
    return CTL_OK;
}

static int keepalive_once(struct ctl *c, uint64_t id, bool quiet)
{
    char path[64];
    snprintf(path, sizeof path, "/lease/%" PRIu64 "/keepalive", id);
    int rv;
    json_t *j = call(c, "POST", path, NULL, true, "lease keepalive", &rv);
    if (j == NULL)
        return rv;
    if (c->output == CTL_OUT_JSON) {
        char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (s != NULL)
            printf("%s\n", s);
        free(s);
    } else if (!quiet) {
        printf("lease %s kept alive, ttl %" JSON_INTEGER_FORMAT "\n", id_of(j),
               json_integer_value(json_object_get(j, "ttl")));
    }
    fflush(stdout);
    json_decref(j);
    return CTL_OK;
}

static int keepalive(struct ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {{"every", required_argument, 0, 'e'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    uint64_t every = 0, id;
    int ch;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        if (ch == 'e' && ctl_parse_u64(optarg, &every) && every > 0 && every < 86400)
            ;
        else
            return ctl_usage(LEASE_HELP);
    }
    if (optind != argc - 1 || !ctl_parse_u64(argv[optind], &id) || id == 0)
        return ctl_usage(LEASE_HELP);
    if (every == 0)
        return keepalive_once(c, id, false);
    if (ctl_catch_signals() != 0) {
        fprintf(stderr, "craftctl: lease keepalive: cannot catch signals: %s\n",
                strerror(errno));
        return CTL_UNAVAILABLE;
    }
    for (;;) {
        int rv = keepalive_once(c, id, false);
        if (ctl_interrupted())
            return CTL_OK;
        /* Gone (1) or refused (3, 2): no point in going on. No endpoint
         * answering (4) may pass: the lease lives until its TTL is out. */
        if (rv != CTL_OK && rv != CTL_UNAVAILABLE)
            return rv;
        ctl_sleep_ms((long)every * 1000);
        if (ctl_interrupted())
            return CTL_OK;
    }
}

/* "/lease/<id>" of the id argument; false if it is not a lease id. */
static bool lease_path(const char *arg, char *path, size_t cap)
{
    uint64_t id;
    if (!ctl_parse_u64(arg, &id) || id == 0)
        return false;
    snprintf(path, cap, "/lease/%" PRIu64, id);
    return true;
}

static int revoke(struct ctl *c, const char *arg)
{
    char path[64];
    if (!lease_path(arg, path, sizeof path))
        return ctl_usage(LEASE_HELP);
    int rv;
    json_t *j = call(c, "DELETE", path, NULL, false, "lease revoke", &rv);
    if (j == NULL)
        return rv;
    if (c->output == CTL_OUT_JSON)
        ctl_print_json(j);
    else
        printf("revoked, deleted %" JSON_INTEGER_FORMAT "\n",
               json_integer_value(json_object_get(j, "deleted")));
    json_decref(j);
    return CTL_OK;
}

static int show(struct ctl *c, const char *arg)
{
    char path[64];
    if (!lease_path(arg, path, sizeof path))
        return ctl_usage(LEASE_HELP);
    int rv;
    json_t *j = call(c, "GET", path, NULL, true, "lease show", &rv);
    if (j == NULL)
        return rv;
    if (c->output == CTL_OUT_JSON) {
        ctl_print_json(j);
    } else {
        printf("id: %s\nttl: %" JSON_INTEGER_FORMAT "\nremaining_ms: %" JSON_INTEGER_FORMAT
               "\nkeys:\n", id_of(j), json_integer_value(json_object_get(j, "ttl")),
               json_integer_value(json_object_get(j, "remaining_ms")));
        size_t i;
        json_t *k;
        json_array_foreach(json_object_get(j, "keys"), i, k) {
            size_t len = 0;
            char *b = NULL;
            if (json_is_string(k)) { /* UTF-8: as it is */
                len = json_string_length(k);
                if ((b = malloc(len + 1)) != NULL)
                    memcpy(b, json_string_value(k), len);
            } else { /* {"key_b64": ...} */
                b = ctl_json_bytes(k, "key", &len);
            }
            if (b != NULL) {
                ctl_write("  ", 2);
                ctl_write(b, len);
                ctl_write("\n", 1);
            }
            free(b);
        }
        if (json_is_true(json_object_get(j, "more")))
            printf("  ... (more than 1000 keys)\n");
    }
    json_decref(j);
    return CTL_OK;
}

/* Every lease, a page of 1,000 at a time. */
static int list(struct ctl *c)
{
    json_t *all = json_array(), *first_index = NULL;
    char after[32] = "";
    int rv = CTL_OK;
    if (c->output == CTL_OUT_TABLE)
        printf("%-20s %s\n", "ID", "TTL");
    for (;;) {
        char path[96];
        snprintf(path, sizeof path, "/leases?limit=1000%s%s", after[0] ? "&after=" : "",
                 after);
        json_t *j = call(c, "GET", path, NULL, true, "lease list", &rv);
        if (j == NULL)
            break;
        if (first_index == NULL)
            first_index = json_incref(json_object_get(j, "index"));
        size_t i;
        json_t *l;
        json_array_foreach(json_object_get(j, "leases"), i, l) {
            if (c->output == CTL_OUT_JSON)
                json_array_append(all, l);
            else
                printf("%-20s %" JSON_INTEGER_FORMAT "\n", id_of(l),
                       json_integer_value(json_object_get(l, "ttl")));
            snprintf(after, sizeof after, "%s", id_of(l));
        }
        bool more = json_is_true(json_object_get(j, "more")) &&
                    json_array_size(json_object_get(j, "leases")) > 0;
        json_decref(j);
        if (!more)
            break;
    }
    if (rv == CTL_OK && c->output == CTL_OUT_JSON) {
        json_t *out = json_pack("{s:O?, s:O}", "index", first_index, "leases", all);
        ctl_print_json(out);
        json_decref(out);
    }
    json_decref(first_index);
    json_decref(all);
    return rv;
}

int ctl_cmd_lease(struct ctl *c, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv))
        return ctl_help(LEASE_HELP);
    if (argc < 2)
        return ctl_usage(LEASE_HELP);
    const char *sub = argv[1];
    if (strcmp(sub, "grant") == 0 && argc == 3)
        return grant(c, argv[2]);
    if (strcmp(sub, "keepalive") == 0)
        return keepalive(c, argc - 1, argv + 1);
    if (strcmp(sub, "revoke") == 0 && argc == 3)
        return revoke(c, argv[2]);
    if (strcmp(sub, "list") == 0 && argc == 2)
        return list(c);
    if (strcmp(sub, "show") == 0 && argc == 3)
        return show(c, argv[2]);
    return ctl_usage(LEASE_HELP);
}
