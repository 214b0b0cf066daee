/* The replaceable allocator behind craft_malloc and friends. */
#include "common/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static struct craft_allocator craft__alloc = {malloc, realloc, free};

void craft_set_allocator(const struct craft_allocator *a)
{
    if (a == NULL) {
        craft__alloc.malloc = malloc;
        craft__alloc.realloc = realloc;
        craft__alloc.free = free;
    } else {
        craft__alloc = *a;
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

void *craft_memdup(const void *p, size_t len)
{
    void *q = craft_malloc(len);
    if (q && len)
        memcpy(q, p, len);
    return q;
}
