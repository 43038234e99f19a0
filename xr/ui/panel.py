"""The finding panel, the draft's reason: every finding with its probability, what the draft says of it
(its stance) and the statement policy's cut behind that, in the order the report writes them. A finding
the model does not assess is listed as such, for the radiologist to check."""
from __future__ import annotations

from functools import cache

from xr.config import ASSETS
from xr.decode.wording import Wording
from xr.findings import FINDINGS
from xr.report import literal_markdown
from xr.thresholds import Stance

MARK = {Stance.PRESENT.value: "● present", Stance.POSSIBLE.value: "⚠ possible", Stance.ABSENT.value: "○ absent",
        Stance.NOT_ASSESSED.value: "not assessed by the model — check"}


@cache
def _report_order() -> dict[str, float]:
    """Where in the findings section the site writes each finding (0 first), as the writer places them."""
    return Wording.load(ASSETS / "dffg").order


def panel_rows(probabilities: dict[str, float], statements: dict[str, dict] | None) -> list[tuple[str, str, str, str]]:
    """(finding, probability, stance, cut) for every finding: what the report states or hedges, then what it
    denies, each in the order the report writes them, then what it leaves to the reader. A draft stored
    before the policy has no statements: "not recorded"."""
    order = _report_order()
    statements = statements or {}
    names = [f for f in FINDINGS if f != "No Finding" and (f in probabilities or f in statements)]
    rank = {Stance.PRESENT.value: 0, Stance.POSSIBLE.value: 0, Stance.ABSENT.value: 1}
    names.sort(key=lambda f: (rank.get(statements.get(f, {}).get("stance", ""), 2), order.get(f, 0.5)))
    rows = []
    for f in names:
        st = statements.get(f)
        p = probabilities.get(f)
        rows.append((f, "–" if p is None else f"{p:.0%}", MARK.get(st["stance"], st["stance"]) if st else "not recorded",
                     st.get("cut", "") if st else ""))
    return rows


def panel_markdown(probabilities: dict[str, float], statements: dict[str, dict] | None) -> str:
    rows = panel_rows(probabilities, statements)
    if not rows:
        return "*No draft yet: the findings appear here once the study is drafted.*"
    lines = ["| finding | p | the draft says | cut |", "|---|---:|---|---|"]
    lines += [f"| {literal_markdown(f)} | {p} | {s} | {literal_markdown(c)} |" for f, p, s, c in rows]
    return "\n".join(lines)
