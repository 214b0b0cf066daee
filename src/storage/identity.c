/* The node's identity file, IDENTITY in the data directory: the cluster id,
 * the incarnation of the directory and what the node learned about its own
 * membership. Kept apart from the log: it is small, rewritten whole, and
 * read before the node knows its Raft id.
 *
 * Format (little-endian), 56 bytes:
 *    0  8  magic "CRAFTID\0"
 *    8  4  version 1
 *   12  4  flags     STOR_IDENT_* bits; unknown bits are refused
 *   16  8  cluster_id
 *   24  8  incarnation
 *   32  8  removed_index
 *   40  8  conflict_cluster
 *   48  4  CRC32C of bytes 0..47
 *   52  4  zero
 * A file of another size, a bad magic or CRC, or nonzero padding is
 * CRAFT_ECORRUPT; another version is CRAFT_EVERSION.
 *
 * Writing: the whole file goes to tmp-identity (created, truncated), which
 * is fdatasync'd, closed and renamed over IDENTITY; then the directory is
 * fsync'd. A crash at any point leaves either the old file or the new one:
 * the rename is atomic, and the directory fsync makes it survive a power
 * loss (without it the new name may vanish while the old file is gone). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/endian.h"
#include "common/error.h"
#include "storage/storage.h"

#define MAGIC "CRAFTID"  /* with its NUL: 8 bytes */
#define VERSION 1
#define SIZE STOR_IDENTITY_SIZE
#define TMP_NAME "tmp-identity"
#define ALL_FLAGS (STOR_IDENT_REMOVED | STOR_IDENT_CONFLICT | STOR_IDENT_FOUNDER)

static int err_of(int errnum)
{
    switch (errnum) {
    case 0:
    case EIO:
        return CRAFT_EIO;
    case ENOSPC:
    case EDQUOT:
        return CRAFT_ENOSPACE;
    case ENOMEM:
        return CRAFT_ENOMEM;
    default:
        return -errnum;
    }
}

void stor_identity_encode(const struct stor_identity *id, uint8_t out[SIZE])
{
    memset(out, 0, SIZE);
    memcpy(out, MAGIC, 8);
    craft_put32(out + 8, VERSION);
    craft_put32(out + 12, id->flags);
    craft_put64(out + 16, id->cluster_id);
    craft_put64(out + 24, id->incarnation);
    craft_put64(out + 32, id->removed_index);
    craft_put64(out + 40, id->conflict_cluster);
    craft_put32(out + 48, crc32c(0, out, 48));
}

int stor_identity_decode(const uint8_t *in, size_t len, struct stor_identity *id)
{
    memset(id, 0, sizeof *id);
    if (len != SIZE || memcmp(in, MAGIC, 8) != 0 ||
        craft_get32(in + 48) != crc32c(0, in, 48) || craft_get32(in + 52) != 0)
        return CRAFT_ECORRUPT;
    if (craft_get32(in + 8) != VERSION)
        return CRAFT_EVERSION;
    uint32_t flags = craft_get32(in + 12);
    if (flags & ~ALL_FLAGS)
        return CRAFT_ECORRUPT;
    id->flags = flags;
    id->cluster_id = craft_get64(in + 16);
    id->incarnation = craft_get64(in + 24);
    id->removed_index = craft_get64(in + 32);
    id->conflict_cluster = craft_get64(in + 40);
    return 0;
}

static const struct stor_sys *sys_or_default(const struct stor_sys *sys)
{
    return sys ? sys : stor_sys_default();
}

int stor_identity_load(const char *dir, const struct stor_sys *sys,
                       struct stor_identity *out)
{
    sys = sys_or_default(sys);
    memset(out, 0, sizeof *out);
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, STOR_IDENTITY_FILE) >=
        (int)sizeof path)
        return CRAFT_EINVAL;
    errno = 0;
    int fd = sys->openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return errno == ENOENT ? CRAFT_ENOTFOUND : err_of(errno);
    /* One byte more than the format, to see a file that is too long. */
    uint8_t buf[SIZE + 1];
    size_t got = 0;
    int rv = 0;
    while (got < sizeof buf) {
        errno = 0;
        ssize_t n = sys->pread(fd, buf + got, sizeof buf - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rv = err_of(errno);
            break;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    sys->close(fd);
    if (rv)
        return rv;
    return stor_identity_decode(buf, got, out);
}

int stor_identity_save(const char *dir, const struct stor_sys *sys,
                       const struct stor_identity *id)
{
    sys = sys_or_default(sys);
    uint8_t buf[SIZE];
    stor_identity_encode(id, buf);
    errno = 0;
    int dfd = sys->openat(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (dfd < 0)
        return err_of(errno);
    int rv = 0;
    errno = 0;
    int fd = sys->openat(dfd, TMP_NAME, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                         0600);
    if (fd < 0) {
        rv = err_of(errno);
        sys->close(dfd);
        return rv;
    }
    size_t done = 0;
    while (rv == 0 && done < SIZE) {
        errno = 0;
        ssize_t n = sys->pwrite(fd, buf + done, SIZE - done, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            rv = n < 0 ? err_of(errno) : CRAFT_EIO;
        else
            done += (size_t)n;
    }
    /* The data must be on disk before the rename makes it the identity:
     * else a crash could leave IDENTITY naming an empty or partial file. */
    if (rv == 0) {
        errno = 0;
        if (sys->fdatasync(fd) != 0)
            rv = err_of(errno);
    }
    sys->close(fd);
    if (rv == 0) {
        errno = 0;
        if (sys->renameat(dfd, TMP_NAME, dfd, STOR_IDENTITY_FILE) != 0)
            rv = err_of(errno);
    }
    /* The rename is durable only once the directory is. */
    if (rv == 0) {
        errno = 0;
        if (sys->fsync(dfd) != 0)
            rv = err_of(errno);
    }
    if (rv != 0)
        (void)sys->unlinkat(dfd, TMP_NAME, 0); /* best effort */
    sys->close(dfd);
    return rv;
}

int stor_random_id(const struct stor_sys *sys, uint64_t *out)
{
    sys = sys_or_default(sys);
    uint64_t v = 0;
    for (int tries = 0; v == 0; tries++) {
        if (tries == 8)
            return CRAFT_EIO; /* a source that only gives zeros is broken */
        uint8_t b[8];
        size_t got = 0;
        while (got < sizeof b) {
            errno = 0;
            ssize_t n = sys->getrandom(b + got, sizeof b - got, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return n < 0 ? err_of(errno) : CRAFT_EIO;
            got += (size_t)n;
        }
        v = craft_get64(b);
    }
    *out = v;
    return 0;
}
