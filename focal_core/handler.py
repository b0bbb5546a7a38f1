"""The Handler interface between the dispatcher (``nodes/dispatch.py``) and a Focal Guidance behaviour.

A behaviour (attention transfer, auto mode, probe) is a :class:`Handler`: it sees one
:class:`RunContext` per sampling run and one :class:`TextCall` per text attention call of its
blocks, and answers with a :class:`~focal_core.attention.TextEdit`. The dispatcher merges the edits
of every handler of a model into one attention computation. No ComfyUI import: handlers test on
plain tensors. The run-wide rules (the negative branch needs cfg > 1, one video per batch, which
sampled steps a window holds) are written here, once.
"""
from collections.abc import Callable
import logging
from dataclasses import dataclass, field
from typing import Protocol

import torch

from .anchors import RegionAnchor
from .attention import TextEdit
from .errors import AnchorPastPrompt, BatchNotSupported, EmptyWindow, NegativeBranchSkipped, Notice
from .families import Family, TextLayout

log = logging.getLogger("FocalGuidance")
POSITIVE, NEGATIVE = 0, 1   # CFG branches, as the host's ``cond_or_uncond`` numbers them


class RunState(Protocol):
    """What a handler's ``start_run`` returns: its state for one run, cleared by ``reset()``."""

    def reset(self) -> None: ...


@dataclass(frozen=True)
class StepWindow:
    """A part of the sampling schedule, as fractions ``start`` to ``end``; ``within_sampled_steps`` says of what.

    False: percents of the model's full schedule, converted with the sampled model's own mapping,
    so a ModelSampling node placed after Focal Guidance still moves it. True: percents of the
    steps this run samples, so a Wan2.2 expert or a KSamplerAdvanced step range gets the window
    within its own steps.
    """
    start: float
    end: float
    within_sampled_steps: bool = False


@dataclass(frozen=True)
class SigmaWindow:
    """A step window of one run, in sigmas: a call at ``sigma`` is in it when ``end <= sigma <= start``."""
    start: float
    end: float

    def holds(self, sigma: float) -> bool:
        return self.end <= sigma <= self.start


@dataclass(frozen=True)
class BlockPick:
    """Blocks chosen in the run (auto mode) for the transfer that follows it to guide."""
    weak: frozenset[int]
    sources: frozenset[int]


@dataclass
class RunContext:
    """What a handler learns once per sampling run (OUTER_SAMPLE)."""
    grid: tuple[int, int, int]
    sample_sigmas: torch.Tensor
    batch: int
    cfg: float
    text: dict[int, TextLayout]   # branch -> its TextLayout, where its prompt is known
    family: Family | None = None  # where a block's video and prompt tokens are
    percent_to_sigma: Callable[[float], float] | None = None  # the sampled model's own schedule mapping
    tell: Callable[[Notice], None] = lambda notice: log.warning("%s", notice)   # nodes/ words it for its node
    picks: "dict[Handler, BlockPick]" = field(default_factory=dict)   # auto mode's picks, by its handler

    @property
    def n_video(self) -> int:
        f, h, w = self.grid
        return f * h * w

    def n_video_of(self, frames: tuple[int, ...] | None) -> int:
        """Video tokens of a call holding these token frames (None: the whole grid)."""
        _, h, w = self.grid
        return self.n_video if frames is None else len(frames) * h * w

    @property
    def steps(self) -> int:
        return len(self.sample_sigmas) - 1

    def check_branches(self, branches: frozenset[int]) -> None:
        """Refuse a run that would guide or record only a branch the sampler skips."""
        if branches == frozenset({NEGATIVE}) and self.cfg == 1.0:
            raise NegativeBranchSkipped()

    def check_one_video(self) -> None:
        if self.batch > 1:
            raise BatchNotSupported(self.batch)

    def anchor_offset(self, anchor: RegionAnchor, branch: int) -> int:
        """Text-key column of the anchor's first prompt token in this branch; refuses a keyword past the prompt."""
        text = self.text.get(branch)
        if text is None:
            return 0
        offset = text.anchor_offset(anchor.prompt_tokens)
        if max(anchor.columns) + offset >= text.prompt_end:
            raise AnchorPastPrompt(max(anchor.columns), text.prompt_end - offset)
        return offset

    def response_columns(self, anchor: RegionAnchor | None, branch: int) -> torch.Tensor | None:
        """Text columns whose attention mass is a block's response: the anchor's keyword tokens, else
        every real prompt token where the model's family places it (None when unknown: all columns)."""
        if anchor is not None:
            return torch.tensor(anchor.columns) + self.anchor_offset(anchor, branch)
        text = self.text.get(branch)
        return text.prompt_columns() if text is not None and text.real else None

    def sigma_window(self, window: StepWindow) -> SigmaWindow | None:
        """The window in this run's sigmas, or None (after telling the user) when no sampled step falls in it."""
        schedule = self.sample_sigmas[:-1].float().cpu()
        if window.within_sampled_steps:
            n = len(schedule)
            steps = [i for i in range(n) if window.start * n <= i < window.end * n]
            found = SigmaWindow(float(schedule[steps[0]]), float(schedule[steps[-1]])) if steps else None
        else:
            found = SigmaWindow(self.percent_to_sigma(window.start), self.percent_to_sigma(window.end))
            if not any(found.holds(s) for s in schedule.tolist()):
                found = None
        if found is None:
            self.tell(EmptyWindow(window.start, window.end, window.within_sampled_steps,
                                  len(schedule), float(schedule[0]), float(schedule[-1])))
        return found

    def steps_in(self, window: SigmaWindow) -> list[int]:
        """Indices of the sampled steps whose sigma the window holds."""
        return [i for i, sigma in enumerate(self.sample_sigmas[:-1].tolist()) if window.holds(sigma)]

    def step_index(self, sigma: float) -> int:
        """Index of the schedule interval holding ``sigma`` (exact for euler, bracketed for heun)."""
        schedule = self.sample_sigmas.float().cpu()
        at_or_above = (schedule >= sigma * (1 - 1e-4)).nonzero()
        return int(at_or_above[-1]) if len(at_or_above) else 0


@dataclass
class TextCall:
    """One text attention call of a tagged block, for one CFG chunk."""
    block: int
    branch: int        # POSITIVE or NEGATIVE
    sigma: float
    step: int
    row: int = 0       # first batch row of this chunk in the block's batch
    frames: tuple[int, ...] | None = None   # token frames of the grid its video tokens hold (a context
    #                                         window), in order; None: the whole grid


class Handler:
    """What one node does in its blocks. Subclasses override.

    A handler object is configuration plus a results sink (the probe's recordings), shared by
    every clone of the patched model: ``copy.deepcopy`` returns it unchanged, because
    ``ModelPatcher.clone()`` deep-copies ``model_options`` and a report node must read what the
    sampled clone recorded. Per-run state lives in the object ``start_run`` returns.
    """
    wants_block_outputs = False  # True: on_block sees every touched block's inputs and outputs

    def __deepcopy__(self, memo):
        return self

    @property
    def blocks(self) -> frozenset[int]:
        """Flat indices of the blocks whose text attention this handler edits or records."""
        raise NotImplementedError

    def start_run(self, ctx: RunContext) -> RunState:
        """Validate the run and return per-run state (with ``reset()``), or raise a FocalError."""
        raise NotImplementedError

    def end_run(self, state: RunState, output: torch.Tensor | None):
        """Called in ``finally`` after every run; ``output`` is the sampled latent, None on failure."""
        state.reset()

    def edit_for(self, state, call: TextCall) -> TextEdit | None:
        """This handler's part of the call's edit, or None to leave the call alone."""
        return None

    def on_probabilities(self, state, call: TextCall, probabilities: torch.Tensor):
        """Receives the attention probabilities a call recorded for this handler's edit
        (``[b, n, c]``, or ``[b, h, n, c]`` per head), as the model used them; with ``record_unedited``
        the pair (those, the call's own before any edit)."""

    def on_block(self, state, call: TextCall, args: dict, out: dict, ctx: RunContext):
        """Observation of a block's inputs and outputs, for handlers with ``wants_block_outputs``."""
