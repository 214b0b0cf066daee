/* HTTP Basic authentication and role checks (docs/security.md): the
 * Authorization header is parsed, the user checked against the server's
 * auth_db and the role compared with what the route needs. 401 (with
 * WWW-Authenticate) when credentials are missing or wrong, 403 when the
 * user's role is too low, 429 when password checks are over their budget;
 * all with a JSON error body.
 *
 * A check that needs a password hash (slow on purpose) runs on libuv's
 * worker threads, so that the loop serves other clients meanwhile; the
 * request then goes on to its route from the worker's completion. Owns
 * struct authz_check, the state of one such check, freed on completion.
 * The request may be disposed of by h2o before that (its connection
 * closed): a hook in the request's pool detaches the check, which then
 * touches neither the request nor the server (that a live request keeps
 * alive). */
#include "http/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "auth/auth.h"
#include "common/alloc.h"

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

/* The answer to a finished check (role from auth_db_check or _finish):
 * true if req may go on to its route, false after answering it. */
static bool answer_role(struct http_server *srv, h2o_req_t *req, int role, int need,
                        const char *user, size_t ulen)
{
    if (role == AUTH_BUSY) {
        log_refused(srv, req, "password checks over their budget", NULL, 0);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL,
                       H2O_STRLIT("1"));
        static const char busy[] = "too many password checks: try again in a second";
        http__send_error(req, 429, NULL, busy, sizeof busy - 1);
        return false;
    }
    if (role < 0) {
        log_refused(srv, req, "wrong user or password", user, ulen);
        unauthorized(req, "wrong user or password");
        return false;
    }
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

/* One password check on a worker thread. */
struct authz_check {
    uv_work_t work;
    struct auth_job *job;
    h2o_req_t *req;            /* NULL once h2o disposed of it */
    struct authz_check **hook; /* in req's pool, points back here */
    struct http_server *srv;   /* valid while req is */
    h2o_handler_t *handler;    /* the one that got req */
    int need;
    char user[65];             /* for the log line (at most 64 bytes kept) */
    size_t ulen;
    struct http__obs obs;      /* ops.c: req's count waits with it */
};

static void on_req_disposed(void *p)
{
    struct authz_check *ck = *(struct authz_check **)p;
    if (ck != NULL)
        ck->req = NULL;
}

static void check_work(uv_work_t *w)
{
    struct authz_check *ck = HTTP__CONTAINER(w, struct authz_check, work);
    auth_job_run(ck->job);
}

static void check_done(uv_work_t *w, int status)
{
    struct authz_check *ck = HTTP__CONTAINER(w, struct authz_check, work);
    h2o_req_t *req = ck->req;
    if (req == NULL) { /* the connection closed meanwhile: nobody to answer */
        auth_job_free(ck->job);
        craft_free(ck);
        return;
    }
    *ck->hook = NULL;
    struct http_server *srv = ck->srv;
    http__observe_resume(srv, &ck->obs); /* counted from its arrival */
    int role = AUTH_BAD;
    if (status == 0)
        role = auth_db_finish(srv->auth, ck->job, uv_now(srv->loop));
    else
        auth_job_free(ck->job);
    bool go = answer_role(srv, req, role, ck->need, ck->user, ck->ulen);
    h2o_handler_t *handler = ck->handler;
    craft_free(ck);
    if (!go)
        return;
    if (srv->closing || http__guard_req_gone(req)) {
        static const char msg[] = "shutting down";
        static const char gone[] = "client gone";
        req->http1_is_persistent = 0;
        if (srv->closing)
            http__send_error(req, 503, NULL, msg, sizeof msg - 1);
        else
            http__send_error(req, 503, NULL, gone, sizeof gone - 1);
        return;
    }
    srv->authz_passed = req;
    handler->on_req(handler, req); /* routes it; it sees authz_passed */
    srv->authz_passed = NULL;
}

/* The handler of ours that req reached (route.c's http__on_req). */
static h2o_handler_t *our_handler(h2o_req_t *req)
{
    if (req->pathconf == NULL)
        return NULL;
    for (size_t i = 0; i < req->pathconf->handlers.size; i++)
        if (req->pathconf->handlers.entries[i]->on_req == http__on_req)
            return req->pathconf->handlers.entries[i];
    return NULL;
}

/* Hands the check to a worker; false if that cannot be done (the check is
 * then done here, on the loop). */
static bool check_later(struct http_server *srv, h2o_req_t *req, struct auth_job *job, int need,
                        const char *user, size_t ulen)
{
    h2o_handler_t *handler = our_handler(req);
    struct authz_check *ck = handler ? craft_calloc(1, sizeof *ck) : NULL;
    if (ck == NULL)
        return false;
    *ck = (struct authz_check){.job = job, .req = req, .srv = srv, .handler = handler,
                               .need = need, .ulen = ulen < 64 ? ulen : 64};
    memcpy(ck->user, user, ck->ulen);
    if (uv_queue_work(srv->loop, &ck->work, check_work, check_done) != 0) {
        craft_free(ck);
        return false;
    }
    ck->hook = h2o_mem_alloc_shared(&req->pool, sizeof *ck->hook, on_req_disposed);
    *ck->hook = ck;
    http__observe_park(srv, req, &ck->obs);
    return true;
}

bool http__authorize(struct http_server *srv, h2o_req_t *req)
{
    if (srv->authz_passed == req) /* back from a worker's check */
        return true;
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
    uint64_t now = uv_now(srv->loop);
    struct auth_job *job;
    int role = auth_db_begin(srv->auth, user, ulen, pass, passlen, now, &job);
    if (role == AUTH_PENDING && check_later(srv, req, job, need, user, ulen)) {
        OPENSSL_cleanse(buf, sizeof buf);
        return false; /* answered or routed by check_done */
    }
    if (role == AUTH_PENDING) {
        auth_job_run(job);
        role = auth_db_finish(srv->auth, job, now);
    }
    bool go = answer_role(srv, req, role, need, user, ulen);
    OPENSSL_cleanse(buf, sizeof buf);
    return go;
}
