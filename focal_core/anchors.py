"""Region anchors for Fine-grained Semantic Guidance (FSG): keyword masks → attention-logit bias.

An anchor holds, per keyword, a soft mask of where the keyword lives in the reference frame and
the indices of the model's own text tokens it binds to. At run time it becomes an additive bias
on those text columns for every video-token query: ``+β·M`` inside, ``−γ·(1−M)`` outside,
weighted per latent frame (frame 0 = the reference frame, full strength).
"""
from dataclasses import dataclass, replace

import kornia
import torch

from .errors import AnchorAspectMismatch


@dataclass(frozen=True)
class RegionAnchor:
    """keywords: K names. masks: [K, h, w] in [0, 1] on the reference frame.
    token_spans: per keyword, indices of its tokens counted from the first prompt token.
    frame_decay: weight of latent frame f is ``frame_decay ** f``; 0 anchors frame 0 only.
    prompt_tokens: how many tokens the prompt has after the encoder's template crop, so the
        spans can be located in a text stream that has other tokens in front (HunyuanVideo I2V
        puts the LLaVA image tokens before the prompt).
    family, tokenizer: the model family whose tokens the spans count, and its text encoder's token
        key (``focal_core.families``); the anchor node sets both, a model of another family refuses
        the anchor. None (anchors built in code) skips that check.
    regions_from_attention: the masks are placeholders (``regions.placeholder_masks``) that Focal
        Attention Transfer replaces with masks read from its source blocks' attention.
    """
    keywords: tuple[str, ...]
    masks: torch.Tensor
    token_spans: tuple[tuple[int, ...], ...]
    frame_decay: float = 1.0
    prompt_tokens: int | None = None
    family: str | None = None
    tokenizer: str | None = None
    regions_from_attention: bool = False

    def __post_init__(self):
        if self.masks.ndim != 3 or self.masks.shape[0] != len(self.keywords):
            raise ValueError(f"anchor masks must be [K={len(self.keywords)}, h, w], got {tuple(self.masks.shape)}")
        if len(self.token_spans) != len(self.keywords) or not all(self.token_spans):
            raise ValueError("every anchor keyword needs a non-empty token span")

    @property
    def columns(self) -> list[int]:
        """Sorted token indices of all keywords, from the first prompt token."""
        return sorted({i for span in self.token_spans for i in span})

    def with_masks(self, masks: torch.Tensor) -> "RegionAnchor":
        """The anchor with these regions (no longer waiting for the model's attention)."""
        return replace(self, masks=masks, regions_from_attention=False)

    @property
    def aspect(self) -> float:
        return self.masks.shape[-1] / self.masks.shape[-2]

    def grid_masks(self, height: int, width: int) -> torch.Tensor:
        """Masks resized to the video-token grid: [K, height, width] (area-averaged)."""
        return kornia.geometry.transform.resize(
            self.masks.float()[None], (height, width), interpolation="area", antialias=False)[0].clamp(0, 1)

    def frame_weights(self, frames: int) -> torch.Tensor:
        """[frames] weights: 1 for the reference frame, ``frame_decay ** f`` after it."""
        return torch.tensor([1.0] + [self.frame_decay ** f for f in range(1, frames)])[:frames]

    def check_grid(self, grid, tolerance: float = 0.08) -> None:
        """Refuse a token grid whose aspect ratio differs from the reference frame's."""
        _, height, width = grid
        grid_aspect = width / height
        if abs(grid_aspect - self.aspect) > tolerance * self.aspect:
            raise AnchorAspectMismatch(self.aspect, (self.masks.shape[-1], self.masks.shape[-2]), (width, height))

    def bias(self, grid, beta: float, gamma: float, text_offset: int = 0):
        """Sparse attention-logit bias for a token grid (frames, height, width).

        Returns ``(columns [C] long, bias [N, C] float32)`` with N = frames·height·width in the
        host's token order (frame-major, then rows, then columns). A token shared by two
        keywords takes the larger mask. ``text_offset`` shifts token indices, e.g. past
        image tokens that precede the prompt in the text stream.
        """
        self.check_grid(grid)
        frames, height, width = grid
        masks = self.grid_masks(height, width).flatten(1)             # [K, h·w]
        weights = self.frame_weights(frames)                          # [F]
        columns = [i + text_offset for i in self.columns]
        column_mask = torch.zeros(len(columns), masks.shape[1])
        for k, span in enumerate(self.token_spans):
            for i in span:
                c = columns.index(i + text_offset)
                column_mask[c] = torch.maximum(column_mask[c], masks[k])
        per_token = beta * column_mask - gamma * (1 - column_mask)    # [C, h·w]
        bias = (weights[:, None, None] * per_token[None]).permute(0, 2, 1).reshape(-1, len(columns))
        return torch.tensor(columns, dtype=torch.long), bias


def attention_masks(response: torch.Tensor) -> torch.Tensor:
    """Soft keyword masks [K, h, w] from keyword-attention maps [K, h, w] (the CLIP-free fallback).

    Each map is divided by its own mean: tokens that attend to the keyword more than the average
    token get weight, rising linearly to 1 at the strongest token; tokens at or below average get 0.
    Relative to the mean rather than min-max, so a flat map (no preference) gives an empty mask.
    """
    ratio = response / response.mean((-2, -1), keepdim=True).clamp_min(1e-12)
    peak = ratio.amax((-2, -1), keepdim=True)
    return ((ratio - 1) / (peak - 1).clamp_min(1e-6)).clamp(0, 1)
