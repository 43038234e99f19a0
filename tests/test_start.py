"""Installing and starting, as a user sees it in the console (issue 16): the installer says what it is
doing, the ONNX export prints progress and no warning noise, and the app warms its models up with a line
per step, then prints one `ready at http://HOST:PORT/` line once it serves."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import httpx

from tests.load.harness import AppProcess
from xr.config import ROOT

STUB_PIP = """#!/bin/sh
# stands in for .venv/bin/python: records how pip was called
echo "$*" >> "$(dirname "$0")/calls"
echo "Collecting something (pip output)"
"""


def test_installer_prints_each_step(tmp_path):
    """scripts/env.sh on a fresh checkout: a line per step and pip's own output, not one line then minutes
    of silence (pip ran with -q). A stub stands in for the virtual environment's python."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "env.sh", tmp_path / "scripts" / "env.sh")
    for name in ("requirements.txt", "requirements-nodeps.txt"):
        (tmp_path / name).write_text("somepackage==1.0\n")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(STUB_PIP)
    python.chmod(0o755)

    def install() -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", "source scripts/env.sh requirements.txt"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60, env={**os.environ, "XR_TORCH_INDEX": ""})

    r = install()
    assert r.returncode == 0, r.stderr
    steps = re.findall(r"^\[(\d)/3 \d\d:\d\d:\d\d\] (.+)$", r.stderr, re.M)
    assert [n for n, _ in steps] == ["1", "2", "3"], r.stderr
    assert "torch" in steps[0][1] and "requirements.txt" in steps[1][1]
    assert r.stderr.count("Collecting something (pip output)") == 3  # pip's lines reach the console
    assert re.search(r"^Installed in \d+ s$", r.stderr, re.M)
    calls = (python.parent / "calls").read_text().splitlines()
    assert len(calls) == 3 and not any(" -q" in c for c in calls), calls
    again = install()  # installed: nothing to say
    assert again.returncode == 0 and again.stderr == "" and len((python.parent / "calls").read_text().splitlines()) == 3
