"""The held-out part of a folder, by patient: a hash of the patient (or study) decides, so the split needs
no file of its own, is the same on every machine and for every model, and keeps a patient's films on one
side."""
from __future__ import annotations

import hashlib


def is_validation(group: str, fraction: float = 0.3) -> bool:
    return int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction
