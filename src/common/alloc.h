/* The allocator every craftd module goes through.
 *
 * Tests replace it (craft_set_allocator) to make allocation fail on purpose
 * and to count leaks. The replaceable table is the one piece of process-wide
 * state outside main(); it is set once, before any other call, as with
 * uv_replace_allocator(). */
#ifndef CRAFT_ALLOC_H
#define CRAFT_ALLOC_H

#include <stddef.h>

struct craft_allocator {
    void *(*malloc)(size_t size);
    void *(*realloc)(void *ptr, size_t size);
    void (*free)(void *ptr);
    /* Large zeroed blocks of whole pages, which their owner may give back
     * to the kernel piece by piece (madvise MADV_DONTNEED: they read as
     * zero again) and which a fork shares copy-on-write: anonymous mmap.
     * NULL, both: the default. */
    void *(*map)(size_t size);
    void (*unmap)(void *p, size_t size);
};

/* Install a (NULL = the libc) allocator. Not thread-safe: call before use. */
void craft_set_allocator(const struct craft_allocator *a);

void *craft_malloc(size_t size);
void *craft_calloc(size_t n, size_t size); /* zeroed; NULL on overflow */
void *craft_realloc(void *ptr, size_t size);
void craft_free(void *ptr);
/* size bytes of zeroed pages (see map above), NULL on failure; unmap with
 * the same size (p NULL: nothing). */
void *craft_map(size_t size);
void craft_unmap(void *p, size_t size);
/* A malloc'd copy of len bytes (len may be 0: returns a valid 1-byte block). */
void *craft_memdup(const void *p, size_t len);

#endif
