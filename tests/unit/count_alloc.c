/* The counting, failing allocator shared by the unit tests (count_alloc.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "unit/count_alloc.h"

long count_alloc_live;
long count_alloc_countdown;
long count_alloc_maps;

static int should_fail(void)
{
    return count_alloc_countdown > 0 && --count_alloc_countdown == 0;
}

static void *count_malloc(size_t size)
{
    if (should_fail())
        return NULL;
    void *p = malloc(size);
    if (p)
        count_alloc_live++;
    return p;
}

static void *count_realloc(void *ptr, size_t size)
{
    if (should_fail())
        return NULL;
    void *p = realloc(ptr, size);
    if (p && !ptr)
        count_alloc_live++;
    return p;
}

static void count_free(void *ptr)
{
    if (ptr)
        count_alloc_live--;
    free(ptr);
}

static void *count_map(size_t size)
{
    count_alloc_maps++;
    if (should_fail())
        return NULL;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    count_alloc_live++;
    return p;
}

static void count_unmap(void *p, size_t size)
{
    count_alloc_live--;
    assert_int_equal(munmap(p, size), 0);
}

static const struct craft_allocator counting = {
    count_malloc, count_realloc, count_free, count_map, count_unmap};

int count_alloc_setup(void **state)
{
    (void)state;
    count_alloc_live = 0;
    count_alloc_countdown = 0;
    count_alloc_maps = 0;
    craft_set_allocator(&counting);
    return 0;
}

int count_alloc_teardown(void **state)
{
    (void)state;
    craft_set_allocator(NULL);
    assert_int_equal(count_alloc_live, 0); /* everything freed */
    return 0;
}
