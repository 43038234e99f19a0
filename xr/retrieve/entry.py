"""What an approved study adds to the similar-case library, and how it is computed.

It is computed before the approval's transaction, so that a model pass never holds the database's write
lock: pooled image features come back from the feature cache by content hash (an image is re-encoded
from its stored copy only when the cache lost it), the text is embedded and labelled. The store then
writes it in the same transaction as the approval.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from safetensors.numpy import load, save

from db.models import LibraryCase
from xr import store
from xr.config import Settings
from xr.evaluate.labeler import label_report, positives
from xr.retrieve.text import report_text


@dataclass(frozen=True)
class LibraryEntry:
    image_encoder: str  # features from another encoder are not comparable, and are not searched
    image_features: np.ndarray  # (views, 512) float32 pooled features, raw: centred at load on the library mean
    text_embedding: np.ndarray  # (384,) float32 MiniLM of the report text
    labels: list[str]  # labeler positives on the approved text

    def columns(self) -> dict:
        """The library_cases columns, arrays as self-describing safetensors bytes (dtype and shape kept)."""
        return {"image_encoder": self.image_encoder, "labels": list(self.labels),
                "image_features": save({"x": np.asarray(self.image_features, np.float32)}),
                "text_embedding": save({"x": np.asarray(self.text_embedding, np.float32)})}

    @classmethod
    def from_row(cls, row: LibraryCase) -> LibraryEntry:
        return cls(row.image_encoder, load(row.image_features)["x"], load(row.text_embedding)["x"], list(row.labels))


def make_entry(s: Settings, study_id: int, text: str, encoder, embed_text) -> LibraryEntry:
    """`encoder`: the drafter's VisionEncoder (its cache holds the drafted images' features);
    `embed_text`: texts -> (n, 384) embeddings."""
    images = store.study_images(s, study_id)
    pixels = [np.asarray(Image.open(s.data_dir / path).convert("L")) for _, path in images]
    feats = encoder.encode(pixels, [h for h, _ in images])
    return LibraryEntry(encoder.name, np.stack([f.pooled for f in feats]).astype(np.float32),
                        embed_text([report_text(text)])[0], positives(label_report(text)))
