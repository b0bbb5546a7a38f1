"""What the core tells the user, as typed values carrying numbers: errors it raises and notices it sends.

The core knows no node, widget or combo label: ``nodes/`` turns each of these into one sentence that
names the node, the input and the fix (``nodes/_voice.py``). ``str()`` of an error is a plain
technical account, for code that uses ``focal_core`` without the nodes.
"""
from dataclasses import dataclass


class FocalError(ValueError):
    """A problem with the inputs of a run that the user can fix."""


@dataclass(eq=False)
class NegativeBranchSkipped(FocalError):
    """The negative CFG branch is asked for, but cfg 1 makes the sampler skip that pass."""

    def __str__(self):
        return "the negative branch needs a negative pass, but cfg is 1 so the sampler skips it"


@dataclass(eq=False)
class BatchNotSupported(FocalError):
    batch: int

    def __str__(self):
        return f"batch size {self.batch} is not supported: recordings, anchors and caches are per video"


@dataclass(eq=False)
class AnchorPastPrompt(FocalError):
    """An anchor binds a prompt token the conditioning's prompt does not have."""
    token: int
    prompt_tokens: int

    def __str__(self):
        return f"the anchor binds prompt token {self.token} but the prompt has {self.prompt_tokens} tokens"


@dataclass(eq=False)
class AnchorAspectMismatch(FocalError):
    """The anchor's reference frame and the latent's token grid have different aspect ratios."""
    anchor_aspect: float
    mask_size: tuple[int, int]     # (width, height)
    grid_size: tuple[int, int]     # (width, height)

    @property
    def grid_aspect(self) -> float:
        return self.grid_size[0] / self.grid_size[1]

    def __str__(self):
        return (f"anchor aspect {self.anchor_aspect:.3f} (mask {self.mask_size[0]}x{self.mask_size[1]}) does not "
                f"match the latent's token grid {self.grid_size[0]}x{self.grid_size[1]} "
                f"(aspect {self.grid_aspect:.3f})")


@dataclass(eq=False)
class TooFewStepsToObserve(FocalError):
    """Auto mode observes the run's first steps, and the run has no step left to guide."""
    observe_steps: int
    steps: int

    def __str__(self):
        return (f"auto mode observes the first {self.observe_steps} step(s) and guides after them, but this run "
                f"samples {self.steps}")


@dataclass(eq=False)
class NothingRecorded(FocalError):
    """No finished run has left a recording."""

    def __str__(self):
        return "nothing has been recorded"


@dataclass(eq=False)
class LatentNotRecorded(FocalError):
    """A latent that is the output of none of the recorded runs, and no single run of its token grid."""
    grid: tuple[int, int, int]
    recorded_grids: list[tuple[int, int, int]]

    def __str__(self):
        grids = ", ".join(str(g) for g in self.recorded_grids)
        return (f"this latent (token grid {self.grid}) is not the output of a run recorded here "
                f"(recorded grids: {grids})")


@dataclass(eq=False)
class MetricNotRecorded(FocalError):
    metric: str

    def __str__(self):
        return f"metric '{self.metric}' recorded nothing in this run"


@dataclass(eq=False)
class StepsNotComputed(FocalError):
    """Every step a handler was to record was skipped: the model was not called there (a step cache)."""
    planned: list[int]

    def __str__(self):
        return (f"nothing was recorded: the model was not called at the step(s) {self.planned} to record, "
                "so a step cache (EasyCache, LazyCache) reused an earlier output there")


@dataclass(eq=False)
class BlockNotRecorded(FocalError):
    block: int

    def __str__(self):
        return f"block {self.block} was not recorded"


@dataclass(frozen=True)
class EmptyWindow:
    """Notice: a step window holds none of the sampled steps, so its handler does nothing this run."""
    start: float
    end: float
    within_sampled_steps: bool
    steps: int
    first_sigma: float
    last_sigma: float


@dataclass(frozen=True)
class NothingGuidedAfterObserving:
    """Notice: auto mode observes the first steps, and the window holds no later step."""
    observe_steps: int


@dataclass(frozen=True)
class NothingObserved:
    """Notice: a step cache skipped the model call at every step auto mode was to observe, so the run is not guided."""
    planned: list[int]


@dataclass(frozen=True)
class NoWeakBlocksFound:
    """Notice: auto mode's observation found no Semantic-Weak block, so the run is not guided."""
    observed: list[int]
    kappa: float
    skipped: list[int] = ()   # observation steps a step cache skipped


@dataclass(frozen=True)
class BlocksPicked:
    """News: auto mode picked these blocks after observing these steps."""
    weak: list[int]
    sources: list[int]
    observed: list[int]
    skipped: list[int] = ()   # observation steps a step cache skipped


@dataclass(frozen=True)
class KeywordFocusMeasured:
    """News: the share of each keyword's attention inside its anchor region in the weak blocks, on the
    reference frame, averaged over one step's guided calls: with the weak edit, and in the same calls without it."""
    keywords: tuple[str, ...]
    with_edit: list[float]
    without_edit: list[float]
    blocks: list[int]
    calls: int
    step: int


Notice = (EmptyWindow | NothingGuidedAfterObserving | NothingObserved | NoWeakBlocksFound | BlocksPicked
          | KeywordFocusMeasured)
