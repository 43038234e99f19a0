"""What an approved study adds to the similar-case library, and how it is computed.

It is computed before the approval's transaction, so that a model pass never holds the database's write
lock: pooled image features come back from the feature cache by content hash (an image is re-encoded
from its stored copy only when the cache lost it), the text is embedded and labelled. The store then
writes it in the same transaction as the approval.
"""
from __future__ import annotations

import numpy as np

from xr import store
from xr.config import Settings
from xr.evaluate.labeler import label_report, positives
from xr.ingest import read_pixels
from xr.retrieve.text import report_text
from xr.store import LibraryEntry


def make_entry(s: Settings, study_id: int, text: str, encoder, embed_text) -> LibraryEntry:
    """`encoder`: the drafter's VisionEncoder (its cache holds the drafted images' features);
    `embed_text`: texts -> (n, 384) embeddings."""
    images = store.study_images(s, study_id)
    pixels = [read_pixels(s.data_dir / path, s) for _, path in images]
    feats = encoder.encode(pixels, [h for h, _ in images])
    return LibraryEntry(encoder.name, np.stack([f.pooled for f in feats]).astype(np.float32),
                        embed_text([report_text(text)])[0], positives(label_report(text)))
