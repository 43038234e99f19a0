"""The workstation on a real PACS (Orthanc, tests/orthanc.py): studies found and drafted ahead, signed
reports stored back into their study once, a PACS that is down leaves the report queued until it is back,
bad objects refused whole, and no identifier of the PACS's studies kept here."""
from __future__ import annotations

import io
import json
import logging
from datetime import date
from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.conftest import PATIENT, dciodvfy, write_dicom
from tests.orthanc import orthanc  # noqa: F401 (the fixture)
from xr import store
from xr.cli import main
from xr.config import settings
from xr.deliver import send_reports
from xr.ingest.pacs import Pacs
from xr.store import Actor
from xr.watcher import Watcher, watch_once

RADIOLOGIST = Actor("dr_a", "radiologist")
TODAY = date.today().strftime("%Y%m%d")


@pytest.fixture
def pacs_env(env, orthanc):  # noqa: F811
    """The test's settings, XR_PACS_URL and the PACS user included."""
    return settings()


def put_study(server, tmp_path: Path, pixels: np.ndarray, study_uid: str, patient_id: str, name: str,
              views=("PA", "LL"), **header) -> list[Path]:
    """A patient's study of DICOM films (with the identifiers of tests.conftest.PATIENT, this patient's
    name and ID) into the PACS over its REST API."""
    paths = []
    for n, view in enumerate(views):
        path = write_dicom(tmp_path / f"{patient_id}-{study_uid}-{n}.dcm", np.roll(pixels, 7 * n, axis=1),
                           view=view, study_uid=study_uid)
        ds = pydicom.dcmread(path)
        ds.PatientID, ds.PatientName, ds.StudyDate, ds.StudyTime, ds.PatientSex = patient_id, name, TODAY, "101500", "F"
        for k, v in header.items():
            setattr(ds, k, v)
        ds.save_as(path, enforce_file_format=True)
        server.upload(path)
        paths.append(path)
    return paths


def srs(server, study_uid: str) -> list[dict]:
    return [i for i in server.study_instances(study_uid) if i.get("Modality") == "SR"]


def test_a_study_in_the_pacs_is_drafted_ahead_and_its_signed_report_goes_back_into_it_once(
        tmp_path, pacs_env, orthanc, nih_pixels, workstation_factory, caplog):  # noqa: F811
    caplog.set_level(logging.DEBUG)
    put_study(orthanc, tmp_path, nih_pixels, "1.2.826.0.1.3680043.8.498.101", "MRN-5550123", "Doe^Jane^Q",
              PatientAge="067Y", AccessionNumber="ACC-99887766")
    put_study(orthanc, tmp_path, nih_pixels[::-1].copy(), "1.2.826.0.1.3680043.8.498.202", "MRN-7770001", "Roe^Richard",
              views=("PA",), PatientAge="093Y")
    ws = workstation_factory(pacs_env)

    done = watch_once(ws)
    assert len(done.drafted) == 2 and not done.refused, done.refused
    again = watch_once(ws)
    assert again.drafted == [] and again.known == 2  # drafted once, not fetched again

    rows = {r["id"]: r for r in store.worklist(pacs_env)}
    assert {r["status"] for r in rows.values()} == {"drafted"}
    assert sorted((r["age"], r["sex"]) for r in rows.values()) == [(67, "F"), (90, "F")]  # 93 is kept as 90
    first = next(i for i, r in rows.items() if r["age"] == 67)
    assert rows[first]["views"] == "frontal + lateral"

    text = store.study_record(pacs_env, first).text
    ws.approve(first, text, RADIOLOGIST)
    [sr] = srs(orthanc, "1.2.826.0.1.3680043.8.498.101")
    assert sr["PatientID"] == "MRN-5550123" and sr["AccessionNumber"] == "ACC-99887766"  # in the original study
    blob = orthanc.file(sr["ID"])
    dciodvfy(Path(tmp_path / "sr.dcm").write_bytes(blob) and tmp_path / "sr.dcm")
    assert pydicom.dcmread(io.BytesIO(blob)).VerificationFlag == "VERIFIED"
    assert store.worklist(pacs_env)[0]["pacs"] == "" and send_reports(pacs_env, every=True).sent == 0

    # Sent again (the answer lost, say): the same SOP instance, still one report in the study.
    report = pydicom.dcmread(io.BytesIO(blob))
    Pacs(pacs_env).store(report)
    assert len(srs(orthanc, "1.2.826.0.1.3680043.8.498.101")) == 1

    # An amendment is a second report in the same study, naming the first.
    ws.approve(first, text + " Amended.", RADIOLOGIST)
    reports = srs(orthanc, "1.2.826.0.1.3680043.8.498.101")
    assert len(reports) == 2
    amended = pydicom.dcmread(io.BytesIO(orthanc.file(max(reports, key=lambda r: int(r["SeriesNumber"]))["ID"])))
    assert amended.PredecessorDocumentsSequence[0].StudyInstanceUID == "1.2.826.0.1.3680043.8.498.101"

    # Nothing of the PACS's identity is kept here: the database, the data folder, the log.
    # (the study date is kept on purpose, as DICOM's "retain longitudinal temporal information": a prior is named by it)
    needles = [v for v in PATIENT.values()] + ["MRN-5550123", "MRN-7770001", "Doe", "Roe^Richard", "ACC-99887766",
                                               "1.2.826.0.1.3680043.8.498.101", "1.2.826.0.1.3680043.8.498.202"]
    blobs = {p: p.read_bytes() for p in pacs_env.data_dir.rglob("*") if p.is_file()}
    blobs[Path("log")] = caplog.text.encode()
    for where, content in blobs.items():
        for needle in needles:
            assert needle.encode() not in content, f"{needle!r} found in {where}"


def test_a_report_signed_while_the_pacs_is_down_waits_and_goes_back_once_it_is_up(
        tmp_path, pacs_env, orthanc, nih_pixels, workstation_factory):  # noqa: F811
    put_study(orthanc, tmp_path, nih_pixels, "1.2.826.0.1.3680043.8.498.303", "MRN-1", "Poe^Edgar", views=("PA",))
    ws = workstation_factory(pacs_env)
    [study_id] = watch_once(ws).drafted
    orthanc.stop()
    ws.approve(study_id, store.study_record(pacs_env, study_id).text, RADIOLOGIST)  # signed: the PACS is not asked to agree
    [row] = store.worklist(pacs_env)
    assert row["status"] == "approved" and row["pacs"] == "report not yet in PACS"
    assert "cannot be reached" in store.study_record(pacs_env, study_id).not_in_pacs
    assert send_reports(pacs_env).sent == 0  # not due yet: it waits before the next try

    orthanc.start()
    assert main(["pacs", "send"]) == 0  # what the watcher's next round does, any time
    assert len(srs(orthanc, "1.2.826.0.1.3680043.8.498.303")) == 1
    assert store.worklist(pacs_env)[0]["pacs"] == "" and store.study_record(pacs_env, study_id).not_in_pacs is None
    assert send_reports(pacs_env, every=True).sent == 0  # delivered once


def test_bad_objects_from_the_pacs_are_refused_whole_in_one_line(tmp_path, pacs_env, orthanc, nih_pixels,  # noqa: F811
                                                                    workstation_factory, monkeypatch):
    no_pixels = write_dicom(tmp_path / "no-pixels.dcm", nih_pixels, study_uid="1.2.826.0.1.3680043.8.498.404",
                            with_pixels=False)
    ds = pydicom.dcmread(no_pixels)
    ds.StudyDate = TODAY
    ds.save_as(no_pixels, enforce_file_format=True)
    orthanc.upload(no_pixels)
    put_study(orthanc, tmp_path, nih_pixels, "1.2.826.0.1.3680043.8.498.404", "MRN-404", "Bad^Object", views=("PA",))
    monkeypatch.setenv("XR_MAX_PIXELS", str(nih_pixels.size - 1))
    put_study(orthanc, tmp_path, np.tile(nih_pixels, (1, 2)), "1.2.826.0.1.3680043.8.498.505", "MRN-505", "Huge^Film",
              views=("PA",))
    s = settings()
    ws = workstation_factory(s)
    refused: set[str] = set()
    done = watch_once(ws, refused=refused)
    assert done.drafted == [] and len(done.refused) == 2 and len(refused) == 2
    assert all("\n" not in line for line in done.refused)
    assert any("no pixel data" in line for line in done.refused)
    assert any("over the limit" in line for line in done.refused)
    assert store.worklist(s) == [] and not list(s.image_dir.rglob("*.png"))  # nothing half-stored
    again = watch_once(ws, refused=refused)  # said once: not fetched and refused again every round
    assert (again.refused, again.passed) == ([], 2) and "2 refused before, not fetched again" in again.line()


def test_the_apps_watcher_drafts_ahead_and_says_how_its_last_round_went(tmp_path, pacs_env, orthanc, nih_pixels,  # noqa: F811
                                                                         workstation_factory):
    import time

    put_study(orthanc, tmp_path, nih_pixels, "1.2.826.0.1.3680043.8.498.707", "MRN-707", "Watch^Wanda", views=("PA",))
    watcher = Watcher(workstation_factory(pacs_env), every=0.2)
    assert "first round is running" in watcher.line()
    watcher.start()
    try:
        for _ in range(600):
            if watcher.at is not None:
                break
            time.sleep(0.1)
        assert watcher.line().startswith("PACS watcher, last round ") and "1 drafted ahead" in watcher.line()
        orthanc.stop()
        at = watcher.at
        for _ in range(600):
            if watcher.at != at and watcher.error:
                break
            time.sleep(0.1)
        assert "cannot be reached" in watcher.line() and "tried again every" in watcher.line()
    finally:
        watcher.stop()
    assert [r["status"] for r in store.worklist(pacs_env)] == ["drafted"]


def test_the_pacs_from_the_command_line(tmp_path, pacs_env, orthanc, nih_pixels, capsys):  # noqa: F811
    put_study(orthanc, tmp_path, nih_pixels, "1.2.826.0.1.3680043.8.498.606", "MRN-606", "Cli^Carol", views=("PA",),
              AccessionNumber="ACC-606")
    assert main(["pacs", "search", "--accession", "ACC-606"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith("PACS study ") and date.today().isoformat() in line and "MRN-606" not in line
    assert main(["pacs", "search", "--accession", "ACC-000"]) == 0 and capsys.readouterr().out == ""
    assert main(["worklist", "--json"]) == 0 and json.loads(capsys.readouterr().out) == []


@pytest.mark.slow
def test_the_pacs_through_the_gradio_api(tmp_path, pacs_env, orthanc, nih_pixels, workstation_factory):  # noqa: F811
    from gradio_client import Client

    from app import build_app, launch
    from tests.conftest import free_port

    put_study(orthanc, tmp_path, nih_pixels, "1.2.826.0.1.3680043.8.498.808", "MRN-808", "Api^Amy", views=("PA",),
              PatientAge="051Y")
    demo = build_app(workstation_factory(pacs_env))
    port = free_port()
    launch(demo, pacs_env, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        [found] = client.predict("", "", "", "", api_name="/pacs_search")
        assert found["study"].startswith("PACS study ") and found["study_id"] is None and found["modality"] == "DX"
        drafted = client.predict("", "", "DX", "", api_name="/pacs_draft")
        assert len(drafted["drafted"]) == 1 and drafted["refused"] == []
        assert client.predict("", "", "", "", api_name="/pacs_search")[0]["study_id"] == drafted["drafted"][0]
        assert client.predict("", "", "", "", api_name="/pacs_draft") == {"drafted": [], "refused": []}
        [row] = client.predict("", "", api_name="/worklist")
        assert (row["age"], row["sex"], row["status"]) == (51, "F", "drafted")
        with pytest.raises(Exception, match="not a date"):
            client.predict("3 May", "", "", "", api_name="/pacs_search")
    finally:
        demo.close()


def test_an_unreachable_pacs_is_one_line(env, monkeypatch, capsys):
    monkeypatch.setenv("XR_PACS_URL", "http://127.0.0.1:9/dicom-web")
    assert main(["pacs", "search"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the PACS at http://127.0.0.1:9/dicom-web cannot be reached") and "\n" not in err
    monkeypatch.delenv("XR_PACS_URL")
    assert main(["pacs", "search"]) == 2
    assert "set XR_PACS_URL" in capsys.readouterr().err
