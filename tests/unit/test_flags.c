/* Tests of the craftd command-line parser (src/node/flags.c): Go `flag`
 * syntax, defaults, every flag, bad values, positionals, exit codes, usage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "node/flags.h"

#define MAXARGS 16

/* Parses a NULL-terminated argument list (program name prepended). */
static enum flags_outcome parse_list(struct flags *f, char *err, size_t errcap, const char *a0,
                                     va_list ap)
{
    char *argv[MAXARGS + 1];
    int argc = 0;
    argv[argc++] = "craftd";
    for (const char *a = a0; a != NULL; a = va_arg(ap, const char *)) {
        assert_true(argc < MAXARGS);
        argv[argc++] = (char *)a;
    }
    argv[argc] = NULL;
    return flags_parse(argc, argv, NULL, f, err, errcap);
}

static char last_err[256];

/* parse(&f, "-id", "x", "dir", NULL): the outcome; the message in last_err. */
static enum flags_outcome parse(struct flags *f, ...)
{
    va_list ap;
    va_start(ap, f);
    const char *a0 = va_arg(ap, const char *);
    enum flags_outcome o = parse_list(f, last_err, sizeof last_err, a0, ap);
    va_end(ap);
    return o;
}

static void assert_bad(struct flags *f, enum flags_outcome o, const char *msg_part)
{
    (void)f;
    assert_int_equal(o, FLAGS_BAD);
    assert_int_equal(flags_exit_code(o), 2);
    assert_non_null(strstr(last_err, msg_part));
}

static void test_defaults(void **state)
{
    struct flags f;
    assert_int_equal(parse(&f, "data", NULL), FLAGS_RUN);
    assert_string_equal(last_err, "");
    assert_string_equal(f.dir, "data");
    assert_string_equal(f.haddr, "localhost:11000");
    assert_string_equal(f.raddr, "localhost:12000");
    assert_string_equal(f.id, "localhost:12000"); /* the -raddr string */
    assert_null(f.join);
    assert_false(f.inmem);
    assert_false(f.version);
    assert_int_equal(f.log_level, CRAFT_LOG_INFO);
    assert_int_equal(f.snapshot_threshold, 8192);
    assert_int_equal(f.tick_ms, 25);
    assert_int_equal(f.election_ticks, 18);
    assert_int_equal(f.election_jitter_ticks, 0); /* the node's: 6 */
    assert_int_equal(f.check_quorum_rounds, 0);   /* the node's: 2 */
    assert_int_equal(f.request_timeout_ms, 5000);
    assert_int_equal(f.max_body, 1024 * 1024);
    assert_int_equal(f.watch_history_events, 100000);
    assert_int_equal(f.watch_history_bytes, 64 << 20);
    assert_int_equal(f.blocking_max, 10000);
}

static void test_security_flags(void **state)
{
    struct flags f;
    assert_int_equal(parse(&f, "data", NULL), FLAGS_RUN);
    assert_null(f.auth_file);
    assert_null(f.join_user);
    assert_null(f.join_ca);
    assert_null(f.tls_cert);
    assert_null(f.tls_key);
    assert_null(f.tls_client_ca);
    assert_int_equal(parse(&f, "-auth-file", "users", "-join-user=admin:pw", "--join-ca", "ca.pem",
                           "-tls-cert", "c.pem", "-tls-key", "k.pem", "-tls-client-ca=cca.pem",
                           "data", NULL),
                     FLAGS_RUN);
    assert_string_equal(f.auth_file, "users");
    assert_string_equal(f.join_user, "admin:pw");
    assert_string_equal(f.join_ca, "ca.pem");
    assert_string_equal(f.tls_cert, "c.pem");
    assert_string_equal(f.tls_key, "k.pem");
    assert_string_equal(f.tls_client_ca, "cca.pem");
    assert_bad(&f, parse(&f, "-auth-file", "", "data", NULL), "auth-file");
    assert_bad(&f, parse(&f, "-tls-cert", NULL), "tls-cert");
}

static void test_readme_lines(void **state)
{
    struct flags f;
    assert_int_equal(parse(&f, "-id", "node0", "/home/u/node0", NULL), FLAGS_RUN);
    assert_string_equal(f.id, "node0");
    assert_string_equal(f.dir, "/home/u/node0");

    assert_int_equal(parse(&f, "-id", "node1", "-haddr", "localhost:11001", "-raddr",
                           "localhost:12001", "-join", ":11000", "~/node1", NULL),
                     FLAGS_RUN);
    assert_string_equal(f.id, "node1");
    assert_string_equal(f.haddr, "localhost:11001");
    assert_string_equal(f.raddr, "localhost:12001");
    assert_string_equal(f.join, ":11000");
    assert_string_equal(f.dir, "~/node1");
}

static void test_id_defaults_to_given_raddr(void **state)
{
    struct flags f;
    assert_int_equal(parse(&f, "-raddr", "127.0.0.1:7000", "d", NULL), FLAGS_RUN);
    assert_string_equal(f.id, "127.0.0.1:7000");
    /* an empty -id is no id, as in hraftd */
    assert_int_equal(parse(&f, "-id=", "-raddr=h:1", "d", NULL), FLAGS_RUN);
    assert_string_equal(f.id, "h:1");
    /* an empty -join is no join */
    assert_int_equal(parse(&f, "-join", "", "d", NULL), FLAGS_RUN);
    assert_null(f.join);
}

static void test_dash_forms(void **state)
{
    struct flags f;
    const char *forms[][3] = {
        {"-id", "a", NULL}, {"--id", "a", NULL}, {"-id=a", NULL, NULL}, {"--id=a", NULL, NULL}};
    for (size_t i = 0; i < 4; i++) {
        enum flags_outcome o = forms[i][1] ? parse(&f, forms[i][0], forms[i][1], "d", NULL)
                                           : parse(&f, forms[i][0], "d", NULL);
        assert_int_equal(o, FLAGS_RUN);
        assert_string_equal(f.id, "a");
        assert_string_equal(f.dir, "d");
    }
    /* a value after '=' may hold '=' itself; a separate value may start with '-' */
    assert_int_equal(parse(&f, "-id=a=b", "d", NULL), FLAGS_RUN);
    assert_string_equal(f.id, "a=b");
    assert_int_equal(parse(&f, "-id", "-x", "d", NULL), FLAGS_RUN);
    assert_string_equal(f.id, "-x");
}

static void test_last_duplicate_wins(void **state)
{
    struct flags f;
    assert_int_equal(parse(&f, "-tick-ms", "5", "--tick-ms=7", "-inmem", "-inmem=false", "d",
                           NULL),
                     FLAGS_RUN);
    assert_int_equal(f.tick_ms, 7);
    assert_false(f.inmem);
}

static void test_bool_flags(void **state)
{
    struct flags f;
    const char *yes[] = {"-inmem", "--inmem", "-inmem=true", "-inmem=1", "-inmem=t",
                         "-inmem=T", "-inmem=TRUE", "-inmem=True"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        assert_int_equal(parse(&f, yes[i], "d", NULL), FLAGS_RUN);
        assert_true(f.inmem);
    }
    const char *no[] = {"-inmem=false", "-inmem=0", "-inmem=f", "-inmem=F", "-inmem=FALSE",
                        "--inmem=False"};
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        assert_int_equal(parse(&f, no[i], "d", NULL), FLAGS_RUN);
        assert_false(f.inmem);
    }
    assert_bad(&f, parse(&f, "-inmem=yes", "d", NULL), "-inmem");
    assert_bad(&f, parse(&f, "-inmem=", "d", NULL), "-inmem");
    /* as in Go, a bool flag never takes the next argument: "false" is the
     * data directory and "d" one argument too many */
    assert_bad(&f, parse(&f, "-inmem", "false", "d", NULL), "unexpected argument \"d\"");
    assert_int_equal(parse(&f, "-inmem", "false", NULL), FLAGS_RUN);
    assert_true(f.inmem);
    assert_string_equal(f.dir, "false");
}

static void test_help(void **state)
{
    struct flags f;
    const char *forms[] = {"-h", "--h", "-help", "--help", "-h=1", "-help=x"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        enum flags_outcome o = parse(&f, forms[i], NULL);
        assert_int_equal(o, FLAGS_HELP);
        assert_int_equal(flags_exit_code(o), 0);
    }
    /* help wins over a missing directory, and over flags after it */
    assert_int_equal(parse(&f, "-id", "x", "-h", "-bogus", NULL), FLAGS_HELP);
    /* after the first positional, -h is just an extra argument */
    assert_int_equal(parse(&f, "d", "-h", NULL), FLAGS_BAD);
}

static void test_version(void **state)
{
    struct flags f;
    enum flags_outcome o = parse(&f, "-version", NULL);
    assert_int_equal(o, FLAGS_VERSION);
    assert_int_equal(flags_exit_code(o), 0);
    assert_int_equal(parse(&f, "--version", "d", NULL), FLAGS_VERSION);
    assert_int_equal(parse(&f, "-version=false", "d", NULL), FLAGS_RUN);
    assert_string_equal(CRAFT_VERSION, "0.1.0");
}

static void test_unknown_and_bad_syntax(void **state)
{
    struct flags f;
    assert_bad(&f, parse(&f, "-bogus", "d", NULL), "flag provided but not defined: -bogus");
    assert_bad(&f, parse(&f, "--bogus=1", "d", NULL), "flag provided but not defined: -bogus");
    assert_bad(&f, parse(&f, "-Id", "x", "d", NULL), "not defined: -Id"); /* case matters */
    assert_bad(&f, parse(&f, "---id", "x", "d", NULL), "bad flag syntax: ---id");
    assert_bad(&f, parse(&f, "-=x", "d", NULL), "bad flag syntax: -=x");
    assert_bad(&f, parse(&f, "-id", NULL), "flag needs an argument: -id");
    assert_bad(&f, parse(&f, "-d", "-tick-ms", NULL), "not defined: -d");
    assert_bad(&f, parse(&f, "-tick-ms", NULL), "flag needs an argument: -tick-ms");
}

static void test_addresses_not_empty(void **state)
{
    struct flags f;
    assert_bad(&f, parse(&f, "-haddr=", "d", NULL), "-haddr");
    assert_bad(&f, parse(&f, "-raddr", "", "d", NULL), "-raddr");
}

/* Peer TLS takes its three files together, or none (empty = none). */
static void test_peer_tls_all_or_none(void **state)
{
    struct flags f;
    assert_int_equal(parse(&f, "d", NULL), FLAGS_RUN);
    assert_null(f.peer_tls_cert);
    assert_int_equal(parse(&f, "-peer-tls-cert", "c.pem", "-peer-tls-key", "k.pem",
                           "-peer-tls-ca", "ca.pem", "d", NULL), FLAGS_RUN);
    assert_string_equal(f.peer_tls_cert, "c.pem");
    assert_string_equal(f.peer_tls_key, "k.pem");
    assert_string_equal(f.peer_tls_ca, "ca.pem");
    assert_bad(&f, parse(&f, "-peer-tls-cert", "c.pem", "-peer-tls-key", "k.pem", "d", NULL),
               "needs -peer-tls-ca");
    assert_bad(&f, parse(&f, "-peer-tls-ca", "ca.pem", "d", NULL), "needs -peer-tls-cert");
    assert_bad(&f, parse(&f, "-peer-tls-cert=", "-peer-tls-key", "k.pem",
                         "-peer-tls-ca", "ca.pem", "d", NULL), "needs -peer-tls-cert");
    assert_int_equal(parse(&f, "-peer-tls-cert=", "-peer-tls-key=", "-peer-tls-ca=", "d",
                           NULL), FLAGS_RUN);
    assert_null(f.peer_tls_cert);
    assert_null(f.peer_tls_key);
    assert_null(f.peer_tls_ca);
}

/* -restore <file>: a file name, never with -join or -inmem, never from
 * the environment. */
static void test_restore(void **state)
{
    (void)state;
    struct flags f;
    assert_int_equal(parse(&f, "d", NULL), FLAGS_RUN);
    assert_null(f.restore);
    assert_int_equal(parse(&f, "-restore", "b.snap", "-id", "n1", "d", NULL), FLAGS_RUN);
    assert_string_equal(f.restore, "b.snap");
    assert_string_equal(f.dir, "d");
    assert_int_equal(parse(&f, "--restore=b.snap", "d", NULL), FLAGS_RUN);
    assert_string_equal(f.restore, "b.snap");
    assert_bad(&f, parse(&f, "-restore=", "d", NULL), "must not be empty");
    assert_bad(&f, parse(&f, "-restore", "b.snap", "-join", "h:1", "d", NULL), "-join");
    assert_bad(&f, parse(&f, "-restore", "b.snap", "-inmem", "d", NULL), "-inmem");
    assert_int_equal(parse(&f, "-restore", "b.snap", "-join=", "d", NULL), FLAGS_RUN);
    assert_bad(&f, parse(&f, "-restore", NULL), "needs an argument");
    char err[256];
    char *env[] = {"CRAFTD_RESTORE=b.snap", NULL};
    char *argv[] = {"craftd", "d", NULL};
    assert_int_equal(flags_parse(2, argv, env, &f, err, sizeof err), FLAGS_RUN);
    assert_null(f.restore);
}

/* -force-new-cluster: a bool, never with -join, -restore or -inmem, never
 * from the environment. */
static void test_force_new(void **state)
{
    (void)state;
    struct flags f;
    assert_int_equal(parse(&f, "d", NULL), FLAGS_RUN);
    assert_false(f.force_new);
    assert_int_equal(parse(&f, "-force-new-cluster", "-id", "n1", "d", NULL), FLAGS_RUN);
    assert_true(f.force_new);
    assert_string_equal(f.dir, "d");
    assert_int_equal(parse(&f, "--force-new-cluster=false", "d", NULL), FLAGS_RUN);
    assert_false(f.force_new);
    assert_bad(&f, parse(&f, "-force-new-cluster", "-join", "h:1", "d", NULL), "-join");
    assert_bad(&f, parse(&f, "-join", "h:1", "-force-new-cluster", "d", NULL), "-join");
    assert_bad(&f, parse(&f, "-force-new-cluster", "-restore", "b.snap", "d", NULL),
               "-restore");
    assert_bad(&f, parse(&f, "-force-new-cluster", "-inmem", "d", NULL), "-inmem");
    assert_int_equal(parse(&f, "-force-new-cluster", "-join=", "d", NULL), FLAGS_RUN);
    assert_true(f.force_new);
    char err[256];
    char *env[] = {"CRAFTD_FORCE_NEW_CLUSTER=true", NULL};
    char *argv[] = {"craftd", "d", NULL};
    assert_int_equal(flags_parse(2, argv, env, &f, err, sizeof err), FLAGS_RUN);
    assert_false(f.force_new);
}

static void test_log_level(void **state)
{
    struct flags f;
    const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(parse(&f, "-log-level", names[i], "d", NULL), FLAGS_RUN);
        assert_int_equal(f.log_level, CRAFT_LOG_DEBUG + i);
    }
    assert_int_equal(parse(&f, "-log-level=DEBUG", "d", NULL), FLAGS_RUN);
    assert_int_equal(f.log_level, CRAFT_LOG_DEBUG);
    assert_bad(&f, parse(&f, "-log-level", "trace", "d", NULL), "\"trace\" for flag -log-level");
    assert_bad(&f, parse(&f, "-log-level=", "d", NULL), "-log-level");
    assert_int_equal(parse(&f, "d", NULL), FLAGS_RUN);
    assert_false(f.log_json);
    assert_int_equal(parse(&f, "-log-format", "json", "d", NULL), FLAGS_RUN);
    assert_true(f.log_json);
    assert_int_equal(parse(&f, "-log-format=text", "d", NULL), FLAGS_RUN);
    assert_false(f.log_json);
    assert_bad(&f, parse(&f, "-log-format", "xml", "d", NULL), "\"xml\" for flag -log-format");
}

static void test_numbers(void **state)
{
    struct flags f;
    assert_int_equal(parse(&f, "-snapshot-threshold", "50", "-tick-ms", "20", "-election-ticks",
                           "3", "-request-timeout-ms=750", "-max-body", "4096", "d", NULL),
                     FLAGS_RUN);
    assert_int_equal(f.snapshot_threshold, 50);
    assert_int_equal(f.tick_ms, 20);
    assert_int_equal(f.election_ticks, 3);
    assert_int_equal(f.request_timeout_ms, 750);
    assert_int_equal(f.max_body, 4096);

    assert_int_equal(parse(&f, "-snapshot-threshold=18446744073709551615", "d", NULL), FLAGS_RUN);
    assert_true(f.snapshot_threshold == UINT64_MAX);

    assert_int_equal(parse(&f, "-watch-history-events", "0", "-watch-history-bytes=4096",
                           "d", NULL), FLAGS_RUN);
    assert_int_equal(f.watch_history_events, 0); /* keeps nothing */
    assert_int_equal(f.watch_history_bytes, 4096);
    assert_int_equal(parse(&f, "-watch-history-bytes", "0", "d", NULL), FLAGS_BAD);
    assert_int_equal(parse(&f, "-blocking-max", "3", "d", NULL), FLAGS_RUN);
    assert_int_equal(f.blocking_max, 3);
    assert_bad(&f, parse(&f, "-blocking-max", "0", "d", NULL), "-blocking-max");
    assert_bad(&f, parse(&f, "-blocking-max", "10000001", "d", NULL), "-blocking-max");

    const char *flagnames[] = {"-snapshot-threshold", "-tick-ms", "-election-ticks",
                               "-request-timeout-ms", "-max-body"};
    const char *bad[] = {"0", "-1", "", "12x", "x", " 5", "+5", "1.5", "0x10",
                         "18446744073709551616", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof flagnames / sizeof flagnames[0]; i++) {
        for (size_t j = 0; j < sizeof bad / sizeof bad[0]; j++) {
            enum flags_outcome o = parse(&f, flagnames[i], bad[j], "d", NULL);
            assert_bad(&f, o, flagnames[i]);
            assert_non_null(strstr(last_err, "invalid value"));
        }
    }
    /* range limits specific to a flag */
    assert_bad(&f, parse(&f, "-election-ticks", "1", "d", NULL), "-election-ticks");
    /* 2 left the core no lease past its one-tick margin: the node could
     * not start ("invalid argument"); refused here, with the flag's name */
    assert_bad(&f, parse(&f, "-election-ticks", "2", "d", NULL), "-election-ticks");
    assert_int_equal(parse(&f, "-election-ticks", "3", "d", NULL), FLAGS_RUN);
    assert_bad(&f, parse(&f, "-election-jitter-ticks", "1", "d", NULL),
               "-election-jitter-ticks");
    assert_bad(&f, parse(&f, "-election-ticks", "4", "-election-jitter-ticks", "5", "d",
                         NULL), "more than -election-ticks");
    assert_int_equal(parse(&f, "-election-ticks", "4", "-election-jitter-ticks", "4", "d",
                           NULL), FLAGS_RUN);
    assert_int_equal(f.election_jitter_ticks, 4);
    assert_int_equal(parse(&f, "-check-quorum-rounds", "2", "d", NULL), FLAGS_RUN);
    assert_int_equal(f.check_quorum_rounds, 2);
    assert_bad(&f, parse(&f, "-check-quorum-rounds", "0", "d", NULL), "-check-quorum-rounds");
    assert_bad(&f, parse(&f, "-tick-ms", "4294967297", "d", NULL), "-tick-ms");
    assert_bad(&f, parse(&f, "-request-timeout-ms", "4294967296", "d", NULL), "timeout");
}

static void test_positionals(void **state)
{
    struct flags f;
    enum flags_outcome o = parse(&f, NULL);
    assert_int_equal(o, FLAGS_NO_DIR);
    assert_int_equal(flags_exit_code(o), 1);
    assert_non_null(strstr(last_err, "data directory"));

    assert_int_equal(parse(&f, "-id", "x", NULL), FLAGS_NO_DIR);
    assert_int_equal(parse(&f, "", NULL), FLAGS_NO_DIR);
    assert_int_equal(parse(&f, "--", NULL), FLAGS_NO_DIR);

    /* flags only before the directory, as Go: anything after is refused */
    assert_bad(&f, parse(&f, "d", "-id", "x", NULL), "flags must come before");
    assert_bad(&f, parse(&f, "d", "e", NULL), "unexpected argument \"e\"");

    /* "-" is an argument; "--" ends the flags */
    assert_int_equal(parse(&f, "-", NULL), FLAGS_RUN);
    assert_string_equal(f.dir, "-");
    assert_int_equal(parse(&f, "-inmem", "--", "-weird", NULL), FLAGS_RUN);
    assert_string_equal(f.dir, "-weird");
    assert_true(f.inmem);
    assert_bad(&f, parse(&f, "--", "d", "e", NULL), "unexpected argument");
}

static void test_exit_codes(void **state)
{
    assert_int_equal(flags_exit_code(FLAGS_RUN), 0);
    assert_int_equal(flags_exit_code(FLAGS_HELP), 0);
    assert_int_equal(flags_exit_code(FLAGS_VERSION), 0);
    assert_int_equal(flags_exit_code(FLAGS_BAD), 2);
    assert_int_equal(flags_exit_code(FLAGS_NO_DIR), 1);
}

static void test_small_err_buffer(void **state)
{
    struct flags f;
    char err[8];
    char *argv[] = {"craftd", "-a-very-long-unknown-flag-name", "d", NULL};
    assert_int_equal(flags_parse(3, argv, NULL, &f, err, sizeof err), FLAGS_BAD);
    assert_int_equal(strlen(err), sizeof err - 1); /* cut, still terminated */
}

static void test_peer_auth_flags(void **state)
{
    struct flags f;
    assert_int_equal(parse(&f, "d", NULL), FLAGS_RUN);
    assert_null(f.cluster_token);
    assert_int_equal(f.peer_max_conns, 64);
    assert_int_equal(f.peer_max_unauth_conns, 16);
    assert_int_equal(parse(&f, "-cluster-token", "s3cret", "-peer-max-conns=8",
                           "-peer-max-unauth-conns", "2", "d", NULL),
                     FLAGS_RUN);
    assert_string_equal(f.cluster_token, "s3cret");
    assert_int_equal(f.peer_max_conns, 8);
    assert_int_equal(f.peer_max_unauth_conns, 2);
    /* An empty token is no token (main then looks at the environment). */
    assert_int_equal(parse(&f, "-cluster-token=", "d", NULL), FLAGS_RUN);
    assert_null(f.cluster_token);
    assert_bad(&f, parse(&f, "-peer-max-conns", "0", "d", NULL), "-peer-max-conns");
    assert_bad(&f, parse(&f, "-peer-max-unauth-conns", "x", "d", NULL),
               "-peer-max-unauth-conns");
}

static void test_usage_lists_every_flag(void **state)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    flags_usage(out, "craftd");
    fclose(out);
    const char *names[] = {"Usage: craftd", "-id", "-haddr", "-raddr", "-join", "-inmem",
                           "-log-level", "-snapshot-threshold", "-tick-ms", "-election-ticks",
                           "-request-timeout-ms", "-max-body", "-version", "-help", "-restore",
                           "-force-new-cluster",
                           "localhost:11000", "localhost:12000", "8192"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        assert_non_null(strstr(buf, names[i]));
    free(buf);
}

/* CRAFTD_<FLAG> in the environment: every kind of flag, the command line
 * winning, empty as unset, errors naming the variable, the two secrets
 * and -version never taken from it, the data directory. */
static void test_environment(void **state)
{
    (void)state;
    struct flags f;
    char err[256];
    char *env[] = {"PATH=/bin", "CRAFTD_TICK_MS=20", "CRAFTD_INMEM=true",
                   "CRAFTD_HADDR=127.0.0.1:9", "CRAFTD_LOG_LEVEL=debug",
                   "CRAFTD_HTTP_MAX_CONNS_PER_IP=7", "CRAFTD_JOIN=", "CRAFTD_VERSION=true",
                   "CRAFTD_CLUSTER_TOKEN=secret", "CRAFTD_JOIN_USER=a:b",
                   "CRAFTD_DATA_DIR=/var/lib/craftd", "CRAFTD_TICK_MSX=1", NULL};
    char *argv[] = {"craftd", "-haddr", "127.0.0.1:8", NULL};
    assert_int_equal(flags_parse(3, argv, env, &f, err, sizeof err), FLAGS_RUN);
    assert_int_equal(f.tick_ms, 20);
    assert_true(f.inmem);
    assert_string_equal(f.haddr, "127.0.0.1:8"); /* the command line wins */
    assert_int_equal(f.log_level, CRAFT_LOG_DEBUG);
    assert_int_equal(f.http_max_conns_per_ip, 7);
    assert_null(f.join);          /* empty: unset */
    assert_false(f.version);      /* never from the environment */
    assert_null(f.cluster_token); /* main reads (and wipes) it */
    assert_null(f.join_user);
    assert_string_equal(f.dir, "/var/lib/craftd");
    char *argv2[] = {"craftd", "/data", NULL};
    assert_int_equal(flags_parse(2, argv2, env, &f, err, sizeof err), FLAGS_RUN);
    assert_string_equal(f.dir, "/data"); /* the positional wins */

    char *bad[] = {"CRAFTD_TICK_MS=fast", NULL};
    assert_int_equal(flags_parse(2, argv2, bad, &f, err, sizeof err), FLAGS_BAD);
    assert_non_null(strstr(err, "CRAFTD_TICK_MS"));
    char *bad_bool[] = {"CRAFTD_INMEM=yes", NULL};
    assert_int_equal(flags_parse(2, argv2, bad_bool, &f, err, sizeof err), FLAGS_BAD);
    assert_non_null(strstr(err, "CRAFTD_INMEM"));
    char *none[] = {NULL};
    char *argv3[] = {"craftd", NULL};
    assert_int_equal(flags_parse(1, argv3, none, &f, err, sizeof err), FLAGS_NO_DIR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_security_flags),
        cmocka_unit_test(test_readme_lines),
        cmocka_unit_test(test_id_defaults_to_given_raddr),
        cmocka_unit_test(test_dash_forms),
        cmocka_unit_test(test_last_duplicate_wins),
        cmocka_unit_test(test_bool_flags),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_unknown_and_bad_syntax),
        cmocka_unit_test(test_addresses_not_empty),
        cmocka_unit_test(test_log_level),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_positionals),
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_small_err_buffer),
        cmocka_unit_test(test_usage_lists_every_flag),
        cmocka_unit_test(test_peer_tls_all_or_none),
        cmocka_unit_test(test_peer_auth_flags),
        cmocka_unit_test(test_environment),
        cmocka_unit_test(test_restore),
        cmocka_unit_test(test_force_new),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
