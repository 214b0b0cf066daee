"""The nemesis: faults injected into a running FaultCluster.

Every fault is logged (time, kind, detail) into self.events, noted in the
affected nodes' logs, and undone by heal() / resume_all() / restart_dead().
Partitions are DROP rules between node IPs in the Firewall's chain.
Membership faults go through the HTTP API: POST /remove (then the removed
node is stopped and its data directory wiped; it comes back only as a NEW
node joining with -join) and POST /transfer (timed; see self.transfers).
"""
import random
import shutil
import time

from harness import HarnessError, request, wait_until

MEMBER_OP_TIMEOUT = 12.0  # one /remove or /transfer request (craftd answers within 2 s)
MIN_VOTERS = 3


class Nemesis:
    def __init__(self, cluster, firewall=None, seed=None, log=print):
        self.cluster = cluster
        self.fw = firewall
        self.rng = random.Random(seed)
        self.log = log
        self.events = []
        self.transfers = []  # every POST /transfer: target, via, status, seconds, ...
        self.t0 = time.monotonic()

    def _event(self, kind, detail, nodes=()):
        ev = {"t": round(time.monotonic() - self.t0, 3), "kind": kind, "detail": detail}
        self.events.append(ev)
        self.log(f"nemesis +{ev['t']:.1f}s {kind}: {detail}")
        for n in nodes or self.cluster.nodes:
            if n.alive():
                n.note(f"{kind}: {detail}")

    def _need_fw(self):
        assert self.fw is not None and self.fw.active, "partition faults need the firewall"

    def leader(self):
        return self.cluster.leader_node()

    def leader_or_random(self):
        return self.leader() or self.rng.choice(self.cluster.live())

    # ---- processes ----

    def kill_restart(self, node=None, down=1.0):
        node = node or self.rng.choice(self.cluster.live())
        self._event("kill9", f"{node.id} (pid {node.pid}), down {down:.1f}s", [node])
        node.kill9()
        time.sleep(down)
        node.start()
        self._event("restart", node.id, [node])
        return node

    def pause(self, node=None, secs=2.0):
        node = node or self.rng.choice(self.cluster.live())
        self._event("sigstop", f"{node.id} for {secs:.1f}s", [node])
        node.pause()
        time.sleep(secs)
        node.resume()
        self._event("sigcont", node.id, [node])
        return node

    def full_restart(self, down=0.5):
        nodes = list(self.cluster.nodes)
        self._event("full-restart", f"kill -9 all {len(nodes)} nodes, down {down:.1f}s")
        for n in nodes:
            n.kill9()
        time.sleep(down)
        for n in nodes:
            n.start()

    def _raft_id(self, node_id):
        ld = self.leader()
        st = ld.status() if ld else None
        for m in (st or {}).get("members", []):
            if m.get("id") == node_id:
                return m.get("raft_id"), bool(m.get("voter"))
        return None, False

    def wipe_rejoin(self, node=None, leader=False, down=0.5, timeout=40.0):
        """kill -9 of node (a random member; the leader when leader=True),
        its data directory wiped, then a restart under the same id and
        addresses with -join via another live member: a new incarnation,
        which the cluster re-adds (learner, then voter). Returns once the
        leader lists it as a voter under a new Raft id."""
        cl = self.cluster
        ld = self.leader()
        node = node or (ld if leader and ld else self.rng.choice(cl.live()))
        old, _ = self._raft_id(node.id)
        self._event("kill9-wipe", f"{node.id} (raft {old}{', leader' if node is ld else ''}), "
                                  f"{node.dir} wiped", [node])
        node.kill9()
        shutil.rmtree(node.dir, ignore_errors=True)
        time.sleep(down)
        via = self.rng.choice([n for n in cl.live() if n is not node and not n.paused])
        node.join = via.haddr
        node.start()

        def readded():
            if not node.alive():
                raise HarnessError(f"{node.id} exited while rejoining:\n{node.log_tail(30)}")
            rid, voter = self._raft_id(node.id)
            return voter and rid is not None and rid != old and rid
        rid = wait_until(f"{node.id} re-added as a new incarnation", readded, timeout, 0.1)
        self._event("rejoin", f"{node.id} re-added via {via.id} as raft {rid}", [node])
        return node

    def join(self):
        node = self.cluster.join_new()
        self._event("join", f"{node.id} joined (voter)", [node])
        return node

    def resume_all(self):
        for n in self.cluster.nodes:
            n.resume()

    def restart_dead(self):
        for n in self.cluster.nodes:
            if not n.alive():
                n.start()
                self._event("restart", n.id, [n])

    # ---- membership (POST /remove, POST /transfer) ----

    def _member_op(self, path, target_id, via):
        """(status or None, error text, seconds) of one POST to via."""
        t = time.monotonic()
        try:
            st, doc = request(via.haddr, "POST", path, {"id": target_id},
                              timeout=MEMBER_OP_TIMEOUT)
            err = (doc or {}).get("error", "") if isinstance(doc, dict) else ""
        except OSError as e:
            st, err = None, repr(e)
        return st, err, time.monotonic() - t

    def _members_of_leader(self):
        ld = self.leader()
        st = ld.status() if ld else None
        return {m.get("id") for m in st.get("members", [])} if st else None

    def remove(self, node=None, leader=False, pause=None):
        """POST /remove of node (a random member; the leader when leader=True)
        to a random member (sometimes the node itself, sometimes the leader),
        retried until the leader no longer lists it; then the node is
        stopped and its data directory wiped (cluster.retire). Keeps at least
        MIN_VOTERS members. Returns the removed node."""
        cl = self.cluster
        assert len(cl.nodes) > MIN_VOTERS, f"only {len(cl.nodes)} members: none may go"
        ld = self.leader()
        if node is None:
            node = ld if leader and ld else self.rng.choice(cl.live())
        role = "leader" if node is ld else "follower"
        tries = []
        deadline = time.monotonic() + 40
        while True:
            r = self.rng.random()
            via = node if r < 0.3 else (ld if r < 0.6 and ld else self.rng.choice(cl.live()))
            st, err, dt = self._member_op("/remove", node.id, via)
            tries.append(f"via {via.id}: {st} {err[:60]} ({dt:.2f}s)".replace("  ", " "))
            if st == 200:
                break
            if st == 404 and len(tries) > 1:
                break  # an earlier try did it
            if st is not None and 400 <= st < 500:
                raise HarnessError(f"POST /remove {node.id} via {via.id}: {st} {err}")
            members = self._members_of_leader()
            if members is not None and node.id not in members:
                break
            if time.monotonic() > deadline:
                raise HarnessError(f"could not remove {node.id}: {tries}")
            time.sleep(0.2)
        self._event("remove", f"{node.id} ({role}): " + "; ".join(tries), [node])
        time.sleep(self.rng.uniform(0.0, 0.5) if pause is None else pause)
        cl.retire(node)  # clients may have sent it requests until now
        self._event("stop-wipe", f"{node.id} stopped, {node.dir} discarded")
        return node

    def readd(self, old, same_id=None):
        """A NEW node in place of the removed `old`: the same id and addresses
        (same_id) or a new id on a new address; fresh data directory, -join
        via a random member. Returns it once it is a voter."""
        if same_id is None:
            same_id = self.rng.random() < 0.5
        via = self.rng.choice([n for n in self.cluster.live() if not n.paused])
        node = self.cluster.join_new(timeout=40.0, via=via, like=old if same_id else None)
        self._event("readd", f"{node.id} (fresh dir, {'same id as' if same_id else 'replaces'} "
                             f"{old.id}) joined via {via.id}, now a voter", [node])
        return node

    def membership_churn(self, leader=None):
        """Remove one or two members (the first the leader half the time;
        never under MIN_VOTERS), then add each back as a new node."""
        k = 2 if len(self.cluster.nodes) - 2 >= MIN_VOTERS and self.rng.random() < 0.3 else 1
        if leader is None:
            leader = self.rng.random() < 0.5
        gone = [self.remove(leader=leader)]
        for _ in range(k - 1):
            time.sleep(self.rng.uniform(0.2, 1.0))
            gone.append(self.remove())
        time.sleep(self.rng.uniform(0.2, 1.5))
        return [self.readd(old) for old in gone]

    def transfer(self, target=None, via=None):
        """POST /transfer to a random voter (maybe the leader itself) via a
        random member, timed; after a 200 the target must say it leads (or a
        later term must have begun). Returns the record added to
        self.transfers."""
        cl = self.cluster
        live = [n for n in cl.live() if not n.paused]
        target = target or self.rng.choice(live)
        via = via or self.rng.choice(live)
        before = self.leader()
        st, err, dt = self._member_op("/transfer", target.id, via)
        rec = {"t": round(time.monotonic() - self.t0, 3), "target": target.id, "via": via.id,
               "from": before.id if before else None, "status": st, "error": err,
               "seconds": round(dt, 3)}
        if st == 200:
            ts = target.status()
            rec["target_role"] = ts.get("role") if ts else None
            rec["target_term"] = ts.get("term") if ts else None
        self.transfers.append(rec)
        self._event("transfer", f"to {target.id} via {via.id} (leader was "
                                f"{rec['from']}): {st} {err[:80]}{' ' if err else ''}in {dt:.3f}s")
        return rec

    # ---- network ----

    def partition(self, groups, kind="partition"):
        """Cut every pair of nodes in different groups, both ways."""
        self._need_fw()
        for gi, a in enumerate(groups):
            for b in groups[gi + 1:]:
                for x in a:
                    for y in b:
                        self.fw.drop(x.ip, y.ip)
                        self.fw.drop(y.ip, x.ip)
        self._event(kind, " | ".join(",".join(n.id for n in g) for g in groups))

    def split_random(self):
        """Majority/minority split at random."""
        nodes = list(self.cluster.nodes)
        self.rng.shuffle(nodes)
        k = len(nodes) // 2
        self.partition([nodes[:k], nodes[k:]], "partition-minority-majority")

    def isolate(self, node=None):
        node = node or self.leader_or_random()
        others = [n for n in self.cluster.nodes if n is not node]
        self.partition([[node], others], "isolate")
        return node

    def bridge(self):
        """Two halves that only one node (the bridge) sees both of."""
        nodes = list(self.cluster.nodes)
        self.rng.shuffle(nodes)
        k = (len(nodes) - 1) // 2
        bridge, a, b = nodes[0], nodes[1:1 + k], nodes[1 + k:]
        self._need_fw()
        for x in a:
            for y in b:
                self.fw.drop(x.ip, y.ip)
                self.fw.drop(y.ip, x.ip)
        self._event("bridge", f"{','.join(n.id for n in a)} <-{bridge.id}-> "
                              f"{','.join(n.id for n in b)}")
        return bridge

    def one_way(self, src, dsts):
        """Packets from src to each of dsts are dropped; the other way works."""
        self._need_fw()
        for d in dsts:
            self.fw.drop(src.ip, d.ip)
        self._event("one-way", f"{src.id} -> {','.join(d.id for d in dsts)} dropped")

    def loss(self, p):
        """Each peer packet between any two nodes dropped with probability p."""
        self._need_fw()
        for x in self.cluster.nodes:
            for y in self.cluster.nodes:
                if x is not y:
                    self.fw.drop(x.ip, y.ip, probability=p)
        self._event("loss", f"p={p} on every peer link")

    def no_udp(self):
        """Every UDP packet between any two nodes dropped (a firewall that
        lets only TCP through): the heartbeats' datagrams are all lost."""
        self._need_fw()
        for x in self.cluster.nodes:
            for y in self.cluster.nodes:
                if x is not y:
                    self.fw.drop(x.ip, y.ip, proto="udp")
        self._event("no-udp", "UDP dropped on every peer link")

    def no_udp_one_way(self, node, outgoing):
        """UDP dropped in one direction only: every datagram node sends to
        the others (outgoing) or every one they send to it. The datagrams
        coming the other way still arrive, which is what the sparse TCP
        copies of heartbeats go by."""
        self._need_fw()
        for y in self.cluster.nodes:
            if y is not node:
                src, dst = (node, y) if outgoing else (y, node)
                self.fw.drop(src.ip, dst.ip, proto="udp")
        way = "from" if outgoing else "to"
        self._event("no-udp-one-way", f"UDP dropped {way} {node.id}")

    def heal(self):
        if self.fw is not None and self.fw.active:
            self.fw.heal()
            self._event("heal", "all DROP rules removed")

    # ---- all of them, at random (the soak) ----

    def random_fault(self, hold):
        """One random fault held for about `hold` seconds, then undone."""
        kinds = ["kill9", "pause", "pause-leader", "kill-leader", "full-restart",
                 "remove-readd", "remove-leader-readd", "transfer", "wipe-rejoin"]
        if self.fw is not None and self.fw.active:
            kinds += ["split", "isolate-leader", "bridge", "one-way", "loss"]
        kind = self.rng.choice(kinds)
        if kind == "kill9":
            self.kill_restart(down=hold)
        elif kind == "kill-leader":
            self.kill_restart(self.leader_or_random(), down=hold)
        elif kind == "pause":
            self.pause(secs=hold)
        elif kind == "pause-leader":
            self.pause(self.leader_or_random(), secs=hold)
        elif kind == "full-restart":
            self.full_restart(down=min(hold, 1.0))
        elif kind in ("remove-readd", "remove-leader-readd"):
            old = self.remove(leader=kind == "remove-leader-readd")
            time.sleep(hold)  # one member short meanwhile
            self.readd(old)
        elif kind == "wipe-rejoin":
            self.wipe_rejoin(leader=self.rng.random() < 0.5, down=hold)
        elif kind == "transfer":
            end = time.monotonic() + hold
            while True:  # a few transfers in a row
                self.transfer()
                if time.monotonic() >= end:
                    break
                time.sleep(self.rng.uniform(0.1, 1.0))
        else:
            if kind == "split":
                self.split_random()
            elif kind == "isolate-leader":
                self.isolate()
            elif kind == "bridge":
                self.bridge()
            elif kind == "one-way":
                src = self.leader_or_random()
                self.one_way(src, [n for n in self.cluster.nodes if n is not src])
            elif kind == "loss":
                self.loss(self.rng.choice([0.05, 0.2, 0.4]))
            time.sleep(hold)
            self.heal()
        return kind
