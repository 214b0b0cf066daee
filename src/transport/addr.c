/* Parsing of "host:port" addresses, shared by the transport, the HTTP layer
 * and main. Pure string work: no resolution, no allocation. */
#include <string.h>

#include "common/error.h"
#include "transport/transport.h"

/* Parse a decimal port 0..65535 from s[0..len); digits only. */
static int parse_port(const char *s, size_t len, uint16_t *port)
{
    if (len == 0 || len > 5)
        return CRAFT_EINVAL;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return CRAFT_EINVAL;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return CRAFT_EINVAL;
    *port = (uint16_t)v;
    return 0;
}

int peer_parse_addr(const char *addr, char *host, size_t hostlen,
                    uint16_t *port)
{
    if (addr == NULL || host == NULL || hostlen == 0 || port == NULL)
        return CRAFT_EINVAL;
    const char *hbeg = addr;
    const char *hend;
    const char *colon;
    if (addr[0] == '[') { /* "[v6]:port" */
        hbeg = addr + 1;
        hend = strchr(hbeg, ']');
        if (hend == NULL || hend == hbeg || hend[1] != ':')
            return CRAFT_EINVAL;
        colon = hend + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL)
            return CRAFT_EINVAL;
        hend = colon;
        if (memchr(addr, ':', (size_t)(colon - addr)) != NULL)
            return CRAFT_EINVAL; /* bare IPv6 needs brackets */
    }
    size_t hlen = (size_t)(hend - hbeg);
    int err = parse_port(colon + 1, strlen(colon + 1), port);
    if (err)
        return err;
    if (hlen >= hostlen)
        return CRAFT_ETOOBIG;
    memcpy(host, hbeg, hlen);
    host[hlen] = '\0';
    return 0;
}
