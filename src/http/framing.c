/* The request smuggling guard (http__check_framing, see parse.h): a scan of
 * the raw request head that h2o parsed, for the framing headers h2o 2.2
 * accepts ambiguously. Pure: no h2o, no I/O. */
#include "http/parse.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool name_is(const char *p, size_t len, const char *want)
{
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    return len == strlen(want) && strncasecmp(p, want, len) == 0;
}

int http__check_framing(const char *buf, size_t len, char *err, size_t errcap)
{
    const char *end = buf + len;
    const char *p = memchr(buf, '\n', len); /* past the request line */
    unsigned n_cl = 0, n_te = 0;
    while (p != NULL && ++p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            return 0; /* the head goes on past what we have: h2o had all of it */
        size_t llen = (size_t)(eol - p);
        if (llen > 0 && p[llen - 1] == '\r')
            llen--;
        if (llen == 0)
            break; /* the empty line: end of the head */
        if (p[0] == ' ' || p[0] == '\t') {
            snprintf(err, errcap, "obsolete line folding in the request headers");
            return -1;
        }
        const char *colon = memchr(p, ':', llen);
        if (colon != NULL) {
            size_t nlen = (size_t)(colon - p);
            if (name_is(p, nlen, "content-length"))
                n_cl++;
            else if (name_is(p, nlen, "transfer-encoding"))
                n_te++;
        }
        p = eol;
    }
    if (n_cl > 1) {
        snprintf(err, errcap, "more than one Content-Length header");
        return -1;
    }
    if (n_te > 1) {
        snprintf(err, errcap, "more than one Transfer-Encoding header");
        return -1;
    }
    if (n_cl > 0 && n_te > 0) {
        snprintf(err, errcap, "both Content-Length and Transfer-Encoding");
        return -1;
    }
    return 0;
}
