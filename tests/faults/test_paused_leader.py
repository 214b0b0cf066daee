"""A leader paused (SIGSTOP) while the others elect a new leader and commit
a new value must not serve the old value at level=weak once it resumes.

The lease is counted in Raft ticks, and a stopped process receives no
ticks; what it owes must be counted at the moment of each lease check (see
docs/architecture.md, "Time"). Each test queues weak reads on the old
leader while it is still stopped (the kernel accepts the connections and
buffers the requests, so they are the first thing the resumed loop
handles) and keeps reading in a tight loop after SIGCONT: none may return
the old value; each must be served by a read index (the new value) or
refused.
"""
import http.client as httpclient
import json
import threading
import time

from harness import CLIENT_TIMEOUT, key_path, request, wait_until

READERS = 12            # threads reading the old leader around its resume
READ_AFTER_RESUME = 3.0  # seconds of reads after SIGCONT


def put(node, key, value):
    st, doc = request(node.haddr, "POST", "/key", {key: value})
    assert st == 200, f"POST {key}={value} to {node.id}: {st} {doc}"


def wait_value(nodes, key, value):
    for n in nodes:
        wait_until(f"{n.id} to apply {key}={value}",
                   lambda n=n: request(n.haddr, "GET", key_path(key, "none"))[1] == {key: value},
                   10)


class WeakReaders:
    """READERS threads, each on its own keep-alive connection to node,
    sending GET key?level=weak one after the other from start() until
    `until` (time.monotonic()). The first request of each thread is sent
    at once, while the node may be stopped. Every answer is recorded as
    (sent, answered, status, body or error)."""

    def __init__(self, node, key):
        self.node = node
        self.key = key
        self.until = None
        self.lock = threading.Lock()
        self.answers = []
        self.sent = threading.Semaphore(0)
        self.threads = [threading.Thread(target=self._loop, daemon=True)
                        for _ in range(READERS)]

    def start(self, until):
        self.until = until
        for t in self.threads:
            t.start()
        for _ in self.threads:  # every first request is in the socket
            assert self.sent.acquire(timeout=5), "a reader could not send"

    def _loop(self):
        host, _, port = self.node.haddr.rpartition(":")
        conn = None
        first = True
        while first or time.monotonic() < self.until:
            if conn is None:
                conn = httpclient.HTTPConnection(host, int(port), timeout=CLIENT_TIMEOUT + 2)
            t0 = time.monotonic()
            try:
                conn.request("GET", key_path(self.key, "weak"))
                if first:
                    self.sent.release()
                    first = False
                r = conn.getresponse()
                raw = r.read()
                try:
                    doc = json.loads(raw.decode()) if raw else None
                except ValueError:
                    doc = {"unparsable": raw[:100].decode("utf-8", "replace")}
                rec = (t0, time.monotonic(), r.status, doc)
                if r.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, httpclient.HTTPException) as e:
                if first:
                    self.sent.release()
                    first = False
                rec = (t0, time.monotonic(), None, repr(e))
                conn.close()
                conn = None
                time.sleep(0.01)
            with self.lock:
                self.answers.append(rec)
        if conn is not None:
            conn.close()

    def join(self):
        for t in self.threads:
            t.join(timeout=CLIENT_TIMEOUT + 10)
        assert not any(t.is_alive() for t in self.threads), "a reader is stuck"
        return sorted(self.answers)


def summarize(answers, key, t_resume):
    """Counts by outcome and the stale answers (200 with the old value)."""
    by = {}
    stale = []
    for sent, done, st, doc in answers:
        if st == 200 and isinstance(doc, dict):
            what = f"200 {key}={doc.get(key)}"
        elif st is None:
            what = "no answer"
        else:
            what = str(st)
        by[what] = by.get(what, 0) + 1
        if st == 200 and isinstance(doc, dict) and doc.get(key) == "old":
            stale.append({"sent": round(sent - t_resume, 3), "answered": round(done - t_resume, 3)})
    return by, stale


def paused_leader_run(net_run, partition):
    cl = net_run.cluster
    nem = net_run.nemesis
    cl.start(3)
    old = cl.wait_leader()
    others = [n for n in cl.nodes if n is not old]
    put(old, "x", "old")
    wait_value(cl.nodes, "x", "old")
    # Keep the old leader's lease fresh up to the pause: heartbeats answered.
    time.sleep(0.3)
    nem._event("sigstop", f"{old.id} (the leader)", [old])
    old.pause()
    if partition:
        nem.isolate(old)
    new = wait_until("a new leader among the others",
                     lambda: cl.leader_node(among=others), 10)
    put(new, "x", "new")
    readers = WeakReaders(old, "x")
    readers.start(until=time.monotonic() + 3600)  # first requests queued on the stopped node
    t_resume = time.monotonic()
    readers.until = t_resume + READ_AFTER_RESUME
    old.resume()
    nem._event("sigcont", old.id, [old])
    if partition:
        time.sleep(1.2)  # meanwhile its reads wait for a read index: it reaches nobody
        nem.heal()
    answers = readers.join()
    by, stale = summarize(answers, "x", t_resume)
    net_run.log(f"weak reads on {old.id} around its resume (partition={partition}): {by}; "
                f"stale: {stale[:10]}")
    print(f"\nweak reads on the resumed old leader {old.id} (partition={partition}): {by}")
    assert not stale, f"{len(stale)} of {len(answers)} weak reads on the resumed old leader " \
                      f"{old.id} returned the old value (seconds after SIGCONT): {stale[:5]}; " \
                      f"all: {by} (see {net_run.dir})"
    assert by.get("200 x=new", 0) > 0, \
        f"no weak read on {old.id} was served with the new value after the resume: {by}"
    cl.wait_converged()


def test_paused_leader_partitioned_weak_reads(net_run):
    """(The issue's reproduction.) SIGSTOP of the leader and a cut of its
    peer links, a new leader elected, x=new acknowledged, SIGCONT: weak
    reads on the old leader (queued while stopped, then a tight loop) are
    refused until the partition heals, then served with the new value."""
    paused_leader_run(net_run, partition=True)


def test_paused_leader_weak_reads(net_run):
    """The same without a partition: the old leader can hear the new one
    as soon as it resumes, but must not answer from its stale lease first."""
    paused_leader_run(net_run, partition=False)


def test_pause_leader_repeatedly_weak_reads(net_run, report):
    """Weak reads hammering the leader (and 30% of the register reads at
    level=weak) while it is stopped and continued again and again, for
    pauses shorter and longer than the election timeout (500 ms), every
    other time with its peer links cut while it is stopped and for a second
    after; the history, weak reads included, must be linearizable."""
    net_run.start(3, weak_share=0.3, none_share=0.1)
    nem = net_run.nemesis
    time.sleep(1.5)
    for i, secs in enumerate((0.3, 1.2, 0.45, 2.0, 0.6, 1.0, 0.2, 1.5)):
        ld = nem.leader_or_random()
        for _ in range(2):
            net_run.workload.hammer(ld, "weak", secs + 2.0)
        time.sleep(0.2)
        cut = i % 2 == 1
        nem._event("sigstop", f"{ld.id} for {secs:.2f}s{', cut off' if cut else ''}", [ld])
        ld.pause()
        if cut:
            nem.isolate(ld)
        time.sleep(secs)
        ld.resume()
        nem._event("sigcont", ld.id, [ld])
        time.sleep(1.0)
        nem.heal()
        net_run.cluster.wait_leader()
        time.sleep(0.5)
    s = net_run.finish()
    report(s)
    net_run.assert_ok(s, weak_must_hold=True)
    assert s["reads_by_level"]["weak"] > 0, "no level=weak read succeeded"
