/* A counting allocator for unit tests that can be told to fail: installed
 * by count_alloc_setup, checked for leaks by count_alloc_teardown (cmocka
 * setup/teardown functions). Test-only process state. */
#ifndef CRAFT_TEST_COUNT_ALLOC_H
#define CRAFT_TEST_COUNT_ALLOC_H

extern long count_alloc_live;      /* blocks allocated, not yet freed */
extern long count_alloc_countdown; /* >0: the allocation taking it to 0 fails */
extern long count_alloc_maps;      /* craft_map calls, failed ones too */

int count_alloc_setup(void **state);
int count_alloc_teardown(void **state); /* asserts nothing leaked */

#endif
