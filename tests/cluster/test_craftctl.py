"""craftctl against a real 3-node cluster (docs/craftctl.md): every command,
its output in both formats, its exit codes, and the endpoint failover."""
import json
import os
import subprocess

from conftest import CRAFTD, free_ports, wait_until

CRAFTCTL = os.path.join(os.path.dirname(CRAFTD), "craftctl")


def ctl(endpoints, *args, stdin=None, timeout=20):
    r = subprocess.run([CRAFTCTL, "--endpoints", ",".join(endpoints), *args],
                       input=stdin, capture_output=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr.decode("utf-8", "replace")


def test_keys(cluster):
    nodes = cluster.start(3)
    eps = [n.haddr for n in nodes]
    follower = [n.haddr for n in nodes if n is not cluster.leader()][:1]
    rc, out, err = ctl(follower, "put", "user1", "batman")
    assert rc == 0 and out.startswith(b"created, mod_index "), (rc, out, err)
    mod = int(out.split()[-1])
    rc, out, _ = ctl(follower, "get", "user1")
    assert (rc, out) == (0, b"batman\n")
    # a condition that no longer holds: exit 1, the value unchanged
    rc, out, err = ctl(eps, "put", "--if-match", str(mod), "user1", "robin")
    assert rc == 0 and out.startswith(b"replaced"), (rc, out, err)
    rc, out, err = ctl(eps, "put", "--if-match", str(mod), "user1", "joker")
    assert rc == 1 and "412" in err, (rc, out, err)
    assert ctl(eps, "get", "user1")[1] == b"robin\n"
    rc, _, err = ctl(eps, "put", "--if-absent", "user1", "x")
    assert rc == 1, err
    # binary values from stdin, exactly back with --raw
    blob = bytes(range(256)) * 4
    assert ctl(eps, "put", "blob", stdin=blob)[0] == 0
    rc, out, _ = ctl(eps, "get", "--raw", "blob")
    assert (rc, out) == (0, blob)
    rc, out, _ = ctl(eps, "-o", "json", "get", "user1")
    meta = json.loads(out)
    assert rc == 0 and meta["value"] == "robin" and meta["version"] == 2, meta
    rc, out, _ = ctl(eps, "get", "--meta", "user1")
    assert b"version: 2" in out and b"value: robin" in out, out
    # absent key: exit 1 and the server's message
    rc, out, err = ctl(eps, "get", "nobody")
    assert rc == 1 and out == b"" and "404" in err, (rc, out, err)
    # keys with bytes that need encoding in a URL
    assert ctl(eps, "put", "a/b c?d%", "v")[0] == 0
    assert ctl(eps, "get", "a/b c?d%")[1] == b"v\n"
    rc, out, _ = ctl(eps, "del", "a/b c?d%")
    assert rc == 0
    assert ctl(eps, "get", "a/b c?d%")[0] == 1


def test_list_txn_and_prefix_delete(cluster):
    nodes = cluster.start(3)
    eps = [nodes[2].haddr]
    for base in range(0, 2500, 100):  # 2,500 keys: more than two pages of 1,000
        txn = {"compare": [], "success": [
            {"op": "put", "key": f"app/{i:04d}", "value": str(i)} for i in range(base, base + 100)]}
        rc, out, err = ctl(eps, "txn", stdin=json.dumps(txn).encode())
        assert rc == 0 and out.startswith(b"succeeded at index "), (rc, out, err)
    rc, out, err = ctl(eps, "list", "app/")
    lines = out.decode().splitlines()
    assert rc == 0 and len(lines) == 2500, (rc, len(lines), err)
    assert lines[0] == "app/0000\t0" and lines[-1] == "app/2499\t2499", lines[:2]
    assert lines == sorted(lines)
    rc, out, _ = ctl(eps, "list", "--limit", "1500", "--keys-only", "app/")
    assert rc == 0 and out.decode().splitlines() == [f"app/{i:04d}" for i in range(1500)]
    rc, out, _ = ctl(eps, "list", "--start", "app/0100", "--end", "app/0103")
    assert out.decode().splitlines() == ["app/0100\t100", "app/0101\t101", "app/0102\t102"]
    rc, out, _ = ctl(eps, "list", "--count", "app/")
    assert (rc, out) == (0, b"2500\n")
    rc, out, _ = ctl(eps, "-o", "json", "list", "app/00")
    doc = json.loads(out)
    assert [k["key"] for k in doc["keys"]] == [f"app/{i:04d}" for i in range(100)]
    # a compare that fails: exit 1, the failure branch's results
    txn = {"compare": [{"key": "app/0000", "value": "not this"}], "success": [],
           "failure": [{"op": "get", "key": "app/0000"}]}
    rc, out, _ = ctl(eps, "txn", stdin=json.dumps(txn).encode())
    assert rc == 1 and out.startswith(b"failed at index "), out
    assert b'"value": "0"' in out or b'"value":"0"' in out, out
    # bad transaction: refused (3), nothing printed on stdout
    rc, out, err = ctl(eps, "txn", stdin=b"{not json")
    assert rc == 3 and out == b"" and "400" in err, (rc, out, err)
    rc, out, _ = ctl(eps, "del", "--prefix", "app/")
    assert (rc, out) == (0, b"deleted 2500\n")
    assert ctl(eps, "list", "--count", "app/")[1] == b"0\n"


def test_cluster_commands_and_failover(cluster):
    nodes = cluster.start(3)
    leader = cluster.leader()
    dead = "127.0.0.1:%d" % free_ports(1)[0]  # nothing listens there
    eps = [dead] + [n.haddr for n in nodes]
    rc, out, err = ctl(eps, "member", "list")
    assert rc == 0, err
    rows = out.decode().splitlines()
    assert rows[0].split()[:2] == ["ID", "RAFT"] and len(rows) == 4, rows
    assert err == "", err  # a dead endpoint is not worth a word when another answers
    rc, out, _ = ctl(eps, "-o", "json", "member", "list")
    assert sorted(m["id"] for m in json.loads(out)) == sorted(n.name for n in nodes)
    rc, out, _ = ctl(eps, "status")
    assert rc == 0 and b"leader:" in out and b"members:   3" in out, out
    target = next(n for n in nodes if n is not leader)
    rc, out, err = ctl(eps, "transfer", target.name)
    assert rc == 0, err
    wait_until("the transfer", lambda: cluster.leader().name == target.name, 10)
    rc, out, err = ctl(eps, "transfer", "nobody")
    assert rc == 1 and "404" in err, (rc, err)
    # member remove, then health: the endpoints left are ready, the dead one not
    gone = next(n for n in nodes if n is not target)
    # (sent to a node that stays: the removed one may not learn that its
    # removal committed, and then answers 503 "may or may not")
    rc, _, err = ctl([target.haddr], "member", "remove", gone.name)
    assert rc == 0, err
    rc, out, _ = ctl([target.haddr], "-o", "json", "member", "list")
    assert gone.name not in [m["id"] for m in json.loads(out)]
    live = [n.haddr for n in nodes if n is not gone]
    wait_until("ready", lambda: ctl(live, "health")[0] == 0, 10)
    rc, out, _ = ctl([dead] + live, "health")
    assert rc == 1 and out.decode().splitlines()[0].endswith("no answer"), out
    # nothing answers at all: exit 4, and each endpoint's reason
    rc, out, err = ctl([dead], "get", "k")
    assert rc == 4 and dead in err and "no endpoint answered" in err, (rc, err)


def test_usage_and_help():
    for args in ([], ["bogus"], ["get"], ["put"], ["put", "--if-match", "x", "k", "v"],
                 ["list", "--limit", "0"], ["member", "frob"], ["-o", "yaml", "status"]):
        rc, out, err = ctl(["127.0.0.1:1"], *args)
        assert rc == 2 and err, (args, rc, err)
    rc, out, _ = ctl(["127.0.0.1:1"], "--help")
    assert rc == 0 and b"commands:" in out
    for cmd in ("get", "put", "del", "list", "txn", "member", "transfer", "status", "health"):
        rc, out, err = ctl(["127.0.0.1:1"], cmd, "--help")
        assert rc == 0 and out.startswith(b"usage: craftctl " + cmd.encode()), (cmd, out, err)


def test_backup_to_a_file_restores(cluster, tmp_path):
    """craftctl backup streams GET /backup to a file that appears whole or
    not at all; craftd -restore takes it."""
    nodes = cluster.start(3)
    follower = [n.haddr for n in nodes if n is not cluster.leader()][:1]
    txn = {"compare": [], "success": [
        {"op": "put", "key": f"b/{i:05d}", "value": "v" * 100} for i in range(100)]}
    for _ in range(30):  # 3,000 puts of 100 keys: a backup of a few hundred KB
        rc, out, err = ctl(follower, "txn", stdin=json.dumps(txn).encode())
        assert rc == 0, (rc, out, err)
    path = tmp_path / "store.backup"
    rc, out, err = ctl(follower, "backup", str(path))
    assert rc == 0 and out.startswith(f"backup: {path}: ".encode()), (rc, out, err)
    size = int(out.split()[2])
    assert path.stat().st_size == size > 100 * 100
    assert not (tmp_path / "store.backup.part").exists()
    rc, out, err = ctl(follower, "-o", "json", "backup", str(path))  # replaces it
    doc = json.loads(out)
    assert rc == 0 and doc["file"] == str(path) and doc["index"] > 0, (rc, out, err)
    assert (path.stat().st_mode & 0o777) == 0o600

    new = cluster.add("fromctl", extra=["-restore", str(path)]).start()
    new.wait_ready(timeout=60.0)
    rc, out, _ = ctl([new.haddr], "list", "--count", "b/")
    assert (rc, out) == (0, b"100\n")

    # nobody answers: exit 4, neither the file nor a part file
    gone = tmp_path / "none.backup"
    port = free_ports(1)[0]
    rc, out, err = ctl([f"127.0.0.1:{port}"], "backup", str(gone))
    assert rc == 4 and not gone.exists() and not (tmp_path / "none.backup.part").exists(), \
        (rc, out, err)
    # a part file in the way (another backup, or a crash): refused, left alone
    (tmp_path / "busy.backup.part").write_bytes(b"x")
    rc, out, err = ctl(follower, "backup", str(tmp_path / "busy.backup"))
    assert rc == 2 and "remove it" in err and not (tmp_path / "busy.backup").exists(), \
        (rc, err)
    assert (tmp_path / "busy.backup.part").read_bytes() == b"x"
    # a directory it cannot write to: exit 2
    rc, _, err = ctl(follower, "backup", str(tmp_path / "no" / "such" / "dir" / "f"))
    assert rc == 2 and "cannot create" in err, err
