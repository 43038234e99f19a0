"""The two views the models know, and how a DICOM ViewPosition (or a dataset's sheet of them) maps onto
them."""
from __future__ import annotations

FRONTAL, LATERAL = "frontal", "lateral"
VIEWS = (FRONTAL, LATERAL)
FRONTAL_POSITIONS = {"PA", "AP", "PA/AP", "AP/PA", "FRONTAL"}
LATERAL_POSITIONS = {"LL", "RL", "LAT", "LATERAL", "RLD", "LLD"}


def view_from_position(position: str | None) -> str:
    """Map DICOM ViewPosition onto the two views the models know; anything else is 'unknown'."""
    p = (position or "").strip().upper()
    if p in FRONTAL_POSITIONS:
        return FRONTAL
    if p in LATERAL_POSITIONS:
        return LATERAL
    return "unknown"
