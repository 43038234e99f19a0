"""What several commands share."""
from __future__ import annotations


def vision_encoder():
    from xr.config import settings
    from xr.encode.cache import FeatureCache
    from xr.encode.vision import VisionEncoder

    return VisionEncoder(cache=FeatureCache(settings().data_dir / "cache"))
