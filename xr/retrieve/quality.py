"""How good the similar cases are, where it can be measured: for each finding a query has, the share of
its top-k cases that have that finding too (precision@k), against what random retrieval would give.

Two measurements, both through CaseIndex.search on the shipped library only (no approved studies):
- images: leave-one-out over the library's NIH images (stored embeddings; one image per patient, so no
  patient is ever its own neighbour), truth = the NIH labels of query and retrieved case;
- report text: IU val studies (never in the library) queried by their findings text, and separately by
  their indication, against the IU train reports; truth = labeler positives on findings + impression of
  both sides, so that query and library are labelled alike.
The random baseline is exact, not simulated: a random case has finding f with the probability f has in
the pool searched (the query itself left out).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from xr.data.case import Case
from xr.evaluate.labeler import label_report, positives
from xr.retrieve.index import CaseIndex, Query
from xr.retrieve.text import case_text

KS = (1, 5, 10)


def precision_table(truth: list[set[str]], retrieved: list[list[set[str]]], pool: list[set[str]],
                    query_in_pool: bool, ks: tuple[int, ...] = KS) -> dict:
    """Per finding, over the queries that have it: precision@k and the random expectation. `overall` pools
    every (query, finding) pair; `abnormal` the same without No Finding, which dominates both datasets."""
    counts, n = Counter(f for labels in pool for f in labels), len(pool)
    sums: dict[str, np.ndarray] = {}  # finding -> [queries, p@k..., random]
    for t, hits in zip(truth, retrieved, strict=False):
        for f in t:
            row = [1.0] + [sum(f in h for h in hits[:k]) / k for k in ks]
            row.append((counts[f] - query_in_pool) / (n - query_in_pool))
            sums[f] = sums.get(f, 0.0) + np.array(row)

    def entry(total: np.ndarray) -> dict:
        q = max(total[0], 1.0)
        out: dict[str, int | float] = {"queries": int(total[0])}
        out.update({f"p@{k}": round(float(v / q), 3) for k, v in zip(ks, total[1:-1], strict=False)})
        out["random"] = round(float(total[-1] / q), 3)
        return out

    zero = np.zeros(len(ks) + 2)
    ordered = sorted(sums, key=lambda f: -sums[f][0])
    return {"findings": {f: entry(sums[f]) for f in ordered},
            "overall": entry(sum(sums.values(), zero)),
            "abnormal": entry(sum((v for f, v in sums.items() if f != "No Finding"), zero))}


def nih_leave_one_out(index: CaseIndex, ks: tuple[int, ...] = KS) -> dict:
    lib = index.library
    pool_cases = list(dict.fromkeys(im["case"] for im in lib.images))  # every case with an image
    truth, retrieved = [], []
    for row, im in enumerate(lib.images):
        if not im["case"].startswith("nih:"):
            continue
        labels = set(lib.by_id[im["case"]]["labels"])
        hits = index.search(Query(lib.embeddings[row:row + 1], None, frozenset(labels)), max(ks), exclude={im["case"]})
        truth.append(labels)
        retrieved.append([set(h.labels) for h in hits])
    table = precision_table(truth, retrieved, [set(lib.by_id[c]["labels"]) for c in pool_cases], True, ks)
    return {"data": f"NIH ChestX-ray14 sample in the shipped library, leave-one-out: {len(truth)} images, "
                    f"searched among {len(pool_cases)} library cases with an image", **table}


def iu_text(index: CaseIndex, cases: list[Case], by: str, split: str, ks: tuple[int, ...] = KS) -> dict:
    """`by`: "findings" or "indication", the query text of each IU case (cases without one are skipped)."""
    from xr.normalize import informative

    lib = index.library
    library_labels = {c["id"]: set(positives(label_report(case_text(c["findings"], c["impression"]))))
                      for c in lib.reports}
    queries = [c for c in cases if informative(getattr(c, by))]
    vectors = index.embed_text([getattr(c, by) for c in queries])
    truth, retrieved = [], []
    for c, v in zip(queries, vectors, strict=False):
        labels = set(positives(label_report(case_text(c.findings, c.impression))))
        hits = index.search(Query(np.zeros((0, lib.embeddings.shape[1]), np.float32), v, frozenset(labels)), max(ks))
        truth.append(labels)
        retrieved.append([library_labels[h.case_id] for h in hits])
    table = precision_table(truth, retrieved, list(library_labels.values()), False, ks)
    return {"data": f"IU X-ray {split}: {len(queries)} studies queried by their "
                    f"{by} text, searched among the {len(library_labels)} IU train reports", **table}


def evaluate(index: CaseIndex, iu_root: Path | None, split: str = "val", ks: tuple[int, ...] = KS) -> dict:
    from xr.data.iu_xray import load_iu

    out = {"images (NIH)": nih_leave_one_out(index, ks)}
    if iu_root is not None:
        cases = load_iu(iu_root, split)
        out["report text: findings (IU)"] = iu_text(index, cases, "findings", split, ks)
        out["report text: indication (IU)"] = iu_text(index, cases, "indication", split, ks)
    return out


def to_markdown(result: dict, ks: tuple[int, ...] = KS) -> str:
    lines = []
    for name, r in result.items():
        lines += [f"**{name}.** {r['data']}.", "",
                  "| finding | queries | " + " | ".join(f"P@{k}" for k in ks) + " | random |",
                  "|---|---:|" + "---:|" * (len(ks) + 1)]
        rows = [*r["findings"].items(), ("**all findings**", r["overall"]), ("**all but No Finding**", r["abnormal"])]
        for f, e in rows:
            lines.append(f"| {f} | {e['queries']} | " + " | ".join(f"{e[f'p@{k}']:.3f}" for k in ks)
                         + f" | {e['random']:.3f} |")
        lines.append("")
    return "\n".join(lines)
