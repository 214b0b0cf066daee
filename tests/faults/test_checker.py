"""The checks themselves: build/lincheck (through the same path the fault
runs use) must reject a stale read and accept a valid concurrent history;
the never-written check and the outcome classification must be right; the
CAS counter's history goes through lincheck's CAS model."""
from workload import (cas_lincheck_ops, classify_cas, classify_write, lincheck,
                      never_written, run_lincheck)


def op(client, kind, key, value, inv, comp, outcome="ok", level="linearizable"):
    o = {"client": client, "key": key, "op": kind, "value": value, "invoke": inv,
         "complete": comp if outcome == "ok" else None, "outcome": outcome, "kind": "register"}
    if kind == "get":
        o["level"] = level
    return o


def test_rejects_stale_read(tmp_path):
    h = [op(1, "put", "x", "a", 0, 10),
         op(1, "put", "x", "b", 20, 30),
         op(2, "get", "x", "a", 40, 50)]  # b was acknowledged before: stale
    verdict, rc, out, _ = lincheck(h, str(tmp_path / "h.jsonl"))
    assert (verdict, rc) == ("VIOLATION", 1), out


def test_rejects_stale_weak_read_only_when_weak_included(tmp_path):
    h = [op(1, "put", "x", "a", 0, 10),
         op(1, "put", "x", "b", 20, 30),
         op(2, "get", "x", "a", 40, 50, level="weak")]
    assert lincheck(h, str(tmp_path / "a.jsonl"), levels=("linearizable",))[1] == 0
    assert lincheck(h, str(tmp_path / "b.jsonl"))[1] == 1


def test_rejects_read_going_back_in_time(tmp_path):
    h = [op(1, "put", "x", "a", 0, 10),
         op(2, "put", "x", "b", 5, 100),  # concurrent with both reads
         op(3, "get", "x", "b", 20, 30),
         op(4, "get", "x", "a", 40, 50)]  # once b was seen, a cannot come back
    assert lincheck(h, str(tmp_path / "h.jsonl"))[1] == 1


def test_accepts_valid_concurrent_history(tmp_path):
    h = [op(1, "put", "x", "a", 0, 100),
         op(2, "get", "x", None, 5, 15),     # before a took effect
         op(3, "get", "x", "a", 10, 20),     # after: both overlap the put
         op(4, "put", "x", "u", 30, None, "unknown"),  # may or may not happen...
         op(2, "get", "x", "a", 110, 120),
         op(5, "put", "x", "f", 115, None, "fail"),
         op(3, "get", "x", "u", 200, 210),   # ...and it did, late
         op(1, "put", "y", "p", 0, 50),
         op(6, "get", "y", "p", 40, 45),
         op(7, "get", "y", "p", 60, 70)]
    verdict, rc, out, _ = lincheck(h, str(tmp_path / "h.jsonl"))
    assert (verdict, rc) == ("linearizable", 0), out


def test_failed_put_read_is_a_violation(tmp_path):
    h = [op(1, "put", "x", "a", 0, 10, "fail"),
         op(2, "get", "x", "a", 20, 30)]
    assert lincheck(h, str(tmp_path / "h.jsonl"))[1] == 1
    bad = never_written(h)
    assert [b["why"] for b in bad] == ["failed"]


def test_never_written():
    h = [op(1, "put", "x", "a", 0, 10),
         op(1, "put", "x", "u", 20, None, "unknown"),
         op(2, "get", "x", "a", 30, 40, level="none"),
         op(2, "get", "x", "u", 30, 40, level="none"),
         op(2, "get", "x", None, 30, 40, level="none"),
         op(3, "get", "x", "zzz", 50, 60, level="none"),
         op(3, "get", "y", "a", 50, 60, level="none")]  # a was written to x, not y
    assert [(b["key"], b["value"], b["why"]) for b in never_written(h)] == \
        [("x", "zzz", "never written"), ("y", "a", "never written")]


def test_classify_write():
    assert classify_write(200, None) == "ok"
    assert classify_write(504, {"error": "timed out"}) == "unknown"
    assert classify_write(503, {"error": "not committed in time (no quorum?)"}) == "unknown"
    assert classify_write(503, {"error": "the leader changed before the write was placed; "
                                         "it may or may not have been applied"}) == "unknown"
    assert classify_write(503, {"error": "no leader"}) == "fail"
    assert classify_write(503, {"error": "write lost in a leader change; not applied"}) == "fail"
    assert classify_write(400, {"error": "bad json"}) == "fail"
    assert classify_write(500, None) == "unknown"


def cas(client, kind, key, value, inv, comp, outcome="ok", mod=None, expect=None):
    """A CAS-counter op as workload.cas_read / cas_write record it."""
    return {"client": client, "key": key, "op": kind, "value": value, "invoke": inv,
            "complete": comp if outcome != "unknown" else None, "outcome": outcome,
            "mod": mod, "expect": expect, "kind": "cas", "level": "linearizable"}


def test_cas_race_is_linearizable(tmp_path):
    h = [cas(1, "get", "c", None, 0, 5, mod=0),
         cas(1, "cas", "c", "1", 6, 10, mod=7, expect=0),           # If-None-Match: *
         cas(2, "get", "c", "1", 11, 15, mod=7), cas(3, "get", "c", "1", 11, 15, mod=7),
         cas(2, "cas", "c", "2", 16, 20, mod=9, expect=7),
         cas(3, "cas", "c", "2", 16, 22, "refused", mod=9, expect=7),  # 412, current 9
         cas(3, "cas", "c", "3", 30, None, "unknown", expect=9),    # a 504: it applied...
         cas(4, "cas", "c", "3", 31, 32, "fail", expect=9),         # refused conn.: dropped
         cas(1, "get", "c", "3", 40, 45, mod=12)]                   # ...as the final read shows
    lines = cas_lincheck_ops(h)
    assert len(lines) == 8 and all("kind" not in o for o in lines)
    verdict, rc, out, _ = run_lincheck(lines, str(tmp_path / "h.jsonl"))
    assert (verdict, rc) == ("linearizable", 0), out


def test_cas_double_success_is_a_violation(tmp_path):
    h = [cas(1, "get", "c", "4", 0, 5, mod=7), cas(2, "get", "c", "4", 0, 5, mod=7),
         cas(1, "cas", "c", "5", 6, 10, mod=9, expect=7),
         cas(2, "cas", "c", "5", 6, 11, mod=10, expect=7)]  # both from mod 7: a lost update
    verdict, rc, out, _ = run_lincheck(cas_lincheck_ops(h), str(tmp_path / "h.jsonl"))
    assert (verdict, rc) == ("VIOLATION", 1), out
    assert "cas if mod 7" in out


def test_classify_cas():
    assert classify_cas(200, {"mod_index": 5}) == "ok"
    assert classify_cas(201, {"mod_index": 5}) == "ok"
    assert classify_cas(412, {"error": "precondition failed", "mod_index": 4}) == "refused"
    assert classify_cas(504, {"error": "timed out"}) == "unknown"
    assert classify_cas(503, {"error": "no leader"}) == "fail"
