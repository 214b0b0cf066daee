/* The storage syscall table (libc by default) and the helpers every storage
 * file uses to call it: whole reads and writes, syncs that poison the store
 * on failure, errno to craft error translation. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/error.h"
#include "storage/internal.h"

static int sys_openat(int dirfd, const char *path, int flags, mode_t mode)
{
    return openat(dirfd, path, flags, mode);
}

static const struct stor_sys stor_libc = {
    .openat = sys_openat,
    .close = close,
    .pread = pread,
    .pwrite = pwrite,
    .fdatasync = fdatasync,
    .fsync = fsync,
    .ftruncate = ftruncate,
    .fallocate = fallocate,
    .fstat = fstat,
    .lseek = lseek,
    .dup = dup,
    .mkdir = mkdir,
    .renameat = renameat,
    .unlinkat = unlinkat,
    .flock = flock,
    .opendir = opendir,
    .readdir = readdir,
    .closedir = closedir,
    .memfd_create = memfd_create,
    .getrandom = getrandom,
    .clock_gettime = clock_gettime,
};

const struct stor_sys *stor_sys_default(void)
{
    return &stor_libc;
}

int stor__err(int errnum)
{
    switch (errnum) {
    case 0:
        return CRAFT_EIO; /* a call failed without saying why */
    case ENOSPC:
    case EDQUOT:
        return CRAFT_ENOSPACE;
    case EIO:
        return CRAFT_EIO;
    case ENOMEM:
        return CRAFT_ENOMEM;
    default:
        return -errnum;
    }
}

int stor__pwrite_all(struct stor *s, int fd, const void *buf, size_t len,
                     uint64_t off)
{
    const uint8_t *p = buf;
    while (len > 0) {
        errno = 0;
        ssize_t n = s->sys.pwrite(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return stor__err(errno);
        if (n == 0)
            return CRAFT_EIO; /* no progress: give up rather than spin */
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

int stor__pread_all(struct stor *s, int fd, void *buf, size_t len,
                    uint64_t off)
{
    uint8_t *p = buf;
    while (len > 0) {
        errno = 0;
        ssize_t n = s->sys.pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return stor__err(errno);
        if (n == 0)
            return CRAFT_ETRUNCATED;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* A failed fsync may have dropped dirty pages while marking them clean
 * (Linux since 4.13 reports it once): retrying could "succeed" over lost
 * data. So the first failure is final for this process. */
static int sync_failed(struct stor *s, const char *what)
{
    int err = stor__err(errno);
    s->failed = CRAFT_EIO;
    CRAFT_ERROR(s->log, "storage: %s: sync of %s failed: %s; refusing "
                "further writes until restart", s->dir, what,
                craft_strerror(err));
    return err;
}

static uint64_t now_ns(const struct stor *s)
{
    struct timespec ts = {0};
    s->sys.clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One sync took from t0 until now (a clock that went back: 0). */
static void log_sync(struct stor *s, uint64_t t0)
{
    uint64_t t1 = now_ns(s);
    uint64_t d = t1 > t0 ? t1 - t0 : 0;
    struct stor_sync_log *l = &s->synclog;
    if (l->n < STOR_SYNC_LOG) {
        l->ns[l->n++] = d;
    } else {
        l->lost++;
        l->lost_ns += d;
    }
}

void stor_sync_take(struct stor *s, struct stor_sync_log *out)
{
    out->n = s->synclog.n;
    memcpy(out->ns, s->synclog.ns, s->synclog.n * sizeof out->ns[0]);
    out->lost = s->synclog.lost;
    out->lost_ns = s->synclog.lost_ns;
    s->synclog.n = 0;
    s->synclog.lost = s->synclog.lost_ns = 0;
}

int stor__sync(struct stor *s, int fd, const char *what)
{
    if (s->inmem)
        return 0;
    errno = 0;
    uint64_t t0 = now_ns(s);
    int rc = s->sys.fdatasync(fd);
    int err = errno; /* for sync_failed, whatever the clock does */
    log_sync(s, t0);
    errno = err;
    if (rc != 0)
        return sync_failed(s, what);
    return 0;
}

int stor__sync_dir(struct stor *s, const char *what)
{
    if (s->inmem)
        return 0;
    errno = 0;
    uint64_t t0 = now_ns(s);
    int rc = s->sys.fsync(s->dirfd);
    int err = errno; /* for sync_failed, whatever the clock does */
    log_sync(s, t0);
    errno = err;
    if (rc != 0)
        return sync_failed(s, what);
    return 0;
}

int stor__create(struct stor *s, const char *name, int *fd)
{
    errno = 0;
    if (s->inmem)
        *fd = s->sys.memfd_create(name, MFD_CLOEXEC);
    else
        *fd = s->sys.openat(s->dirfd, name,
                            O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    return *fd < 0 ? stor__err(errno) : 0;
}

int stor__unlink(struct stor *s, const char *name)
{
    if (s->inmem)
        return 0;
    errno = 0;
    if (s->sys.unlinkat(s->dirfd, name, 0) != 0 && errno != ENOENT)
        return stor__err(errno);
    return 0;
}

void stor__close_fd(struct stor *s, int *fd)
{
    if (*fd >= 0)
        s->sys.close(*fd); /* nothing to do about an error on close */
    *fd = -1;
}

int stor__file_size(struct stor *s, int fd, uint64_t *size)
{
    struct stat st;
    errno = 0;
    if (s->sys.fstat(fd, &st) != 0)
        return stor__err(errno);
    *size = (uint64_t)st.st_size;
    return 0;
}

int stor__list_dir(struct stor *s, char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    errno = 0;
    DIR *d = s->sys.opendir(s->dir);
    if (d == NULL)
        return stor__err(errno);
    size_t cap = 0;
    int err = 0;
    struct dirent *e;
    while (err == 0 && (errno = 0, e = s->sys.readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            char **p = craft_realloc(*names, cap * sizeof *p);
            if (p == NULL) {
                err = CRAFT_ENOMEM;
                break;
            }
            *names = p;
        }
        char *name = craft_memdup(e->d_name, strlen(e->d_name) + 1);
        if (name == NULL)
            err = CRAFT_ENOMEM;
        else
            (*names)[(*n)++] = name;
    }
    if (err == 0 && errno != 0)
        err = stor__err(errno);
    s->sys.closedir(d);
    if (err) {
        stor__free_names(*names, *n);
        *names = NULL;
        *n = 0;
    }
    return err;
}

void stor__free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        craft_free(names[i]);
    craft_free(names);
}

int stor__wbuf_reserve(struct stor *s, size_t n)
{
    if (n <= s->wcap)
        return 0;
    size_t cap = s->wcap ? s->wcap : 4096;
    while (cap < n)
        cap *= 2;
    uint8_t *p = craft_realloc(s->wbuf, cap);
    if (p == NULL)
        return CRAFT_ENOMEM;
    s->wbuf = p;
    s->wcap = cap;
    return 0;
}
