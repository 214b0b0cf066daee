/* The role each route of the HTTP API needs (docs/security.md has the same
 * table), and the HTTP Basic credentials format (RFC 7617, strict base64). */
#include "auth/auth.h"

#include <string.h>
#include <strings.h>

static bool is(const char *s, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(s, want, len) == 0;
}

/* path is want, or want followed by '/' and more. */
static bool under(const char *p, size_t len, const char *want)
{
    size_t w = strlen(want);
    return len >= w && memcmp(p, want, w) == 0 && (len == w || p[w] == '/');
}

enum auth_role auth_route_role(const char *method, size_t mlen, const char *path, size_t plen)
{
    bool read = is(method, mlen, "GET") || is(method, mlen, "HEAD");
    if (is(path, plen, "/livez") || is(path, plen, "/readyz"))
        return AUTH_OPEN;
    if (is(path, plen, "/join") || is(path, plen, "/remove") || is(path, plen, "/transfer") ||
        is(path, plen, "/backup") || is(path, plen, "/metrics"))
        return AUTH_ADMIN;
    if (under(path, plen, "/key") || is(path, plen, "/keys") || is(path, plen, "/txn") ||
        under(path, plen, "/lease") || is(path, plen, "/leases"))
        return read ? AUTH_READ : AUTH_WRITE;
    /* /status, /watch, and anything unknown (answered 404 or 405 once the
     * caller is known): read. */
    return AUTH_READ;
}

const char *auth_role_name(int role)
{
    switch (role) {
    case AUTH_OPEN: return "open";
    case AUTH_READ: return "read";
    case AUTH_WRITE: return "write";
    case AUTH_ADMIN: return "admin";
    }
    return "?";
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_val(char c)
{
    const char *p = c ? strchr(B64, c) : NULL;
    return p ? (int)(p - B64) : -1;
}

/* Strict: length a multiple of 4, '=' only as the last one or two
 * characters, and the unused bits of the last group zero (so each byte
 * string has one encoding). Returns the decoded length or -1. */
static long b64_decode(const char *in, size_t len, char *out, size_t cap)
{
    if (len == 0 || len % 4 != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        bool last = i + 4 == len;
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            char c = in[i + k];
            if (c == '=' && last && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad > 0 || (v[k] = b64_val(c)) < 0)
                return -1;
        }
        unsigned g = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 | (unsigned)v[3];
        if ((pad == 1 && (g & 0xff)) || (pad == 2 && (g & 0xffff)))
            return -1;
        size_t n = 3 - (size_t)pad;
        if (o + n > cap)
            return -1;
        out[o++] = (char)(g >> 16);
        if (n > 1)
            out[o++] = (char)(g >> 8);
        if (n > 2)
            out[o++] = (char)g;
    }
    return (long)o;
}

int auth_parse_basic(const char *hdr, size_t len, char *buf, size_t cap, const char **user,
                     size_t *ulen, const char **pass, size_t *plen)
{
    if (len < 6 || strncasecmp(hdr, "Basic ", 6) != 0)
        return -1;
    size_t i = 6;
    while (i < len && hdr[i] == ' ')
        i++;
    size_t end = len;
    while (end > i && hdr[end - 1] == ' ')
        end--;
    long n = b64_decode(hdr + i, end - i, buf, cap);
    if (n <= 0)
        return -1;
    const char *colon = memchr(buf, ':', (size_t)n);
    if (colon == NULL || colon == buf)
        return -1;
    *user = buf;
    *ulen = (size_t)(colon - buf);
    *pass = colon + 1;
    *plen = (size_t)n - *ulen - 1;
    return 0;
}

int auth_basic_header(const char *cred, char *out, size_t cap)
{
    size_t len = strlen(cred);
    size_t need = 6 + (len + 2) / 3 * 4 + 1;
    if (need > cap)
        return -1;
    memcpy(out, "Basic ", 6);
    size_t o = 6;
    for (size_t i = 0; i < len; i += 3) {
        unsigned g = (unsigned)(unsigned char)cred[i] << 16;
        if (i + 1 < len)
            g |= (unsigned)(unsigned char)cred[i + 1] << 8;
        if (i + 2 < len)
            g |= (unsigned char)cred[i + 2];
        out[o++] = B64[g >> 18 & 63];
        out[o++] = B64[g >> 12 & 63];
        out[o++] = i + 1 < len ? B64[g >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? B64[g & 63] : '=';
    }
    out[o] = 0;
    return 0;
}
