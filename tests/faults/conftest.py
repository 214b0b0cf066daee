"""Fixtures of the fault-injection tests (see harness.py, nemesis.py,
workload.py and docs/faults.md).

`run` (no firewall) and `net_run` (with the iptables chain; skipped when
iptables or root is unavailable) give a Run: a results folder
results/faults/<test>-<timestamp>/ holding the node logs, history.jsonl, the
checker's input and output and summary.json / summary.txt; a FaultCluster; a
Nemesis; a History. At teardown, even after a failure or a time-out, every
process is stopped by PID and the firewall chain is removed; a failed test
prints the tail of every node's log and where the results are.
"""
import atexit
import os
import signal
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from faultrun import _FIREWALLS, DURATION, LONG, TEST_TIME_LIMIT, Run, summary_text  # noqa: E402
from harness import CRAFTD, LINCHECK, Firewall, iptables_usable  # noqa: E402



def _cleanup_firewalls():
    for fw in _FIREWALLS:
        if fw.active:
            fw.remove()


atexit.register(_cleanup_firewalls)


def _on_sigterm(signum, frame):
    sys.exit(128 + signum)  # unwinds: fixtures tear down, atexit runs


signal.signal(signal.SIGTERM, _on_sigterm)


@pytest.fixture(scope="session", autouse=True)
def binaries():
    for b in (CRAFTD, LINCHECK):
        if not os.access(b, os.X_OK):
            pytest.fail(f"{b} is missing: run `make build/craftd build/lincheck` first")


class TimeLimitExceeded(Exception):
    pass


@pytest.fixture(autouse=True)
def time_limit():
    limit = TEST_TIME_LIMIT + (int(DURATION) + 600 if LONG else 0)

    def expire(signum, frame):
        raise TimeLimitExceeded(f"test exceeded {limit}s")
    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(limit)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _make_run(request, tmp_path, firewall):
    r = Run(request.node.name, tmp_path, firewall)
    request.node._fault_run = r
    return r


@pytest.fixture
def run(request, tmp_path):
    r = _make_run(request, tmp_path, None)
    yield r
    r.close()


@pytest.fixture
def net_run(request, tmp_path):
    why = iptables_usable()
    if why:
        pytest.skip(f"partition test skipped: {why}")
    fw = Firewall()
    _FIREWALLS.append(fw)
    fw.setup()
    try:
        r = _make_run(request, tmp_path, fw)
    except BaseException:
        fw.remove()
        raise
    yield r
    r.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    r = getattr(item, "_fault_run", None)
    if r is None or not rep.failed:
        return
    lines = [f"history, summary and node logs: {r.dir}"]
    for n in r.cluster.all_nodes():
        if n.proc is not None and n.proc.poll() is not None and not n.killed:
            n.exits.append(n.proc.returncode)
        if n.exits:
            cores = [os.path.join(n.core_dir, f) for f in os.listdir(n.core_dir)] \
                if os.path.isdir(n.core_dir) else []
            lines.append(f"{n.id} CRASHED (exit codes {n.exits}); cores: {cores} "
                         f"(gdb -batch -ex bt {CRAFTD} CORE)")
    rep.sections.append(("fault run results", "\n".join(lines)))
    for path, n in {n.log_path: n for n in r.cluster.all_nodes()}.items():
        rep.sections.append((f"craftd log {n.id} ({path})", n.log_tail()))


_SUMMARIES = []


@pytest.fixture
def report():
    return _SUMMARIES.append


def pytest_terminal_summary(terminalreporter):
    if _SUMMARIES:
        terminalreporter.section("craftd fault runs")
        for s in _SUMMARIES:
            for line in summary_text(s).splitlines():
                terminalreporter.write_line(line)
