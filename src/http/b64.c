/* Base64 (RFC 4648, standard alphabet, padded): decoding the "key_b64"
 * and "value_b64" fields of request bodies, encoding those of answers. */
#include "http/kvreq.h"

size_t http__b64_encode(char *dst, const void *src, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = src;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t g = (uint32_t)p[i] << 16;
        if (i + 1 < len)
            g |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < len)
            g |= p[i + 2];
        dst[o++] = tab[g >> 18 & 63];
        dst[o++] = tab[g >> 12 & 63];
        dst[o++] = i + 1 < len ? tab[g >> 6 & 63] : '=';
        dst[o++] = i + 2 < len ? tab[g & 63] : '=';
    }
    return o;
}

static int sextet(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long http__b64_decode(uint8_t *dst, const char *src, size_t len)
{
    if (len % 4 != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        bool last = i + 4 == len;
        size_t pad = 0;
        if (last && src[i + 3] == '=')
            pad = src[i + 2] == '=' ? 2 : 1;
        uint32_t v = 0;
        for (size_t k = 0; k < 4 - pad; k++) {
            int s = sextet(src[i + k]);
            if (s < 0)
                return -1;
            v |= (uint32_t)s << (18 - 6 * k);
        }
        /* the bits a padded quantum leaves unused must be zero */
        if ((pad == 1 && (v & 0xff)) || (pad == 2 && (v & 0xffff)))
            return -1;
        dst[o++] = (uint8_t)(v >> 16);
        if (pad < 2)
            dst[o++] = (uint8_t)(v >> 8);
        if (pad < 1)
            dst[o++] = (uint8_t)v;
    }
    return (long)o;
}
