"""One voice for everything the pack tells the user: ``{node}: {problem}. Fix: {fix}.``

``focal_core`` raises typed errors and sends typed notices carrying numbers
(``focal_core/errors.py``); this module words them with the node, the input and the fix. Inputs are
named by their widget names and combo labels, which live only here and in the node files.
"""
from ..focal_core import errors
from ..focal_core.blocks import format_block_list
from .notify import inform, warn

WINDOW_OF = {"whole schedule": False, "sampled steps": True}   # window_of's combo labels -> within_sampled_steps

MAX_ECHO = 60   # characters of a user's input quoted back in a message


def say(node: str, problem: str, fix: str) -> str:
    return f"{node}: {problem}. Fix: {fix}."


def fail(node: str, problem: str, fix: str):
    raise ValueError(say(node, problem, fix))


def cut(text: str) -> str:
    """A user's input as a message quotes it: cut to ``MAX_ECHO`` characters, so a pasted page is not echoed whole."""
    text = str(text)
    return text if len(text) <= MAX_ECHO else f"{text[:MAX_ECHO]}… ({len(text)} characters)"


def quoted(value) -> str:
    return f"'{cut(value)}'" if isinstance(value, str) else cut(repr(value))


def run_error(node: str, err: errors.FocalError) -> str:
    """The message for a typed error a handler raised while the sampler ran."""
    if isinstance(err, errors.NegativeBranchSkipped):
        return say(node, "branch 'negative' needs a negative pass, but cfg is 1 so the sampler skips it",
                   "raise cfg above 1, or set branch to 'positive'")
    if isinstance(err, errors.BatchNotSupported):
        return say(node, f"batch size {err.batch} is not supported (recordings, anchors and caches are per video)",
                   "set the latent's batch_size to 1")
    if isinstance(err, errors.AnchorPastPrompt):
        return say(node, f"anchor: {err}", "feed Region Anchor the same prompt and text encoder as the conditioning")
    if isinstance(err, errors.AnchorAspectMismatch):
        return say(node, str(err), "build the anchor from the same reference image that feeds the video latent")
    if isinstance(err, errors.TooFewStepsToObserve):
        return say(node, str(err), "sample more steps, lower auto_observe_steps, or name the blocks")
    if isinstance(err, errors.StepsNotComputed):
        return say(node, f"nothing was recorded: the model was not called at step(s) {format_block_list(err.planned)}, "
                   "so a step cache (EasyCache, LazyCache) reused an earlier output there",
                   "record steps the cache computes (end the probe's window before the cache's start_percent), "
                   "or bypass the cache while probing")
    if isinstance(err, (errors.MetricNotRecorded, errors.BlockNotRecorded)):
        return say(node, str(err), "check that the window covers at least one sampled step")
    return say(node, str(err), "check this node's inputs")


def observed_steps(observed, skipped) -> str:
    """The steps really recorded, and those a step cache skipped (the model was not called there)."""
    text = format_block_list(observed)
    if skipped:
        text += f" (step(s) {format_block_list(skipped)} skipped by a step cache such as EasyCache or LazyCache)"
    return text


def window_label(within_sampled_steps: bool) -> str:
    return next(label for label, within in WINDOW_OF.items() if within == within_sampled_steps)


def tell(node: str, notice: errors.Notice, node_id: str | None = None) -> None:
    """Log a notice a handler sent during a run, and show it in the browser."""
    if isinstance(notice, errors.EmptyWindow):
        warn(node, f"the window {notice.start:g}-{notice.end:g} "
                   f"({window_label(notice.within_sampled_steps)}) holds none of the {notice.steps} sampled steps "
                   f"(sigma {notice.first_sigma:.3g} to {notice.last_sigma:.3g}), so it does nothing in this run. "
                   "A Wan2.2 expert or a KSamplerAdvanced step range samples only part of the schedule: set "
                   "window_of to 'sampled steps' or move the window.")
    elif isinstance(notice, errors.NothingGuidedAfterObserving):
        warn(node, f"auto mode observes the first {notice.observe_steps} step(s) and guides after them, but the "
                   "window holds no later sampled step, so nothing is guided; widen the window or lower "
                   "auto_observe_steps.")
    elif isinstance(notice, errors.NothingObserved):
        warn(node, f"auto mode observed nothing: the model was not called at step(s) "
                   f"{format_block_list(notice.planned)}, so a step cache (EasyCache, LazyCache) reused an earlier "
                   "output there; the rest of this run is not guided. Start the cache after the observed steps "
                   "(its start_percent), or name weak_blocks and source_blocks.")
    elif isinstance(notice, errors.NoWeakBlocksFound):
        warn(node, f"auto mode found no Semantic-Weak Layers after observing step(s) "
                   f"{observed_steps(notice.observed, notice.skipped)} (kappa {notice.kappa:g}); the rest of this "
                   "run is not guided. Lower auto_kappa to find more, or name weak_blocks.")
    elif isinstance(notice, errors.BlocksPicked):
        weak, sources = format_block_list(notice.weak), format_block_list(notice.sources) or "none"
        inform(node, f"auto mode picked weak blocks {weak} and source blocks {sources} after observing step(s) "
                     f"{observed_steps(notice.observed, notice.skipped)}; type them into weak_blocks / "
                     "source_blocks to freeze them.", node_id=node_id,
               auto_picks={"weak_blocks": weak, "source_blocks": sources})
    elif isinstance(notice, errors.KeywordFocusMeasured):
        inform(node, focus_line(notice), node_id=node_id)
    else:
        raise TypeError(f"no wording for {notice!r}")


def focus_line(notice: errors.KeywordFocusMeasured) -> str:
    """One sentence per run: each keyword's share of attention inside its region, with and without the edit."""
    keywords = "; ".join(f"'{cut(k)}' {w:.0%} (without the edit: {wo:.0%})"
                         for k, w, wo in zip(notice.keywords, notice.with_edit, notice.without_edit))
    return (f"keyword focus in weak block(s) {format_block_list(notice.blocks)}, the share of each keyword's "
            f"attention on the reference frame that falls inside its anchor region, at step {notice.step} "
            f"(mean of {notice.calls} positive-branch call(s)): {keywords}")
