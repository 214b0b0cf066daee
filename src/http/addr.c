/* The listening address: "host:port" parsed, resolved and turned into a bound,
 * listening, non-blocking socket (plain syscalls, so a failure leaves no uv
 * handle behind to close). */
#include "http/internal.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"

#define HTTP__BACKLOG 1024

int http__split_hostport(const char *s, char *hostbuf, size_t hostcap, unsigned *port)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL)
        return CRAFT_EINVAL;
    const char *h = s;
    size_t hlen = (size_t)(colon - s);
    if (hlen > 0 && h[0] == '[') {
        if (hlen < 2 || h[hlen - 1] != ']')
            return CRAFT_EINVAL;
        h++;
        hlen -= 2;
    } else if (memchr(h, ':', hlen) != NULL || memchr(h, ']', hlen) != NULL) {
        return CRAFT_EINVAL; /* a bare IPv6 address needs brackets */
    }
    if (hlen >= hostcap)
        return CRAFT_EINVAL;
    const char *p = colon + 1;
    if (*p < '0' || *p > '9')
        return CRAFT_EINVAL;
    char *end;
    unsigned long v = strtoul(p, &end, 10);
    if (*end != '\0' || v > 65535)
        return CRAFT_EINVAL;
    memcpy(hostbuf, h, hlen);
    hostbuf[hlen] = '\0';
    *port = (unsigned)v;
    return 0;
}

/* A bound, listening socket on sa, or a negative errno. */
static int listen_on(const struct sockaddr *sa, socklen_t salen, bool dual_stack)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1, zero = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (dual_stack && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) != 0) ||
        bind(fd, sa, salen) != 0 || listen(fd, HTTP__BACKLOG) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

/* Every interface: IPv6 with IPv4 mapped in (as Go does), else IPv4 only. */
static int listen_any(unsigned port)
{
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port),
                              .sin6_addr = in6addr_any};
    int fd = listen_on((struct sockaddr *)&a6, sizeof a6, true);
    if (fd >= 0 || fd == -EADDRINUSE || fd == -EACCES)
        return fd;
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_ANY)};
    return listen_on((struct sockaddr *)&a4, sizeof a4, false);
}

/* One of the host's addresses, IPv4 first (Go's net.Listen listens on at
 * most one address of a name, preferring IPv4). */
static int listen_host(const char *host, unsigned port, const struct craft_logger *log)
{
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        CRAFT_ERROR(log, "http: cannot resolve %s: %s", host, gai_strerror(rc));
        return rc == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;
    }
    const struct addrinfo *pick = res;
    for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            pick = ai;
            break;
        }
    }
    int fd = listen_on(pick->ai_addr, pick->ai_addrlen, false);
    freeaddrinfo(res);
    return fd;
}

int http__listen_fd(const char *addr, const struct craft_logger *log, int *port)
{
    char host[256];
    unsigned p;
    if (addr == NULL || http__split_hostport(addr, host, sizeof host, &p) != 0) {
        CRAFT_ERROR(log, "http: bad listen address \"%s\" (want host:port)",
                    addr ? addr : "(null)");
        return CRAFT_EINVAL;
    }
    int fd = host[0] == '\0' ? listen_any(p) : listen_host(host, p, log);
    if (fd < 0) {
        CRAFT_ERROR(log, "http: cannot listen on %s: %s", addr, craft_strerror(fd));
        return fd;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                           : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}
