"""Model families: the only place that asks which model Focal Guidance has (see ``base.Family``)."""
from .base import Family, ModelInfo, TextLayout, UnsupportedModelError
from .hunyuan_video import HunyuanVideo
from .hunyuan_video_15 import HunyuanVideo15
from .wan import Wan

FAMILIES = (Wan, HunyuanVideo, HunyuanVideo15)
SUPPORTED = ("Wan2.1 I2V/T2V, Wan2.2 I2V A14B, Wan2.2 TI2V-5B, HunyuanVideo 1.0 (T2V, I2V) "
             "and HunyuanVideo 1.5 (I2V, T2V)")


def family_for(info: ModelInfo) -> Family:
    """The family of a model, or UnsupportedModelError saying why not and what is supported."""
    for family in FAMILIES:
        reason = family.refusal(info)
        if reason:
            raise UnsupportedModelError(f"{info.config_class} is not supported: {reason} (supported: {SUPPORTED})")
        if family.matches(info):
            return family(info)
    raise UnsupportedModelError(f"{info.config_class} ({info.network_class}) is not a supported family "
                                f"(supported: {SUPPORTED})")


def family_for_tokenizer(keys) -> type[Family] | None:
    """The family whose DiT reads the context of one of these text-encoder token keys, or None."""
    return next((f for f in FAMILIES for k in keys if k == f.tokenizer), None)


def tokenizers() -> str:
    return ", ".join(f"{f.tokenizer} ({f.name})" for f in FAMILIES)


__all__ = ["FAMILIES", "Family", "ModelInfo", "TextLayout", "UnsupportedModelError", "family_for",
           "family_for_tokenizer", "tokenizers"]
