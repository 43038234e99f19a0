"""Learning from the site's sign-offs (`python -m xr learn`): the finding head refit on the shipped films
plus every signed study's films, labelled by what the signed report states (the labeler on the approved
text, never the machine draft), and promoted only if it reads the site's own validation studies better
than the eye in use.

The site's validation part is fixed by a hash of the study (xr.data.split, as for every model here), so
it never trains a candidate and stays the same from one run to the next. Every candidate is kept
(DATA_DIR/eyes/vN, with what it was fit on and measured at); `current` names the promoted one, and
`promoted.json` the order of promotions, so one command rolls back to the previous eye."""
from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from xr import store
from xr.config import Settings
from xr.data.films import LabelledFilm
from xr.data.split import is_validation
from xr.encode.batch import encode_files
from xr.encode.eye import Eye
from xr.encode.eyes import SITE_EYES, site_eye_dir
from xr.encode.finding_head import head_inputs
from xr.encode.vision import VisionEncoder
from xr.files import write_atomic
from xr.ingest import read_pixels
from xr.train.findings import fit, label_matrix, macro_auc, per_finding, policy, trained_findings, weight_decay_by_cv

MIN_SITE_VALIDATION = 10  # fewer validation films than this: nothing is measured, so nothing is promoted


@dataclass
class Learnt:
    version: str  # the candidate's folder under DATA_DIR/eyes
    promoted: bool
    why: str  # one line: the comparison, or why there was none
    site_training_studies: int
    site_validation_films: int
    before: float | None  # macro AUC of the eye in use on the site's validation films
    after: float | None  # the candidate's
    before_eye: str


def site_films(s: Settings) -> list[LabelledFilm]:
    """Every signed study's frontal films, grouped by study (no patient identifier is kept to group by)."""
    return [LabelledFilm(Path(f.path), f"site:{f.study_key[:16]}", f.view if f.view != "unknown" else None,
                         tuple(f.labels), "", "site") for f in store.signed_films(s)]


def site_auc(eye: Eye, pixels: list[np.ndarray], feats, films: list[LabelledFilm], findings: list[str]) -> float | None:
    """Macro AUC over the findings both read and the films show both ways; None where none does."""
    names = [f for f in findings if f in eye.findings]
    y = label_matrix(films, names)
    keep = [j for j in range(len(names)) if 0 < y[:, j].sum() < len(films)]
    if not films or not keep:
        return None
    with torch.inference_mode():
        p = eye.read(pixels, feats)[:, [eye.findings.index(names[j]) for j in keep]]
    return macro_auc(y[:, keep], p)


def learn(s: Settings, base: list[LabelledFilm], current: Eye, encoder: VisionEncoder | None = None,
          progress: Callable[[str], None] = print, min_validation: int = MIN_SITE_VALIDATION) -> Learnt:
    """Fit a candidate on `base` (the shipped films) plus the site's training part, keep it as the next
    version, and promote it if its macro AUC on the site's validation films beats `current`'s (measured on
    at least `min_validation` films)."""
    encoder = encoder or VisionEncoder.for_models(s=s)
    site = site_films(s)
    val = [f for f in site if is_validation(f.group)]
    films = base + [f for f in site if not is_validation(f.group)]
    progress(f"{len(site)} films of signed studies: {len(site) - len(val)} to learn from, {len(val)} to measure on")
    x = head_inputs(encode_files(encoder, [f.path for f in films], s=s))
    findings = trained_findings(films)
    y = label_matrix(films, findings)
    best, oof = weight_decay_by_cv(x, y, findings, [f.group for f in films])
    candidate = fit(x, y, findings, best)
    candidate.thresholds = policy(findings, y, oof[best], f"out-of-fold probabilities of the {len(films)} films it "
                                                          "was fit on (shipped and the site's signed, 5-fold, grouped)")
    val_feats = encode_files(encoder, [f.path for f in val], s=s) if val else []
    val_pixels = [read_pixels(f.path, s) for f in val]
    before, after = (site_auc(e, val_pixels, val_feats, val, findings) for e in (current, candidate))
    if len(val) < min_validation or before is None or after is None:
        promoted, why = False, (f"not promoted: {len(val)} validation films of signed studies, too few to measure "
                                f"on (at least {min_validation}, a finding seen both ways)")
    else:
        promoted = after > before
        why = (f"{'promoted' if promoted else 'not promoted'}: macro AUC on the site's {len(val)} validation films "
               f"{after:.3f} against {before:.3f} for {current.name}")
    result = Learnt("", promoted, why, len({f.group for f in films if f.source == "site"}), len(val),
                    before, after, current.name)
    result.version = _keep(s, candidate, lambda version: {**asdict(result), "version": version, "weight_decay": best,
                                                           "findings": findings, "fit_on": len(films),
                                                           "cv": per_finding(y, oof[best], findings)})
    version = result.version
    if promoted:
        _promote(s, version)
    progress(why)
    return result


def _keep(s: Settings, candidate, record: Callable[[str], dict]) -> str:
    """The candidate written whole into a private folder, then renamed to the next free vN: two runs at
    once never share a version, and a run stopped half-way leaves no vN behind."""
    root = s.data_dir / SITE_EYES
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".writing-") as tmp:
        folder = Path(tmp) / "eye"
        candidate.save_pretrained(folder)
        candidate.thresholds.save(folder)
        while True:
            taken = [int(p.name[1:]) for p in root.glob("v*") if p.name[1:].isdigit()]
            version = f"v{max(taken, default=0) + 1}"
            write_atomic(folder / "learn.json", json.dumps(record(version), indent=1).encode())
            try:
                folder.rename(root / version)  # fails if another run took the name meanwhile
                return version
            except OSError:
                continue


def _history(s: Settings) -> list[str]:
    path = s.data_dir / SITE_EYES / "promoted.json"
    return json.loads(path.read_text()) if path.is_file() else []


def _promote(s: Settings, version: str) -> None:
    """The promotion order first, then the pointer: an interrupted promotion leaves the previous eye in use."""
    root = s.data_dir / SITE_EYES
    write_atomic(root / "promoted.json", json.dumps([*_history(s), version]).encode())
    write_atomic(root / "current", version.encode())


def rollback(s: Settings) -> str | None:
    """The eye promoted before the current one becomes current (None: the shipped eye again). The pointer
    decides what is in use: the promotion order is cut back to it first."""
    current, history = site_eye_dir(s), _history(s)
    if current is None:
        raise store.StoreError("no learnt eye is in use: nothing to roll back")
    root = s.data_dir / SITE_EYES
    history = history[:history.index(current.name)] if current.name in history else history
    write_atomic(root / "promoted.json", json.dumps(history).encode())
    if history:
        write_atomic(root / "current", history[-1].encode())
        return history[-1]
    (root / "current").unlink()
    return None


