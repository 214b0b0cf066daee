/* Strings for craftd's error codes (see error.h) and for negative errnos. */
#include "common/error.h"

#include <string.h>

const char *craft_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define CRAFT__STR(name, str) case CRAFT_E##name: return str;
        CRAFT_ERRORS(CRAFT__STR)
#undef CRAFT__STR
    default:
        break;
    }
    if (err < 0 && err > CRAFT__FIRST)
        return strerror(-err);
    return "unknown error";
}

const char *craft_errname(int err)
{
    switch (err) {
    case 0:
        return "OK";
#define CRAFT__NAME(name, str) case CRAFT_E##name: return "CRAFT_E" #name;
        CRAFT_ERRORS(CRAFT__NAME)
#undef CRAFT__NAME
    default:
        break;
    }
    if (err < 0 && err > CRAFT__FIRST) {
        const char *s = strerrorname_np(-err);
        if (s)
            return s;
    }
    return "EUNKNOWN";
}
