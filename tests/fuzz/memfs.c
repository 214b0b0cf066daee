/* The in-memory file system of memfs.h: files, descriptors and the one
 * directory, each call behaving like its libc namesake (-1 and errno). */
#include "memfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>

#define MAX_FDS 64
#define FD_BASE 1000
#define DIR_FILE (-2) /* a descriptor on the directory itself */

struct mfile {
    bool used;
    bool named; /* in the directory (memfd files are not) */
    char name[64];
    uint8_t *data;
    size_t len, cap;
    unsigned refs; /* descriptors on it */
};

struct mfd {
    bool used;
    int file; /* index into files, or DIR_FILE */
    uint64_t pos;
};

static struct mfile files[MEMFS_FILES];
static struct mfd fds[MAX_FDS];
static uint64_t rnd, clock_ms; /* reset with the rest: runs replay */
static struct {
    size_t next;
    struct dirent ent;
} dir_iter;

static void file_free(struct mfile *f)
{
    free(f->data);
    memset(f, 0, sizeof *f);
}

/* Drop a file that has neither a name nor a descriptor. */
static void file_maybe_free(int i)
{
    if (!files[i].named && files[i].refs == 0)
        file_free(&files[i]);
}

void memfs_reset(void)
{
    for (int i = 0; i < MEMFS_FILES; i++)
        file_free(&files[i]);
    memset(fds, 0, sizeof fds);
    dir_iter.next = 0;
    rnd = 0x9e3779b97f4a7c15u;
    clock_ms = 1000000;
}

void memfs_load(const uint8_t *in, size_t len)
{
    memfs_reset();
    size_t off = 0, n = 0;
    /* Room is left for the files a store creates (state, temporary, new
     * segments): running out of it is not what is being tested. */
    while (off < len && n < MEMFS_FILES - 8) {
        size_t nlen = in[off++] % 64;
        if (nlen > len - off)
            break;
        char name[64];
        memcpy(name, in + off, nlen);
        name[nlen] = '\0';
        off += nlen;
        if (len - off < 4)
            break;
        size_t dlen = (size_t)in[off] | (size_t)in[off + 1] << 8 |
                      (size_t)in[off + 2] << 16 | (size_t)in[off + 3] << 24;
        off += 4;
        if (dlen > len - off)
            dlen = len - off;
        if (nlen && !memchr(name, '/', nlen) && strlen(name) == nlen) {
            memfs_put(name, in + off, dlen);
            n++;
        }
        off += dlen;
    }
}

size_t memfs_dump(uint8_t *out, size_t cap)
{
    size_t off = 0;
    const char *name;
    const uint8_t *data;
    size_t len;
    for (size_t k = 0; memfs_file(k, &name, &data, &len); k++) {
        size_t nlen = strlen(name);
        if (off + 1 + nlen + 4 + len > cap)
            return 0;
        out[off++] = (uint8_t)nlen;
        memcpy(out + off, name, nlen);
        off += nlen;
        for (int b = 0; b < 4; b++)
            out[off++] = (uint8_t)(len >> (8 * b));
        if (len)
            memcpy(out + off, data, len);
        off += len;
    }
    return off;
}

static int find(const char *name)
{
    for (int i = 0; i < MEMFS_FILES; i++)
        if (files[i].used && files[i].named &&
            strcmp(files[i].name, name) == 0)
            return i;
    return -1;
}

static int new_file(const char *name, bool named)
{
    if (strlen(name) >= sizeof files[0].name) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (int i = 0; i < MEMFS_FILES; i++) {
        if (!files[i].used) {
            files[i] = (struct mfile){.used = true, .named = named};
            strcpy(files[i].name, name);
            return i;
        }
    }
    errno = ENOSPC;
    return -1;
}

static int reserve(struct mfile *f, size_t n)
{
    if (n <= f->cap)
        return 0;
    size_t cap = f->cap ? f->cap : 256;
    while (cap < n)
        cap *= 2;
    uint8_t *p = realloc(f->data, cap);
    if (p == NULL) {
        errno = ENOMEM;
        return -1;
    }
    f->data = p;
    f->cap = cap;
    return 0;
}

/* Set a file's length, zero-filling what grows. */
static int set_len(struct mfile *f, size_t n)
{
    if (reserve(f, n) != 0)
        return -1;
    if (n > f->len)
        memset(f->data + f->len, 0, n - f->len);
    f->len = n;
    return 0;
}

void memfs_put(const char *name, const uint8_t *data, size_t len)
{
    int i = find(name);
    if (i < 0)
        i = new_file(name, true);
    if (i < 0)
        return;
    files[i].len = 0;
    if (set_len(&files[i], len) == 0 && len)
        memcpy(files[i].data, data, len);
}

int memfs_file(size_t k, const char **name, const uint8_t **data,
               size_t *len)
{
    for (int i = 0; i < MEMFS_FILES; i++) {
        if (!files[i].used || !files[i].named || k-- > 0)
            continue;
        *name = files[i].name;
        *data = files[i].data;
        *len = files[i].len;
        return 1;
    }
    return 0;
}

size_t memfs_open_fds(void)
{
    size_t n = 0;
    for (int i = 0; i < MAX_FDS; i++)
        n += fds[i].used;
    return n;
}

static int new_fd(int file)
{
    for (int i = 0; i < MAX_FDS; i++) {
        if (!fds[i].used) {
            fds[i] = (struct mfd){.used = true, .file = file};
            if (file >= 0)
                files[file].refs++;
            return FD_BASE + i;
        }
    }
    errno = EMFILE;
    return -1;
}

static struct mfd *get_fd(int fd)
{
    if (fd < FD_BASE || fd >= FD_BASE + MAX_FDS || !fds[fd - FD_BASE].used) {
        errno = EBADF;
        return NULL;
    }
    return &fds[fd - FD_BASE];
}

/* The file behind a descriptor, or NULL (EBADF, EISDIR). */
static struct mfile *get_file(int fd)
{
    struct mfd *d = get_fd(fd);
    if (d == NULL)
        return NULL;
    if (d->file == DIR_FILE) {
        errno = EISDIR;
        return NULL;
    }
    return &files[d->file];
}

static int m_openat(int dirfd, const char *path, int flags, mode_t mode)
{
    if (dirfd == AT_FDCWD) {
        if (strcmp(path, MEMFS_DIR) != 0 && strcmp(path, "/") != 0) {
            errno = ENOENT;
            return -1;
        }
        return new_fd(DIR_FILE);
    }
    struct mfd *d = get_fd(dirfd);
    if (d == NULL)
        return -1;
    if (d->file != DIR_FILE) {
        errno = ENOTDIR;
        return -1;
    }
    int i = find(path);
    if (i < 0 && !(flags & O_CREAT)) {
        errno = ENOENT;
        return -1;
    }
    if (i < 0 && (i = new_file(path, true)) < 0)
        return -1;
    if (flags & O_TRUNC)
        files[i].len = 0;
    return new_fd(i);
}

static int m_close(int fd)
{
    struct mfd *d = get_fd(fd);
    if (d == NULL)
        return -1;
    int file = d->file;
    d->used = false;
    if (file >= 0) {
        files[file].refs--;
        file_maybe_free(file);
    }
    return 0;
}

static ssize_t m_pread(int fd, void *buf, size_t n, off_t off)
{
    struct mfile *f = get_file(fd);
    if (f == NULL)
        return -1;
    if (off < 0) {
        errno = EINVAL;
        return -1;
    }
    if ((uint64_t)off >= f->len)
        return 0;
    size_t k = f->len - (size_t)off < n ? f->len - (size_t)off : n;
    memcpy(buf, f->data + off, k);
    return (ssize_t)k;
}

static ssize_t m_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    struct mfile *f = get_file(fd);
    if (f == NULL)
        return -1;
    if (off < 0 || (uint64_t)off + n > (256u << 20)) {
        errno = off < 0 ? EINVAL : EFBIG;
        return -1;
    }
    if ((size_t)off + n > f->len && set_len(f, (size_t)off + n) != 0)
        return -1;
    memcpy(f->data + off, buf, n);
    return (ssize_t)n;
}

static int m_sync(int fd)
{
    return get_fd(fd) ? 0 : -1;
}

static int m_ftruncate(int fd, off_t len)
{
    struct mfile *f = get_file(fd);
    if (f == NULL)
        return -1;
    if (len < 0) {
        errno = EINVAL;
        return -1;
    }
    return set_len(f, (size_t)len);
}

/* Mode 0 only: the file grows to off + len if shorter (zeros). */
static int m_fallocate(int fd, int mode, off_t off, off_t len)
{
    struct mfile *f = get_file(fd);
    if (f == NULL)
        return -1;
    if (mode != 0 || off < 0 || len <= 0) {
        errno = mode != 0 ? EOPNOTSUPP : EINVAL;
        return -1;
    }
    size_t end = (size_t)off + (size_t)len;
    return end > f->len ? set_len(f, end) : 0;
}

static int m_fstat(int fd, struct stat *st)
{
    struct mfd *d = get_fd(fd);
    if (d == NULL)
        return -1;
    memset(st, 0, sizeof *st);
    if (d->file == DIR_FILE) {
        st->st_mode = S_IFDIR | 0700;
        return 0;
    }
    st->st_mode = S_IFREG | 0600;
    st->st_size = (off_t)files[d->file].len;
    st->st_ino = (ino_t)(d->file + 1);
    return 0;
}

static off_t m_lseek(int fd, off_t off, int whence)
{
    struct mfd *d = get_fd(fd);
    if (d == NULL)
        return -1;
    if (whence != SEEK_SET || off < 0) {
        errno = EINVAL;
        return -1;
    }
    d->pos = (uint64_t)off;
    return off;
}

static int m_dup(int fd)
{
    struct mfd *d = get_fd(fd);
    return d ? new_fd(d->file) : -1;
}

static int m_mkdir(const char *path, mode_t mode)
{
    errno = EEXIST;
    return -1;
}

static int m_renameat(int olddirfd, const char *oldname, int newdirfd,
                      const char *newname)
{
    int i = find(oldname);
    if (i < 0) {
        errno = ENOENT;
        return -1;
    }
    int j = find(newname);
    if (j == i)
        return 0;
    if (j >= 0) {
        files[j].named = false;
        file_maybe_free(j);
    }
    strcpy(files[i].name, newname);
    return 0;
}

static int m_unlinkat(int dirfd, const char *name, int flags)
{
    int i = find(name);
    if (i < 0) {
        errno = ENOENT;
        return -1;
    }
    files[i].named = false;
    file_maybe_free(i);
    return 0;
}

static int m_flock(int fd, int op)
{
    return get_fd(fd) ? 0 : -1;
}

static DIR *m_opendir(const char *path)
{
    if (strcmp(path, MEMFS_DIR) != 0) {
        errno = ENOENT;
        return NULL;
    }
    dir_iter.next = 0;
    return (DIR *)&dir_iter;
}

static struct dirent *m_readdir(DIR *d)
{
    while (dir_iter.next < MEMFS_FILES) {
        struct mfile *f = &files[dir_iter.next++];
        if (f->used && f->named) {
            memset(&dir_iter.ent, 0, sizeof dir_iter.ent);
            strcpy(dir_iter.ent.d_name, f->name);
            return &dir_iter.ent;
        }
    }
    return NULL;
}

static int m_closedir(DIR *d)
{
    return 0;
}

static int m_memfd_create(const char *name, unsigned flags)
{
    int i = new_file(name, false);
    return i < 0 ? -1 : new_fd(i);
}

static ssize_t m_getrandom(void *buf, size_t n, unsigned flags)
{
    uint8_t *p = buf;
    for (size_t i = 0; i < n; i++) {
        rnd = rnd * 6364136223846793005u + 1442695040888963407u;
        p[i] = (uint8_t)(rnd >> 56);
    }
    return (ssize_t)n;
}

/* Each reading moves the clock on by 300 ms: refreshes of the state file
 * come now and then, the same way in every run of an input. */
static int m_clock_gettime(clockid_t clk, struct timespec *ts)
{
    clock_ms += 300;
    ts->tv_sec = (time_t)(clock_ms / 1000);
    ts->tv_nsec = (long)(clock_ms % 1000) * 1000000;
    return 0;
}

static const struct stor_sys memfs_table = {
    .openat = m_openat,
    .close = m_close,
    .pread = m_pread,
    .pwrite = m_pwrite,
    .fdatasync = m_sync,
    .fsync = m_sync,
    .ftruncate = m_ftruncate,
    .fallocate = m_fallocate,
    .fstat = m_fstat,
    .lseek = m_lseek,
    .dup = m_dup,
    .mkdir = m_mkdir,
    .renameat = m_renameat,
    .unlinkat = m_unlinkat,
    .flock = m_flock,
    .opendir = m_opendir,
    .readdir = m_readdir,
    .closedir = m_closedir,
    .memfd_create = m_memfd_create,
    .getrandom = m_getrandom,
    .clock_gettime = m_clock_gettime,
};

const struct stor_sys *memfs_sys(void)
{
    return &memfs_table;
}
