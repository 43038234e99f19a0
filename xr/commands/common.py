"""What several commands share."""
from __future__ import annotations

import sys
from collections.abc import Callable


def vision_encoder():
    from xr.config import settings
    from xr.encode.cache import FeatureCache
    from xr.encode.vision import VisionEncoder

    return VisionEncoder.for_models(cache=FeatureCache(settings().data_dir / "cache"))


def main_process() -> tuple[bool, Callable[[str], None]]:
    """(whether this is the main process, its log): under torchrun only the main process logs and prints."""
    from xr.train.engine import is_main_process

    main = is_main_process()
    return main, (lambda m: print(m, file=sys.stderr)) if main else (lambda m: None)
