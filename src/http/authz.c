/* HTTP Basic authentication and role checks (docs/security.md): the
 * Authorization header is parsed, the user checked against the server's
 * auth_db and the role compared with what the route needs. 401 (with
 * WWW-Authenticate) when credentials are missing or wrong, 403 when the
 * user's role is too low, 429 when password checks are over their budget;
 * all with a JSON error body. */
#include "http/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "auth/auth.h"

#define HTTP__MAX_CRED 1024 /* decoded user:password bytes at most */

static void unauthorized(h2o_req_t *req, const char *why)
{
    static const char realm[] = "Basic realm=\"craftd\"";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, realm,
                   sizeof realm - 1);
    http__send_error(req, 401, NULL, why, strlen(why));
}

/* A refused attempt: counted, and logged within the rate limit (an
 * outsider can cause these lines). */
static void log_refused(struct http_server *srv, h2o_req_t *req, const char *why,
                        const char *user, size_t ulen)
{
    srv->auth_refused_total++;
    uint64_t dropped;
    if (!craft_ratelimit_allow(&srv->rl_auth, uv_now(srv->loop), &dropped))
        return;
    size_t plen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    char name[68];
    size_t n = 0;
    for (size_t i = 0; i < ulen && n < 64; i++) /* printable ASCII only */
        name[n++] = (user[i] >= 0x20 && user[i] < 0x7f && user[i] != '"') ? user[i] : '?';
    name[n] = 0;
    CRAFT_INFO(srv->log, "http: %s%s%s%s on %.*s; %" PRIu64 " refused in all (%" PRIu64
               " similar lines suppressed)", why, user ? " (user \"" : "", user ? name : "",
               user ? "\")" : "", (int)(plen > 64 ? 64 : plen), req->path.base,
               srv->auth_refused_total, dropped);
}

bool http__authorize(struct http_server *srv, h2o_req_t *req)
{
    size_t plen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    int need = auth_route_role(req->method.base, req->method.len, req->path.base, plen);
    if (need == AUTH_OPEN)
        return true;
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i < 0) {
        unauthorized(req, "authentication required: use HTTP Basic (user:password)");
        return false;
    }
    const h2o_iovec_t *v = &req->headers.entries[i].value;
    char buf[HTTP__MAX_CRED];
    const char *user, *pass;
    size_t ulen, passlen;
    if (auth_parse_basic(v->base, v->len, buf, sizeof buf, &user, &ulen, &pass, &passlen) != 0) {
        log_refused(srv, req, "malformed Authorization header", NULL, 0);
        unauthorized(req, "malformed Authorization header: use Basic base64(user:password)");
        return false;
    }
    int role = auth_db_check(srv->auth, user, ulen, pass, passlen, uv_now(srv->loop));
    if (role == AUTH_BUSY) {
        OPENSSL_cleanse(buf, sizeof buf);
        log_refused(srv, req, "password checks over their budget", NULL, 0);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL,
                       H2O_STRLIT("1"));
        static const char busy[] = "too many password checks: try again in a second";
        http__send_error(req, 429, NULL, busy, sizeof busy - 1);
        return false;
    }
    if (role < 0) {
        log_refused(srv, req, "wrong user or password", user, ulen);
        OPENSSL_cleanse(buf, sizeof buf);
        unauthorized(req, "wrong user or password");
        return false;
    }
    OPENSSL_cleanse(buf, sizeof buf);
    if (role < need) {
        char body[160];
        int n = snprintf(body, sizeof body,
                         "{\"error\":\"forbidden: this needs the %s role\",\"role\":\"%s\"}",
                         auth_role_name(need), auth_role_name(need));
        http__send(req, 403, "application/json", NULL, body, (size_t)n);
        return false;
    }
    return true;
}
