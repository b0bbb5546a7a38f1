"""Node "Focal Attention Transfer": patch the Semantic-Weak blocks of a Wan/HunyuanVideo model."""
from comfy_api.latest import io

from ..focal_core.auto import AutoPick, AutoSettings
from ..focal_core.recorder import RunRecordings
from ..focal_core.transfer import AttentionTransfer, TransferSettings
from . import _inputs
from ._types import Anchor, Probe, ProbeHandle, anchor_keywords
from ._voice import WINDOW_OF, fail
from .dispatch import install
from .notify import warn

NODE = "Focal Attention Transfer"
AUTO = "auto"
MIDDLE = "middle"
CACHE_HEADS = {"head mean": False, "per head": True}                   # -> per_head
CACHE_COLUMNS = {"all text tokens": False, "keyword tokens": True}     # -> keyword_columns_only
NOT_AUTO = "Focal Attention Transfer records only in auto mode; set weak_blocks or source_blocks to 'auto'"
AUTO_NOT_SAMPLED = "wire this transfer's MODEL into the sampler whose LATENT feeds this node"


class FocalAttentionTransfer(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FocalAttentionTransfer",
            display_name=NODE,
            category=_inputs.CATEGORY,
            description=("Focal Guidance: in the chosen blocks (every middle block by default, or the "
                         "Semantic-Weak ones), bias the text attention toward the anchored regions (FSG) and, "
                         "with alpha above 0, blend in responsive blocks' attention (Attention Cache)."),
            inputs=[
                io.Model.Input("model", tooltip="A Wan2.1/2.2 or HunyuanVideo diffusion model."),
                _inputs.blocks_input("weak_blocks", "Blocks to guide: 'middle' (every block but auto_exclude_ends "
                                     "at each end; on the pack's measured control this recovered planted weakness "
                                     "wherever it was, guiding only the detected blocks did not), 'auto' (the run's "
                                     "first step finds the Semantic-Weak blocks, as the paper does), a list such as "
                                     "'12-20, 25' (0-based; HunyuanVideo counts double blocks, then single blocks), "
                                     "or Semantic Layer Report's weak_blocks.", default=MIDDLE),
                _inputs.blocks_input("source_blocks", "Responsive blocks whose text attention is cached and "
                                     "transferred, or 'auto'. A source deeper than a weak block gives its "
                                     "previous-step map (under EasyCache or LazyCache: the last step the "
                                     "model computed). Empty (default): anchor bias only.", default=""),
                io.Float.Input("alpha", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Attention Cache blend: P' = (1-alpha)·P_weak + alpha·P_source. Off (0) by "
                                       "default: on the pack's measured control another block's map never helped "
                                       "(the weak block's own healthy map did), so no known source holds what a "
                                       "weak block lost (docs/method.md §10)."),
                io.Float.Input("beta", default=4.0, min=0.0, max=10.0, step=0.05,
                               tooltip="Anchor bias added to keyword-token logits inside the keyword's region. "
                                       "4: measured on the pack's control (1 recovered nothing)."),
                io.Float.Input("gamma", default=0.5, min=0.0, max=10.0, step=0.05,
                               tooltip="Anchor bias subtracted from keyword-token logits outside the region."),
                *_inputs.window_inputs(0.0, 1.0),
                _inputs.branch_input(),
                io.Combo.Input("cache_heads", options=list(CACHE_HEADS), default="head mean",
                               tooltip="Cache the head-averaged map (small) or one map per head (heads× memory: "
                                       "about 2.7 GB per source block for Wan 14B at 480p)."),
                io.Combo.Input("cache_columns", options=list(CACHE_COLUMNS),
                               default="all text tokens",
                               tooltip="Transfer every text column, or only the anchor's keyword columns "
                                       "(O(N·K) memory; needs an anchor)."),
                _inputs.window_of_input(),
                io.Int.Input("auto_observe_steps", default=1, min=1, max=20, optional=True,
                             tooltip="Auto mode: how many leading steps of the run only observe every block "
                                     "before the blocks are picked and guidance starts."),
                io.Float.Input("auto_kappa", default=2.0, min=0.0, max=10.0, step=0.1, optional=True,
                               tooltip="Auto mode: a block is weak when its score is more than kappa robust "
                                       "sigmas below the depth trend or its map lost its contrast (Semantic "
                                       "Layer Report's rule, same default)."),
                io.Int.Input("auto_top_r", default=2, min=1, max=16, optional=True,
                             tooltip="Auto mode: how many responsive blocks become sources."),
                io.Int.Input("auto_exclude_ends", default=2, min=0, max=16, optional=True,
                             tooltip="Auto mode and 'middle': blocks at each end that are never picked."),
                Anchor.Input("anchor", optional=True,
                             tooltip="Region Anchor output: keyword regions and their prompt tokens (FSG)."),
            ],
            hidden=[io.Hidden.unique_id],   # auto mode shows its picks on this node in the browser
            outputs=[
                io.Model.Output(tooltip="The patched model clone; the input model is not changed."),
                Probe.Output(display_name="auto_report",
                             tooltip="Auto mode's observation, for Semantic Layer Report: the curve behind the "
                                     "picks, and the picked blocks as strings to freeze."),
            ],
        )

    @classmethod
    def execute(cls, model, weak_blocks, source_blocks, alpha, beta, gamma, start_percent, end_percent,
                branch, cache_heads, cache_columns, window_of=next(iter(WINDOW_OF)), auto_observe_steps=1,
                auto_kappa=2.0, auto_top_r=2, auto_exclude_ends=2, anchor=None) -> io.NodeOutput:
        branches = _inputs.choice(NODE, "branch", branch, _inputs.BRANCHES)
        per_head = _inputs.choice(NODE, "cache_heads", cache_heads, CACHE_HEADS)
        keyword_columns_only = _inputs.choice(NODE, "cache_columns", cache_columns, CACHE_COLUMNS)
        within_sampled_steps = _inputs.choice(NODE, "window_of", window_of, WINDOW_OF)
        _inputs.check_finite(NODE, alpha=alpha, beta=beta, gamma=gamma, auto_kappa=auto_kappa)
        _inputs.check_window(start_percent, end_percent, NODE)
        family = _inputs.model_family(model, NODE, anchor)
        pick_weak, pick_sources = _is_auto(weak_blocks), _is_auto(source_blocks)
        if pick_weak:
            weak = frozenset()
        elif weak_blocks.strip().lower() == MIDDLE:
            weak = _middle_blocks(family, auto_exclude_ends)
        else:
            weak = frozenset(_inputs.parse_blocks(weak_blocks, family, NODE, "weak_blocks"))
        sources = frozenset() if pick_sources else frozenset(
            _inputs.parse_blocks(source_blocks, family, NODE, "source_blocks"))
        if weak & sources:
            fail(NODE, f"blocks {sorted(weak & sources)} are both weak and source; a block cannot feed itself",
                 "remove them from one of weak_blocks and source_blocks")
        if keyword_columns_only and anchor is None:
            fail(NODE, "cache_columns 'keyword tokens' needs an anchor",
                 "connect a Region Anchor or choose 'all text tokens'")
        auto = None
        if pick_weak or pick_sources:
            auto = AutoPick(AutoSettings(
                num_blocks=family.num_blocks, observe_steps=auto_observe_steps, kappa=auto_kappa, top_r=auto_top_r,
                exclude_ends=auto_exclude_ends, named_weak=None if pick_weak else weak,
                named_sources=None if pick_sources else sources, anchor=anchor))
        settings = TransferSettings(
            weak=weak, sources=sources, alpha=alpha, anchor=anchor, beta=beta, gamma=gamma,
            start=start_percent, end=end_percent, branches=branches, per_head=per_head,
            keyword_columns_only=keyword_columns_only, within_sampled_steps=within_sampled_steps, picked_by=auto,
            observe_steps=auto_observe_steps if auto else 0, num_blocks=family.num_blocks)
        report = (ProbeHandle(auto.recordings, family, AUTO_NOT_SAMPLED, anchor_keywords(anchor)) if auto is not None
                  else ProbeHandle(RunRecordings(), family, NOT_AUTO))
        idle = _idle_settings(settings, pick_weak, pick_sources)
        if idle:
            warn(NODE, f"{idle}; the model passes through unchanged.")
            return io.NodeOutput(model, report)
        handlers = (AttentionTransfer(settings),) if auto is None else (auto, AttentionTransfer(settings))
        node_id = getattr(cls.hidden, "unique_id", None)   # auto mode shows its picks on this node
        return io.NodeOutput(install(model, family, *handlers, node=NODE, node_id=node_id), report)


def _middle_blocks(family, exclude_ends: int) -> frozenset[int]:
    """'middle': every block but ``exclude_ends`` at each end."""
    if family.num_blocks <= 2 * exclude_ends:
        fail(NODE, f"weak_blocks 'middle' leaves out {exclude_ends} blocks at each end (auto_exclude_ends) and "
                   f"{family.variant} has {family.num_blocks}, so no block is left",
             "lower auto_exclude_ends or name weak_blocks")
    return frozenset(range(exclude_ends, family.num_blocks - exclude_ends))


def _is_auto(text: str) -> bool:
    return text.strip().lower() == AUTO


def _idle_settings(s: TransferSettings, pick_weak: bool, pick_sources: bool) -> str | None:
    """Why these settings cannot change any block (a real no-op, as Skip Layer Guidance does), or None.

    Settings that cannot act alone are reported too, so no setting is dropped without a word.
    """
    if not s.weak and not pick_weak:
        return "weak_blocks is empty (the probe found no Semantic-Weak Layers, or none were named)"
    uses_cache = s.alpha > 0 and (bool(s.sources) or pick_sources)
    if s.alpha > 0 and not uses_cache:
        warn(NODE, f"alpha {s.alpha:g} has no source_blocks to transfer from, so the Attention Cache is off.")
    if (s.beta > 0 or s.gamma > 0) and s.anchor is None:
        warn(NODE, "beta and gamma need an anchor (connect Region Anchor), so the anchor bias is off.")
    if not uses_cache and not s.uses_anchor:
        return ("strength is 0: no Attention Cache (alpha 0 or no source_blocks) and no anchor bias "
                "(no anchor, or beta = gamma = 0)")
    return None
