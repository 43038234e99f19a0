"""Dataset loaders on the four layouts: IU X-ray R2Gen and Open-i (shared data and a written fixture),
NIH ChestX-ray14 (shared sample), MIMIC-CXR-JPG (a tiny fixture written here)."""
from __future__ import annotations

import csv
import json

from PIL import Image

from tests.conftest import SHARED
from xr.data.iu_xray import load_iu, parse_report
from xr.data.layouts import load_cases
from xr.data.mimic import load_mimic
from xr.data.nih import load_nih
from xr.report import sections

XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation><MedlineCitation><Article><Abstract>
<AbstractText Label="COMPARISON">None.</AbstractText>
<AbstractText Label="INDICATION">{indication}</AbstractText>
<AbstractText Label="FINDINGS">{findings}</AbstractText>
<AbstractText Label="IMPRESSION">{impression}</AbstractText>
</Abstract></Article></MedlineCitation>
<MeSH>{mesh}</MeSH>
{images}
</eCitation>"""


def write_xml(path, study, n_images, indication, findings, impression, major):
    images = "".join(f'<parentImage id="{study}-{1001 + k}"><caption>x</caption></parentImage>' for k in range(n_images))
    path.write_text(XML.format(indication=indication, findings=findings, impression=impression, images=images,
                               mesh="".join(f"<major>{m}</major>" for m in major)))


def test_iu_r2gen_layout_with_xml(tmp_path, nih_pixels):
    root = tmp_path / "iu"
    (root / "reports").mkdir(parents=True)
    ann = {"train": [{"id": "CXR9_IM-0001", "report": "Heart is enlarged.",
                      "image_path": ["CXR9_IM-0001/0.png", "CXR9_IM-0001/1.png"], "split": "train"}],
           "val": [{"id": "CXR8_IM-0002", "report": "Lungs are clear.", "image_path": ["CXR8_IM-0002/0.png"], "split": "val"}]}
    (root / "annotation.json").write_text(json.dumps(ann))
    for rel in ("CXR9_IM-0001/0.png", "CXR9_IM-0001/1.png"):
        (root / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(nih_pixels).save(root / "images" / rel)
    write_xml(root / "reports" / "9.xml", "CXR9_IM-0001", 2, "Dyspnea.", "Heart is enlarged.", "Cardiomegaly.",
              ["Cardiomegaly/mild", "Pleural Effusion/left"])
    name, cases = load_cases(root)
    assert name == "IU X-ray" and [c.id for c in cases] == ["CXR9_IM-0001", "CXR8_IM-0002"]
    train = cases[0]
    assert train.split == "train" and train.indication == "Dyspnea." and train.impression == "Cardiomegaly."
    assert [p.name for p in train.image_paths] == ["0.png", "1.png"]
    assert train.labels == ("Cardiomegaly", "Pleural Effusion")
    val = load_iu(root, "val")[0]
    assert val.image_paths == () and val.labels == () and val.findings == "Lungs are clear."


def test_openi_xml_parse(tmp_path):
    write_xml(tmp_path / "1.xml", "CXR1_1_IM-0001", 2, "Positive TB test", "No acute disease. XXXX normal.",
              "Normal chest x-XXXX.", ["normal"])
    r = parse_report(tmp_path / "1.xml")
    assert r.study_id == "CXR1_1_IM-0001" and r.image_ids == ("CXR1_1_IM-0001-1001", "CXR1_1_IM-0001-1002")
    assert r.labels == ["No Finding"] and r.mesh_major == ("normal",)
    write_xml(tmp_path / "2.xml", "CXR2", 0, "", "", "", [])
    assert parse_report(tmp_path / "2.xml") is None  # no images: cannot be joined to a study


def test_iu_shared_openi_layout(shared):
    name, val = load_cases(SHARED / "data" / "iu_xray", "val")
    assert name == "IU X-ray" and len(val) == 296
    with_images = [c for c in val if c.image_paths]
    assert [c.id for c in with_images] == ["CXR103_IM-0023"]
    assert with_images[0].image_paths[0].name == "CXR103_IM-0023-1001.png"
    assert sum(1 for c in val if c.indication) > 250 and sum(1 for c in val if c.labels) > 250
    assert len(load_iu(SHARED / "data" / "iu_xray", "train")) == 2069


def test_nih_shared_sample(shared):
    images = load_nih(SHARED / "data" / "nih_cxr14_sample")
    assert len(images) == 497 and all(i.path.exists() for i in images)
    first = next(i for i in images if i.image_id == "00000100_000.png")
    assert first.labels == ["Lung Opacity", "Atelectasis", "Pleural Effusion"]  # Infiltration|Effusion|Atelectasis


MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with cough

 FINDINGS:
 There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral
 nodular opacities are seen.

 IMPRESSION:
 No acute cardiopulmonary process.
"""


def test_mimic_jpg_layout(tmp_path, nih_pixels):
    root = tmp_path / "mimic"
    rows = [("d1", "50414267", "10000032", "train"), ("d2", "50414267", "10000032", "train"),
            ("d3", "53189527", "10000032", "validate"), ("d4", "56699142", "10000764", "test")]
    root.mkdir()
    with open(root / "mimic-cxr-2.0.0-split.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dicom_id", "study_id", "subject_id", "split"])
        w.writerows(rows)
    folder = root / "files" / "p10" / "p10000032"
    (folder / "s50414267").mkdir(parents=True)
    (folder / "s50414267.txt").write_text(MIMIC_REPORT)
    (folder / "s53189527.txt").write_text("IMPRESSION: No change.\n")  # no FINDINGS: left out
    Image.fromarray(nih_pixels).save(folder / "s50414267" / "d1.jpg")
    name, cases = load_cases(root)
    assert name == "MIMIC-CXR" and [c.id for c in cases] == ["s50414267"]
    c = cases[0]
    assert c.split == "train" and c.indication == "___F with cough"
    assert c.findings.startswith("There is no focal consolidation") and "nodular opacities are seen." in c.findings
    assert c.impression == "No acute cardiopulmonary process."
    assert [p.name for p in c.image_paths] == ["d1.jpg"]  # d2.jpg is not on disk
    assert load_mimic(root, "val") == [] and load_mimic(root, "test") == []


def test_mimic_sections():
    s = sections("FINDINGS: a b\n c.\nIMPRESSION:  d.")
    assert s == {"FINDINGS": "a b c.", "IMPRESSION": "d."}
