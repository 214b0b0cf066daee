/* Logging for every craftd module: a caller-supplied sink, no global logger.
 *
 * A module that logs takes a `const struct craft_logger *` (NULL: silent).
 * The daemon's sink writes "time level node-id message" lines to stderr. */
#ifndef CRAFT_LOG_H
#define CRAFT_LOG_H

enum craft_log_level {
    CRAFT_LOG_DEBUG = 0,
    CRAFT_LOG_INFO,
    CRAFT_LOG_WARN,
    CRAFT_LOG_ERROR,
};

struct craft_logger {
    void (*fn)(void *ud, int level, const char *msg); /* msg has no newline */
    void *ud;
    int min_level; /* messages below this level are not formatted */
};

void craft_log(const struct craft_logger *lg, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *craft_log_level_name(int level);

#define CRAFT_DEBUG(lg, ...) craft_log(lg, CRAFT_LOG_DEBUG, __VA_ARGS__)
#define CRAFT_INFO(lg, ...) craft_log(lg, CRAFT_LOG_INFO, __VA_ARGS__)
#define CRAFT_WARN(lg, ...) craft_log(lg, CRAFT_LOG_WARN, __VA_ARGS__)
#define CRAFT_ERROR(lg, ...) craft_log(lg, CRAFT_LOG_ERROR, __VA_ARGS__)

#endif
