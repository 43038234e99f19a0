"""A real PACS for the tests: Orthanc from Debian's packages (orthanc, orthanc-dicomweb) on 127.0.0.1, with a
throwaway configuration and storage, a user and its password, and DICOMweb at /dicom-web. Skipped where
Orthanc is not installed, except under CI (.ci/run installs it)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port

PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "xr", "orthanc-test-password"


def _executable() -> str:
    exe = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
    if exe is None or not PLUGIN.exists():
        message = "Orthanc with its DICOMweb plugin not found (apt-get install orthanc orthanc-dicomweb)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return exe


class Orthanc:
    def __init__(self, root: Path) -> None:
        self.exe, self.root, self.port = _executable(), root, free_port()
        root.mkdir(parents=True, exist_ok=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self.dicomweb = f"{self.url}/dicom-web"
        self.process: subprocess.Popen | None = None
        config = {"Name": "xr-test", "StorageDirectory": str(root / "storage"), "IndexDirectory": str(root / "storage"),
                  "HttpPort": self.port, "HttpBindAddress": "127.0.0.1", "DicomServerEnabled": False,
                  "RemoteAccessAllowed": False, "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD},
                  "Plugins": [str(PLUGIN)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
        (root / "orthanc.json").write_text(json.dumps(config))

    def start(self) -> None:
        self.process = subprocess.Popen([self.exe, str(self.root / "orthanc.json")], stdout=subprocess.DEVNULL,
                                        stderr=open(self.root / "orthanc.log", "ab"))
        for _ in range(200):
            try:
                if self.get("/system").ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("Orthanc did not start: " + (self.root / "orthanc.log").read_text()[-2000:])

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
            self.process = None

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, auth=(USER, PASSWORD), timeout=10)

    def upload(self, path: Path) -> dict:
        """One DICOM file in, over Orthanc's REST API (as a modality's store would)."""
        r = requests.post(self.url + "/instances", data=path.read_bytes(), auth=(USER, PASSWORD), timeout=30)
        r.raise_for_status()
        return r.json()

    def study_instances(self, study_uid: str) -> list[dict]:
        """Every instance of the study Orthanc holds, with its tags (SOP class, modality...)."""
        r = requests.post(self.url + "/tools/find", auth=(USER, PASSWORD), timeout=10,
                          json={"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}, "Expand": True})
        return [self.get(f"/instances/{i['ID']}/simplified-tags").json() | {"ID": i["ID"]} for i in r.json()]

    def file(self, instance_id: str) -> bytes:
        return self.get(f"/instances/{instance_id}/file").content


@pytest.fixture
def orthanc(tmp_path, monkeypatch):
    """A running Orthanc, and the workstation's settings pointed at it (the password from a file)."""
    server = Orthanc(tmp_path / "orthanc")
    server.start()
    secret = tmp_path / "pacs-password"
    secret.write_text(PASSWORD + "\n")
    monkeypatch.setenv("XR_PACS_URL", server.dicomweb)
    monkeypatch.setenv("XR_PACS_USER", USER)
    monkeypatch.setenv("XR_PACS_PASSWORD_FILE", str(secret))
    yield server
    server.stop()
