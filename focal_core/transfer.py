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

In auto mode (``focal_core.auto``) the run's first steps pick the weak and/or source blocks.
"""
from dataclasses import dataclass, field

import torch

from . import auto as auto_mode
from .anchors import RegionAnchor, attention_masks
from .attention import TextEdit
from .blocks import format_block_list
from .probe import RunRecordings
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
    auto: auto_mode.AutoSettings | None = None   # pick weak and/or source blocks in the run
    num_blocks: int = 0                     # the model's block count, for auto mode

    @property
    def uses_cache(self) -> bool:
        return self.alpha > 0 and (bool(self.source_blocks) or (self.auto is not None and self.auto.pick_sources))

    @property
    def uses_anchor(self) -> bool:
        return self.anchor is not None and (self.beta > 0 or self.gamma > 0)


@dataclass
class TransferState:
    """One sampling run of one transfer: its blocks, the cache, the anchor bias and the window."""
    grid: tuple
    window: tuple | None                     # (sigma_start, sigma_end); None: no sampled step in it
    weak: frozenset = frozenset()
    sources: frozenset = frozenset()
    auto: auto_mode.AutoState | None = None       # the observation of auto mode, until it has picked
    ctx: RunContext | None = None            # to tell the user what auto mode picked
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

    def __init__(self, settings: TransferSettings, node_id: str | None = None):
        self.settings = settings
        self.node_id = node_id   # the graph node, so the browser can show auto mode's picks on it
        self.recordings = RunRecordings(   # auto mode's observations, for Semantic Layer Report
            "Focal Attention Transfer records only in auto mode; set weak_blocks or source_blocks to 'auto'"
            if settings.auto is None else "wire this transfer's MODEL into the sampler whose LATENT feeds this node")

    @property
    def blocks(self) -> frozenset:
        if self.settings.auto is not None:
            return frozenset(range(self.settings.num_blocks))
        return self.settings.weak_blocks | self.settings.source_blocks

    def start_run(self, ctx: RunContext) -> TransferState:
        s = self.settings
        if s.branches == frozenset({1}) and ctx.cfg == 1.0:
            raise ValueError(f"{self.node_name}: branch 'negative' needs a negative pass, but cfg is 1 so the "
                             "sampler skips it; raise cfg above 1 or guide the positive branch")
        if ctx.batch > 1:
            raise ValueError(f"{self.node_name}: batch size {ctx.batch} is not supported (anchors and caches "
                             "are per video); set the latent batch_size to 1")
        state = TransferState(grid=ctx.grid, window=ctx.sigma_window(s.start_percent, s.end_percent, s.window_of),
                              weak=s.weak_blocks, sources=s.source_blocks, ctx=ctx)
        if s.auto is not None:
            state.auto = auto_mode.start_observing(s.auto, s.anchor, ctx, self.node_name)
        if state.window is None:
            ctx.warn_empty_window(self.node_name, s.start_percent, s.end_percent, s.window_of)
        elif state.auto is not None and not self._guides_after_observing(state, ctx):
            ctx.warn(self.node_name, f"auto mode observes the first {s.auto.observe_steps} step(s) and guides after "
                                     "them, but the window holds no later sampled step, so nothing is guided; "
                                     "widen the window or lower auto_observe_steps.")
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

    @staticmethod
    def _guides_after_observing(state: TransferState, ctx: RunContext) -> bool:
        sigma_start, sigma_end = state.window
        schedule = ctx.sample_sigmas[:-1].tolist()
        return any(sigma_end <= sigma <= sigma_start for sigma in schedule[max(state.auto.observed) + 1:])

    def _active(self, state: TransferState, call: TextCall) -> bool:
        if state.window is None or call.branch not in self.settings.branches:
            return False
        sigma_start, sigma_end = state.window
        return sigma_end <= call.sigma <= sigma_start

    def end_run(self, state: TransferState, output):
        if state.auto is not None:
            state.auto.recording.store(state.auto.pending)   # a run that stopped before the pick
            self.recordings.publish(state.auto.recording, output)
        state.reset()

    def edit_for(self, state: TransferState, call: TextCall) -> TextEdit | None:
        if state.auto is not None:
            if state.auto.observing(call.step):
                return auto_mode.observe_edit(state.auto) if call.branch == 0 else None
            if state.auto.due(call.step):
                self._pick_blocks(state)
        if not self._active(state, call):
            return None
        s = self.settings
        edit = TextEdit(record_per_head=s.per_head)
        if call.block in state.sources and (s.alpha > 0 or state.pending is not None):
            edit.record_columns = state.columns
        if call.block in state.weak:
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
            cached = [state.cache[(branch, b)] for b in sorted(state.sources) if (branch, b) in state.cache]
            state.source_mean[branch] = sum(cached) / len(cached) if cached else None
        return state.source_mean[branch]

    def after(self, state: TransferState, call: TextCall, recorded):
        if state.auto is not None and state.auto.observing(call.step):
            auto_mode.record(state.auto, call.step, call.block, recorded)
            return
        state.cache[(call.branch, call.block)] = recorded[0].detach()
        state.source_mean.pop(call.branch, None)
        state.cache_step[(call.branch, call.block)] = call.step

    def _refine_anchor(self, state: TransferState):
        """Once every source has recorded on the positive branch, turn its keyword attention into masks."""
        s = self.settings
        keys = [(0, b) for b in sorted(state.sources)]
        if not keys or any(k not in state.cache for k in keys):
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

    def _pick_blocks(self, state: TransferState):
        """Auto mode: the Report's rules on the observed steps choose the blocks for the rest of the run."""
        s = self.settings
        report = auto_mode.pick(s.auto, state.auto, s.num_blocks)
        if s.auto.pick_weak:
            state.weak = frozenset(report.weak) - state.sources
        if s.auto.pick_sources:
            state.sources = frozenset(report.responsive) - state.weak
        observed = format_block_list(state.auto.observed)
        if not state.weak:
            state.ctx.warn(self.node_name, f"auto mode found no Semantic-Weak Layers after observing step(s) "
                                           f"{observed} (kappa {s.auto.kappa:g}); the rest of this run is not "
                                           "guided. Lower auto_kappa to find more, or name weak_blocks.")
            return
        weak, sources = format_block_list(state.weak), format_block_list(state.sources) or "none"
        state.ctx.inform(self.node_name, f"auto mode picked weak blocks {weak} and source blocks {sources} after "
                                         f"observing step(s) {observed}; type them into weak_blocks / "
                                         "source_blocks to freeze them.",
                         node_id=self.node_id, auto_picks={"weak_blocks": weak, "source_blocks": sources})
