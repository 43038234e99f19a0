"""How long the Generate workspace keeps an educator waiting: a 2-view film set from a report, the lateral
from a frontal, at the app's sampling settings, timed end to end (condition, sampling, decoding).
`python -m xr bench-generation`; asserts nothing."""
from __future__ import annotations

import numpy as np

from xr.config import ASSETS
from xr.generate.anytoany import FilmMaker
from xr.machine import machine, percentiles
from xr.views import FRONTAL, LATERAL

REPORT = "FINDINGS: Mild cardiomegaly. Small right pleural effusion.\n\nIMPRESSION: Cardiomegaly with small effusion."


def bench_generation(repeats: int = 5, steps: int = 30) -> dict:
    maker = FilmMaker.from_pretrained(ASSETS / "film_generator", ASSETS / "dffg")
    frontal = maker.make([FRONTAL], report=REPORT, steps=steps).films[FRONTAL]
    seeds = iter(range(10_000))
    tasks = {"report -> frontal + lateral": lambda: maker.make([FRONTAL, LATERAL], report=REPORT, steps=steps, seed=next(seeds)),
             "frontal -> lateral": lambda: maker.make([LATERAL], frontal=np.asarray(frontal), steps=steps, seed=next(seeds))}
    return {"machine": machine(), "steps": steps, "model": maker.model.config.version,
            "results": {name: percentiles(fn, repeats) for name, fn in tasks.items()}}


def format_generation(r: dict) -> str:
    lines = [f"Synthetic films ({r['model']}, DDIM {r['steps']} steps with guidance), on: {r['machine']}", "",
             "| task | p50 ms | p95 ms |", "|---|---:|---:|"]
    lines += [f"| {name} | {x['p50_ms']:.0f} | {x['p95_ms']:.0f} |" for name, x in r["results"].items()]
    return "\n".join(lines) + "\n"
