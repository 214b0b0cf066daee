/* The replaceable allocator behind craft_malloc and friends. */
#include "common/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static void *default_map(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void default_unmap(void *p, size_t size)
{
    (void)munmap(p, size); /* fails only for a bad range: a caller's bug */
}

#define LIBC_ALLOCATOR {malloc, realloc, free, default_map, default_unmap}

static struct craft_allocator craft__alloc = LIBC_ALLOCATOR;

void craft_set_allocator(const struct craft_allocator *a)
{
    static const struct craft_allocator libc = LIBC_ALLOCATOR;
    craft__alloc = a ? *a : libc;
    if (craft__alloc.map == NULL || craft__alloc.unmap == NULL) {
        craft__alloc.map = default_map;
        craft__alloc.unmap = default_unmap;
    }
}

void *craft_malloc(size_t size)
{
    return craft__alloc.malloc(size ? size : 1);
}

void *craft_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = craft_malloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void *craft_realloc(void *ptr, size_t size)
{
    return craft__alloc.realloc(ptr, size ? size : 1);
}

void craft_free(void *ptr)
{
    if (ptr)
        craft__alloc.free(ptr);
}

void *craft_map(size_t size)
{
    return craft__alloc.map(size ? size : 1);
}

void craft_unmap(void *p, size_t size)
{
    if (p)
        craft__alloc.unmap(p, size ? size : 1);
}

void *craft_memdup(const void *p, size_t len)
{
    void *q = craft_malloc(len);
    if (q && len)
        memcpy(q, p, len);
    return q;
}
