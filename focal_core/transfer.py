"""Focal Attention Transfer: FSG anchor bias and Attention Cache in the Semantic-Weak blocks.

Source (semantically responsive) blocks record their video→text probabilities into a cache;
weak blocks blend the mean of the cached maps into their own, ``P' = (1-α)·P + α·P_src``,
after adding the anchor bias to their logits. A source deeper than a weak block has not run
yet in the current forward pass, so the weak block uses that source's previous-step map:
the cache always holds each source's most recent map, per CFG branch.
"""
from dataclasses import dataclass

import torch

from .anchors import RegionAnchor
from .attention import TextEdit
from .strategy import Handler, RunContext, TextCall

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


class AttentionTransfer(Handler):
    node_name = "Focal Attention Transfer"

    def __init__(self, settings: TransferSettings):
        self.settings = settings

    @property
    def blocks(self) -> frozenset:
        return self.settings.weak_blocks | self.settings.source_blocks

    def start_run(self, ctx: RunContext):
        s = self.settings
        if ctx.batch > 1:
            raise ValueError(f"{self.node_name}: batch size {ctx.batch} is not supported (anchors and caches "
                             "are per video); set the latent batch_size to 1")
        state = {"cache": {}, "bias": None, "columns": ALL_COLUMNS,
                 "window": ctx.sigma_window(s.start_percent, s.end_percent)}
        if s.anchor is not None:
            try:
                offset = s.anchor.text_offset(ctx.context_tokens.get(0), ctx.attention)
                columns, bias = s.anchor.bias(ctx.grid, s.beta, s.gamma, text_offset=offset)
            except ValueError as err:
                raise ValueError(f"{self.node_name}: {err}") from None
            known = ctx.text_tokens.get(0)
            if known is not None and int(columns.max()) >= known:
                raise ValueError(f"{self.node_name}: the anchor binds text token {int(columns.max())} but the "
                                 f"positive prompt has {known} tokens; feed Region Anchor the same prompt "
                                 "and text encoder as the positive conditioning")
            state["bias"] = (columns, bias)
            if s.keyword_columns_only:
                state["columns"] = columns
        return state

    def end_run(self, state):
        state["cache"].clear()

    def _active(self, state, call: TextCall) -> bool:
        sigma_start, sigma_end = state["window"]
        return call.branch in self.settings.branches and sigma_end <= call.sigma <= sigma_start

    def edit_for(self, state, call: TextCall) -> TextEdit | None:
        if not self._active(state, call):
            return None
        s, columns = self.settings, state["columns"]
        edit = TextEdit(record_per_head=s.per_head)
        if call.block in s.source_blocks and s.alpha > 0:
            edit.record_columns = columns
        if call.block in s.weak_blocks:
            if state["bias"] is not None and (s.beta or s.gamma):
                edit.bias_columns, bias = state["bias"]
                edit.bias = bias
            cached = [state["cache"][(call.branch, b)] for b in sorted(s.source_blocks)
                      if (call.branch, b) in state["cache"]]
            if cached and s.alpha > 0:
                edit.source = torch.stack(cached).mean(0)
                edit.source_columns = None if columns is ALL_COLUMNS else columns
                edit.alpha = s.alpha
        return edit

    def after(self, state, call: TextCall, recorded):
        state["cache"][(call.branch, call.block)] = recorded[0].detach()
