"""GET /livez, /readyz and /metrics on real clusters (docs/operations.md):
liveness, readiness on every member and its 503 with the failed condition
on a node without a leader or not yet a member, the text format checked by
a strict parser here and by `promtool check metrics`, counters that move
exactly as requests and writes say, and the roles under -auth-file."""
import math
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import free_ports, http, set_keys, status, wait_until

# ---- a strict parser of the Prometheus text format 0.0.4 --------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
SAMPLE = re.compile(rf"^({NAME})(\{{.*\}})? (\S+)$")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_labels(s):
    """{name: value} of '{a="x",b="y"}'; fails on bad escapes, names, commas."""
    assert s[0] == "{" and s[-1] == "}", s
    body, out, i = s[1:-1], {}, 0
    while i < len(body):
        m = re.match(rf"({LABEL})=\"", body[i:])
        assert m, f"bad label at {body[i:]!r}"
        name = m.group(1)
        assert not name.startswith("__"), name
        i += m.end()
        val = []
        while True:
            assert i < len(body), f"unterminated label value in {s!r}"
            c = body[i]
            if c == "\\":
                nxt = body[i + 1]
                assert nxt in '\\"n', f"bad escape \\{nxt} in {s!r}"
                val.append({"\\": "\\", '"': '"', "n": "\n"}[nxt])
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                assert c != "\n"
                val.append(c)
                i += 1
        assert name not in out, f"label {name} twice in {s!r}"
        out[name] = "".join(val)
        if i < len(body):
            assert body[i] == ",", f"expected ',' in {s!r}"
            i += 1
            assert i < len(body), f"trailing comma in {s!r}"
    return out


def parse_value(v):
    if v in ("+Inf", "-Inf", "NaN"):
        return float(v.replace("Inf", "inf").replace("NaN", "nan"))
    assert re.fullmatch(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?", v), f"bad value {v!r}"
    return float(v)


def family_of(name, families):
    """The declared family a sample name belongs to."""
    if name in families:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and families.get(base, {}).get("type") == "histogram":
            return base
    raise AssertionError(f"sample {name} before its # TYPE line")


def parse_metrics(text):
    """{family: {"type", "help", "samples": [(name, labels, value)]}}, or an
    assertion error naming the first thing wrong."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families, order, current = {}, [], None
    seen = set()
    for ln in text[:-1].split("\n"):
        assert ln, "empty line"
        if ln.startswith("#"):
            m = re.fullmatch(rf"# (HELP|TYPE) ({NAME}) (.*)", ln)
            assert m, f"bad comment line {ln!r}"
            kind, name, rest = m.groups()
            fam = families.setdefault(name, {"type": None, "help": None, "samples": []})
            if name not in order:
                order.append(name)
            assert current in (None, name) or not fam["samples"], ln
            if kind == "HELP":
                assert fam["help"] is None, f"second HELP for {name}"
                assert rest, f"empty HELP for {name}"
                fam["help"] = rest
            else:
                assert fam["type"] is None, f"second TYPE for {name}"
                assert rest in TYPES, f"unknown type {rest!r}"
                assert not fam["samples"], f"TYPE of {name} after its samples"
                fam["type"] = rest
            current = name
            continue
        m = SAMPLE.match(ln)
        assert m, f"bad sample line {ln!r}"
        name, labels, value = m.groups()
        labels = parse_labels(labels) if labels else {}
        fam = family_of(name, families)
        assert fam == current, f"sample {name} apart from the rest of {fam}"
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen, f"series {key} twice"
        seen.add(key)
        families[fam]["samples"].append((name, labels, parse_value(value)))
    for name, fam in families.items():
        assert fam["type"] and fam["help"], f"{name} lacks HELP or TYPE"
        if fam["type"] == "counter":
            assert name.endswith("_total"), f"counter {name} without _total"
            assert all(v >= 0 for _, _, v in fam["samples"]), name
        if fam["type"] == "histogram":
            check_histogram(name, fam["samples"])
    return families


def check_histogram(name, samples):
    """Per label set: le ascending, counts cumulative, +Inf == _count."""
    series = {}
    for sname, labels, v in samples:
        rest = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
        s = series.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if sname == name + "_bucket":
            s["buckets"].append((parse_value(labels["le"]), v))
        elif sname == name + "_sum":
            s["sum"] = v
        elif sname == name + "_count":
            s["count"] = v
        else:
            raise AssertionError(f"{sname} in histogram {name}")
    for rest, s in series.items():
        les = [le for le, _ in s["buckets"]]
        counts = [c for _, c in s["buckets"]]
        assert les == sorted(les) and len(set(les)) == len(les), (name, rest, les)
        assert les and math.isinf(les[-1]), f"{name}{rest}: no +Inf bucket"
        assert counts == sorted(counts), f"{name}{rest}: buckets not cumulative"
        assert s["count"] == counts[-1], f"{name}{rest}: _count != +Inf bucket"
        assert s["sum"] is not None and s["sum"] >= 0, (name, rest)


def value(fams, family, sample=None, **labels):
    """The value of the one sample of family with these labels (0 when the
    series does not exist yet: counters start at zero)."""
    sample = sample or family
    got = [v for n, lb, v in fams[family]["samples"]
           if n == sample and all(lb.get(k) == x for k, x in labels.items())]
    assert len(got) <= 1, f"{family}{labels}: {len(got)} series"
    return got[0] if got else 0


def scrape(addr, headers=None):
    r = http(addr, "GET", "/metrics", headers=headers)
    assert r.status == 200, r
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = r.body.decode("utf-8")
    return parse_metrics(text), text


def test_parser_refuses_what_it_should():
    """The parser used below has teeth."""
    good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n"
    assert value(parse_metrics(good), "a_total", x="1") == 2
    bad = [
        "a_total 1\n",                                               # no TYPE
        "# HELP a_total A.\n# TYPE a_total counter\na_total 1",      # no final newline
        "# HELP a A.\n# TYPE a counter\na 1\n",                      # counter without _total
        good + "a_total{x=\"1\"} 3\n",                               # series twice
        "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"\\t\"} 1\n",  # bad escape
        "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",} 1\n",   # trailing comma
        "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
        "h_sum 1\nh_count 1\n",                                      # not cumulative
        "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n",
        "# HELP g G.\n# TYPE g gauge\ng 1\n# HELP k K.\n# TYPE k gauge\nk 1\ng 2\n",  # apart
    ]
    for text in bad:
        with pytest.raises(AssertionError):
            parse_metrics(text)


# ---- the routes ----------------------------------------------------------------

FAMILIES = {
    "craftd_http_requests_total": "counter",
    "craftd_http_request_duration_seconds": "histogram",
    "craftd_raft_term": "gauge",
    "craftd_raft_commit_index": "gauge",
    "craftd_raft_applied_index": "gauge",
    "craftd_raft_leader_changes_total": "counter",
    "craftd_raft_proposals_total": "counter",
    "craftd_raft_proposal_results_total": "counter",
    "craftd_storage_fsync_duration_seconds": "histogram",
    "craftd_snapshot_duration_seconds": "histogram",
    "craftd_loop_busy_seconds": "histogram",
    "craftd_loop_longest_busy_seconds": "gauge",
    "craftd_peer_sent_bytes_total": "counter",
    "craftd_peer_received_bytes_total": "counter",
    "craftd_peer_datagrams_total": "counter",
    "craftd_peer_twin_frames_total": "counter",
    "craftd_keys": "gauge",
    "craftd_leases": "gauge",
    "craftd_watchers": "gauge",
    "process_resident_memory_bytes": "gauge",
    "process_cpu_seconds_total": "counter",
    "process_open_fds": "gauge",
    "process_start_time_seconds": "gauge",
}


def readyz(node):
    r = http(node.haddr, "GET", "/readyz", timeout=2.0)
    assert r.headers.get("content-type") == "application/json", r
    return r


def test_health_and_metrics(cluster):
    nodes = cluster.start(3)
    for n in nodes:
        r = http(n.haddr, "GET", "/livez")
        assert r.status == 200 and r.json() == {"status": "alive"}, r
    for n in nodes:
        r = wait_until(f"{n.name} ready", lambda n=n: (lambda r: r if r.status == 200 else None)(
            readyz(n)), 15)
        doc = r.json()
        assert doc["ready"] and doc["member"] and doc["has_leader"] and doc["caught_up"], doc
        assert "error" not in doc and doc["leader"] in {x.id for x in nodes}, doc
        assert doc["lag"] <= doc["max_lag"] == 1000, doc
    r = http(nodes[0].haddr, "POST", "/metrics")
    assert r.status == 405 and r.error(), r

    leader = cluster.leader()
    follower = next(n for n in nodes if n is not leader)
    before, _ = scrape(leader.haddr)
    fbefore, _ = scrape(follower.haddr)
    for name, typ in FAMILIES.items():
        assert before.get(name, {}).get("type") == typ, f"{name}: {before.get(name)}"
    assert not [f for f in before if not f.startswith(("craftd_", "process_"))]
    # No lease granted, no watcher open: both 0.
    assert value(before, "craftd_leases") == 0
    assert value(before, "craftd_watchers") == 0
    st = status(leader.haddr)
    assert value(before, "craftd_raft_term") == st["term"]
    assert value(before, "craftd_raft_leader_changes_total") >= 1
    assert value(before, "craftd_storage_fsync_duration_seconds",
                 "craftd_storage_fsync_duration_seconds_count") > 0
    assert 0 < value(before, "process_resident_memory_bytes")
    assert 0 < value(before, "process_open_fds")

    for i in range(20):
        assert set_keys(leader.haddr, {f"k{i}": "v"}).status == 200
    for i in range(5):
        assert set_keys(follower.haddr, {f"f{i}": "v"}).status == 200
    assert http(leader.haddr, "GET", "/key/nope").status == 404
    r = http(leader.haddr, "PUT", "/key/p", body=b"raw")
    assert r.status == 201, r
    r = http(leader.haddr, "GET", "/key/p", headers={"If-None-Match": r.headers["etag"]})
    assert r.status == 304, r

    after, text = scrape(leader.haddr)
    fafter, _ = scrape(follower.haddr)

    def moved(a, b, *args, **labels):
        return value(b, *args, **labels) - value(a, *args, **labels)
    post = dict(route="/key", method="POST", code="200")
    assert moved(before, after, "craftd_http_requests_total", **post) == 20
    assert moved(fbefore, fafter, "craftd_http_requests_total", **post) == 5
    assert moved(before, after, "craftd_http_requests_total",
                 route="/key", method="GET", code="404") == 1
    # The scrape before this one was counted once its answer started.
    assert moved(before, after, "craftd_http_requests_total",
                 route="/metrics", method="GET", code="200") == 1
    assert moved(before, after, "craftd_http_requests_total",
                 route="/key", method="PUT", code="201") == 1
    assert moved(before, after, "craftd_http_requests_total",
                 route="/key", method="GET", code="304") == 1
    assert moved(before, after, "craftd_http_request_duration_seconds",
                 "craftd_http_request_duration_seconds_count", route="/key") == 23
    assert moved(before, after, "craftd_raft_proposals_total", outcome="placed") == 21
    assert moved(fbefore, fafter, "craftd_raft_proposals_total", outcome="placed") == 5
    # Every one of them committed where it was proposed; none lost or unknown.
    for lb, want in (("committed", 21), ("lost", 0), ("unknown", 0)):
        assert moved(before, after, "craftd_raft_proposal_results_total", result=lb) == want
    assert moved(fbefore, fafter, "craftd_raft_proposal_results_total",
                 result="committed") == 5
    assert moved(before, after, "craftd_raft_applied_index") >= 26
    assert moved(before, after, "craftd_storage_fsync_duration_seconds",
                 "craftd_storage_fsync_duration_seconds_count") >= 1
    assert value(after, "craftd_raft_commit_index") >= value(after, "craftd_raft_applied_index")
    assert value(after, "craftd_keys") == 26
    for n in nodes:
        # Every node applies the same 26 keys.
        wait_until(f"{n.name} holds 26 keys",
                   lambda n=n: value(scrape(n.haddr)[0], "craftd_keys") == 26, 10)
    # Bytes to and from each follower, labelled by its member id.
    for n in nodes:
        if n is leader:
            continue
        assert value(after, "craftd_peer_sent_bytes_total", peer=n.id) > \
            value(before, "craftd_peer_sent_bytes_total", peer=n.id)
        assert value(after, "craftd_peer_received_bytes_total", peer=n.id) > 0
    peers = {lb["peer"] for _, lb, _ in after["craftd_peer_sent_bytes_total"]["samples"]}
    assert peers == {n.id for n in nodes if n is not leader}, peers
    # Datagrams: all six results, on the leader and on a follower; the
    # heartbeats go by datagram too: the leader's are sent, and taken by a
    # follower.
    for fams in (after, fafter):
        results = {lb["result"] for _, lb, _ in fams["craftd_peer_datagrams_total"]["samples"]}
        assert results == {"sent", "unsent", "received", "stale", "rejected",
                           "unanswered"}, results
    wait_until("leader's datagrams sent", lambda: value(
        scrape(leader.haddr)[0], "craftd_peer_datagrams_total", result="sent") > 0, 5)
    wait_until("datagrams received by a follower", lambda: any(value(
        scrape(n.haddr)[0], "craftd_peer_datagrams_total", result="received") > 0
        for n in nodes if n is not leader), 5)
    # and a heartbeat's TCP copy, coming after its datagram, is dropped.
    wait_until("TCP copies of heartbeats dropped by a follower", lambda: any(value(
        scrape(n.haddr)[0], "craftd_peer_twin_frames_total") > 0
        for n in nodes if n is not leader), 5)

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing (Debian package prometheus, installed by "
                    "scripts/deps.sh): every other check passed; `promtool check metrics` "
                    "was not run")
    p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, f"promtool check metrics: {p.stdout}{p.stderr}"


def test_readyz_refuses_without_leader_or_membership(cluster):
    # A node asked to join through an address where nobody answers: it
    # serves, but is no member.
    dead, = free_ports(1)
    loner = cluster.add("loner", join=f"127.0.0.1:{dead}").start()
    r = wait_until("loner serving", lambda: http(loner.haddr, "GET", "/livez", timeout=1), 10)
    assert r.status == 200
    r = readyz(loner)
    assert r.status == 503, r
    doc = r.json()
    assert "not a member" in r.error(), doc
    assert doc["member"] is False and doc["ready"] is False, doc
    loner.stop()

    nodes = cluster.start(3)
    leader = cluster.leader(among=nodes)
    others = [n for n in nodes if n is not leader]
    wait_until("all ready", lambda: all(readyz(n).status == 200 for n in nodes), 15)
    # Cut one follower from its leader: stop the leader and the other
    # follower, so that no leader can be elected.
    last = others[0]
    leader.kill9()
    others[1].kill9()
    r = wait_until("the last node not ready",
                   lambda: (lambda r: r if r.status == 503 else None)(readyz(last)), 15)
    doc = r.json()
    assert doc["member"] is True and doc["has_leader"] is False and doc["ready"] is False, doc
    assert "leader" in r.error(), doc
    # Alive all the same.
    assert http(last.haddr, "GET", "/livez").status == 200


def openssl_hash(password):
    out = subprocess.run(["openssl", "passwd", "-6", password], check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl for crypt hashes")
def test_metrics_needs_admin(cluster, tmp_path):
    import base64
    users = tmp_path / "users"
    users.write_text(f"reader:{openssl_hash('r-pass')}:read\n"
                     f"writer:{openssl_hash('w-pass')}:write\n"
                     f"admin:{openssl_hash('a-pass')}:admin\n")
    users.chmod(0o600)
    node = cluster.add("node0", extra=["-auth-file", str(users)]).start()

    def auth(user, pw):
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}
    wait_until("ready without credentials", lambda: readyz(node).status == 200, 15)
    assert http(node.haddr, "GET", "/livez").status == 200
    r = http(node.haddr, "GET", "/metrics")
    assert r.status == 401 and r.headers.get("www-authenticate") == 'Basic realm="craftd"', r
    assert r.error()
    for user, pw in (("reader", "r-pass"), ("writer", "w-pass")):
        r = http(node.haddr, "GET", "/metrics", headers=auth(user, pw))
        assert r.status == 403 and r.json().get("role") == "admin", r
    r = http(node.haddr, "GET", "/metrics", headers=auth("admin", "wrong"))
    assert r.status == 401, r
    fams, _ = scrape(node.haddr, headers=auth("admin", "a-pass"))
    # The refusals were counted with their codes.
    assert value(fams, "craftd_http_requests_total", route="/metrics", method="GET",
                 code="401") == 2
    assert value(fams, "craftd_http_requests_total", route="/metrics", method="GET",
                 code="403") == 2
    # Password checks run on a worker and route the request afterwards:
    # each request is still counted once, its duration included.
    fams, _ = scrape(node.haddr, headers=auth("admin", "a-pass"))
    assert value(fams, "craftd_http_requests_total", route="/metrics", method="GET",
                 code="200") == 1
    hist = "craftd_http_request_duration_seconds"
    assert value(fams, hist, hist + "_count", route="/metrics") == 5


def test_snapshot_duration_is_observed(cluster):
    node = cluster.add("node0", extra=["-snapshot-threshold", "16"]).start()
    node.wait_ready()
    before, _ = scrape(node.haddr)
    hist = "craftd_snapshot_duration_seconds"
    assert value(before, hist, hist + "_count") == 0
    for i in range(100):
        assert set_keys(node.haddr, {f"s{i}": "x" * 100}).status == 200
    # The writer's end is noticed at a tick: wait for it.
    after = wait_until("a snapshot taken", lambda: (lambda f: f if value(
        f, hist, hist + "_count") >= 1 else None)(scrape(node.haddr)[0]), 15)
    n = value(after, hist, hist + "_count")
    assert 0 < value(after, hist, hist + "_sum") < 60 * n
    assert value(after, "craftd_keys") == 100


def test_loop_busy_is_measured(cluster):
    """Every iteration of the loop is counted in craftd_loop_busy_seconds,
    the longest sits in the bucket the histogram puts it in, and an idle
    node's stays small (the unit test test_clock.c blocks a loop and checks
    the meter sees it)."""
    node = cluster.add("node0").start()
    node.wait_ready()
    hist = "craftd_loop_busy_seconds"
    before, _ = scrape(node.haddr)
    time.sleep(0.5)  # 10 ticks at least
    after, _ = scrape(node.haddr)
    n0 = value(before, hist, hist + "_count")
    n1 = value(after, hist, hist + "_count")
    assert n1 >= n0 + 10, (n0, n1)
    bounds = sorted(float(lb["le"]) for n, lb, v in after[hist]["samples"]
                    if n == hist + "_bucket")
    assert bounds[0] == 0.0005 and bounds[-1] == float("inf"), bounds
    longest = value(after, "craftd_loop_longest_busy_seconds")
    # No time in callbacks is 0 ns: a node that ran did some. A busy
    # machine preempts the loop mid-callback (and an ASan build starts
    # slowly), hence the margin.
    assert 0 < longest < 0.5, longest
    assert value(after, hist, hist + "_sum") <= longest * n1
    # The histogram agrees: the first bucket at or above the longest holds
    # an iteration the one below it does not, and none is above it.
    up = min(b for b in bounds if b >= longest)
    below = max([b for b in bounds if b < longest], default=None)
    at_up = value(after, hist, hist + "_bucket", le=_le(up))
    assert at_up == n1, (up, at_up, n1)
    if below is not None:
        assert value(after, hist, hist + "_bucket", le=_le(below)) < at_up


def _le(bound):
    """The le label of a bucket bound as the exposition writes it."""
    return "+Inf" if bound == float("inf") else repr(bound).rstrip("0").rstrip(".")


def test_loop_stall_is_recorded(cluster, monkeypatch):
    """A loop blocked for 300 ms (CRAFTD_TEST_LOOP_STALL_MS and SIGUSR2, a
    test knob) shows as one iteration of at least that in the histogram and
    the longest, and as one WARN line."""
    monkeypatch.setenv("CRAFTD_TEST_LOOP_STALL_MS", "300")
    node = cluster.add("node0").start()
    node.wait_ready()
    hist = "craftd_loop_busy_seconds"
    before, _ = scrape(node.haddr)
    assert value(before, "craftd_loop_longest_busy_seconds") < 0.25
    over = value(before, hist, hist + "_count") - value(before, hist, hist + "_bucket",
                                                         le="0.2")
    node.signal(signal.SIGUSR2)
    wait_until("the stall logged", lambda: "the event loop was busy for" in node.log_text(), 10)
    after, _ = scrape(node.haddr)
    assert 0.3 <= value(after, "craftd_loop_longest_busy_seconds") < 1.0
    assert value(after, hist, hist + "_count") - value(after, hist, hist + "_bucket",
                                                       le="0.2") == over + 1
    m = re.search(r"WARN \S+ the event loop was busy for (\d+) ms in one iteration",
                  node.log_text())
    assert m and 300 <= int(m.group(1)) < 1000, node.log_tail()
