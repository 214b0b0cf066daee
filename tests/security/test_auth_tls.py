"""Users, roles and client TLS on real clusters (docs/security.md):
-auth-file with HTTP Basic (401 with WWW-Authenticate, 403 naming the role),
joins with -join-user, HTTPS (-tls-cert, -tls-key) with joins over HTTPS
(-join-ca), client certificates required (-tls-client-ca), and clear
start-up errors for bad files. The certificates are made here with the
openssl command; every error body must be JSON."""
import base64
import http.client as httpclient
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import warnings

import pytest

from conftest import CRAFTD, Reply, split_addr, wait_until, leader_id

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")

PASSWORDS = {"reader": "r-pass", "writer": "w-pass", "admin": "a-pass"}
ROLES = {"reader": "read", "writer": "write", "admin": "admin"}


def sh(*args, cwd=None):
    subprocess.run(args, check=True, cwd=cwd, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def openssl_hash(password):
    out = subprocess.run(["openssl", "passwd", "-6", password], check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


@pytest.fixture(scope="module")
def auth_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("auth")
    p = d / "users"
    lines = ["# craftd users: user:crypt-hash:role", ""]
    for user, pw in PASSWORDS.items():
        lines.append(f"{user}:{openssl_hash(pw)}:{ROLES[user]}")
    p.write_text("\n".join(lines) + "\n")
    os.chmod(p, 0o600)
    return str(p)


def make_ca(d, name):
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
       "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
       "-subj", f"/CN={name}", cwd=d)


def make_cert(d, ca, name, cn, san):
    sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
    ext = d / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth,clientAuth\n")
    sh("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey",
       f"{ca}.key", "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
       "-extfile", str(ext), cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a node certificate for 127.0.0.1 (server and client use), a
    client certificate, and a client certificate of another CA."""
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_cert(d, "ca", "node", "craftd node", "IP:127.0.0.1,DNS:localhost")
    make_cert(d, "ca", "client", "a client", "DNS:client")
    make_ca(d, "rogue")
    make_cert(d, "rogue", "stranger", "a stranger", "DNS:stranger")
    return {k: str(d / k) for k in ("ca", "node", "client", "rogue", "stranger")}


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def req(addr, method, path, body=None, user=None, password=None, tls=None, headers=None,
        timeout=8.0):
    """One request (HTTPS with the ssl context tls); user: HTTP Basic with
    its password from PASSWORDS unless given."""
    host, port = split_addr(addr)
    if tls is None:
        conn = httpclient.HTTPConnection(host, port, timeout=timeout)
    else:
        conn = httpclient.HTTPSConnection(host, port, timeout=timeout, context=tls)
    h = dict(headers or {})
    if user is not None:
        h["Authorization"] = basic(user, password if password is not None else PASSWORDS[user])
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    try:
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def client_tls(pki, cert=None):
    ctx = ssl.create_default_context(cafile=pki["ca"] + ".crt")
    if cert is not None:
        ctx.load_cert_chain(pki[cert] + ".crt", pki[cert] + ".key")
    return ctx


def node_status(node, user="reader", tls=None):
    try:
        r = req(node.haddr, "GET", "/status", user=user, tls=tls, timeout=2.0)
    except (OSError, httpclient.HTTPException):
        return None
    return r.json() if r.status == 200 else None


def wait_voters(cluster, nodes, user="reader", tls=None, timeout=20.0):
    """Until one node leads, lists every node as a voter, and all name it."""
    want = {n.id for n in nodes}

    def done():
        for n in nodes:
            if not n.alive():
                pytest.fail(f"{n.name} exited ({n.state()}):\n{n.log_tail(20)}")
        sts = [node_status(n, user, tls) for n in nodes]
        if not all(sts):
            return False
        lead = {leader_id(s) for s in sts}
        if len(lead) != 1 or None in lead:
            return False
        ld = next(s for s in sts if leader_id(s) == s["me"]["id"]) if any(
            leader_id(s) == s["me"]["id"] for s in sts) else None
        if ld is None:
            return False
        return want <= {m["id"] for m in ld.get("members", []) if m.get("voter", True)}
    wait_until(f"voters {sorted(want)}", done, timeout, interval=0.1)


def leader_of(nodes, user="reader", tls=None):
    for n in nodes:
        st = node_status(n, user, tls)
        if st and leader_id(st) == n.id:
            return n
    return None


def start_auth_cluster(cluster, auth_file, n=3, extra=(), tls=None):
    """node0 bootstraps, the others join one after the other with
    -join-user admin (node2 through CRAFTD_JOIN_USER, so that both ways are
    used)."""
    common = ["-auth-file", auth_file] + list(extra)
    nodes = [cluster.add("node0", extra=common + ["-join-user", "admin:a-pass"]).start()]
    wait_voters(cluster, nodes, tls=tls)
    for i in range(1, n):
        if i == 2:
            node = cluster.add(f"node{i}", join=nodes[0].haddr, extra=common)
            os.environ["CRAFTD_JOIN_USER"] = "admin:a-pass"
            try:
                node.start()
            finally:
                del os.environ["CRAFTD_JOIN_USER"]
        else:
            node = cluster.add(f"node{i}", join=nodes[0].haddr,
                               extra=common + ["-join-user", "admin:a-pass"]).start()
        nodes.append(node)
        wait_voters(cluster, nodes, tls=tls)
    return nodes


def assert_401(r):
    assert r.status == 401, r
    assert r.headers.get("www-authenticate") == 'Basic realm="craftd"', r.headers
    assert r.headers.get("content-type") == "application/json"
    return r.error()


def assert_403(r, role):
    assert r.status == 403, r
    assert role in r.error(), r
    assert r.json().get("role") == role


def test_users_and_roles(cluster, auth_file):
    nodes = start_auth_cluster(cluster, auth_file)
    wait_voters(cluster, nodes)
    leader = leader_of(nodes)
    follower = next(n for n in nodes if n is not leader)

    for n in (leader, follower):
        # no credentials, a wrong password, an unknown user, a bad header
        assert "authentication required" in assert_401(req(n.haddr, "GET", "/key/a"))
        assert_401(req(n.haddr, "GET", "/status"))
        assert_401(req(n.haddr, "GET", "/nowhere"))  # not even a 404 without a user
        assert "wrong" in assert_401(req(n.haddr, "GET", "/key/a", user="reader",
                                         password="Wr0ng-Passw0rd"))
        assert "wrong" in assert_401(req(n.haddr, "GET", "/key/a", user="nobody",
                                         password="r-pass"))
        assert "malformed" in assert_401(req(n.haddr, "GET", "/key/a",
                                             headers={"Authorization": "Basic !!!"}))
        assert "malformed" in assert_401(req(n.haddr, "GET", "/key/a",
                                             headers={"Authorization": "Bearer abc"}))
        assert "malformed" in assert_401(req(
            n.haddr, "GET", "/key/a", headers={"Authorization": "Basic " + "QUFB" * 4000}))

    # read: reads and status, nothing else
    r = req(follower.haddr, "GET", "/key/a", user="reader")
    assert r.status == 404 and r.error()
    assert req(follower.haddr, "GET", "/status", user="reader").status == 200
    assert_403(req(follower.haddr, "POST", "/key", {"a": "1"}, user="reader"), "write")
    assert_403(req(follower.haddr, "DELETE", "/key/a", user="reader"), "write")
    assert_403(req(follower.haddr, "PUT", "/key/p", b"v", user="reader"), "write")
    assert req(follower.haddr, "GET", "/key/p", user="writer").status == 404  # not written

    # write: writes (a follower forwards them to the leader over Raft)
    r = req(follower.haddr, "POST", "/key", {"a": "1"}, user="writer")
    assert r.status == 200, r
    r = req(follower.haddr, "PUT", "/key/p", b"v", user="writer")
    assert r.status == 201, r
    r = req(leader.haddr, "GET", "/key/a", user="reader")
    assert r.status == 200 and r.json() == {"a": "1"}
    for path, body in (("/remove", {"id": follower.id}), ("/transfer", {"id": follower.id}),
                       ("/join", {"id": "x", "addr": "127.0.0.1:1"})):
        assert_403(req(leader.haddr, "POST", path, body, user="writer"), "admin")
        assert_403(req(follower.haddr, "POST", path, body, user="writer"), "admin")

    # admin: everything
    r = req(follower.haddr, "POST", "/transfer", {"id": follower.id}, user="admin")
    assert r.status == 200, r
    assert leader_id(node_status(follower)) == follower.id
    other = next(n for n in nodes if n is not follower and n is not leader)
    r = req(follower.haddr, "POST", "/remove", {"id": other.id}, user="admin")
    assert r.status == 200, r
    assert other.id not in {m["id"] for m in node_status(follower)["members"]}

    # the -join-user password does not show in ps
    with open(f"/proc/{nodes[0].pid}/cmdline", "rb") as fh:
        cmdline = fh.read()
    assert b"-join-user" in cmdline and b"a-pass" not in cmdline, cmdline

    # a refused attempt is logged without the password
    assert "wrong user or password" in follower.log_text() + leader.log_text()
    for n in nodes:
        daemon = "\n".join(ln for ln in n.log_text().splitlines()
                           if not ln.startswith("==== start"))
        assert "Wr0ng-Passw0rd" not in daemon and "a-pass" not in daemon


def test_join_needs_admin_credentials(cluster, auth_file):
    nodes = start_auth_cluster(cluster, auth_file, n=2)
    wait_voters(cluster, nodes)
    # without -join-user: refused at once, the node stops with an error
    bare = cluster.add("bare", join=nodes[0].haddr, extra=["-auth-file", auth_file]).start()
    rc = bare.proc.wait(timeout=20)
    assert rc != 0
    assert "HTTP 401" in bare.log_text() and "-join-user" in bare.log_text()
    # a user that is not admin: 403 at /join (its GET /status is allowed)
    weak = cluster.add("weak", join=nodes[0].haddr,
                       extra=["-auth-file", auth_file, "-join-user", "writer:w-pass"]).start()
    rc = weak.proc.wait(timeout=20)
    assert rc != 0
    assert "HTTP 403" in weak.log_text()
    ids = {m["id"] for m in node_status(nodes[0])["members"]}
    assert "bare" not in ids and "weak" not in ids
    # with admin credentials it joins (-join-user, checked by wait_voters)
    good = cluster.add("good", join=nodes[1].haddr,
                       extra=["-auth-file", auth_file, "-join-user", "admin:a-pass"]).start()
    wait_voters(cluster, nodes + [good])


def test_without_auth_file_all_is_open(cluster):
    node = cluster.add("node0").start()
    node.wait_ready()
    assert req(node.haddr, "POST", "/key", {"k": "v"}).status == 200
    r = req(node.haddr, "GET", "/key/k")
    assert r.status == 200 and "www-authenticate" not in r.headers


def tls_flags(pki, client_ca=False):
    f = ["-tls-cert", pki["node"] + ".crt", "-tls-key", pki["node"] + ".key"]
    if client_ca:
        f += ["-tls-client-ca", pki["ca"] + ".crt"]
    else:
        f += ["-join-ca", pki["ca"] + ".crt"]
    return f


def test_https_cluster_with_users(cluster, pki, auth_file):
    """Three nodes on HTTPS with users: joins go over HTTPS (trusting
    -join-ca) with credentials; plain HTTP gets no answer."""
    tls = client_tls(pki)
    nodes = start_auth_cluster(cluster, auth_file, extra=tls_flags(pki), tls=tls)
    leader = leader_of(nodes, tls=tls)
    follower = next(n for n in nodes if n is not leader)
    r = req(follower.haddr, "POST", "/key", {"s": "secret"}, user="writer", tls=tls)
    assert r.status == 200, r
    r = req(leader.haddr, "GET", "/key/s", user="reader", tls=tls)
    assert r.status == 200 and r.json() == {"s": "secret"}
    assert_401(req(leader.haddr, "GET", "/key/s", tls=tls))
    assert_403(req(leader.haddr, "POST", "/key", {"s": "x"}, user="reader", tls=tls), "write")
    # plain HTTP on the HTTPS port: no HTTP answer
    with pytest.raises((OSError, httpclient.HTTPException)):
        req(leader.haddr, "GET", "/status", user="reader", timeout=3.0)
    # a client that does not trust the node's CA refuses it
    with pytest.raises(ssl.SSLCertVerificationError):
        req(leader.haddr, "GET", "/status", user="reader",
            tls=ssl.create_default_context(cafile=pki["rogue"] + ".crt"))
    # TLS 1.1 and older are refused
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(pki["ca"] + ".crt")
    old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, OSError)):
        req(leader.haddr, "GET", "/status", user="reader", tls=old)


def test_client_certificates_required(cluster, pki):
    """-tls-client-ca: a client without a certificate, or with one of
    another CA, is refused in the handshake; a joining node shows its own
    -tls-cert and joins."""
    first = cluster.add("node0", extra=tls_flags(pki, client_ca=True)).start()
    good = client_tls(pki, cert="client")
    wait_voters(cluster, [first], user=None, tls=good)
    second = cluster.add("node1", join=first.haddr, extra=tls_flags(pki, client_ca=True)).start()
    wait_voters(cluster, [first, second], user=None, tls=good)
    r = req(second.haddr, "POST", "/key", {"c": "1"}, tls=good)
    assert r.status == 200, r
    for bad in (client_tls(pki), client_tls(pki, cert="stranger")):
        with pytest.raises((ssl.SSLError, OSError, httpclient.HTTPException)):
            req(first.haddr, "GET", "/status", tls=bad, timeout=3.0)
    assert first.alive() and second.alive()


def test_silent_tls_client_is_closed(cluster, pki):
    """A client that connects to the HTTPS port and never sends its TLS
    hello is closed after the request timeout (10 s), like a slowloris."""
    node = cluster.add("node0", extra=tls_flags(pki)).start()
    wait_voters(cluster, [node], user=None, tls=client_tls(pki))
    host, port = split_addr(node.haddr)
    s = socket.create_connection((host, port), timeout=20)
    t0 = time.monotonic()
    try:
        assert s.recv(1) == b""  # EOF, no reply
    finally:
        s.close()
    took = time.monotonic() - t0
    assert 8.0 <= took <= 15.0, took


@pytest.mark.parametrize("case", ["missing-cert", "key-mismatch", "cert-without-key",
                                  "ca-without-cert", "join-ca-without-cert", "bad-client-ca", "missing-auth-file",
                                  "bad-auth-line", "bad-join-user"])
def test_bad_files_stop_at_start(cluster, pki, auth_file, tmp_path, case):
    bad_users = tmp_path / "bad-users"
    bad_users.write_text("# ok\nalice:$6$x$y:read\n")
    os.chmod(bad_users, 0o600)
    cert, key = pki["node"] + ".crt", pki["node"] + ".key"
    extra, want = {
        "missing-cert": (["-tls-cert", str(tmp_path / "none.crt"), "-tls-key", key],
                         "-tls-cert"),
        "key-mismatch": (["-tls-cert", cert, "-tls-key", pki["client"] + ".key"],
                         "does not match"),
        "cert-without-key": (["-tls-cert", cert], "go together"),
        "ca-without-cert": (["-tls-client-ca", pki["ca"] + ".crt"], "go together"),
        "join-ca-without-cert": (["-join-ca", pki["ca"] + ".crt"], "go together"),
        "bad-client-ca": (["-tls-cert", cert, "-tls-key", key, "-tls-client-ca",
                           str(tmp_path / "none.crt")], "-tls-client-ca"),
        "missing-auth-file": (["-auth-file", str(tmp_path / "none")], "-auth-file"),
        "bad-auth-line": (["-auth-file", str(bad_users)], "line 2"),
        "bad-join-user": (["-join-user", "no-colon"], "user:password"),
    }[case]
    node = cluster.add("node0", extra=extra).start()
    rc = node.proc.wait(timeout=10)
    assert rc == 1, node.log_tail()
    assert want in node.log_text(), node.log_tail()


def test_readable_auth_file_warns(cluster, auth_file, tmp_path):
    p = tmp_path / "users"
    shutil.copy(auth_file, p)
    os.chmod(p, 0o644)
    node = cluster.add("node0", extra=["-auth-file", str(p)]).start()
    wait_until("node0 serving", lambda: node_status(node) is not None, 10)
    assert "group or others may read or change it" in node.log_text()


def test_wrong_password_flood_keeps_the_leader(cluster, tmp_path):
    """Wrong passwords against a yescrypt user (about 20 ms a check) from 8
    connections for 6 s: past the hash budget they get 429 without a check,
    so the leader keeps leading (same term), writes with cached credentials
    go on, and the log stays short."""
    if shutil.which("mkpasswd") is None:
        pytest.skip("needs mkpasswd (package whois) for a yescrypt hash")
    h = subprocess.run(["mkpasswd", "-m", "yescrypt", "-s"], input="y-pass", check=True,
                       capture_output=True, text=True).stdout.strip()
    users = tmp_path / "users"
    users.write_text(f"admin:{openssl_hash('a-pass')}:admin\n"
                     f"reader:{openssl_hash('r-pass')}:read\nyes:{h}:write\n")
    os.chmod(users, 0o600)
    nodes = start_auth_cluster(cluster, str(users))
    leader = leader_of(nodes)
    term0 = node_status(leader, user="admin")["term"]
    assert req(leader.haddr, "POST", "/key", {"w": "0"}, user="yes",
               password="y-pass").status == 200  # cached from now on
    import threading
    stop = time.monotonic() + 6.0
    counts = {401: 0, 429: 0, "other": 0}
    lock = threading.Lock()

    def flood():
        host, port = split_addr(leader.haddr)
        conn = httpclient.HTTPConnection(host, port, timeout=5)
        hdr = {"Authorization": basic("yes", "not-it")}
        while time.monotonic() < stop:
            try:
                conn.request("GET", "/key/w", headers=hdr)
                r = conn.getresponse()
                r.read()
                k = r.status if r.status in (401, 429) else "other"
            except (OSError, httpclient.HTTPException):
                conn.close()
                conn = httpclient.HTTPConnection(host, port, timeout=5)
                k = "other"
            with lock:
                counts[k] += 1
        conn.close()

    threads = [threading.Thread(target=flood) for _ in range(8)]
    for t in threads:
        t.start()
    slowest, writes = 0.0, 0
    while time.monotonic() < stop:
        t0 = time.monotonic()
        r = req(leader.haddr, "POST", "/key", {"w": str(writes)}, user="yes", password="y-pass")
        assert r.status == 200, r
        slowest = max(slowest, time.monotonic() - t0)
        writes += 1
        time.sleep(0.05)
    for t in threads:
        t.join()
    st = node_status(leader, user="admin")
    assert leader_id(st) == leader.id and st["term"] == term0, st
    assert counts[429] > 10 * counts[401], counts  # most never reached a hash
    assert counts[401] <= 8 + 6 * 10 + 5, counts  # the budget: 8, then 10 a second
    assert slowest < 1.0, slowest
    refused = [ln for ln in leader.log_text().splitlines() if "http: " in ln and "refused" in ln]
    assert len(refused) <= 10, refused[-3:]
    print(f"flood: {counts}, {writes} writes meanwhile, slowest {slowest * 1000:.0f} ms")


def test_everything_on(cluster, pki, auth_file, tmp_path):
    """Peer TLS with a cluster token, client TLS with client certificates,
    and users together:
    three nodes join over HTTPS showing their node certificate and the admin
    credentials, replicate over peer TLS, and roles still hold."""
    peer = str(tmp_path / "peer")
    subprocess.run(["sh", os.path.join(os.path.dirname(__file__), "peer_tls_certs.sh"), peer,
                    "peer-ca", "node0", "node1", "node2"], check=True)

    def flags(name):
        return (["-peer-tls-cert", f"{peer}/{name}.pem", "-peer-tls-key", f"{peer}/{name}.key",
                 "-peer-tls-ca", f"{peer}/peer-ca.pem"] + tls_flags(pki, client_ca=True))
    common = ["-auth-file", auth_file, "-join-user", "admin:a-pass",
              "-cluster-token", "all-on-token"]
    tls = client_tls(pki, cert="client")
    nodes = [cluster.add("node0", extra=common + flags("node0")).start()]
    wait_voters(cluster, nodes, tls=tls)
    for i in (1, 2):
        nodes.append(cluster.add(f"node{i}", join=nodes[0].haddr,
                                 extra=common + flags(f"node{i}")).start())
        wait_voters(cluster, nodes, tls=tls)
    follower = next(n for n in nodes if n is not leader_of(nodes, tls=tls))
    r = req(follower.haddr, "POST", "/key", {"all": "on"}, user="writer", tls=tls)
    assert r.status == 200, r
    for n in nodes:
        r = req(n.haddr, "GET", "/key/all?level=linearizable", user="reader", tls=tls)
        assert r.status == 200 and r.json() == {"all": "on"}, (n.name, r)
    assert_401(req(follower.haddr, "GET", "/key/all", tls=tls))
    assert_403(req(follower.haddr, "POST", "/transfer", {"id": "node0"}, user="writer",
                   tls=tls), "admin")
    with pytest.raises((ssl.SSLError, OSError, httpclient.HTTPException)):
        req(follower.haddr, "GET", "/status", user="reader", tls=client_tls(pki), timeout=3.0)
