/* craftctl restore <backup-file> <data-dir> [craftd flags...]: the
 * counterpart of craftctl backup. It runs craftd -restore (docs/operations.md,
 * "Backup and restore") in place of itself: craftd found next to craftctl
 * (the same build or install), else in PATH, with the flags given and then
 * -restore <file> <dir>.
 *
 * Why exec rather than check and write here: a restore is more than
 * reading the file. The check (node_backup_load, src/node/backup.c) and the
 * writing of the new store (node__restore_into: the node's own member entry,
 * a new cluster id, the first snapshot through src/storage) are node code,
 * which needs the node's id and addresses and the storage layer; linking
 * them into the client would drag the daemon's modules (libuv, h2o, the
 * store) into a program that is only libcurl and jansson. One
 * implementation of the check also means one set of messages, and a
 * restore made by craftctl can never differ from one made by craftd. */
#include "ctl.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char RESTORE_HELP[] =
    "usage: craftctl restore <backup-file> <data-dir> [craftd flags...]\n"
    "  makes a new one-member cluster in the empty (or missing) <data-dir> from a\n"
    "  file of craftctl backup, by running craftd -restore in place of craftctl:\n"
    "  craftd [flags...] -restore <backup-file> <data-dir>. Give the flags the node\n"
    "  will run with (-id, -haddr, -raddr, ...). craftd checks the whole file and\n"
    "  the directory first and, if anything is wrong, says what, writes nothing\n"
    "  and exits 1; otherwise it restores and goes on serving as that node (stop\n"
    "  it with SIGTERM; later starts are plain craftd without -restore).\n"
    "  craftd is the one next to craftctl, else the first in PATH.\n";

/* The craftd next to this program, if there is one: a new string or NULL. */
static char *craftd_beside_me(void)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return NULL;
    self[n] = 0;
    char *slash = strrchr(self, '/');
    if (slash == NULL)
        return NULL;
    slash[1] = 0;
    size_t len = strlen(self) + sizeof "craftd";
    char *path = malloc(len);
    if (path == NULL)
        return NULL;
    snprintf(path, len, "%scraftd", self);
    if (access(path, X_OK) != 0) {
        free(path);
        return NULL;
    }
    return path;
}

int ctl_cmd_restore(struct ctl *c, int argc, char **argv)
{
    /* Only before the craftd flags: "-h" after them is craftd's. */
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))
        return ctl_help(RESTORE_HELP);
    if (argc < 3 || argv[1][0] == 0 || argv[2][0] == 0 || argv[1][0] == '-' ||
        argv[2][0] == '-')
        return ctl_usage(RESTORE_HELP);
    const char *file = argv[1], *dir = argv[2];
    int nflags = argc - 3;
    /* craftd, the flags, -restore file, dir, NULL */
    char **args = calloc((size_t)nflags + 5, sizeof *args);
    if (args == NULL) {
        fprintf(stderr, "craftctl: restore: out of memory\n");
        return CTL_UNAVAILABLE;
    }
    char *beside = craftd_beside_me();
    args[0] = beside ? beside : "craftd";
    for (int i = 0; i < nflags; i++)
        args[1 + i] = argv[3 + i];
    args[1 + nflags] = "-restore";
    args[2 + nflags] = (char *)file;
    args[3 + nflags] = (char *)dir;
    fflush(NULL);
    if (beside != NULL)
        execv(beside, args);
    else
        execvp("craftd", args);
    fprintf(stderr, "craftctl: restore: cannot run %s: %s%s\n", args[0], strerror(errno),
            beside ? "" : " (craftd is neither next to craftctl nor in PATH)");
    free(beside);
    free(args);
    return CTL_USAGE;
}
