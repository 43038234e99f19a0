"""Each plug point takes a new part by one registration (README, "Where to add"): a toy drafter, eye,
export format, study source and dataset layout, each registered and then used through the product's own
paths (the workstation, the store, the CLI's parser, the trainers' loader)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import NIH
from xr import store
from xr.cli import parser
from xr.data.films import LAYOUTS, LabelledFilm, Layout, load_films
from xr.draft.registry import DRAFTERS
from xr.encode.eyes import EYES, eye_for
from xr.export.registry import FORMATS, ExportFormat
from xr.findings import FINDINGS
from xr.ingest import IngestedImage, IngestedStudy
from xr.ingest.source import StudyRef
from xr.ingest.sources import SOURCES
from xr.result import DraftResult
from xr.thresholds import Thresholds
from xr.workstation import LOCAL_USER, Workstation


class ToyDrafter:
    model, version = "toy", "0.0.1"
    encoder = None

    def draft(self, study, indication="", exclude=frozenset()) -> DraftResult:
        return DraftResult(findings_text=f"{len(study.images)} films read.", impression="Toy impression.",
                           findings={}, views=[], similar_cases=[], model=self.model, model_version=self.version)


class ToyEye:
    name = "the toy eye"
    findings = ["Cardiomegaly"]
    thresholds = Thresholds.uniform(0.5, ["Cardiomegaly"], "toy")

    def read(self, pixels, features):
        return np.full((len(pixels), 1), 0.75)

    def evidence(self, pixels, features, findings):
        return {f: np.zeros((16, 16)) for f in findings}


class ToySource:
    """Studies that live in memory (as a PACS's live elsewhere): two films each."""

    def __init__(self, location: str, s) -> None:
        self.location = location

    def studies(self) -> list[StudyRef]:
        return [StudyRef(f"{self.location}/{i}", indication="toy indication") for i in range(2)]

    def load(self, ref: StudyRef) -> IngestedStudy:
        seed = int(ref.name.rsplit("/", 1)[1])
        rng = np.random.default_rng(seed)
        return IngestedStudy(key=f"{seed:064d}", images=[IngestedImage(rng.integers(0, 255, (64, 64), np.uint8), "png")
                                                          for _ in range(2)])


def write_toy(report, path: Path) -> Path:
    path.write_text(f"TOY {report.approval_id}: {report.text}")
    return path


def test_a_drafter_and_a_study_source_each_plug_in_with_one_line(env, monkeypatch):
    monkeypatch.setitem(DRAFTERS, "toy", lambda s, index: ToyDrafter())
    monkeypatch.setitem(SOURCES, "toy", ToySource)
    ws = Workstation(replace(env, drafter="toy"))
    source = SOURCES["toy"]("ward-3", env)
    r = ws.draft_from(source, source.studies()[1])
    assert r.draft.report.startswith("FINDINGS: 2 films read.")
    v = store.study_record(env, r.study_id)
    assert v.indication == "toy indication" and len(v.images) == 2
    assert (v.draft.model, v.draft.report) == ("toy", r.draft.report)
    with pytest.raises(ValueError, match="XR_DRAFTER must be one of dffg, retrieval, toy, not 'none'"):
        _ = Workstation(replace(env, drafter="none")).drafter


def test_an_eye_plugs_in_with_one_line_and_drafts_read_with_it(env, monkeypatch, shared):
    monkeypatch.setitem(EYES, "toy", lambda s: ToyEye())
    s = replace(env, eye="toy", drafter="retrieval")
    assert isinstance(eye_for(s), ToyEye)
    d = Workstation(s).draft([NIH / "00000100_000.png"], actor=None).draft
    assert d.timings["eye"] == "the toy eye" and d.findings == {"Cardiomegaly": 0.75}
    assert d.stances["Cardiomegaly"] == "present" and set(d.stances) == set(FINDINGS) - {"No Finding"}
    with pytest.raises(ValueError, match="XR_EYE must be auto or one of finding-head, densenet, site, toy, not 'none'"):
        eye_for(replace(env, eye="none"))


def test_an_export_format_plugs_in_with_one_line_for_the_store_and_the_cli(env, monkeypatch, tmp_path):
    monkeypatch.setitem(FORMATS, "toy", ExportFormat("Toy format", ".toy", f"{__name__}:write_toy"))
    monkeypatch.setitem(DRAFTERS, "toy", lambda s, index: ToyDrafter())
    ws = Workstation(replace(env, drafter="toy"))
    sid = ws.draft_from(ToySource("ward", env)).study_id
    approval = store.approve(env, sid, "FINDINGS: Normal.\n\nIMPRESSION: Normal.", LOCAL_USER)
    path = store.export_report(env, sid, "toy", tmp_path, LOCAL_USER)
    assert path.suffix == ".toy" and path.read_text().startswith(f"TOY {approval}: FINDINGS: Normal.")
    assert parser().parse_args(["export-report", str(sid), "--format", "toy"]).format == "toy"


def test_a_dataset_layout_plugs_in_with_one_line_for_every_trainer(monkeypatch, tmp_path):
    (tmp_path / "a.png").write_bytes(b"")

    def toy_films(root: Path) -> list[LabelledFilm]:
        return [LabelledFilm(p, f"toy:{p.stem}", "frontal", ("Edema",), "", "toy") for p in sorted(root.glob("*.png"))]

    monkeypatch.setitem(LAYOUTS, "toy", Layout(toy_films, None))
    films = load_films(toy=tmp_path)
    assert [(f.group, f.labels) for f in films] == [("toy:a", ("Edema",))]
