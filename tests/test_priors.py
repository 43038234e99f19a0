"""Priors: a patient's studies linked by a keyed hash of their ID (never the ID), the prior found for a
study, the comparison words of its draft (xr.change, xr.draft.compare), and their measurement on the NIH
follow-up pairs."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pydicom

from tests.conftest import NIH, write_dicom
from xr import store
from xr.change import Change, changes
from xr.cli import main
from xr.draft.compare import had, sentence
from xr.ingest import load_study
from xr.store import Actor, PriorStudy

RADIOLOGIST = Actor("dr_a", "radiologist")


def dicom_study(tmp_path: Path, pixels: np.ndarray, uid: str, patient: str, day: str) -> Path:
    path = write_dicom(tmp_path / f"{uid}.dcm", pixels, view="PA", study_uid=uid)
    ds = pydicom.dcmread(path)
    ds.PatientID, ds.StudyDate = patient, day
    ds.save_as(path, enforce_file_format=True)
    return path


def test_the_change_rule_speaks_only_where_the_stance_is_stated():
    had_before = {"Edema": True, "Cardiomegaly": True, "Pleural Effusion": False, "Emphysema": True}
    now = {"Edema": "absent", "Cardiomegaly": "present", "Pleural Effusion": "present", "Emphysema": "possible",
           "Hernia": "absent", "Fibrosis": "present"}
    assert changes(had_before, now) == {"Edema": Change.RESOLVED, "Cardiomegaly": Change.UNCHANGED,
                                        "Pleural Effusion": Change.NEW}
    # hedged now (Emphysema), absent before and now (Hernia), the prior silent (Fibrosis): no word
    prior = PriorStudy(3, date(2026, 5, 3), None, {}, None)
    assert sentence(prior, changes(had_before, now)) == \
        "Compared with 3 May 2026: new pleural effusion; cardiomegaly unchanged; edema resolved."
    assert sentence(prior, {}) == ""
    assert sentence(PriorStudy(3, None, None, {}, None), {"Edema": Change.RESOLVED}) == \
        "Compared with the prior study (#3): edema resolved."


def test_what_the_prior_had_is_its_signed_report_else_its_stated_stances():
    signed = PriorStudy(1, None, "FINDINGS: Small right pleural effusion. No pneumothorax. Possible edema.", {}, None)
    read = had(signed)
    assert read["Pleural Effusion"] is True and read["Pneumothorax"] is False and read["Cardiomegaly"] is False
    assert "Edema" not in read  # uncertain: left out
    unsigned = PriorStudy(1, None, None, {"Edema": "present", "Cardiomegaly": "absent", "Lung Opacity": "possible",
                                          "Hernia": "not assessed"}, None)
    assert had(unsigned) == {"Edema": True, "Cardiomegaly": False}


def test_uploads_of_one_patient_are_linked_without_their_id(tmp_path, env, nih_pixels):
    a = load_study([dicom_study(tmp_path, nih_pixels, "1.2.3.1", "MRN-1", "20260503")], env)
    b = load_study([dicom_study(tmp_path, nih_pixels[:, ::-1].copy(), "1.2.3.2", "MRN-1", "20260510")], env)
    c = load_study([dicom_study(tmp_path, nih_pixels[::-1].copy(), "1.2.3.3", "MRN-2", "20260510")], env)
    assert a.patient == b.patient != c.patient and "MRN" not in a.patient and len(a.patient) == 64
    assert (a.study_date, b.study_date) == (date(2026, 5, 3), date(2026, 5, 10))


def test_a_study_is_drafted_against_its_signed_prior_and_shows_it(tmp_path, env, nih_pixels, workstation_factory):
    ws = workstation_factory(env)
    first = ws.draft([dicom_study(tmp_path, nih_pixels, "1.2.3.10", "MRN-9", "20260503")], "", RADIOLOGIST)
    assert not any(n.startswith("Compared") for n in first.draft.notes) and "Compared" not in first.draft.report
    prior_text = ("FINDINGS: Pulmonary edema. Cardiomegaly. Emphysema. Fibrosis. Hiatal hernia. Pleural thickening. "
                  "IMPRESSION: Edema.")
    ws.approve(first.study_id, prior_text, RADIOLOGIST)
    later = ws.draft([dicom_study(tmp_path, nih_pixels[:, ::-1].copy(), "1.2.3.11", "MRN-9", "20260510")], "", RADIOLOGIST)
    assert f"Compared with study #{first.study_id} of 2026-05-03, as its signed report reads" in later.draft.notes[-1]
    resolved = [f for f in ("Edema", "Cardiomegaly", "Emphysema", "Fibrosis", "Hernia", "Pleural Other")
                if later.draft.stances.get(f) == "absent"]
    assert resolved, "the film's stances deny none of the prior's findings: the test would not test"
    said = later.draft.findings_text.split(".")[0]
    assert said.startswith("Compared with 3 May 2026: ")
    for f in resolved:
        assert f"{f.lower()} resolved" in said
    assert "Compared" not in later.draft.impression  # said once, in the findings

    record = store.study_record(env, later.study_id)
    assert record.prior is not None and record.prior.study_id == first.study_id and record.prior.day == date(2026, 5, 3)
    assert record.prior.signed_text == prior_text and Path(record.prior.frontal).is_file()
    assert store.study_record(env, first.study_id).prior is None  # the first study has no prior
    # another patient's study on the same day is not this one's prior
    other = ws.draft([dicom_study(tmp_path, nih_pixels[::-1].copy(), "1.2.3.12", "MRN-8", "20260511")], "", RADIOLOGIST)
    assert store.study_record(env, other.study_id).prior is None


def test_the_comparison_is_measured_on_the_nih_follow_up_pairs(capsys):
    roots = [str(NIH.parent), str(NIH.parent.parent / "nih_cxr14_more")]
    assert main(["eval-comparison", "--out-of-fold"] + [a for r in roots for a in ("--data", r)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pairs"] == 257
    assert sum(result["true_changes"].values()) == result["floor_unchanged"]["stated"] + result["true_changes"]["new"]
    labels = result["prior_labels"]["all"]
    assert labels["stated"] == sum(result["prior_labels"][c]["stated"] for c in ("new", "unchanged", "resolved"))
    assert 0 <= labels["right"] <= labels["stated"]
