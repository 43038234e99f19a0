"""Installing and starting, as a user sees it in the console (issue 16): the installer says what it is
doing, the ONNX export prints progress and no warning noise, and the app warms its models up with a line
per step, then prints one `ready at http://HOST:PORT/` line once it serves."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
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
    (tmp_path / "requirements.txt").write_text("torch==2.13.0  # pinned once, here\nsomepackage==1.0\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(STUB_PIP)
    python.chmod(0o755)

    def install() -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", "source scripts/env.sh requirements.txt"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60, env={**os.environ, "XR_TORCH_INDEX": ""})

    r = install()
    assert r.returncode == 0, r.stderr
    steps = re.findall(r"^\[(\d)/4 \d\d:\d\d:\d\d\] (.+)$", r.stderr, re.M)
    assert [n for n, _ in steps] == ["1", "2", "3", "4"], r.stderr
    assert "torch==2.13.0" in steps[0][1] and "requirements.txt" in steps[1][1] and "editable" in steps[3][1]
    assert r.stderr.count("Collecting something (pip output)") == 4  # pip's lines reach the console
    assert re.search(r"^Installed in \d+ s$", r.stderr, re.M)
    calls = (python.parent / "calls").read_text().splitlines()
    assert len(calls) == 4 and not any(" -q" in c for c in calls), calls
    assert "torch==2.13.0" in calls[0] and "--no-deps -e" in calls[3]  # torch's pin read from requirements.txt
    again = install()  # installed: nothing to say
    assert again.returncode == 0 and again.stderr == "" and len((python.parent / "calls").read_text().splitlines()) == 4


TINY_EXPORT = """
import contextlib, sys
from pathlib import Path
import numpy as np
import torch
from torch import nn
import xr.build.onnx as ex

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        return self.conv(x)[..., : int(x.shape[-1]) - 3]  # a Python int from a shape: the tracer warns

def encoders(out, images, repeats):  # stands in for the real encoders: the same export and int8 steps
    x = np.zeros((1, 1, 8, 8), np.float32)
    ex._export(Tiny(), (torch.from_numpy(x),), out / "tiny.onnx", ["pixels"], ["y"], {"pixels": {0: "batch"}})
    ex._quantize(out / "tiny.onnx", out / "tiny.int8.onnx", "pixels", [x, x + 1])
    return {}

if sys.argv[2] == "loud":
    ex.quiet = contextlib.nullcontext
ex.export_encoders = encoders
ex.export_generator = lambda out, repeats=3: {}
ex.export_all(Path(sys.argv[1]), calibration=[np.zeros((8, 8), np.uint8)], progress=lambda s: print(s, file=sys.stderr))
"""


def test_onnx_export_prints_progress_not_warnings(tmp_path):
    """export_all's console is its progress lines: the tracer's and the quantiser's warnings (a screenful in
    scripts/app.sh before) are silenced. A tiny model goes through the same export and int8 steps; with
    the silencing taken out it does warn, so the test can tell."""
    script = tmp_path / "tiny.py"
    script.write_text(TINY_EXPORT)

    def export(mode: str) -> list[str]:
        r = subprocess.run([sys.executable, str(script), str(tmp_path / mode), mode], cwd=ROOT, capture_output=True,
                           text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert r.returncode == 0, r.stderr
        return r.stderr.splitlines()

    assert export("quiet") == ["image encoders (export, int8 calibration, parity, timing)", "generator (export, parity, timing)"]
    loud = "\n".join(export("loud"))
    assert "TracerWarning" in loud and "pre-processing before quantization" in loud


def test_app_start_prints_progress_warms_up_and_says_where_it_serves(tmp_path, monkeypatch):
    """`python app.py` in its own process, as scripts/app.sh runs it: a line per start-up step (the warm-up
    draft among them, so the first user's draft does not load models), then exactly one `ready at URL`
    line, flushed, once the URL answers; warnings for an unnamed signer, none for the named site."""
    monkeypatch.delenv("XR_LOCAL_USER", raising=False)  # (the app's environment is this one, plus its settings)
    app = AppProcess(tmp_path / "data", env={"XR_ORGANIZATION": "Saint Example Hospital"})
    try:
        app.start()
        ready = f"ready at {app.url}"
        deadline = time.monotonic() + 30
        while ready not in app.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        log = app.log.read_text()
        assert httpx.get(app.url, timeout=10).status_code == 200
    finally:
        app.stop()
    lines = log.splitlines()
    assert lines.count(ready) == 1, log[-3000:]
    steps = [m.group(1) for line in lines if (m := re.search(r"start-up (\d/4): (?!done)", line))]
    done = [m.group(1) for line in lines if (m := re.search(r"start-up (\d/4): done in [\d.]+ s", line))]
    assert steps == done == ["1/4", "2/4", "3/4", "4/4"], log[-3000:]
    assert any("warm-up draft" in line for line in lines) and not any("warm-up draft failed" in line for line in lines)
    assert lines.index(ready) > max(i for i, line in enumerate(lines) if "start-up 4/4: done" in line)
    assert "XR_LOCAL_USER is not set" in log and "XR_ORGANIZATION is not set" not in log
    assert "Loading weights" not in log and "HTTP Request" not in log  # no progress bars or request lines
