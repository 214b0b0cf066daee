/* Parsing of the /proc files behind the process_* families (proc(5)):
 * /proc/self/stat, whose second field (the command name, in parentheses)
 * may itself hold spaces and parentheses, and the btime line of
 * /proc/stat. The files are read by the caller. */
#include "metrics/metrics.h"

#include <stdlib.h>
#include <string.h>

/* The unsigned decimal at *p (advanced past it and one space). */
static int field(const char **p, const char *end, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    if (s >= end || *s < '0' || *s > '9')
        return -1;
    for (; s < end && *s >= '0' && *s <= '9'; s++) {
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (s < end && *s == ' ')
        s++;
    *p = s;
    *out = v;
    return 0;
}

/* Skip one space-separated field (which may be negative or a letter). */
static int skip(const char **p, const char *end)
{
    const char *s = *p;
    if (s >= end || *s == ' ')
        return -1;
    while (s < end && *s != ' ' && *s != '\n')
        s++;
    if (s < end && *s == ' ')
        s++;
    *p = s;
    return 0;
}

int metrics_proc_parse_stat(const char *text, size_t len, struct metrics_proc_stat *out)
{
    const char *end = text + len;
    const char *rp = NULL; /* the last ')': the command name ends there */
    for (const char *s = text; s < end; s++)
        if (*s == ')')
            rp = s;
    if (rp == NULL || rp + 2 > end || rp[1] != ' ')
        return -1;
    const char *p = rp + 2;
    /* Fields 3 (state) to 24 (rss); numbered as in proc(5). */
    uint64_t v[25] = {0};
    for (int k = 3; k <= 24; k++) {
        bool want = k == 14 || k == 15 || k == 22 || k == 23 || k == 24;
        if (want ? field(&p, end, &v[k]) != 0 : skip(&p, end) != 0)
            return -1;
    }
    out->utime = v[14];
    out->stime = v[15];
    out->starttime = v[22];
    out->vsize = v[23];
    out->rss = v[24];
    return 0;
}

int metrics_proc_parse_btime(const char *text, size_t len, uint64_t *btime)
{
    const char *end = text + len;
    for (const char *s = text; s < end;) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *eol = nl ? nl : end;
        if (eol - s > 6 && memcmp(s, "btime ", 6) == 0) {
            const char *p = s + 6;
            return field(&p, eol, btime) == 0 && p == eol ? 0 : -1;
        }
        s = nl ? nl + 1 : end;
    }
    return -1;
}
