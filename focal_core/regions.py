"""Keyword regions on the reference frame from dense CLIP similarity (FSG: the paper uses CLIP to find them).

A CLIP ViT's patch tokens are not in the joint image–text space: only the pooled CLS token is
trained to be. MaskCLIP (Zhou et al., 2022) showed that the last block's *value* path, with the
query–key attention, the residual and the MLP dropped, keeps each patch's own content and lies
close enough to that space: ``visual_projection(post_layernorm(out_proj(v_proj(ln1(x)))))``
with x the last block's input. Those features are compared with each keyword's text embedding.

Absent keywords must stay empty, so maps are never min-max stretched. A patch belongs to a
keyword when its cosine to the keyword beats its cosine to generic reference prompts ("a
photo.") by a fixed ``threshold`` margin; ``temperature`` softens that step (CLIP's own
logit scale is 100, i.e. 0.01). Module attribute names follow the host's and Hugging Face's
CLIP (``layer_norm1``, ``self_attn.v_proj`` …); nothing here imports ComfyUI.
"""
import kornia
import torch
import torch.nn.functional as F

PALETTE = torch.tensor([
    (0.95, 0.26, 0.21), (0.13, 0.59, 0.95), (0.30, 0.69, 0.31), (1.00, 0.76, 0.03),
    (0.61, 0.15, 0.69), (0.00, 0.74, 0.83), (1.00, 0.34, 0.13), (0.91, 0.12, 0.39),
])


def maskclip_patch_tokens(hidden: torch.Tensor, last_layer, post_layernorm, projection) -> torch.Tensor:
    """Dense patch features in the joint space: [b, 1+gh·gw, c] input of the last block → [b, n, d].

    hidden: the last block's input (ComfyUI's ``penultimate_hidden_states``), CLS first.
    """
    attn = last_layer.self_attn
    values = attn.out_proj(attn.v_proj(last_layer.layer_norm1(hidden[:, 1:])))
    return projection(post_layernorm(values))


def projection_dim(projection) -> int:
    """Width of a vision model's joint space (0 when it has no learned projection)."""
    weight = getattr(projection, "weight", None)
    return 0 if weight is None else weight.shape[0]


def relative_similarity(patches: torch.Tensor, keywords: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Cosine to each keyword minus the best cosine to any reference prompt.

    patches: [gh, gw, d]; keywords: [k, d]; references: [r, d] → [k, gh, gw].
    """
    patches = F.normalize(patches.float(), dim=-1)
    cos_keywords = torch.einsum("hwd,kd->khw", patches, F.normalize(keywords.float(), dim=-1))
    cos_reference = torch.einsum("hwd,rd->rhw", patches, F.normalize(references.float(), dim=-1))
    return cos_keywords - cos_reference.amax(dim=0, keepdim=True)


def soft_masks(score: torch.Tensor, size: tuple[int, int], threshold: float, temperature: float,
               smooth: float = 0.6) -> torch.Tensor:
    """[k, gh, gw] relative similarity → [k, H, W] soft masks in [0, 1].

    Thresholded on the patch grid, then lightly blurred there (``smooth`` = Gaussian σ in
    patches: at 0.6 an isolated patch falls below 1/2 while a 4×4-patch region keeps IoU > 0.9)
    and resized. Blurring the mask rather than the unbounded score keeps a strongly negative
    background from eating small regions; resizing the mask rather than the score puts each
    edge midway between an inside and an outside patch.
    """
    masks = torch.sigmoid((score[None].float() - threshold) / max(temperature, 1e-6))
    if smooth > 0:
        masks = kornia.filters.gaussian_blur2d(masks, (3, 3), (smooth, smooth), border_type="replicate")
    return kornia.geometry.transform.resize(masks, size, interpolation="bilinear", align_corners=False)[0]


def keyword_masks(patches: torch.Tensor, keywords: torch.Tensor, references: torch.Tensor,
                  size: tuple[int, int], threshold: float = 0.02, temperature: float = 0.01) -> torch.Tensor:
    """Soft masks [k, H, W] for k keyword embeddings over a [gh, gw, d] patch-feature grid.

    The patch grid covers the whole reference image (CLIP input stretched, not cropped), so
    the masks map onto it at any output size and aspect.
    """
    if keywords.shape[-1] != patches.shape[-1] or references.shape[-1] != patches.shape[-1]:
        raise ValueError(f"embedding widths differ: patches {patches.shape[-1]}, "
                         f"keywords {keywords.shape[-1]}, references {references.shape[-1]}")
    return soft_masks(relative_similarity(patches, keywords, references), size, threshold, temperature)


def fit_mask(mask: torch.Tensor, count: int, size: tuple[int, int]) -> torch.Tensor:
    """A user MASK [1 or count, h, w] → [count, H, W] (one mask for all keywords, or one each)."""
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3:
        raise ValueError(f"MASK has shape {tuple(mask.shape)}; a MASK is [h, w] or [batch, h, w]")
    if not torch.isfinite(mask).all():
        raise ValueError("MASK has NaN or infinite pixels")
    if mask.shape[0] not in (1, count):
        raise ValueError(f"MASK batch is {mask.shape[0]}; give 1 mask or one per keyword ({count})")
    mask = kornia.geometry.transform.resize(mask[:, None].float(), size, interpolation="bilinear")[:, 0]
    return mask.clamp(0, 1).expand(count, -1, -1).contiguous()


def placeholder_masks(count: int, size: tuple[int, int]) -> torch.Tensor:
    """Uniform 0.5 masks: the anchor's regions are unknown until sampling (attention fallback);
    an anchor built on them says ``regions_from_attention``, and the transfer refines them."""
    return torch.full((count, *size), 0.5)


def overlay(image: torch.Tensor, masks: torch.Tensor, alpha: float = 0.55) -> torch.Tensor:
    """Tint each keyword's region a different colour over an [H, W, 3] image → [H, W, 3]."""
    out = image[..., :3].float().clone()
    for k, mask in enumerate(masks.float()):
        weight = alpha * mask[..., None]
        out = out * (1 - weight) + PALETTE[k % len(PALETTE)].to(out.device) * weight
    return out.clamp(0, 1)
