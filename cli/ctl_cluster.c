/* craftctl's cluster commands: member list|add|remove, transfer, status,
 * health (docs/craftctl.md), over GET /status, POST /join, /remove and
 * /transfer, and GET /readyz. */
#include "ctl.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* GET /status of the first endpoint that answers: the parsed document or
 * NULL (*rv says why). */
static json_t *get_status(struct ctl *c, int *rv)
{
    struct ctl_resp r;
    *rv = ctl_request(c, "GET", "/status", NULL, 0, NULL, true, &r);
    if (*rv)
        return NULL;
    *rv = ctl_status_exit(&r, "status");
    json_t *j = *rv == CTL_OK ? ctl_parse(&r) : NULL;
    if (*rv == CTL_OK && j == NULL)
        *rv = CTL_UNAVAILABLE;
    ctl_resp_free(&r);
    return j;
}

/* POST path {"id": id, ...more}: the exit code. */
static int post_member(struct ctl *c, const char *path, json_t *body, const char *what)
{
    char *s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (s == NULL)
        return CTL_UNAVAILABLE;
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    struct ctl_resp r;
    int rv = ctl_request(c, "POST", path, s, strlen(s), hdrs, false, &r);
    free(s);
    if (rv)
        return rv;
    rv = ctl_status_exit(&r, what);
    if (rv == CTL_OK && c->output == CTL_OUT_TABLE)
        printf("%s: done\n", what);
    else if (rv == CTL_OK)
        printf("{\"ok\":true}\n");
    ctl_resp_free(&r);
    return rv;
}

static const char MEMBER_HELP[] =
    "usage: craftctl member list\n"
    "       craftctl member add <id> <raft-addr> [http-addr]\n"
    "       craftctl member remove <id>\n"
    "  list: every member with its addresses, whether it votes and leads;\n"
    "  add: a bare POST /join (a craftd node joins itself with -join: one\n"
    "  started without it is a cluster of its own and refuses this add);\n"
    "  remove: take a member out of the cluster.\n";

static int member_list(struct ctl *c)
{
    int rv;
    json_t *st = get_status(c, &rv);
    if (st == NULL)
        return rv;
    json_t *members = json_object_get(st, "members");
    if (c->output == CTL_OUT_JSON) {
        ctl_print_json(members);
    } else {
        const char *leader = json_string_value(json_object_get(json_object_get(st, "leader"),
                                                               "id"));
        printf("%-16s %-22s %-22s %-7s %s\n", "ID", "RAFT ADDR", "HTTP ADDR", "VOTER",
               "LEADER");
        size_t i;
        json_t *m;
        json_array_foreach(members, i, m) {
            const char *id = json_string_value(json_object_get(m, "id"));
            printf("%-16s %-22s %-22s %-7s %s\n", id ? id : "?",
                   json_string_value(json_object_get(m, "raft_addr")) ?: "-",
                   json_string_value(json_object_get(m, "http_addr")) ?: "-",
                   json_is_true(json_object_get(m, "voter")) ? "yes" : "no",
                   id && leader && strcmp(id, leader) == 0 ? "*" : "");
        }
    }
    json_decref(st);
    return CTL_OK;
}

int ctl_cmd_member(struct ctl *c, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv))
        return ctl_help(MEMBER_HELP);
    if (argc < 2)
        return ctl_usage(MEMBER_HELP);
    const char *sub = argv[1];
    if (strcmp(sub, "list") == 0 && argc == 2)
        return member_list(c);
    if (strcmp(sub, "add") == 0 && (argc == 4 || argc == 5)) {
        json_t *b = json_pack("{s:s, s:s}", "id", argv[2], "addr", argv[3]);
        if (b && argc == 5)
            json_object_set_new(b, "http_addr", json_string(argv[4]));
        return b ? post_member(c, "/join", b, "member add") : CTL_UNAVAILABLE;
    }
    if (strcmp(sub, "remove") == 0 && argc == 3) {
        json_t *b = json_pack("{s:s}", "id", argv[2]);
        return b ? post_member(c, "/remove", b, "member remove") : CTL_UNAVAILABLE;
    }
    return ctl_usage(MEMBER_HELP);
}

static const char TRANSFER_HELP[] =
    "usage: craftctl transfer <id>\n"
    "  hands leadership to the voter <id>; returns once it leads.\n";

int ctl_cmd_transfer(struct ctl *c, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv))
        return ctl_help(TRANSFER_HELP);
    if (argc != 2)
        return ctl_usage(TRANSFER_HELP);
    json_t *b = json_pack("{s:s}", "id", argv[1]);
    return b ? post_member(c, "/transfer", b, "transfer") : CTL_UNAVAILABLE;
}

static const char STATUS_HELP[] =
    "usage: craftctl status\n"
    "  the answering node's view: its role, term, indexes, leader, members.\n";

int ctl_cmd_status(struct ctl *c, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv))
        return ctl_help(STATUS_HELP);
    if (argc != 1)
        return ctl_usage(STATUS_HELP);
    int rv;
    json_t *st = get_status(c, &rv);
    if (st == NULL)
        return rv;
    if (c->output == CTL_OUT_JSON) {
        ctl_print_json(st);
    } else {
        json_t *me = json_object_get(st, "me"), *ld = json_object_get(st, "leader");
        printf("node:      %s (%s)\n", json_string_value(json_object_get(me, "id")) ?: "?",
               json_string_value(json_object_get(st, "role")) ?: "?");
        printf("leader:    %s\n", json_string_value(json_object_get(ld, "id")) ?: "none");
        printf("cluster:   %s\n", json_string_value(json_object_get(st, "cluster_id")) ?: "?");
        printf("term:      %" JSON_INTEGER_FORMAT "\n",
               json_integer_value(json_object_get(st, "term")));
        printf("commit:    %" JSON_INTEGER_FORMAT "\n",
               json_integer_value(json_object_get(st, "commit_index")));
        printf("applied:   %" JSON_INTEGER_FORMAT "\n",
               json_integer_value(json_object_get(st, "applied_index")));
        printf("keys:      %" JSON_INTEGER_FORMAT "\n",
               json_integer_value(json_object_get(st, "keys")));
        printf("members:   %zu\n", json_array_size(json_object_get(st, "members")));
    }
    json_decref(st);
    return CTL_OK;
}

static const char HEALTH_HELP[] =
    "usage: craftctl health\n"
    "  asks every endpoint's /readyz: ready (a member that knows a leader and\n"
    "  is caught up) or why not. Exit 1 if any endpoint is not ready.\n";

int ctl_cmd_health(struct ctl *c, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv))
        return ctl_help(HEALTH_HELP);
    if (argc != 1)
        return ctl_usage(HEALTH_HELP);
    int worst = CTL_OK;
    json_t *all = json_array();
    char **eps = c->endpoints;
    size_t n = c->n_endpoints;
    for (size_t i = 0; i < n; i++) {
        /* One endpoint at a time: no moving on to the next. */
        c->endpoints = &eps[i];
        c->n_endpoints = 1;
        c->current = 0;
        struct ctl_resp r;
        int rv = ctl_request(c, "GET", "/readyz", NULL, 0, NULL, true, &r);
        const char *why = "no answer";
        json_t *j = NULL;
        if (rv == 0) {
            j = json_loadb(r.body, r.len, 0, NULL);
            json_t *e = json_object_get(j, "error");
            why = r.status == 200 ? "ready" : json_is_string(e) ? json_string_value(e) : "not ready";
        }
        bool ok = rv == 0 && r.status == 200;
        if (!ok)
            worst = CTL_FALSE;
        if (c->output == CTL_OUT_JSON)
            json_array_append_new(all, json_pack("{s:s, s:b, s:s}", "endpoint", eps[i],
                                                 "ready", ok, "reason", why));
        else
            printf("%-28s %s\n", eps[i], ok ? "ready" : why);
        json_decref(j);
        if (rv == 0)
            ctl_resp_free(&r);
    }
    c->endpoints = eps;
    c->n_endpoints = n;
    if (c->output == CTL_OUT_JSON)
        ctl_print_json(all);
    json_decref(all);
    return worst;
}
