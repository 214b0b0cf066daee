/* The value types' setup and the bucket bounds craftd's histograms share. */
#include "metrics/metrics.h"

#include <assert.h>
#include <string.h>

#define US 1000ull
#define MS 1000000ull
#define S 1000000000ull

const uint64_t metrics_latency_ns[METRICS_LATENCY_BOUNDS] = {
    10 * US,  50 * US,  100 * US, 250 * US, 500 * US, 1 * MS,
    2500 * US, 5 * MS,  10 * MS,  25 * MS,  50 * MS,  100 * MS,
    250 * MS, 500 * MS, 1 * S,    2500 * MS, 5 * S,   10 * S,
};

const uint64_t metrics_slow_ns[METRICS_SLOW_BOUNDS] = {
    10 * MS, 50 * MS, 100 * MS, 250 * MS, 500 * MS, 1 * S,
    2500 * MS, 5 * S, 10 * S,   30 * S,   60 * S,   120 * S,
};

const uint64_t metrics_loop_ns[METRICS_LOOP_BOUNDS] = {
    500 * US, 1 * MS,   2 * MS,   5 * MS, 10 * MS, 20 * MS, 50 * MS,
    100 * MS, 200 * MS, 500 * MS, 1 * S,  2 * S,   5 * S,   10 * S,
};

void metrics_hist_init(struct metrics_hist *h, const uint64_t *bounds, size_t n)
{
    assert(n <= METRICS_HIST_MAX);
    for (size_t i = 1; i < n; i++)
        assert(bounds[i - 1] < bounds[i] && "histogram bounds must ascend");
    memset(h, 0, sizeof *h);
    h->bounds = bounds;
    h->n_bounds = n;
}
