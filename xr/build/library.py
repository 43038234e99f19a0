"""Build the shipped case library from the public datasets: `python -m xr build-library --shared DIR`.

Only IU *train* studies go in (val is for model selection, test is held out), plus the NIH sample.
Copies at 512 px, not full images, are kept ("thumbs"): the size of the NIH originals, sharp enough to
read in the teaching viewer and to draft from, small enough to ship (about 14 MB for 501 films).
Where the source says, a case keeps the patient's age and an image its projection (PA or AP): the
similar-case search lists films of the query's projection and age group first (xr.retrieve.index).
The report texts are embedded last (`python -m xr index build` redoes only that step).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from safetensors.numpy import save_file

from xr.config import settings
from xr.data.iu_xray import load_reports, load_split
from xr.data.nih import load_nih
from xr.draft.prepare import read_views
from xr.encode.batch import encode_files
from xr.encode.cache import FeatureCache
from xr.encode.vision import VisionEncoder
from xr.findings import complete
from xr.ingest import read_pixels
from xr.retrieve.library import embed
from xr.retrieve.text import build_text_embeddings, text_embedder
from xr.views import FRONTAL

THUMB = 512
LICENCES = {
    "nih": "NIH ChestX-ray14: no restriction on use; cite Wang et al., CVPR 2017",
    "iu": "IU X-ray (Open-i): CC BY-NC-ND 4.0, Demner-Fushman et al., JAMIA 2016",
}


def _thumb(path: Path, out: Path) -> None:
    im = Image.fromarray(read_pixels(path))  # as a draft would show it (16-bit images windowed alike)
    im.thumbnail((THUMB, THUMB))
    im.save(out, quality=85)


def build_library(shared: Path, out: Path, batch: int = 8, progress=print) -> dict:
    data = shared / "data"
    out.mkdir(parents=True, exist_ok=True)
    (out / "thumbs").mkdir(exist_ok=True)
    split = load_split(data / "iu_xray" / "annotation.json")
    reports = load_reports(data / "iu_xray" / "reports")

    cases: list[dict[str, Any]] = []
    images: list[tuple[int, Path, str, str, str | None]] = []  # (case index, path, thumb name, view, projection or None)
    for r in sorted(reports.values(), key=lambda r: r.study_id):
        if split.get(r.study_id) != "train":
            continue
        cases.append({"id": f"iu:{r.study_id}", "source": "iu", "labels": complete(r.labels),
                      "indication": r.indication, "findings": r.findings, "impression": r.impression})
        for image_id in r.image_ids:
            p = data / "iu_xray" / "images_openi" / f"{image_id}.png"
            if p.exists():
                images.append((len(cases) - 1, p, f"iu_{image_id}.jpg", "unknown", None))
    for n in load_nih(data / "nih_cxr14_sample"):
        cases.append({"id": f"nih:{n.image_id.removesuffix('.png')}", "source": "nih",
                      "labels": complete(n.labels), "indication": "", "findings": "", "impression": "", "age": n.age})
        images.append((len(cases) - 1, n.path, f"nih_{n.image_id.removesuffix('.png')}.jpg", FRONTAL,
                       n.view_position if n.view_position in ("PA", "AP") else None))

    encoder = VisionEncoder.for_models(cache=FeatureCache(settings().data_dir / "cache"))
    feats = encode_files(encoder, [p for _, p, *_ in images], batch=batch, progress=progress)
    pooled_views = [f.pooled for f in feats]
    decided = read_views([v for _, _, _, v, _ in images], feats)  # the drafter's view rule
    images = [(ci, p, t, d.view, pos) for (ci, p, t, _, pos), d in zip(images, decided, strict=True)]
    for _, p, thumb, *_ in images:
        _thumb(p, out / "thumbs" / thumb)

    with open(out / "cases.jsonl", "w") as f:
        for c in cases:
            f.write(json.dumps(c) + "\n")
    (out / "images.json").write_text(json.dumps(
        [{"case": cases[ci]["id"], "thumb": t, "view": v, **({"position": pos} if pos else {})}
         for ci, _, t, v, pos in images], indent=0) + "\n")
    pooled = np.stack(pooled_views)
    mean = pooled.mean(0)
    save_file({"embeddings": embed(pooled, mean).astype(np.float16), "mean": mean.astype(np.float32)},
              str(out / "image_embeddings.safetensors"), metadata={"encoder": encoder.name})
    manifest = {"encoder": encoder.name, "cases": len(cases), "images": len(images),
                "cases_with_age": sum(c.get("age") is not None for c in cases),
                "images_with_position": sum(pos is not None for *_, pos in images), "licences": LICENCES}
    (out / "LIBRARY.json").write_text(json.dumps(manifest, indent=2) + "\n")
    build_text_embeddings(out, text_embedder())
    return manifest
