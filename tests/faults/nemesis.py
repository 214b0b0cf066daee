"""The nemesis: faults injected into a running FaultCluster.

Every fault is logged (time, kind, detail) into self.events, noted in the
affected nodes' logs, and undone by heal() / resume_all() / restart_dead().
Partitions are DROP rules between node IPs in the Firewall's chain.
"""
import random
import time


class Nemesis:
    def __init__(self, cluster, firewall=None, seed=None, log=print):
        self.cluster = cluster
        self.fw = firewall
        self.rng = random.Random(seed)
        self.log = log
        self.events = []
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

    def heal(self):
        if self.fw is not None and self.fw.active:
            self.fw.heal()
            self._event("heal", "all DROP rules removed")

    # ---- all of them, at random (the soak) ----

    def random_fault(self, hold):
        """One random fault held for about `hold` seconds, then undone."""
        kinds = ["kill9", "pause", "pause-leader", "kill-leader", "full-restart"]
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
