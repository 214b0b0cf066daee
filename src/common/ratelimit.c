/* Token bucket for log lines (see ratelimit.h). */
#include "common/ratelimit.h"

#include <stddef.h>

void craft_ratelimit_init(struct craft_ratelimit *rl, uint64_t period_ms, unsigned burst)
{
    rl->period_ms = period_ms ? period_ms : 1;
    rl->burst = burst ? burst : 1;
    rl->tokens = rl->burst;
    rl->refilled_at = 0;
    rl->suppressed = 0;
    rl->started = false;
}

bool craft_ratelimit_allow(struct craft_ratelimit *rl, uint64_t now_ms, uint64_t *suppressed)
{
    if (!rl->started) {
        rl->started = true;
        rl->refilled_at = now_ms;
    }
    if (now_ms > rl->refilled_at) {
        uint64_t add = (now_ms - rl->refilled_at) / rl->period_ms;
        if (add >= rl->burst - rl->tokens) {
            rl->tokens = rl->burst;
            rl->refilled_at = now_ms;
        } else if (add > 0) {
            rl->tokens += (unsigned)add;
            rl->refilled_at += add * rl->period_ms;
        }
    }
    if (rl->tokens == 0) {
        rl->suppressed++;
        return false;
    }
    rl->tokens--;
    if (suppressed != NULL)
        *suppressed = rl->suppressed;
    rl->suppressed = 0;
    return true;
}
