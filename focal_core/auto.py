"""Auto mode of the attention transfer: the run finds its own weak and source blocks.

A handler of its own, placed just ahead of the transfer it serves. The first ``observe_steps``
steps of the sampling run only observe: on the positive branch every block's text-attention mass
on the prompt (or the anchor's keyword tokens) is recorded, the probe's
``attention`` measure, while the host kernel keeps every output. At the first call of the next
step the layer report's rules (``focal_core.report.analyse``: the Semantic-Weak dip below
the depth trend, the top responsive blocks) pick the blocks, published as a
:class:`~focal_core.handler.BlockPick` in the run's context, and the transfer guides from that
step on. The same seed and inputs give the same picks, since they are a function of the run.
"""
from collections.abc import Callable
from dataclasses import dataclass

from .anchors import RegionAnchor
from .attention import TextEdit
from .errors import BlocksPicked, NothingObserved, NoWeakBlocksFound, Notice, TooFewStepsToObserve
from .handler import POSITIVE, BlockPick, Handler, RunContext, TextCall
from .recorder import ATTENTION, AttentionRecorder, Recording, RunRecordings
from .report import analyse


@dataclass(frozen=True)
class AutoSettings:
    num_blocks: int            # the model's block count: every block is observed
    observe_steps: int = 1     # leading steps of the run that only observe
    kappa: float = 2.0         # the Report's Semantic-Weak rule, at its default
    top_r: int = 2             # the Report's responsive rule
    exclude_ends: int = 2
    named_weak: frozenset[int] | None = None      # weak blocks the user named; None: pick them
    named_sources: frozenset[int] | None = None   # source blocks the user named; None: pick them
    anchor: RegionAnchor | None = None            # observe its keyword tokens instead of the whole prompt


@dataclass
class AutoState:
    """One run's observation, until the pick."""
    observed: frozenset[int]     # step indices that only observe
    recorder: AttentionRecorder
    picks: dict[Handler, BlockPick]   # the run's picks (RunContext.picks), where this one is published
    tell: Callable[[Notice], None]
    picked: bool = False

    def observing(self, step: int) -> bool:
        return not self.picked and step in self.observed

    def due(self, step: int) -> bool:
        return not self.picked and step > max(self.observed)

    def reset(self):
        self.recorder.reset()


class AutoPick(Handler):
    """Observes every block in the run's first steps, then picks the blocks its transfer guides."""

    def __init__(self, settings: AutoSettings):
        self.settings = settings
        self.recordings = RunRecordings()   # the observations, for a layer report

    @property
    def blocks(self) -> frozenset[int]:
        return frozenset(range(self.settings.num_blocks))

    def start_run(self, ctx: RunContext) -> AutoState:
        s = self.settings
        if ctx.steps <= s.observe_steps:
            raise TooFewStepsToObserve(s.observe_steps, ctx.steps)
        steps = list(range(s.observe_steps))
        recorder = AttentionRecorder.of_columns(ctx.response_columns(s.anchor, POSITIVE),
                                                recording=Recording(grid=ctx.grid, planned=steps))
        return AutoState(observed=frozenset(steps), recorder=recorder, picks=ctx.picks, tell=ctx.tell)

    def end_run(self, state: AutoState, output):
        state.recorder.flush()   # a run that stopped before the pick still publishes its maps
        self.recordings.publish(state.recorder.recording, output)
        state.reset()

    def edit_for(self, state: AutoState, call: TextCall) -> TextEdit | None:
        if state.observing(call.step):
            return state.recorder.edit() if call.branch == POSITIVE else None
        if state.due(call.step):
            self._pick(state)
        return None

    def on_probabilities(self, state: AutoState, call: TextCall, probabilities):
        state.recorder.keep_mass(call.step, call.block, probabilities, call.frames)

    def _pick(self, state: AutoState):
        """The Report's rules on the observed steps choose the blocks for the rest of the run.

        Only the steps really recorded count: a step cache may have skipped the model call at some."""
        s = self.settings
        state.recorder.flush()
        recording = state.recorder.recording
        state.picked = True
        if not recording.steps:
            state.picks[self] = BlockPick(weak=frozenset(), sources=frozenset())
            state.tell(NothingObserved(recording.planned))
            return
        report = analyse(recording, s.num_blocks, ATTENTION, s.kappa, s.top_r, s.exclude_ends)
        sources = s.named_sources or frozenset()
        weak = s.named_weak if s.named_weak is not None else frozenset(report.weak) - sources
        if s.named_sources is None:
            sources = frozenset(report.responsive) - weak
        state.picks[self] = BlockPick(weak=weak, sources=sources)
        if not weak:
            state.tell(NoWeakBlocksFound(recording.steps, s.kappa, recording.skipped))
        else:
            state.tell(BlocksPicked(sorted(weak), sorted(sources), recording.steps, recording.skipped))
