"""IU X-ray (Open-i): the R2Gen layout (annotation.json + images/<id>/0.png, 1.png), the Open-i XML
reports and the Open-i image naming (CXR1000_IM-0003-1001.png), joined by study id."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from xr.data.case import Case
from xr.findings import complete, from_mesh


@dataclass(frozen=True)
class IUReport:
    study_id: str  # R2Gen id: the first image id without its last '-NNNN' part, e.g. CXR1_1_IM-0001
    indication: str
    comparison: str
    findings: str
    impression: str
    mesh_major: tuple[str, ...]
    mesh_automatic: tuple[str, ...]
    image_ids: tuple[str, ...]  # Open-i image ids, e.g. CXR1_1_IM-0001-3001
    labels: list[str] = field(default_factory=list)


def parse_report(path: Path) -> IUReport | None:
    """None for a report without images: it cannot be joined to a study."""
    root = ET.parse(path).getroot()
    sections = {a.get("Label", "").upper(): (a.text or "").strip() for a in root.iter("AbstractText")}
    image_ids = tuple(p.get("id", "") for p in root.iter("parentImage"))
    if not image_ids:
        return None
    major = tuple((m.text or "").strip() for m in root.iter("major"))
    return IUReport(
        study_id=image_ids[0].rsplit("-", 1)[0],
        indication=sections.get("INDICATION", ""),
        comparison=sections.get("COMPARISON", ""),
        findings=sections.get("FINDINGS", ""),
        impression=sections.get("IMPRESSION", ""),
        mesh_major=major,
        mesh_automatic=tuple((m.text or "").strip() for m in root.iter("automatic")),
        image_ids=image_ids,
        labels=from_mesh(list(major)),
    )


def load_reports(reports_dir: Path) -> dict[str, IUReport]:
    out = {}
    for p in sorted(reports_dir.glob("*.xml")):
        r = parse_report(p)
        if r is not None:
            out[r.study_id] = r
    return out


def load_split(annotation: Path) -> dict[str, str]:
    """study id -> split name, from R2Gen's annotation.json."""
    data = json.loads(annotation.read_text())
    return {item["id"]: split for split, items in data.items() for item in items}


def openi_images(images_dir: Path) -> dict[str, list[Path]]:
    """study id -> image files, from Open-i names: the study id is the image id less its last '-NNNN'."""
    out: dict[str, list[Path]] = {}
    if images_dir.is_dir():
        for p in sorted(images_dir.glob("*.png")):
            out.setdefault(p.stem.rsplit("-", 1)[0], []).append(p)
    return out


def load_iu(root: Path, split: str | None = None) -> list[Case]:
    """IU X-ray under `root`: annotation.json gives the split and the reference (its FINDINGS);
    reports/*.xml, when present, add indication, impression and MeSH labels; images come from the R2Gen
    layout (images/<id>/*.png) or else from the Open-i layout (images_openi/)."""
    data = json.loads((root / "annotation.json").read_text())
    xml = load_reports(root / "reports") if (root / "reports").is_dir() else {}
    openi = openi_images(root / "images_openi")
    cases = []
    for name, items in data.items():
        if split is not None and name != split:
            continue
        for item in items:
            r = xml.get(item["id"])
            r2gen = tuple(p for p in (root / "images" / rel for rel in item.get("image_path", [])) if p.exists())
            cases.append(Case(
                id=item["id"],
                split=name,
                findings=item["report"],
                impression=r.impression if r else "",
                indication=r.indication if r else "",
                image_paths=r2gen or tuple(openi.get(item["id"], ())),
                labels=tuple(complete(r.labels)) if r else (),
            ))
    return cases
