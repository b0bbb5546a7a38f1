"""The attention transfer: FSG anchor bias and Attention Cache in the Semantic-Weak blocks.

Source (semantically responsive) blocks record their video→text probabilities into a cache;
weak blocks blend the mean of the cached maps into their own, ``P' = (1-α)·P + α·P_src``,
after adding the anchor bias to their logits. A source deeper than a weak block has not run
yet in the current forward pass, so the weak block uses that source's previous-step map:
the cache always holds each source's most recent map, per CFG branch and, under context windows,
per window (each holds other frames of the video; the anchor bias covers the frames it holds).

An anchor whose regions are to be read from the model's attention (``regions_from_attention``)
is refined from the source blocks' own attention to the keyword tokens on the reference frame as
soon as every source block has recorded once (in the same step for sources shallower than the weak
blocks, from the next step for deeper ones), and the bias applies from then. Without source blocks the
weak blocks' own attention, recorded before any bias, gives the regions (the bias applies from the
next step).

With an anchor, the weak blocks' positive-branch calls also record the keyword columns' final and
unedited probabilities at one step (the first guided one), and the run ends by telling each keyword's
focus (``focal_core.focus``): the share of its attention inside its region, with the weak edit and
without it. Those calls run on the explicit attention path (``TextEdit.record_unedited``); every other
call keeps the fused kernel.

In auto mode the blocks come from the :class:`~focal_core.handler.BlockPick` of the handler named
in ``picked_by`` (``focal_core.auto``), placed ahead of this one: nothing is guided before the pick.
"""
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .anchors import RegionAnchor, attention_masks
from .attention import TextEdit
from .errors import KeywordFocusMeasured, Notice, NothingGuidedAfterObserving
from .focus import KeywordFocus
from .handler import POSITIVE, BlockPick, Handler, RunContext, SigmaWindow, StepWindow, TextCall
from .recorder import AttentionRecorder


@dataclass(frozen=True)
class TransferSettings:
    weak: frozenset[int]        # Semantic-Weak blocks to guide
    sources: frozenset[int]     # responsive blocks whose maps are cached and transferred
    alpha: float
    anchor: RegionAnchor | None
    beta: float
    gamma: float
    start: float                # step window (StepWindow), converted to sigmas per run
    end: float
    branches: frozenset[int]    # POSITIVE and/or NEGATIVE
    per_head: bool = False
    keyword_columns_only: bool = False
    within_sampled_steps: bool = False   # the window's percents count the sampled steps (StepWindow)
    picked_by: Handler | None = None     # auto mode: the handler whose BlockPick names the blocks
    observe_steps: int = 0               # auto mode: the leading steps it only observes
    num_blocks: int = 0                  # the model's block count, for auto mode

    @property
    def window(self) -> StepWindow:
        return StepWindow(self.start, self.end, self.within_sampled_steps)

    @property
    def uses_anchor(self) -> bool:
        return self.anchor is not None and (self.beta > 0 or self.gamma > 0)


@dataclass
class AnchorBias:
    """The anchor's additive logits: ``bias [N, C]`` on text ``columns [C]``, N the whole grid's tokens."""
    columns: torch.Tensor
    bias: torch.Tensor

    def rows(self, frames: tuple[int, ...] | None, grid: tuple[int, int, int]) -> torch.Tensor:
        """The bias of the video tokens a call holds: every row, or a context window's frames."""
        if frames is None:
            return self.bias
        f, h, w = grid
        return self.bias.view(f, h * w, -1)[list(frames)].reshape(len(frames) * h * w, -1)


@dataclass
class AnchorToRefine:
    """An anchor whose regions wait for the source blocks' attention, and its text offset."""
    anchor: RegionAnchor
    text_offset: int


@dataclass
class TransferState:
    """One sampling run of one transfer: its blocks, the cache, the anchor bias and the window."""
    grid: tuple[int, int, int]
    window: SigmaWindow | None               # None: no sampled step in it
    recorder: AttentionRecorder              # the text columns cached and transferred
    weak: frozenset[int] = frozenset()
    sources: frozenset[int] = frozenset()
    picks: dict[Handler, BlockPick] | None = None    # auto mode: the run's picks, until this one's is read
    bias: AnchorBias | None = None
    to_refine: AnchorToRefine | None = None
    refined_masks: torch.Tensor | None = None
    focus: KeywordFocus | None = None        # with an anchor, once its regions are known
    tell: Callable[[Notice], None] | None = None
    # (branch, block, frames) -> latest map; frames: a context window's (None without windows), since each
    # window holds other video tokens
    cache: dict[tuple[int, int, tuple[int, ...] | None], torch.Tensor] = field(default_factory=dict)
    source_mean: dict[tuple[int, tuple[int, ...] | None], torch.Tensor | None] = field(default_factory=dict)

    def reset(self):
        self.cache.clear()
        self.source_mean.clear()
        self.bias = self.to_refine = self.focus = None


class AttentionTransfer(Handler):
    def __init__(self, settings: TransferSettings):
        self.settings = settings

    @property
    def blocks(self) -> frozenset[int]:
        if self.settings.picked_by is not None:
            return frozenset(range(self.settings.num_blocks))
        return self.settings.weak | self.settings.sources

    def start_run(self, ctx: RunContext) -> TransferState:
        s = self.settings
        ctx.check_branches(s.branches)
        ctx.check_one_video()
        window = ctx.sigma_window(s.window)
        if window is not None and s.picked_by is not None and not any(
                window.holds(sigma) for sigma in ctx.sample_sigmas[s.observe_steps:-1].tolist()):
            ctx.tell(NothingGuidedAfterObserving(s.observe_steps))
        state = TransferState(grid=ctx.grid, window=window, recorder=AttentionRecorder(per_head=s.per_head),
                              weak=s.weak, sources=s.sources,
                              picks=ctx.picks if s.picked_by is not None else None, tell=ctx.tell)
        if s.anchor is not None:
            offset = ctx.anchor_offset(s.anchor, POSITIVE)
            columns, bias = s.anchor.bias(ctx.grid, s.beta, s.gamma, text_offset=offset)
            if s.anchor.regions_from_attention:
                state.to_refine = AnchorToRefine(s.anchor, offset)
            else:
                state.bias = AnchorBias(columns, bias)
                state.focus = _keyword_focus(s.anchor, columns, offset, ctx.grid)
            if s.keyword_columns_only or (state.to_refine is not None and not s.sources and s.picked_by is None):
                state.recorder.columns = columns     # the weak blocks read the anchor: its columns are enough
        return state

    def end_run(self, state: TransferState, output: torch.Tensor | None):
        if output is not None and state.focus is not None and state.focus.calls:
            with_edit, without_edit = state.focus.means()
            state.tell(KeywordFocusMeasured(state.focus.keywords, with_edit, without_edit,
                                            sorted(state.focus.blocks), state.focus.calls, state.focus.step))
        state.reset()

    def _active(self, state: TransferState, call: TextCall) -> bool:
        return state.window is not None and call.branch in self.settings.branches and state.window.holds(call.sigma)

    def _take_pick(self, state: TransferState) -> bool:
        """Auto mode: whether the blocks are known; they are read once, when the pick is published."""
        if state.picks is None:
            return True
        pick = state.picks.get(self.settings.picked_by)
        if pick is None:
            return False
        state.weak, state.sources, state.picks = pick.weak, pick.sources, None
        return True

    def edit_for(self, state: TransferState, call: TextCall) -> TextEdit | None:
        if not self._take_pick(state) or not self._active(state, call):
            return None
        s = self.settings
        if call.block in state.weak and state.to_refine is not None:
            self._refine_anchor(state, call.frames)
        edit = TextEdit(record_per_head=s.per_head)
        if (call.block in state.sources and s.alpha > 0) or \
                (state.to_refine is not None and call.block in _anchor_readers(state)):
            edit = state.recorder.edit()
        if call.block in state.weak:
            if state.bias is not None and (s.beta or s.gamma):
                edit.bias_columns, edit.bias = state.bias.columns, state.bias.rows(call.frames, state.grid)
            source = self._source_mean(state, call.branch, call.frames) if s.alpha > 0 else None
            if source is not None:
                edit.source = source
                edit.source_columns = None if state.recorder.all_columns else state.recorder.columns
                edit.alpha = s.alpha
            if state.focus is not None and call.branch == POSITIVE and (call.frames is None or 0 in call.frames) \
                    and state.focus.measures(call.step):
                edit.record_columns, edit.record_per_head, edit.record_unedited = state.bias.columns, False, True
        return edit

    def _source_mean(self, state: TransferState, branch: int, frames) -> torch.Tensor | None:
        """Mean of the cached source maps of these frames, computed once per cache change and shared by
        all weak blocks."""
        if (branch, frames) not in state.source_mean:
            cached = [state.cache[(branch, b, frames)] for b in sorted(state.sources)
                      if (branch, b, frames) in state.cache]
            state.source_mean[(branch, frames)] = sum(cached) / len(cached) if cached else None
        return state.source_mean[(branch, frames)]

    def on_probabilities(self, state: TransferState, call: TextCall, probabilities):
        if isinstance(probabilities, tuple):   # a weak block's keyword columns, final and unedited
            _, height, width = state.grid
            first = 0 if call.frames is None else call.frames.index(0) * height * width
            final, unedited = (p[0, first:first + height * width] for p in probabilities)
            state.focus.add(call.block, final, unedited)
            return
        state.cache[(call.branch, call.block, call.frames)] = probabilities[0].detach()
        state.source_mean.pop((call.branch, call.frames), None)

    def _refine_anchor(self, state: TransferState, frames):
        """Once every source has recorded on the positive branch, in the call's frames holding the reference
        frame (a context window that does not hold it waits), turn its keyword attention into masks."""
        s = self.settings
        keys = [(POSITIVE, b, frames) for b in sorted(_anchor_readers(state))]
        if not keys or any(k not in state.cache for k in keys) or (frames is not None and 0 not in frames):
            return
        anchor, offset = state.to_refine.anchor, state.to_refine.text_offset
        source = torch.stack([state.cache[k] for k in keys]).mean(0)
        if source.ndim == 3:                                   # per-head cache: [h, n, c]
            source = source.mean(0)
        recorded = (list(range(source.shape[-1])) if state.recorder.all_columns
                    else state.recorder.columns.tolist())
        _, height, width = state.grid
        first = 0 if frames is None else frames.index(0) * height * width
        frame0 = source[first:first + height * width].float().cpu()     # the reference frame's tokens
        maps = torch.stack([frame0[:, [recorded.index(i + offset) for i in span]].sum(-1).view(height, width)
                            for span in anchor.token_spans])
        refined = anchor.with_masks(attention_masks(maps))
        state.bias = AnchorBias(*refined.bias(state.grid, s.beta, s.gamma, text_offset=offset))
        state.refined_masks = refined.masks
        state.focus = _keyword_focus(refined, state.bias.columns, offset, state.grid)
        state.to_refine = None
        for key in [k for k in state.cache if k[1] not in state.sources]:   # weak blocks' readings: done
            del state.cache[key]


def _anchor_readers(state: TransferState) -> frozenset[int]:
    """The blocks whose attention gives an attention-read anchor its regions: the sources, or the weak blocks."""
    return state.sources or state.weak


def _keyword_focus(anchor: RegionAnchor, columns: torch.Tensor, offset: int, grid) -> KeywordFocus:
    """The run's focus tally for this anchor: its keywords' places among the bias columns, its masks on the grid."""
    _, height, width = grid
    recorded = columns.tolist()
    positions = [[recorded.index(i + offset) for i in span] for span in anchor.token_spans]
    return KeywordFocus(anchor.keywords, positions, anchor.grid_masks(height, width).flatten(1))
