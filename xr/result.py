"""What every drafter returns, whatever the model: the seam between models, the store and the UI.
(`DraftResult`; the database row of a stored draft is `db.models.Draft`.)"""
from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields

import numpy as np

from xr.report import compose_report, split_sections


@dataclass
class SimilarCase:
    case_id: str
    similarity: float  # the ranking score, 0..1 (xr.retrieve.index: rank fusion of the indices that found it)
    via: str  # the index(es) that found it: "image", "report" or "image+report"
    labels: list[str]
    report: str
    thumb: str | None = None  # thumbnail path relative to the case library, when the case has an image
    shared_findings: list[str] = field(default_factory=list)  # its labels the query is taken to have
    similarities: dict[str, float] = field(default_factory=dict)  # cosine in each index that found it


@dataclass
class ViewResult:
    index: int
    view: str  # "frontal" or "lateral"
    view_source: str  # "dicom" (ViewPosition) or "image" (read off the lung mask)
    content_hash: str
    fusion_weights: list[list[float]]  # grid over the image, 0..1: how much each region drove the draft
    # frontal views: lung fraction, and the heart/thorax width ratio read off the lung borders, which the finding
    # head uses; it reads lower than a measured cardiothoracic ratio and is not calibrated to one, so no view shows it
    measurements: dict | None
    lung_mask: dict | None  # run-length encoded mask: {"size": [h, w], "counts": [zeros, ones, zeros, ...]}
    evidence: dict[str, list[list[float]]] = field(default_factory=dict)  # finding -> map, most probable first


@dataclass
class DraftResult:
    findings_text: str
    impression: str
    findings: dict[str, float]  # finding -> probability
    views: list[ViewResult]
    similar_cases: list[SimilarCase]
    model: str
    model_version: str
    timings: dict[str, float | str] = field(default_factory=dict)  # milliseconds per step; "backend": what ran
    notes: list[str] = field(default_factory=list)
    # finding -> "present", "possible", "absent" or "not assessed" (xr.thresholds.Stance): what the text says of it
    stances: dict[str, str] = field(default_factory=dict)
    cuts: dict[str, str] = field(default_factory=dict)  # finding -> the statement policy's cut behind its stance
    hedged: list[str] = field(default_factory=list)  # the sentences of the draft that hedge a finding

    @property
    def report(self) -> str:
        return compose_report(self.findings_text, self.impression)

    @property
    def statements(self) -> dict[str, dict[str, str]]:
        """Finding -> its stance and the cut behind it, as the draft row keeps them."""
        return {f: {"stance": st, "cut": self.cuts.get(f, "")} for f, st in self.stances.items()}

    def to_json(self) -> dict:
        """The draft as JSON (the API's answer, the store's columns): each view's fusion weights under
        "fusion_weights" by view index, the report text under "report"."""
        d = asdict(self)
        d["report"] = self.report
        d["fusion_weights"] = {str(v["index"]): v.pop("fusion_weights") for v in d["views"]}
        return d

    @classmethod
    def from_json(cls, d: dict) -> DraftResult:
        """The inverse of `to_json` (the text may come as "report" alone); keys a draft stored by an older
        version lacks take their defaults."""
        if "findings_text" not in d:
            d = {**d, **dict(zip(("findings_text", "impression"), split_sections(d.get("report", "")), strict=True))}
        weights = d.get("fusion_weights") or {}
        views = [_build(ViewResult, {"fusion_weights": weights.get(str(v["index"]), []), **v}) for v in d.get("views") or []]
        return _build(cls, {**d, "views": views, "similar_cases": [_build(SimilarCase, c) for c in d.get("similar_cases") or []]})


def _build(kind, values: dict):
    """`kind` from the keys it has fields for: JSON of another version may have more, or fewer (a field
    with no default is then None: not recorded)."""
    required = {f.name: None for f in fields(kind) if f.default is MISSING and f.default_factory is MISSING}
    return kind(**{**required, **{k: v for k, v in values.items() if k in {f.name for f in fields(kind)}}})


def rle(mask) -> dict:
    """Row-major run lengths, starting with a run of zeros (COCO's uncompressed RLE, but row-major)."""
    flat = np.asarray(mask, dtype=bool).ravel()
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0] + counts
    return {"size": list(np.asarray(mask).shape), "counts": counts}


def unrle(encoded: dict) -> np.ndarray:
    counts = np.asarray(encoded["counts"], dtype=np.int64)
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape(encoded["size"])
