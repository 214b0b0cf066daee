/* craftctl backup <file>: GET /backup (docs/operations.md) saved to a file
 * that appears only once it is whole and on disk: the answer goes to
 * "<file>.part" (created new, mode 0600), which is fsynced and then renamed
 * over <file> (and the directory fsynced). The body streams to the file,
 * so a store of any size needs no memory here. A transfer cut short, a
 * stall, an error answer or a full disk leave no <file> and no part file,
 * and exit non-zero. craftd -restore checks the backup's checksums. */
#include "ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char BACKUP_HELP[] =
    "usage: craftctl backup <file>\n"
    "  saves GET /backup, a consistent snapshot of the whole store (every key\n"
    "  with its revisions, the members), to <file>, replacing it only once the\n"
    "  new one is complete and on disk. Needs the admin role with -auth-file.\n"
    "  --timeout is the longest stall allowed, not the whole transfer's length.\n"
    "  Restore it with craftd -restore <file> ... <new data directory>.\n";

/* fsync the directory holding path, so that a rename in it is durable. */
static int sync_dir_of(const char *path)
{
    char *copy = strdup(path);
    if (copy == NULL)
        return -1;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    free(copy);
    if (fd < 0)
        return -1;
    int rv = fsync(fd);
    close(fd);
    return rv;
}

/* The answer is in part (fd): make it path, durably. CTL_OK or, after
 * saying why, CTL_UNAVAILABLE. */
static int finish(int fd, const char *part, const char *path)
{
    if (fsync(fd) != 0 || close(fd) != 0) {
        fprintf(stderr, "craftctl: backup: cannot write %s: %s\n", part, strerror(errno));
        return CTL_UNAVAILABLE;
    }
    if (rename(part, path) != 0) {
        fprintf(stderr, "craftctl: backup: cannot rename %s to %s: %s\n", part, path,
                strerror(errno));
        return CTL_UNAVAILABLE;
    }
    if (sync_dir_of(path) != 0)
        fprintf(stderr, "craftctl: backup: warning: cannot sync the directory of %s: %s\n",
                path, strerror(errno));
    return CTL_OK;
}

int ctl_cmd_backup(struct ctl *c, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv))
        return ctl_help(BACKUP_HELP);
    if (argc != 2 || argv[1][0] == 0)
        return ctl_usage(BACKUP_HELP);
    const char *path = argv[1];
    size_t plen = strlen(path) + sizeof ".part";
    char *part = malloc(plen);
    if (part == NULL)
        return CTL_UNAVAILABLE;
    snprintf(part, plen, "%s.part", path);
    int fd = open(part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "craftctl: backup: cannot create %s: %s%s\n", part, strerror(errno),
                errno == EEXIST ? " (another backup to it running, or left by a crash: "
                                  "remove it)" : "");
        free(part);
        return CTL_USAGE;
    }
    c->body_fd = fd;
    struct ctl_resp r;
    int rv = ctl_request(c, "GET", "/backup", NULL, 0, NULL, true, &r);
    c->body_fd = -1;
    if (rv == 0) {
        rv = ctl_status_exit(&r, "backup");
        ctl_resp_free(&r);
    }
    struct stat st;
    if (rv == CTL_OK && fstat(fd, &st) == 0 && st.st_size == 0) {
        fprintf(stderr, "craftctl: backup: the answer was empty\n");
        rv = CTL_UNAVAILABLE;
    }
    if (rv == CTL_OK) {
        rv = finish(fd, part, path);
    } else {
        close(fd);
    }
    if (rv != CTL_OK) {
        unlink(part);
    } else if (c->output == CTL_OUT_JSON) {
        json_t *j = json_pack("{s:s, s:I, s:I}", "file", path, "bytes", (json_int_t)st.st_size,
                              "index", (json_int_t)r.index);
        ctl_print_json(j);
        json_decref(j);
    } else {
        printf("backup: %s: %lld bytes, index %" PRIu64 " (from %s)\n", path,
               (long long)st.st_size, r.index, r.endpoint);
    }
    free(part);
    return rv;
}
