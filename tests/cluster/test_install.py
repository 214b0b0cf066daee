"""`make install` (docs/operations.md): both programs, their man pages and
the systemd unit land under PREFIX (and DESTDIR), the installed programs
run, the unit passes `systemd-analyze verify` where systemd is there, and
`make uninstall` takes it all away again."""
import os
import shutil
import subprocess

import pytest

from conftest import ROOT


def make(*args):
    r = subprocess.run(["make", "--no-print-directory", "-C", ROOT, *args],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_install_and_uninstall(tmp_path):
    prefix = str(tmp_path / "usr")
    make("install", f"PREFIX={prefix}")
    files = sorted(os.path.relpath(os.path.join(d, f), prefix)
                   for d, _, fs in os.walk(prefix) for f in fs)
    want = ["bin/craftctl", "bin/craftd", "lib/systemd/system/craftd.service"]
    if shutil.which("help2man"):
        want += ["share/man/man1/craftctl.1", "share/man/man1/craftd.1"]
    assert files == sorted(want), files
    for prog in ("craftd", "craftctl"):
        r = subprocess.run([os.path.join(prefix, "bin", prog), "-version" if prog == "craftd"
                            else "--version"], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0 and r.stdout.startswith(prog + " "), r
    unit = open(os.path.join(prefix, "lib/systemd/system/craftd.service")).read()
    assert f"ExecStart={prefix}/bin/craftd\n" in unit and "@BINDIR@" not in unit
    assert "Type=notify" in unit
    if shutil.which("systemd-analyze"):
        r = subprocess.run(["systemd-analyze", "verify",
                            os.path.join(prefix, "lib/systemd/system/craftd.service")],
                           capture_output=True, text=True, timeout=60)
        # man pages are not in the system's man database here: that is all
        problems = [ln for ln in (r.stdout + r.stderr).splitlines()
                    if ln.strip() and "man craft" not in ln]
        assert not problems, problems
    make("uninstall", f"PREFIX={prefix}")
    left = [f for d, _, fs in os.walk(prefix) for f in fs]
    assert left == [], left


def test_destdir_stages_without_touching_prefix(tmp_path):
    stage = str(tmp_path / "stage")
    make("install", f"DESTDIR={stage}", "PREFIX=/opt/craftd-test")
    assert os.path.isfile(os.path.join(stage, "opt/craftd-test/bin/craftd"))
    unit = open(os.path.join(stage, "opt/craftd-test/lib/systemd/system/craftd.service")).read()
    assert "ExecStart=/opt/craftd-test/bin/craftd\n" in unit  # the final path, not the stage
    assert not os.path.exists("/opt/craftd-test")
