"""Focal Attention Transfer: FSG anchor bias and Attention Cache in the Semantic-Weak blocks.

Source (semantically responsive) blocks record their video→text probabilities into a cache;
weak blocks blend the mean of the cached maps into their own, ``P' = (1-α)·P + α·P_src``,
after adding the anchor bias to their logits. A source deeper than a weak block has not run
yet in the current forward pass, so the weak block uses that source's previous-step map:
the cache always holds each source's most recent map, per CFG branch.

An anchor from Region Anchor's 'model attention (fallback)' mode has placeholder regions: the
keyword regions are read off the source blocks' own attention to the keyword tokens on the
reference frame as soon as every source block has recorded once (in the same step for sources
shallower than the weak blocks, from the next step for deeper ones), and the bias applies from then.
"""
from dataclasses import dataclass, field

import torch

from .anchors import RegionAnchor, attention_masks
from .attention import TextEdit
from .strategy import WINDOW_OF, Handler, RunContext, TextCall

ALL_COLUMNS = slice(None)


@dataclass(frozen=True)
class TransferSettings:
    weak_blocks: frozenset
    source_blocks: frozenset
    alpha: float
    anchor: RegionAnchor | None
    beta: float
    gamma: float
    start_percent: float        # schedule window, converted to sigmas per run
    end_percent: float
    branches: frozenset         # 0 positive, 1 negative
    per_head: bool = False
    keyword_columns_only: bool = False
    window_of: str = WINDOW_OF[0]

    @property
    def uses_cache(self) -> bool:
        return self.alpha > 0 and bool(self.source_blocks)

    @property
    def uses_anchor(self) -> bool:
        return self.anchor is not None and (self.beta > 0 or self.gamma > 0)


@dataclass
class TransferState:
    """One sampling run of one transfer: the cache, the run's anchor bias and its window."""
    grid: tuple
    window: tuple | None                     # (sigma_start, sigma_end); None: no sampled step in it
    columns: object = field(default_factory=lambda: ALL_COLUMNS)  # text columns cached and transferred
    bias: tuple | None = None                # (columns [C], bias [N, C]) of the anchor
    pending: tuple | None = None             # (placeholder anchor, text offset) awaiting refinement
    refined_masks: torch.Tensor | None = None
    cache: dict = field(default_factory=dict)        # (branch, block) -> latest recorded map
    cache_step: dict = field(default_factory=dict)   # (branch, block) -> step of that map
    source_mean: dict = field(default_factory=dict)  # branch -> mean of the cached maps

    def reset(self):
        self.cache.clear()
        self.cache_step.clear()
        self.source_mean.clear()
        self.bias = self.pending = None


class AttentionTransfer(Handler):
    node_name = "Focal Attention Transfer"

    def __init__(self, settings: TransferSettings):
        self.settings = settings

    @property
    def blocks(self) -> frozenset:
        return self.settings.weak_blocks | self.settings.source_blocks

    def start_run(self, ctx: RunContext) -> TransferState:
        s = self.settings
        if ctx.batch > 1:
            raise ValueError(f"{self.node_name}: batch size {ctx.batch} is not supported (anchors and caches "
                             "are per video); set the latent batch_size to 1")
        state = TransferState(grid=ctx.grid, window=ctx.sigma_window(s.start_percent, s.end_percent, s.window_of))
        if state.window is None:
            ctx.warn_empty_window(self.node_name, s.start_percent, s.end_percent, s.window_of)
        if s.anchor is not None:
            offset = ctx.anchor_offset(s.anchor, 0, self.node_name)
            try:
                columns, bias = s.anchor.bias(ctx.grid, s.beta, s.gamma, text_offset=offset)
            except ValueError as err:
                raise ValueError(f"{self.node_name}: {err}") from None
            if s.anchor.is_placeholder:
                state.pending = (s.anchor, offset)
            else:
                state.bias = (columns, bias)
            if s.keyword_columns_only:
                state.columns = columns
        return state

    def _active(self, state: TransferState, call: TextCall) -> bool:
        if state.window is None or call.branch not in self.settings.branches:
            return False
        sigma_start, sigma_end = state.window
        return sigma_end <= call.sigma <= sigma_start

    def edit_for(self, state: TransferState, call: TextCall) -> TextEdit | None:
        if not self._active(state, call):
            return None
        s = self.settings
        edit = TextEdit(record_per_head=s.per_head)
        if call.block in s.source_blocks and (s.alpha > 0 or state.pending is not None):
            edit.record_columns = state.columns
        if call.block in s.weak_blocks:
            if state.pending is not None:
                self._refine_anchor(state)
            if state.bias is not None and (s.beta or s.gamma):
                edit.bias_columns, edit.bias = state.bias
            source = self._source_mean(state, call.branch) if s.alpha > 0 else None
            if source is not None:
                edit.source = source
                edit.source_columns = None if state.columns is ALL_COLUMNS else state.columns
                edit.alpha = s.alpha
        return edit

    def _source_mean(self, state: TransferState, branch: int):
        """Mean of the cached source maps, computed once per cache change and shared by all weak blocks."""
        if branch not in state.source_mean:
            cached = [state.cache[(branch, b)] for b in sorted(self.settings.source_blocks)
                      if (branch, b) in state.cache]
            state.source_mean[branch] = sum(cached) / len(cached) if cached else None
        return state.source_mean[branch]

    def after(self, state: TransferState, call: TextCall, recorded):
        state.cache[(call.branch, call.block)] = recorded[0].detach()
        state.source_mean.pop(call.branch, None)
        state.cache_step[(call.branch, call.block)] = call.step

    def _refine_anchor(self, state: TransferState):
        """Once every source has recorded on the positive branch, turn its keyword attention into masks."""
        s = self.settings
        keys = [(0, b) for b in sorted(s.source_blocks)]
        if any(k not in state.cache for k in keys):
            return
        anchor, offset = state.pending
        source = torch.stack([state.cache[k] for k in keys]).mean(0)
        if source.ndim == 3:                                   # per-head cache: [h, n, c]
            source = source.mean(0)
        recorded = (list(range(source.shape[-1])) if state.columns is ALL_COLUMNS
                    else state.columns.tolist())
        frames, height, width = state.grid
        frame0 = source[: height * width].float().cpu()       # reference frame tokens come first
        maps = torch.stack([frame0[:, [recorded.index(i + offset) for i in span]].sum(-1).view(height, width)
                            for span in anchor.token_spans])
        refined = anchor.with_masks(attention_masks(maps))
        state.bias = refined.bias(state.grid, s.beta, s.gamma, text_offset=offset)
        state.refined_masks = refined.masks
        state.pending = None
