/* Snapshot files: local writers, chunked receive from a leader, commit
 * (checksum, header, fdatasync, rename, directory fsync), validation and
 * fallback at start-up, and the reads the loop thread makes concurrently. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/crc32c.h"
#include "common/error.h"
#include "storage/internal.h"

#define LOCAL_TMP "tmp-snap-local"
#define RECV_TMP "tmp-snap-recv"
#define CRC_CHUNK (256u << 10)

void stor__snap_name(char *out, size_t size, uint64_t index)
{
    snprintf(out, size, "snap-%020" PRIu64, index);
}

bool stor__snap_parse(const char *name, uint64_t *index)
{
    char again[64];
    if (strlen(name) != 25 || strncmp(name, "snap-", 5) != 0)
        return false;
    if (sscanf(name, "snap-%20" SCNu64, index) != 1)
        return false;
    stor__snap_name(again, sizeof again, *index);
    return strcmp(again, name) == 0;
}

/* CRC of size data bytes of a snapshot file. */
static int data_crc(struct stor *s, int fd, uint64_t size, uint32_t *crc)
{
    uint8_t *buf = craft_malloc(CRC_CHUNK);
    if (buf == NULL)
        return CRAFT_ENOMEM;
    int err = 0;
    *crc = 0;
    for (uint64_t off = 0; off < size && err == 0;) {
        size_t n = size - off < CRC_CHUNK ? (size_t)(size - off) : CRC_CHUNK;
        err = stor__pread_all(s, fd, buf, n, STOR__SNAP_HDR + off);
        *crc = crc32c(*crc, buf, n);
        off += n;
    }
    craft_free(buf);
    return err;
}

/* ---- the kept snapshots (slots) ---- */

/* Make (meta, fd) one of the two newest, closing what falls out. The new
 * one replaces a kept snapshot of the same index. */
static void install(struct stor *s, const struct raft_snap_meta *meta, int fd)
{
    struct stor__snap in = {*meta, fd}, out = {.fd = -1};
    pthread_mutex_lock(&s->mu);
    struct stor__snap *k = s->slots;
    if (k[0].fd >= 0 && k[0].meta.index == meta->index) {
        out = k[0];
        k[0] = in;
    } else if (k[1].fd >= 0 && k[1].meta.index == meta->index) {
        out = k[1];
        k[1] = in;
    } else if (k[0].fd < 0 || meta->index > k[0].meta.index) {
        out = k[1];
        k[1] = k[0];
        k[0] = in;
    } else if (k[1].fd < 0 || meta->index > k[1].meta.index) {
        out = k[1];
        k[1] = in;
    } else {
        out = in; /* older than both: not kept */
    }
    pthread_mutex_unlock(&s->mu);
    stor__close_fd(s, &out.fd);
}

static bool kept(struct stor *s, uint64_t index)
{
    for (int i = 0; i < 2; i++)
        if (s->slots[i].fd >= 0 && s->slots[i].meta.index == index)
            return true;
    return false;
}

/* Delete every snapshot file that is not kept. */
static int cleanup(struct stor *s)
{
    if (s->inmem)
        return 0;
    char **names;
    size_t n;
    int err = stor__list_dir(s, &names, &n);
    bool deleted = false;
    for (size_t i = 0; i < n && err == 0; i++) {
        uint64_t index;
        if (!stor__snap_parse(names[i], &index) || kept(s, index))
            continue;
        err = stor__unlink(s, names[i]);
        deleted = true;
        CRAFT_INFO(s->log, "storage: %s: deleted old snapshot %s", s->dir,
                   names[i]);
    }
    stor__free_names(names, n);
    /* Directory fsync: the deletions are durable (not needed for safety:
     * a resurrected old snapshot is valid, merely wasted space). */
    if (err == 0 && deleted)
        err = stor__sync_dir(s, "snapshot deletion");
    return err;
}

/* Turn the temporary file fd (data written from offset STOR__SNAP_HDR) into
 * snapshot meta->index. Takes fd: installed, or closed on error. */
static int commit_file(struct stor *s, int fd, const char *tmp,
                       struct raft_snap_meta *meta)
{
    uint8_t *hdr = NULL;
    uint32_t crc;
    int err = data_crc(s, fd, meta->size, &crc);
    if (err == 0 && (hdr = craft_malloc(STOR__SNAP_HDR)) == NULL)
        err = CRAFT_ENOMEM;
    if (err == 0) {
        stor__snap_header_encode(hdr, meta, crc);
        err = stor__pwrite_all(s, fd, hdr, STOR__SNAP_HDR, 0);
    }
    craft_free(hdr);
    /* fdatasync: header and data are on disk before the rename publishes
     * the file; otherwise a crash could leave a named, empty snapshot. */
    if (err == 0)
        err = stor__sync(s, fd, tmp);
    char name[64];
    stor__snap_name(name, sizeof name, meta->index);
    errno = 0;
    if (err == 0 && !s->inmem &&
        s->sys.renameat(s->dirfd, tmp, s->dirfd, name) != 0)
        err = stor__err(errno);
    /* Directory fsync: the rename is durable before the caller compacts
     * the log behind this snapshot or the log is reset to it. */
    if (err == 0)
        err = stor__sync_dir(s, name);
    if (err) {
        stor__close_fd(s, &fd);
        stor__unlink(s, tmp);
        return err;
    }
    install(s, meta, fd);
    CRAFT_INFO(s->log, "storage: %s: snapshot %s committed (index %" PRIu64
               ", term %" PRIu64 ", %" PRIu64 " bytes)", s->dir, name,
               meta->index, meta->term, meta->size);
    return cleanup(s);
}

/* ---- local snapshots ---- */

int stor_snap_begin(struct stor *s, const struct raft_snap_meta *meta,
                    struct stor_snap_writer **out)
{
    if (s->failed)
        return s->failed;
    if (s->writer)
        return CRAFT_EBUSY;
    if (meta->index == 0 || meta->conf.n_voters > RAFT_MAX_MEMBERS ||
        meta->conf.n_learners > RAFT_MAX_MEMBERS)
        return CRAFT_EINVAL;
    struct stor_snap_writer *w = craft_calloc(1, sizeof *w);
    if (w == NULL)
        return CRAFT_ENOMEM;
    w->s = s;
    w->meta = *meta;
    snprintf(w->name, sizeof w->name, "%s", LOCAL_TMP);
    int err = stor__create(s, w->name, &w->fd);
    errno = 0;
    if (err == 0 && s->sys.lseek(w->fd, STOR__SNAP_HDR, SEEK_SET) < 0)
        err = stor__err(errno);
    if (err) {
        stor__close_fd(s, &w->fd);
        craft_free(w);
        return err;
    }
    s->writer = w;
    *out = w;
    return 0;
}

int stor_snap_writer_fd(const struct stor_snap_writer *w)
{
    return w->fd;
}

int stor_snap_write(struct stor_snap_writer *w, const void *buf, size_t len)
{
    int err = stor__pwrite_all(w->s, w->fd, buf, len, STOR__SNAP_HDR + w->off);
    if (err == 0)
        w->off += len;
    return err;
}

static void writer_free(struct stor_snap_writer *w)
{
    w->s->writer = NULL;
    craft_free(w);
}

int stor_snap_commit(struct stor_snap_writer *w, struct raft_snap_meta *out)
{
    struct stor *s = w->s;
    uint64_t size = 0;
    int err = s->failed ? s->failed : stor__file_size(s, w->fd, &size);
    if (err) {
        stor_snap_abort(w);
        return err;
    }
    w->meta.size = size > STOR__SNAP_HDR ? size - STOR__SNAP_HDR : 0;
    struct raft_snap_meta meta = w->meta;
    int fd = w->fd;
    writer_free(w);
    err = commit_file(s, fd, LOCAL_TMP, &meta);
    if (err == 0 && out)
        *out = meta;
    return err;
}

void stor_snap_abort(struct stor_snap_writer *w)
{
    struct stor *s = w->s;
    stor__close_fd(s, &w->fd);
    stor__unlink(s, w->name);
    writer_free(w);
}

/* ---- snapshots received in chunks ---- */

/* Chunks are not synced one by one: a partly received snapshot is deleted
 * at start-up anyway, and the leader then starts again at offset 0. */
int stor__snap_recv(struct stor *s, const struct raft_snap_chunk *c,
                    bool *committed)
{
    struct stor__recv *r = &s->recv;
    *committed = false;
    if (c->offset == 0) {
        stor__close_fd(s, &r->fd);
        int err = stor__create(s, RECV_TMP, &r->fd);
        if (err)
            return err;
        r->meta = c->meta;
        r->next = 0;
    } else if (r->fd < 0 || r->meta.index != c->meta.index ||
               r->meta.term != c->meta.term || c->offset > r->next) {
        return CRAFT_EINVAL;
    }
    int err = stor__pwrite_all(s, r->fd, c->data, c->len,
                               STOR__SNAP_HDR + c->offset);
    if (err)
        return err;
    if (c->offset + c->len > r->next)
        r->next = c->offset + c->len;
    if (!c->last)
        return 0;
    if (r->next != r->meta.size || c->offset + c->len != r->meta.size) {
        CRAFT_WARN(s->log, "storage: %s: received snapshot %" PRIu64 " is %"
                   PRIu64 " bytes, its meta says %" PRIu64, s->dir,
                   r->meta.index, r->next, r->meta.size);
        return CRAFT_EINVAL;
    }
    int fd = r->fd;
    r->fd = -1;
    err = commit_file(s, fd, RECV_TMP, &r->meta);
    *committed = err == 0;
    return err;
}

/* ---- start-up ---- */

static int u64_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x > y ? -1 : x < y;
}

/* Validate snapshot file `index`: 0 and an open fd if valid, 1 (and a
 * WARN) if corrupt, or an I/O error. */
static int check_file(struct stor *s, uint64_t index, int *fd,
                      struct raft_snap_meta *meta)
{
    char name[64];
    uint8_t hdr[STOR__SNAP_HDR];
    uint64_t size = 0;
    uint32_t crc = 0, got = 0;
    const char *why = NULL;
    stor__snap_name(name, sizeof name, index);
    errno = 0;
    *fd = s->sys.openat(s->dirfd, name, O_RDONLY | O_CLOEXEC, 0);
    if (*fd < 0)
        return stor__err(errno);
    int err = stor__file_size(s, *fd, &size);
    if (err == 0 && size < STOR__SNAP_HDR)
        why = "shorter than its header";
    if (err == 0 && !why)
        err = stor__pread_all(s, *fd, hdr, sizeof hdr, 0);
    if (err == 0 && !why)
        why = stor__snap_header_decode(hdr, meta, &crc);
    if (err == 0 && !why && meta->index != index)
        why = "header index differs from the file name";
    if (err == 0 && !why && size - STOR__SNAP_HDR != meta->size)
        why = "file size differs from the header";
    if (err == 0 && !why)
        err = data_crc(s, *fd, meta->size, &got);
    if (err == 0 && !why && got != crc)
        why = "bad data checksum";
    if (err == 0 && !why)
        return 0;
    stor__close_fd(s, fd);
    if (err)
        return err;
    CRAFT_WARN(s->log, "storage: %s/%s: corrupt snapshot (%s); ignoring it",
               s->dir, name, why);
    return 1;
}

int stor__snap_load(struct stor *s, char **names, size_t n_names,
                    size_t *n_bad)
{
    uint64_t *idx = craft_calloc(n_names ? n_names : 1, sizeof *idx);
    if (idx == NULL)
        return CRAFT_ENOMEM;
    size_t n = 0, kept_n = 0;
    for (size_t i = 0; i < n_names; i++)
        if (stor__snap_parse(names[i], &idx[n]))
            n++;
    qsort(idx, n, sizeof *idx, u64_desc);
    *n_bad = 0;
    int err = 0;
    for (size_t i = 0; i < n && kept_n < 2 && err == 0; i++) {
        int fd;
        struct raft_snap_meta meta;
        int r = check_file(s, idx[i], &fd, &meta);
        if (r < 0)
            err = r;
        else if (r == 1 && kept_n == 0)
            (*n_bad)++;
        else if (r == 0)
            s->slots[kept_n++] = (struct stor__snap){meta, fd};
    }
    craft_free(idx);
    return err;
}

void stor__snap_close_all(struct stor *s)
{
    for (int i = 0; i < 2; i++)
        stor__close_fd(s, &s->slots[i].fd);
    stor__close_fd(s, &s->recv.fd);
    if (s->writer) {
        stor__close_fd(s, &s->writer->fd);
        writer_free(s->writer);
    }
}

/* ---- reads (any thread) ---- */

static const struct stor__snap *find(struct stor *s, uint64_t index)
{
    for (int i = 0; i < 2; i++)
        if (s->slots[i].fd >= 0 && s->slots[i].meta.index == index)
            return &s->slots[i];
    return NULL;
}

int stor_snap_newest(struct stor *s, struct raft_snap_meta *meta)
{
    pthread_mutex_lock(&s->mu);
    int err = s->slots[0].fd >= 0 ? 0 : CRAFT_ENOTFOUND;
    if (err == 0)
        *meta = s->slots[0].meta;
    pthread_mutex_unlock(&s->mu);
    return err;
}

/* The lock is held across the pread: a disk job may want to replace the
 * descriptor, and waits for this read (short) rather than close it under
 * our feet. */
int stor_snap_read(struct stor *s, uint64_t index, uint64_t off, void *buf,
                   size_t len)
{
    pthread_mutex_lock(&s->mu);
    const struct stor__snap *k = find(s, index);
    int err = k ? 0 : CRAFT_ENOTFOUND;
    if (err == 0 && (off > k->meta.size || len > k->meta.size - off))
        err = CRAFT_EINVAL;
    if (err == 0)
        err = stor__pread_all(s, k->fd, buf, len, STOR__SNAP_HDR + off);
    pthread_mutex_unlock(&s->mu);
    return err;
}

int stor_snap_open_read(struct stor *s, uint64_t index, int *fd,
                        uint64_t *data_off, struct raft_snap_meta *meta)
{
    pthread_mutex_lock(&s->mu);
    const struct stor__snap *k = find(s, index);
    int err = k ? 0 : CRAFT_ENOTFOUND;
    errno = 0;
    if (err == 0 && (*fd = s->sys.dup(k->fd)) < 0)
        err = stor__err(errno);
    if (err == 0 && s->sys.lseek(*fd, STOR__SNAP_HDR, SEEK_SET) < 0) {
        err = stor__err(errno);
        stor__close_fd(s, fd);
    }
    if (err == 0) {
        *meta = k->meta;
        *data_off = STOR__SNAP_HDR;
    }
    pthread_mutex_unlock(&s->mu);
    return err;
}
