/* craftctl: the command-line client of craftd (docs/craftctl.md). This file
 * owns the global options, the endpoint list and the command table. */
#include "ctl.h"

#include "common/version.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CTL_DEFAULT_ENDPOINT "localhost:11000"

struct command {
    const char *name;
    int (*run)(struct ctl *, int, char **);
    const char *what;
};

static const struct command COMMANDS[] = {
    {"get", ctl_cmd_get, "read a key's value (or its revisions)"},
    {"put", ctl_cmd_put, "write a key (value from an argument or stdin), maybe conditionally"},
    {"del", ctl_cmd_del, "delete a key, or every key under a prefix"},
    {"list", ctl_cmd_list, "list keys in order, under a prefix or in a range"},
    {"txn", ctl_cmd_txn, "run a transaction (JSON from a file or stdin)"},
    {"member", ctl_cmd_member, "list, add or remove members"},
    {"transfer", ctl_cmd_transfer, "hand leadership to a voter"},
    {"status", ctl_cmd_status, "the answering node's view of the cluster"},
    {"health", ctl_cmd_health, "whether every endpoint is ready"},
    {"backup", ctl_cmd_backup, "save a consistent snapshot of the whole store to a file"},
    {"restore", ctl_cmd_restore, "make a new cluster from a backup (runs craftd -restore)"},
    {"watch", ctl_cmd_watch, "print the changes of a key or prefix as they happen"},
    {"lease", ctl_cmd_lease, "grant, keep alive, revoke, list or show leases"},
};

static void help(FILE *out)
{
    fprintf(out,
            "usage: craftctl [options] <command> [arguments]   (craftctl <command> --help)\n"
            "\noptions:\n"
            "  --endpoints a,b,c   craftd HTTP addresses, tried in turn when one is down\n"
            "                      (default $CRAFTCTL_ENDPOINTS, else " CTL_DEFAULT_ENDPOINT
            ");\n"
            "                      host:port, or http(s)://host:port\n"
            "  --user user:pass    HTTP Basic credentials (default $CRAFTCTL_USER)\n"
            "  --cacert file       CAs to trust for HTTPS (endpoints become https://)\n"
            "  --cert file --key file   a client certificate for HTTPS\n"
            "  --timeout ms        per request (default 10000)\n"
            "  -o table|json       output (default table)\n"
            "  --version           print the version and exit\n"
            "\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(out, "  %-9s %s\n", COMMANDS[i].name, COMMANDS[i].what);
    fprintf(out, "\nexit codes: 0 done, 1 no such key / condition failed / not ready,\n"
                 "2 usage, 3 refused by the server, 4 no endpoint answered or server error\n"
                 "(for a write: it may or may not have been applied), 5 watch: the\n"
                 "changes it needs are no longer kept\n");
}

bool ctl_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return true;
    return false;
}

int ctl_help(const char *text)
{
    fputs(text, stdout);
    return CTL_OK;
}

int ctl_usage(const char *text)
{
    fputs(text, stderr);
    return CTL_USAGE;
}

/* Splits list at commas into base URLs (":p" = localhost:p). 0, or -1
 * after saying why. */
static int set_endpoints(struct ctl *c, const char *list, bool tls)
{
    char *copy = strdup(list), *save = NULL;
    if (copy == NULL)
        return -1;
    for (char *t = strtok_r(copy, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        if (*t == 0)
            continue;
        char **e = realloc(c->endpoints, (c->n_endpoints + 1) * sizeof *e);
        size_t len = strlen(t) + 32;
        char *url = malloc(len);
        if (e == NULL || url == NULL) {
            free(url);
            if (e)
                c->endpoints = e;
            free(copy);
            return -1;
        }
        c->endpoints = e;
        if (strncmp(t, "http://", 7) == 0 || strncmp(t, "https://", 8) == 0)
            snprintf(url, len, "%s", t);
        else
            snprintf(url, len, "%s://%s%s", tls ? "https" : "http", t[0] == ':' ? "localhost" : "",
                     t);
        size_t ul = strlen(url);
        if (ul > 0 && url[ul - 1] == '/')
            url[ul - 1] = 0;
        c->endpoints[c->n_endpoints++] = url;
    }
    free(copy);
    if (c->n_endpoints == 0) {
        fprintf(stderr, "craftctl: no endpoint given\n");
        return -1;
    }
    return 0;
}

static void ctl_free(struct ctl *c)
{
    for (size_t i = 0; i < c->n_endpoints; i++)
        free(c->endpoints[i]);
    free(c->endpoints);
    if (c->curl)
        curl_easy_cleanup(c->curl);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"endpoints", required_argument, 0, 'e'},
                                         {"user", required_argument, 0, 'u'},
                                         {"cacert", required_argument, 0, 'C'},
                                         {"cert", required_argument, 0, 'c'},
                                         {"key", required_argument, 0, 'k'},
                                         {"timeout", required_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'},
                                         {"version", no_argument, 0, 'V'},
                                         {0, 0, 0, 0}};
    struct ctl c = {.timeout_ms = 10000, .output = CTL_OUT_TABLE, .body_fd = -1};
    const char *endpoints = getenv("CRAFTCTL_ENDPOINTS");
    c.user = getenv("CRAFTCTL_USER");
    int ch;
    while ((ch = getopt_long(argc, argv, "+ho:", opts, NULL)) != -1) {
        switch (ch) {
        case 'e': endpoints = optarg; break;
        case 'u': c.user = optarg; break;
        case 'C': c.cacert = optarg; break;
        case 'c': c.cert = optarg; break;
        case 'k': c.key = optarg; break;
        case 't':
            c.timeout_ms = strtol(optarg, NULL, 10);
            if (c.timeout_ms <= 0) {
                fprintf(stderr, "craftctl: --timeout wants milliseconds > 0\n");
                return CTL_USAGE;
            }
            break;
        case 'o':
            if (strcmp(optarg, "json") == 0)
                c.output = CTL_OUT_JSON;
            else if (strcmp(optarg, "table") != 0) {
                fprintf(stderr, "craftctl: -o wants table or json\n");
                return CTL_USAGE;
            }
            break;
        case 'h': help(stdout); return CTL_OK;
        case 'V': printf("craftctl %s\n", CRAFT_VERSION); return CTL_OK;
        default: help(stderr); return CTL_USAGE;
        }
    }
    if (optind >= argc) {
        help(stderr);
        return CTL_USAGE;
    }
    const struct command *cmd = NULL;
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (strcmp(argv[optind], COMMANDS[i].name) == 0)
            cmd = &COMMANDS[i];
    if (cmd == NULL) {
        fprintf(stderr, "craftctl: unknown command %s (craftctl --help lists them)\n",
                argv[optind]);
        return CTL_USAGE;
    }
    if (set_endpoints(&c, endpoints && *endpoints ? endpoints : CTL_DEFAULT_ENDPOINT,
                      c.cacert != NULL) != 0) {
        ctl_free(&c);
        return CTL_USAGE;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 || (c.curl = curl_easy_init()) == NULL) {
        fprintf(stderr, "craftctl: cannot set up libcurl\n");
        ctl_free(&c);
        return CTL_UNAVAILABLE;
    }
    int rv = cmd->run(&c, argc - optind, argv + optind);
    ctl_free(&c);
    curl_global_cleanup();
    return rv;
}
