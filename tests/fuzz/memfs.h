/* An in-memory file system behind the storage syscall table (struct
 * stor_sys), for the fuzz targets and their seed generator: one data
 * directory of at most MEMFS_FILES files, no real I/O, so that one
 * stor_open costs microseconds. Files are plain byte arrays; syncs do
 * nothing (everything written is "durable"); the clock stands still.
 * State is static: one memfs per process, used by one thread. */
#ifndef CRAFT_FUZZ_MEMFS_H
#define CRAFT_FUZZ_MEMFS_H

#include <stddef.h>
#include <stdint.h>

#include "storage/storage.h"

#define MEMFS_DIR "/memfs"
#define MEMFS_FILES 24

/* The syscall table over the memfs (static, read-only). */
const struct stor_sys *memfs_sys(void);

/* Forget every file and descriptor; the clock and the random numbers
 * start again. */
void memfs_reset(void);
/* The fuzz input format: the directory as a sequence of files, each
 * [u8 name length (mod 64)][name][u32 data length, little-endian][data].
 * load: reset, then create what in describes (a short last file is cut;
 * names with '/' are skipped). dump: write the directory so (0 if cap is
 * too small). */
void memfs_load(const uint8_t *in, size_t len);
size_t memfs_dump(uint8_t *out, size_t cap);
/* Create (or replace) a file in the directory with these bytes. */
void memfs_put(const char *name, const uint8_t *data, size_t len);
/* The i-th file in the directory (0 ..): its name, bytes and length;
 * 0 when there is none. Pointers are valid until the next memfs call. */
int memfs_file(size_t i, const char **name, const uint8_t **data,
               size_t *len);
/* Open descriptors (for leak checks: 0 after every stor_close). */
size_t memfs_open_fds(void);

#endif
