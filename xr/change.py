"""What changed in a finding between a patient's prior study and the current one, from what the prior had
and the eye's stance now: the one rule the drafts' comparison (xr.draft.compare) and its measurement on
the NIH follow-up pairs (xr.evaluate.comparison) share.

A change word carries the backing of the stance under it: *new* and *unchanged* only where the finding is
stated present now (the policy's precision floor), *resolved* only where it is stated absent (its
negative predictive floor); a hedged reading gives no change word. (A first version let a hedge say
"possible new ..."; on the NIH pairs those were right 5 times in 18.)"""
from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from xr.thresholds import Stance


class Change(StrEnum):
    NEW = "new"
    UNCHANGED = "unchanged"
    RESOLVED = "resolved"


def changes(had: Mapping[str, bool], now: Mapping[str, str]) -> dict[str, Change]:
    """Finding -> its change, for the findings stated now (present or absent) that the prior speaks to."""
    out: dict[str, Change] = {}
    for finding, stance in now.items():
        before = had.get(finding)
        if stance == Stance.PRESENT and before is not None:
            out[finding] = Change.UNCHANGED if before else Change.NEW
        elif stance == Stance.ABSENT and before:
            out[finding] = Change.RESOLVED
    return out
