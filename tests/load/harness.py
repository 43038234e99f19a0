"""The app as users run it (`python app.py`, its own process, on 127.0.0.1), for the load and crash
scenarios: start it, wait until it serves, watch its memory, kill it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import free_port
from xr.config import ROOT


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class AppProcess:
    data_dir: Path
    env: dict = field(default_factory=dict)  # extra XR_* settings
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, RSS MB)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def log(self) -> Path:
        return self.data_dir.parent / "app.log"

    def start(self, timeout: float = 300) -> AppProcess:
        """Start and wait until it answers (the models load first: tens of seconds on 2 cores)."""
        env = {**os.environ, "XR_DATA_DIR": str(self.data_dir), "XR_PORT": str(self.port), "XR_HOST": "127.0.0.1",
               "XR_AUTH": "off", "PYTHONPATH": str(ROOT), "MALLOC_ARENA_MAX": "2",  # as scripts/app.sh sets it
               **self.env}
        log = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        t0, deadline = time.monotonic(), time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "config", timeout=5).status_code == 200:
                    threading.Thread(target=self._watch, args=(t0,), daemon=True).start()
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.kill()
        raise RuntimeError(f"the app did not answer within {timeout:.0f} s: {self.log.read_text()[-2000:]}")

    def _watch(self, t0: float) -> None:
        proc = self.proc
        while proc.poll() is None:
            try:
                self.samples.append((time.monotonic() - t0, rss_mb(proc.pid)))
            except (FileNotFoundError, ProcessLookupError):
                return
            time.sleep(0.5)

    def rss_now(self) -> float:
        return rss_mb(self.proc.pid)

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed, as when the power goes or the OOM killer strikes."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
