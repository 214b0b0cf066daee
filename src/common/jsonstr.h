/* JSON strings as text (jsonstr.c): UTF-8 validation and quoting. */
#ifndef CRAFT_JSONSTR_H
#define CRAFT_JSONSTR_H

#include <stdbool.h>
#include <stddef.h>

/* Whether s holds valid UTF-8 only (no overlong forms, no surrogates,
 * nothing above U+10FFFF). */
bool craft_utf8_valid(const char *s, size_t len);

/* The most bytes craft_json_quote writes for len input bytes. */
#define CRAFT_JSON_QUOTED_MAX(len) (6 * (len) + 2)

/* Writes s as a quoted JSON string to dst (room for
 * CRAFT_JSON_QUOTED_MAX(len)); control characters escaped, invalid UTF-8
 * as \ufffd. Returns the bytes written. */
size_t craft_json_quote(char *dst, const char *s, size_t len);

#endif
