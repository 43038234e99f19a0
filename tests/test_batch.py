"""`python -m xr batch`: real studies from the public images, drafted here, in spawned processes and on
a local Ray instance; resumed after a torn line and after a killed worker."""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

from tests.conftest import IU, NIH, free_port
from xr.batch import BatchError, read_results, run_batch
from xr.config import ROOT

PAIR = ("CXR1002_IM-0004-1001.png", "CXR1002_IM-0004-2001.png")  # frontal + lateral of one study


def make_in_dir(root: Path) -> Path:
    """Four studies: a two-view folder with an indication, a loose PNG, a zip, and a 0-byte 'PNG'."""
    pair = root / "pair"
    pair.mkdir(parents=True)
    for name in PAIR:
        shutil.copy(IU / name, pair / name)
    (pair / "indication.txt").write_text("cough and fever\n")
    shutil.copy(NIH / "00000075_000.png", root / "loose.png")
    with zipfile.ZipFile(root / "zipped.zip", "w") as zf:
        zf.write(NIH / "00000100_000.png", "00000100_000.png")
    (root / "broken.png").write_bytes(b"")
    (root / "notes.txt").write_text("not a study")
    return root


def lines(out: Path) -> dict[str, dict]:
    records = [json.loads(line) for line in out.read_text().splitlines()]
    return {r["study"]: r for r in records}


def cli_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "XR_DATA_DIR": str(tmp_path / "data"), "XR_SALT": "test-salt", "PYTHONPATH": str(ROOT),
            "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}


def batch(args: list[str], tmp_path: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "xr", "batch", *args, "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env(tmp_path), cwd=ROOT, **kw)


def test_folder_errors_and_resume(tmp_path, shared, env):
    in_dir, out = make_in_dir(tmp_path / "in"), tmp_path / "out.jsonl"
    summary = run_batch(in_dir, out, workers=1, quiet=True)
    assert (summary.drafted, summary.errors, summary.skipped) == (3, 1, 0) and not summary.ok
    got = lines(out)
    assert set(got) == {"pair", "loose.png", "zipped.zip", "broken.png"}  # notes.txt is not a study
    broken = got["broken.png"]
    assert broken == {"study": "broken.png", "status": "error", "error": "IngestError: broken.png: file is empty",
                      "worker": broken["worker"], "elapsed_ms": broken["elapsed_ms"]}
    pair = got["pair"]["draft"]
    assert [v["view"] for v in pair["views"]] == ["frontal", "lateral"]
    assert pair["report"].startswith("FINDINGS:") and pair["similar_case_ids"] and pair["timings"]["total_ms"] > 0
    assert "fusion_weights" not in pair and "lung_mask" not in pair["views"][0]
    text = out.read_text()
    assert str(tmp_path) not in text  # no paths: only the studies' names

    again = run_batch(in_dir, out, workers=1, quiet=True)  # everything done: nothing drafted, no models loaded
    assert (again.drafted, again.errors, again.skipped, again.earlier_errors) == (0, 0, 4, 1)
    assert again.seconds < 2 and lines(out) == got

    kept = [line for line in text.splitlines() if not line.startswith('{"study": "loose.png"')]
    out.write_text("\n".join(kept) + "\n" + '{"study": "loose.png", "status": "o')  # a crash mid-line
    resumed = run_batch(in_dir, out, workers=1, quiet=True)
    assert (resumed.drafted, resumed.errors, resumed.skipped) == (1, 0, 3)  # only the torn study is done again
    assert len(out.read_text().splitlines()) == 4 and set(lines(out)) == set(got)

    retried = run_batch(in_dir, out, workers=1, retry_errors=True, quiet=True)
    assert (retried.drafted, retried.errors, retried.skipped) == (0, 1, 3)


def test_zip_in_dir_and_unsafe_archive(tmp_path, shared, env):
    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in PAIR:
            zf.write(IU / name, f"pair/{name}")
        zf.writestr("pair/indication.txt", "follow-up")
        zf.write(NIH / "00000075_000.png", "loose.png")
        zf.writestr("__MACOSX/._loose.png", b"junk")
    out = tmp_path / "out.jsonl"
    summary = run_batch(archive, out, workers=1, quiet=True)
    assert summary.ok and summary.drafted == 2
    assert {k: v["status"] for k, v in lines(out).items()} == {"pair": "ok", "loose.png": "ok"}

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../escape.png", b"x")
    with pytest.raises(BatchError, match="unsafe path"):
        run_batch(evil, tmp_path / "evil.jsonl", quiet=True)
    assert not (tmp_path / "escape.png").exists()
    # issue 32: the batch reads archives by the ingest's one set of rules: a link refuses it too (it did not)
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as zf:
        entry = zipfile.ZipInfo("study/film.png")
        entry.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(entry, "/etc/passwd")
    with pytest.raises(BatchError, match="unsafe path"):
        run_batch(link, tmp_path / "link.jsonl", quiet=True)


def test_foreign_output_file_is_refused_untouched(tmp_path):
    (tmp_path / "in").mkdir()
    out = tmp_path / "out.jsonl"
    out.write_text("hello\nworld")
    with pytest.raises(BatchError, match="line 1: expected a batch result"):
        read_results(out)
    out.write_text('{"study": "a", "status": "ok"}\nworld')
    with pytest.raises(BatchError, match="line 2"):
        read_results(out)
    assert out.read_text() == '{"study": "a", "status": "ok"}\nworld'


def test_cli_usage_errors_exit_2(tmp_path):
    run = batch([str(tmp_path / "missing"), str(tmp_path / "out.jsonl")], tmp_path)
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 2 and stderr.strip() == "error: missing: not a folder or a .zip archive of studies"
    assert not (tmp_path / "out.jsonl").exists()


def workers_of(pid: int) -> list[int]:
    import psutil

    return [p.pid for p in psutil.Process(pid).children() if "spawn_main" in " ".join(p.cmdline())]


@pytest.mark.processes
def test_worker_processes_killed_then_resumed(tmp_path, shared):
    in_dir, out = make_in_dir(tmp_path / "in"), tmp_path / "out.jsonl"
    shutil.rmtree(in_dir / "pair")  # three studies keep the test short
    first = batch([str(in_dir), str(out), "--workers", "2"], tmp_path)
    deadline = time.monotonic() + 60
    while not (pids := workers_of(first.pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pids, "no worker process started"
    os.kill(pids[0], 9)  # a worker dies (OOM killer, kill -9): the batch must stop, not hang
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 3 and "a worker process died" in stderr, stderr
    assert all(r["status"] == "error" and "worker process died" in r["error"] for r in lines(out).values())

    second = batch([str(in_dir), str(out), "--workers", "2", "--retry-errors"], tmp_path)
    stdout, stderr = second.communicate(timeout=240)
    assert second.returncode == 3, stderr  # broken.png is still broken
    assert "2 drafted, 1 errors, 0 skipped" in stdout
    got = lines(out)  # the last line of each study is its result
    assert {k: v["status"] for k, v in got.items()} == {"loose.png": "ok", "zipped.zip": "ok", "broken.png": "error"}



@pytest.fixture
def ray_head(tmp_path, monkeypatch):
    """A local Ray instance of 2 CPUs whose workers import this checkout, in a process group of its own
    that teardown ends (not `ray stop`, which would end every Ray instance on the machine). Its token,
    set here for the batch too, is its own, whatever ~/.ray/auth_token holds."""
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
    port, temp_dir = free_port(), tempfile.mkdtemp(prefix="xr-ray-")  # short: Ray's socket paths have a limit
    head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}",
                             "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
                             f"--temp-dir={temp_dir}"], env=cli_env(tmp_path), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not ray_listening(port) and head.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert ray_listening(port), "the Ray head did not start"
        yield f"127.0.0.1:{port}"
    finally:
        for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
            for pid in session(head.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while session(head.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
        head.wait(timeout=10)
        shutil.rmtree(temp_dir, ignore_errors=True)


def session(sid: int) -> list[int]:
    """The live processes of a session: the Ray head and all it started (workers leave its process group)."""
    import psutil

    members = []
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid and p.status() != psutil.STATUS_ZOMBIE:
                members.append(p.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass
    return members


def ray_listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.ray
def test_ray_cluster(tmp_path, shared, ray_head):
    in_dir, out = make_in_dir(tmp_path / "in"), tmp_path / "out.jsonl"
    (in_dir / "loose.png").unlink()  # three studies keep the test short
    run = batch([str(in_dir), str(out), "--ray", ray_head, "--workers", "1"], tmp_path)
    stdout, stderr = run.communicate(timeout=240)
    assert run.returncode == 3, stderr
    assert "2 drafted, 1 errors, 0 skipped" in stdout
    got = lines(out)
    assert got["broken.png"]["error"] == "IngestError: broken.png: file is empty"
    assert got["pair"]["status"] == got["zipped.zip"]["status"] == "ok"
    assert [v["view"] for v in got["pair"]["draft"]["views"]] == ["frontal", "lateral"]
    assert got["pair"]["worker"] == got["zipped.zip"]["worker"] != f"{socket.gethostname()}:{run.pid}"
    assert "xr-batch-" not in out.read_text()  # the actor's temporary folder is not written


def test_a_ray_worker_is_sent_pixels_not_files(tmp_path, nih_pixels):
    """Issue 21.6: Ray's channel is not authenticated, so what crosses it is the study as the models see
    it: pixels, view, pixel spacing; no DICOM header, file name or UID."""
    import pickle

    from tests.conftest import PATIENT, write_dicom
    from xr.batch import find_studies

    (tmp_path / "in" / "study-7").mkdir(parents=True)
    write_dicom(tmp_path / "in" / "study-7" / "Doe_Jane.dcm", nih_pixels)
    study = find_studies(tmp_path / "in")[0]
    sent = pickle.dumps(study.pixels())
    for value in (*PATIENT.values(), "Doe_Jane", "1.2.826.0.1.3680043.8.498.1"):
        assert value.encode() not in sent, value
    (pixels, view, spacing), = pickle.loads(sent)
    assert pixels.shape == nih_pixels.shape and view == "frontal" and spacing == pytest.approx((0.143, 0.143))
