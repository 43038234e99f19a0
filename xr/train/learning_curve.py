"""How the eye learns from sign-offs, simulated on the shared films (`python -m xr learn-curve`). The eye
in use starts as the finding head fit on the first NIH sample only. The second sample's films are then
signed in batches through the real workstation: drafted, and approved with a report that states the
film's sheet labels. `xr learn` runs after each batch, and every eye in use is measured on the same films:
the validation part of all the signed studies, which no candidate ever trains on."""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from xr.config import ASSETS, Settings
from xr.data.films import LAYOUTS, LabelledFilm
from xr.data.split import is_validation
from xr.decode.wording import Wording
from xr.encode.batch import encode_files
from xr.encode.eye import Eye
from xr.encode.eyes import SITE_EYES, eye_for
from xr.encode.finding_head import head_inputs
from xr.findings import FINDINGS
from xr.generate.anytoany import report_for
from xr.ingest import load_study
from xr.train.findings import fit, label_matrix, policy, trained_findings, weight_decay_by_cv
from xr.train.learn import learn, site_auc
from xr.workstation import LOCAL_USER, Workstation

BATCHES = (100, 300, 729)  # signed studies after each batch (the issue's)


def first_eye(films: list[LabelledFilm], encoder, s: Settings) -> Eye:
    """The finding head fit on `films` alone, its weight decay by grouped cross-validation, as shipped."""
    x = head_inputs(encode_files(encoder, [f.path for f in films], s=s))
    findings = trained_findings(films)
    y = label_matrix(films, findings)
    best, oof = weight_decay_by_cv(x, y, findings, [f.group for f in films])
    head = fit(x, y, findings, best)
    head.thresholds = policy(findings, y, oof[best], f"out-of-fold probabilities of the {len(films)} films")
    head.name = f"the finding head fit on the {len(films)} films of the first sample"
    return head


def simulate(s: Settings, first: Path, second: Path, batches: Sequence[int] = BATCHES,
             progress: Callable[[str], None] = print) -> dict:
    """`s`: a scratch installation (its own database and data folder). Returns the curve's points."""
    ws = Workstation(s)
    base = LAYOUTS["nih"].read(first)
    signed = LAYOUTS["nih"].read(second)[:max(batches)]
    wording = Wording.load(ASSETS / "dffg")
    encoder = ws.drafter.encoder
    current = first_eye(base, encoder, s)
    # the study each film becomes (which part it is on); a film whose pixels another film already has is
    # that study again (the workstation opens it, nothing is signed twice), so it is left out
    studies = {load_study([f.path], s).key: f for f in reversed(signed)}
    signed = [f for f in signed if f in studies.values()]
    val = [replace(f, group=f"site:{k[:16]}") for k, f in studies.items() if is_validation(f"site:{k[:16]}")]
    val_feats = encode_files(encoder, [f.path for f in val], s=s)
    measure = [f for j, f in enumerate(FINDINGS) if 0 < label_matrix(val, [f])[:, 0].sum() < len(val)]
    points = [{"signed": 0, "eye": current.name, "auc": site_auc(current, [], val_feats, val, measure)}]
    done = 0
    for upto in (min(b, len(signed)) for b in batches):
        for f in tqdm(signed[done:upto], desc=f"signing up to {upto}", unit="study", disable=None):
            drafted = ws.draft([f.path], "", LOCAL_USER)
            assert drafted.study_id is not None  # drafted with an actor: stored
            ws.approve(drafted.study_id, report_for([x for x in f.labels if x != "No Finding"], wording))
        done = upto
        result = learn(s, base, current, encoder, progress=progress)
        candidate = _load(s, result.version)
        if result.promoted:
            current = eye_for(s)
        points.append({"signed": upto, "promoted": result.promoted, "why": result.why, "eye": current.name,
                       "auc": site_auc(current, [], val_feats, val, measure),
                       "candidate_auc": site_auc(candidate, [], val_feats, val, measure)})
        progress(json.dumps(points[-1]))
    return {"validation_films": len(val), "findings_measured": measure, "points": points}


def _load(s: Settings, version: str) -> Eye:
    from xr.encode.finding_head import FindingHead
    return FindingHead.from_pretrained(s.data_dir / SITE_EYES / version)


def plot(curve: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = curve["points"]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    ax.plot([p["signed"] for p in pts], [p["auc"] for p in pts], "o-", label="eye in use")
    ax.plot([p["signed"] for p in pts[1:]], [p["candidate_auc"] for p in pts[1:]], "s--", label="candidate of that run")
    ax.set_xlabel("signed studies (second NIH sample)")
    ax.set_ylabel(f"macro AUC, {curve['validation_films']} validation films")
    ax.set_title("The eye learning from sign-offs (simulated)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
