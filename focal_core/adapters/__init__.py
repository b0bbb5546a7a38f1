"""Model-family adapters: which DiT blocks exist and which attention call is the text one.

Each adapter answers the same questions for its family, so the hook code stays generic:
``matches(diffusion_model)``, ``layout(diffusion_model)`` and the q/k/v layout conversions.
"""
from .base import Layout, UnsupportedModelError
from .hunyuan_video import HunyuanVideoAdapter
from .wan import WanAdapter

ADAPTERS = (WanAdapter, HunyuanVideoAdapter)


def adapter_for(diffusion_model):
    """Return the adapter instance for ``diffusion_model`` or raise UnsupportedModelError."""
    for adapter_cls in ADAPTERS:
        if adapter_cls.matches(diffusion_model):
            return adapter_cls(diffusion_model)
    raise UnsupportedModelError(
        f"{type(diffusion_model).__name__} is not a supported model family; Focal Guidance "
        "supports Wan2.1/2.2 (I2V and T2V) and HunyuanVideo (I2V) diffusion models")


__all__ = ["Layout", "UnsupportedModelError", "adapter_for", "ADAPTERS"]
