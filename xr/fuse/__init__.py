"""Per-case, per-token dynamic fusion of visual and textual features (the DFFG fusion)."""
from xr.fuse.dynamic import FUSION_MODES, DynamicFusion, FusionOutput

__all__ = ["FUSION_MODES", "DynamicFusion", "FusionOutput"]
