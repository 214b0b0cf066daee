/* The naming rules of metric families (Prometheus' data model and the
 * conventions promtool checks): valid names, the _total suffix of counters
 * and only of counters, no reserved histogram suffixes elsewhere, no name
 * twice, a help text on one line. */
#include "metrics/metrics.h"

#include <stdio.h>
#include <string.h>

static bool name_char(char c, bool first, bool label_name)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')
        return true;
    if (c == ':')
        return !label_name;
    return !first && c >= '0' && c <= '9';
}

bool metrics_name_valid(const char *s, bool label_name)
{
    if (s == NULL || s[0] == 0)
        return false;
    if (label_name && strncmp(s, "__", 2) == 0)
        return false; /* reserved for Prometheus' own labels */
    for (size_t i = 0; s[i]; i++)
        if (!name_char(s[i], i == 0, label_name))
            return false;
    return true;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The problem with family f, or NULL. */
static const char *family_problem(const struct metrics_family *f, const char *prefix)
{
    if (!metrics_name_valid(f->name, false))
        return "not a valid metric name";
    if (prefix != NULL && strncmp(f->name, prefix, strlen(prefix)) != 0)
        return "does not start with the prefix";
    if (f->type < METRICS_COUNTER || f->type > METRICS_HISTOGRAM)
        return "unknown type";
    bool total = ends_with(f->name, "_total");
    if (f->type == METRICS_COUNTER && !total)
        return "a counter's name must end in _total";
    if (f->type != METRICS_COUNTER && total)
        return "only a counter's name may end in _total";
    if (ends_with(f->name, "_bucket") || ends_with(f->name, "_sum") ||
        ends_with(f->name, "_count"))
        return "_bucket, _sum and _count are a histogram's sample suffixes";
    if (f->help == NULL || f->help[0] == 0)
        return "no help text";
    if (strchr(f->help, '\n') != NULL)
        return "a newline in the help text";
    return NULL;
}

int metrics_registry_check(const struct metrics_family *f, size_t n, const char *prefix,
                           char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        const char *why = family_problem(&f[i], prefix);
        for (size_t j = 0; why == NULL && j < i; j++)
            if (strcmp(f[i].name, f[j].name) == 0)
                why = "given twice";
        if (why != NULL) {
            snprintf(err, errlen, "metric family %s: %s", f[i].name ? f[i].name : "(null)", why);
            return -1;
        }
    }
    if (errlen > 0)
        err[0] = 0;
    return 0;
}
