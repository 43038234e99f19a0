"""IU X-ray (Open-i): the XML reports, joined to the R2Gen split by study id."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from xr.findings import from_mesh


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
