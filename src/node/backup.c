/* Backups: GET /backup and -restore (docs/operations.md, "Backup and
 * restore").
 *
 * GET /backup writes the map as it is now (one kv snapshot: keys with their
 * revisions, the member directory, the applied index, a CRC32C at the end)
 * with the forked writer of snapshot.c into a nameless temporary file
 * (O_TMPFILE in the data directory; a memfd with -inmem or where O_TMPFILE
 * is not supported), then streams that file to the client
 * (http_reply_stream) and closes it. Why a file rather than a pipe from
 * the child: the child lives only as long as writing the map takes, never
 * as long as the client takes to download it, so a slow client neither
 * keeps a forked copy of the process alive nor makes copy-on-write double
 * its memory for long; the length is known before the first byte
 * (Content-Length); a failure of the writer is a clean 500 instead of a
 * cut stream; and the file has no name, so a crash leaves nothing behind
 * in the directory the store scans. The price is disk space for one
 * snapshot while the backup is sent. One backup at a time per node: a
 * second one is answered 429.
 *
 * -restore reads a backup file into a new map, checking all of it, before
 * anything is written; the node then stores it as the first snapshot of a
 * new one-member cluster in its empty directory (node__restore_into). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/alloc.h"
#include "node/internal.h"

static const char BACKUP_TYPE[] = "application/octet-stream";

struct node__backup {
    struct node *n;
    struct http_req *req; /* until streaming starts or it is answered */
    pid_t pid;            /* the writer, 0 once reaped */
    int fd;               /* the temporary file */
    uint64_t index, size; /* the snapshot's applied index and length */
    uint64_t off;         /* bytes streamed so far */
};

static void backup_free(struct node *n, struct node__backup *b)
{
    if (b->pid > 0) {
        kill(b->pid, SIGKILL);
        waitpid(b->pid, NULL, 0);
    }
    if (b->fd >= 0)
        close(b->fd);
    if (n->backup == b)
        n->backup = NULL;
    craft_free(b);
}

/* A file without a name, gone when closed. */
static int open_tmp(struct node *n)
{
    if (!n->o.inmem) {
        int fd = open(n->dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0)
            return fd;
        if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
            return -errno;
    }
    int fd = memfd_create("craftd-backup", MFD_CLOEXEC);
    return fd >= 0 ? fd : -errno;
}

void node__backup(void *ud, struct http_req *req)
{
    struct node *n = ud;
    if (n->stopping) {
        http_reply_error(req, 503, "shutting down");
        return;
    }
    if (node__refuse_request(n, req))
        return;
    if (n->backup != NULL) {
        http_reply_error(req, 429, "a backup is already being taken or sent by this "
                         "node (one at a time): try again once it is done");
        return;
    }
    int fd = open_tmp(n);
    if (fd < 0) {
        CRAFT_WARN(&n->log, "backup: no temporary file: %s", craft_strerror(fd));
        http_reply_error(req, 500, "cannot create the backup's temporary file: %s",
                         craft_strerror(fd));
        return;
    }
    struct node__backup *b = craft_calloc(1, sizeof *b);
    if (b == NULL) {
        close(fd);
        http_reply_error(req, 503, "out of memory");
        return;
    }
    *b = (struct node__backup){.n = n, .req = req, .fd = fd, .index = n->applied,
                               .size = kv_snapshot_size(n->kv)};
    b->pid = node__fork_writer(n, fd, b->index, false);
    if (b->pid < 0) {
        int err = -errno;
        b->pid = 0;
        CRAFT_WARN(&n->log, "backup: cannot fork the writer: %s", craft_strerror(err));
        http_reply_error(req, 503, "cannot fork the backup writer: %s", craft_strerror(err));
        backup_free(n, b);
        return;
    }
    n->backup = b;
    CRAFT_INFO(&n->log, "backup at index %llu (%zu keys, %llu bytes) started",
               (unsigned long long)b->index, kv_count(n->kv),
               (unsigned long long)b->size);
}

static ssize_t stream_read(void *ud, void *buf, size_t cap)
{
    struct node__backup *b = ud;
    ssize_t got;
    do
        got = pread(b->fd, buf, cap, (off_t)b->off);
    while (got < 0 && errno == EINTR);
    if (got > 0)
        b->off += (uint64_t)got;
    return got;
}

static void stream_done(void *ud, bool ok)
{
    struct node__backup *b = ud;
    struct node *n = b->n;
    if (ok)
        CRAFT_INFO(&n->log, "backup at index %llu sent (%llu bytes)",
                   (unsigned long long)b->index, (unsigned long long)b->size);
    else
        CRAFT_WARN(&n->log, "backup at index %llu not sent in full (%llu of %llu "
                   "bytes): the client went away or stalled", (unsigned long long)b->index,
                   (unsigned long long)b->off, (unsigned long long)b->size);
    backup_free(n, b);
}

void node__backup_poll(struct node *n)
{
    struct node__backup *b = n->backup;
    if (b == NULL || b->pid <= 0)
        return;
    int status;
    pid_t r = waitpid(b->pid, &status, WNOHANG);
    if (r == 0)
        return;
    b->pid = 0;
    struct stat st;
    bool ok = r > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (ok && (fstat(b->fd, &st) != 0 || (uint64_t)st.st_size != b->size)) {
        CRAFT_ERROR(&n->log, "backup: the writer wrote %lld bytes, %llu expected",
                    (long long)st.st_size, (unsigned long long)b->size);
        ok = false;
    }
    struct http_req *req = b->req;
    b->req = NULL;
    if (!ok) {
        CRAFT_ERROR(&n->log, "backup at index %llu: the writer failed (status %d; a full "
                    "disk?)", (unsigned long long)b->index, status);
        http_reply_error(req, 500, "the backup writer failed (a full disk?): see the log");
        backup_free(n, b);
        return;
    }
    /* A client that stops reading is cut after six request timeouts. */
    unsigned stall = n->o.request_timeout_ms <= UINT32_MAX / 6 ? n->o.request_timeout_ms * 6
                                                               : UINT32_MAX;
    struct http_stream_src src = {.read = stream_read, .done = stream_done};
    http_reply_set_index(req, b->index);
    if (http_reply_stream(req, BACKUP_TYPE, b->size, stall, &src, b) != 0)
        backup_free(n, b);
}

bool node__backup_cancel(struct node *n, struct http_req *req)
{
    struct node__backup *b = n->backup;
    if (b == NULL || b->req != req)
        return false;
    CRAFT_INFO(&n->log, "backup at index %llu dropped: the client went away",
               (unsigned long long)b->index);
    b->req = NULL;
    http_reply_error(req, 503, "the client went away");
    backup_free(n, b);
    return true;
}

void node__backup_stop(struct node *n)
{
    struct node__backup *b = n->backup;
    if (b == NULL || b->req == NULL)
        return; /* none, or streaming: the HTTP server's close ends it */
    http_reply_error(b->req, 503, "shutting down");
    b->req = NULL;
    backup_free(n, b);
}

/* ---- restore ---- */

struct file_src {
    int fd;
    uint64_t got; /* bytes read so far */
    bool eof;     /* the file ended before the snapshot did */
    int err;      /* a read error (-errno), or 0 */
};

static int file_read(void *ud, void *buf, size_t len)
{
    struct file_src *s = ud;
    char *p = buf;
    while (len > 0) {
        ssize_t r = read(s->fd, p, len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            s->err = -errno;
            return s->err;
        }
        if (r == 0) {
            s->eof = true;
            return CRAFT_ETRUNCATED;
        }
        s->got += (uint64_t)r;
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

__attribute__((format(printf, 3, 4))) static int say(char *why, size_t cap, const char *fmt,
                                                     ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    return CRAFT_ECORRUPT;
}

/* What is wrong with a file kv_restore refused. */
static int explain(const char *path, int fd, const struct file_src *s, int rv, char *why,
                   size_t cap)
{
    char magic[8];
    if (s->err) {
        say(why, cap, "cannot read the backup file %s: %s", path, craft_strerror(s->err));
        return s->err;
    }
    if (rv == CRAFT_ENOMEM) {
        say(why, cap, "out of memory reading the backup file %s", path);
        return rv;
    }
    if (pread(fd, magic, sizeof magic, 0) != (ssize_t)sizeof magic ||
        memcmp(magic, "CRAFTKVS", sizeof magic) != 0)
        return say(why, cap, "%s is not a craftd backup (it does not start with the "
                   "snapshot magic CRAFTKVS)", path);
    if (s->eof)
        return say(why, cap, "the backup file %s is truncated: it ends after %llu bytes, "
                   "before the snapshot it holds does (an interrupted download?)", path,
                   (unsigned long long)s->got);
    return say(why, cap, "the backup file %s is corrupt: its checksum or structure does "
               "not match (a damaged or altered file; read %llu bytes)", path,
               (unsigned long long)s->got);
}

int node_backup_load(const char *path, struct kv **out, char *why, size_t cap)
{
    *out = NULL;
    why[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int err = -errno;
        say(why, cap, "cannot open the backup file %s: %s", path, craft_strerror(err));
        return err;
    }
    struct file_src s = {.fd = fd};
    struct kv *kv;
    uint64_t index;
    int rv = kv_restore(file_read, &s, 0, &kv, &index);
    if (rv) {
        rv = explain(path, fd, &s, rv, why, cap);
        close(fd);
        return rv;
    }
    char extra;
    ssize_t more = read(fd, &extra, 1);
    close(fd);
    if (more != 0) {
        kv_free(kv);
        if (more < 0)
            return say(why, cap, "cannot read the backup file %s: %s", path,
                       strerror(errno));
        return say(why, cap, "the backup file %s is corrupt: bytes follow the end of the "
                   "snapshot at offset %llu", path, (unsigned long long)s.got);
    }
    if (index == 0) {
        kv_free(kv);
        return say(why, cap, "the backup file %s holds a snapshot at index 0: not a "
                   "backup of a cluster", path);
    }
    *out = kv;
    return 0;
}

int node_restore_dir_check(const char *dir, char *why, size_t cap)
{
    why[0] = '\0';
    DIR *d = opendir(dir);
    if (d == NULL) {
        if (errno == ENOENT)
            return 0; /* created empty */
        int err = -errno;
        say(why, cap, "cannot read the data directory %s: %s", dir, craft_strerror(err));
        return err;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        say(why, cap, "the data directory %s is not empty (it holds %s): -restore makes "
            "a new cluster in an empty directory only; give a new directory, or move "
            "this one aside", dir, e->d_name);
        closedir(d);
        return CRAFT_EEXISTS;
    }
    closedir(d);
    return 0;
}

/* The member directory of the old cluster goes: this node is the only
 * member. */
static int members_only_self(struct node *n, struct kv *kv)
{
    while (kv_member_count(kv) > 0) {
        char *id = craft_memdup(kv_member_at(kv, 0)->id, strlen(kv_member_at(kv, 0)->id) + 1);
        if (id == NULL)
            return CRAFT_ENOMEM;
        int rv = kv_member_del(kv, id);
        craft_free(id);
        if (rv)
            return rv;
    }
    return kv_member_set(kv, n->id, n->raft_id, n->raft_addr, n->http_addr);
}

int node__restore_into(struct node *n, struct kv *kv)
{
    uint64_t index = kv_index(kv);
    int rv = members_only_self(n, kv);
    if (rv)
        return rv;
    /* Term 1 ends at the snapshot; the node campaigns for term 2 alone. */
    struct raft_snap_meta meta = {.index = index, .term = 1,
                                  .conf = {.n_voters = 1, .voters = {n->raft_id}}};
    struct stor_snap_writer *w;
    rv = stor_snap_begin(n->stor, &meta, &w);
    if (rv)
        return rv;
    rv = kv_snapshot_write_fd(kv, stor_snap_writer_fd(w), index);
    if (rv) {
        stor_snap_abort(w);
        return rv;
    }
    rv = stor_snap_commit(w, &meta);
    if (rv)
        return rv;
    struct raft_hard_state hs = {.term = 1, .vote = RAFT_NONE, .commit = index};
    rv = stor_save(n->stor, &hs, NULL, 0, NULL);
    if (rv)
        return rv;
    CRAFT_INFO(&n->log, "restored a backup at index %llu (%zu keys, %llu bytes) as the "
               "first snapshot of new cluster %016llx", (unsigned long long)index,
               kv_count(kv), (unsigned long long)meta.size,
               (unsigned long long)n->ident.cluster_id);
    return 0;
}
