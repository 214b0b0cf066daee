/* Formats a log message and hands it to the caller's sink (see log.h). */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>

void craft_log(const struct craft_logger *lg, int level, const char *fmt, ...)
{
    if (lg == NULL || lg->fn == NULL || level < lg->min_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lg->fn(lg->ud, level, msg);
}

const char *craft_log_level_name(int level)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    if (level < CRAFT_LOG_DEBUG || level > CRAFT_LOG_ERROR)
        return "?";
    return names[level];
}
