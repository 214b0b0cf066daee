/* A rate limit for log lines an outsider can trigger (a refused connection,
 * a smuggling attempt, a bad peer): at most `burst` lines, refilled at one
 * line per `period_ms`; the lines held back are counted, and the next line
 * let through says how many were suppressed.
 *
 * Pure: the caller passes the time (any monotonic milliseconds, e.g.
 * uv_now()), nothing is allocated, no global state. One struct per kind of
 * message, owned by whoever logs it; not thread-safe (one loop thread).
 *
 * Use:
 *     struct craft_ratelimit rl;
 *     craft_ratelimit_init(&rl, 5000, 3);      // 3 lines, then 1 per 5 s
 *     uint64_t dropped;
 *     if (craft_ratelimit_allow(&rl, uv_now(loop), &dropped))
 *         CRAFT_WARN(log, "refused ... (%" PRIu64 " similar suppressed)", dropped);
 */
#ifndef CRAFT_RATELIMIT_H
#define CRAFT_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct craft_ratelimit {
    uint64_t period_ms;  /* one token back per period */
    unsigned burst;      /* tokens at most */
    unsigned tokens;
    uint64_t refilled_at; /* when the last token was added (ms) */
    uint64_t suppressed;  /* lines held back since the last one let through */
    bool started;
};

/* period_ms >= 1 and burst >= 1 (0 is taken as 1). Starts full. */
void craft_ratelimit_init(struct craft_ratelimit *rl, uint64_t period_ms, unsigned burst);

/* True if a line may be logged at now_ms; then *suppressed (may be NULL)
 * gets how many were held back since the previous line let through, and the
 * count restarts. False: the line is counted as suppressed. Time going
 * backwards is taken as no time passing. */
bool craft_ratelimit_allow(struct craft_ratelimit *rl, uint64_t now_ms, uint64_t *suppressed);

#endif
