"""ComfyUI-FocalGuidance: Focal Guidance (arXiv 2601.07287) for Wan and HunyuanVideo I2V DiTs.

ComfyUI loads this folder as a custom-node package and calls ``comfy_entrypoint`` (V3 schema).
The node modules are imported lazily so ``focal_core`` stays importable without a host.
"""
WEB_DIRECTORY = "./web/js"


async def comfy_entrypoint():
    from .nodes import FocalGuidanceExtension
    return FocalGuidanceExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
