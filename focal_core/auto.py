"""Auto mode of Focal Attention Transfer: the run finds its own weak and source blocks.

The first ``observe_steps`` steps of the sampling run only observe: on the positive branch every
block's text-attention mass on the prompt (or the anchor's keyword tokens) is recorded, the
Semantic Layer Probe's ``attention`` measure, while the host kernel keeps every output. At the
first call of the next step the Semantic Layer Report's rules (``probe.analyse``: the Semantic-Weak
dip below the depth trend, the top responsive blocks) pick the blocks, and guidance runs from
that step on. The same seed and inputs give the same picks, since they are a function of the run.
"""
from dataclasses import dataclass, field

import torch

from .attention import TextEdit
from .probe import ProbeRecording, ProbeReport, analyse, response_columns
from .strategy import RunContext


@dataclass(frozen=True)
class AutoSettings:
    observe_steps: int = 1     # leading steps of the run that only observe
    kappa: float = 1.0         # the Report's Semantic-Weak rule; 1 is where the trained test model shows its weak block
    top_r: int = 2             # the Report's responsive rule
    exclude_ends: int = 2
    pick_weak: bool = True     # False: weak blocks were named by the user
    pick_sources: bool = True  # False: source blocks were named by the user


@dataclass
class AutoState:
    """One run's observation; ``report`` is set once the blocks are picked."""
    observed: frozenset          # step indices that only observe
    columns: torch.Tensor | None
    recording: ProbeRecording
    report: ProbeReport | None = None
    pending: list = field(default_factory=list)   # observed maps on the model's device until the pick

    def observing(self, step: int) -> bool:
        return self.report is None and step in self.observed

    def due(self, step: int) -> bool:
        return self.report is None and step > max(self.observed)


def start_observing(settings: AutoSettings, anchor, ctx: RunContext, node_name: str) -> AutoState:
    if ctx.steps <= settings.observe_steps:
        raise ValueError(f"{node_name}: auto mode observes the first {settings.observe_steps} step(s) and guides "
                         f"after them, but this run samples {ctx.steps}; sample more steps, lower "
                         "auto_observe_steps, or name the blocks")
    steps = list(range(settings.observe_steps))
    return AutoState(observed=frozenset(steps), columns=response_columns(anchor, ctx, 0, node_name),
                     recording=ProbeRecording(grid=ctx.grid, steps=steps))


def observe_edit(state: AutoState) -> TextEdit:
    return TextEdit(record_columns=state.columns if state.columns is not None else slice(None))


def record(state: AutoState, step: int, block: int, recorded: torch.Tensor):
    """Keeps the block's map on the model's device: :func:`pick` moves the whole observation at once."""
    state.pending.append(("attention", (step, block), recorded[0].float().sum(-1).view(state.recording.grid)))


def pick(settings: AutoSettings, state: AutoState, num_blocks: int) -> ProbeReport:
    state.recording.store(state.pending)
    state.pending = []
    state.report = analyse(state.recording, num_blocks, "attention", settings.kappa, settings.top_r,
                           settings.exclude_ends)
    return state.report
