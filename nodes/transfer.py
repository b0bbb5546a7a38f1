"""Node "Focal Attention Transfer": patch the Semantic-Weak blocks of a Wan/HunyuanVideo model."""
from comfy_api.latest import io

from ..focal_core.auto import AutoSettings
from ..focal_core.transfer import AttentionTransfer, TransferSettings
from . import _inputs
from ._types import Anchor, Probe
from .dispatch import install
from .notify import warn
from .probe import ProbeHandle

NODE = "Focal Attention Transfer"
AUTO = "auto"


class FocalAttentionTransfer(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FocalAttentionTransfer",
            display_name=NODE,
            category=_inputs.CATEGORY,
            description=("Focal Guidance: in the Semantic-Weak blocks, blend the text attention of "
                         "responsive blocks (Attention Cache) and bias it toward the anchored regions (FSG)."),
            inputs=[
                io.Model.Input("model", tooltip="A Wan2.1/2.2 or HunyuanVideo diffusion model."),
                _inputs.blocks_input("weak_blocks", "Semantic-Weak blocks to patch, e.g. '12-20, 25' "
                                     "(0-based; HunyuanVideo counts double blocks, then single blocks), or "
                                     "'auto': the run's first steps find them. Or wire Semantic Layer Report's "
                                     "weak_blocks here.", default=AUTO),
                _inputs.blocks_input("source_blocks", "Responsive blocks whose text attention is cached and "
                                     "transferred, or 'auto'. A source deeper than a weak block gives its "
                                     "previous-step map. Empty: anchor bias only.", default=AUTO),
                io.Float.Input("alpha", default=0.3, min=0.0, max=1.0, step=0.01,
                               tooltip="Attention Cache blend: P' = (1-alpha)·P_weak + alpha·P_source."),
                io.Float.Input("beta", default=1.0, min=0.0, max=10.0, step=0.05,
                               tooltip="Anchor bias added to keyword-token logits inside the keyword's region."),
                io.Float.Input("gamma", default=0.5, min=0.0, max=10.0, step=0.05,
                               tooltip="Anchor bias subtracted from keyword-token logits outside the region."),
                *_inputs.window_inputs(0.0, 0.5),
                _inputs.branch_input(),
                io.Combo.Input("cache_heads", options=["head mean", "per head"], default="head mean",
                               tooltip="Cache the head-averaged map (small) or one map per head (heads× memory: "
                                       "about 2.7 GB per source block for Wan 14B at 480p)."),
                io.Combo.Input("cache_columns", options=["all text tokens", "keyword tokens"],
                               default="all text tokens",
                               tooltip="Transfer every text column, or only the anchor's keyword columns "
                                       "(O(N·K) memory; needs an anchor)."),
                _inputs.window_of_input(),
                io.Int.Input("auto_observe_steps", default=1, min=1, max=20, optional=True,
                             tooltip="Auto mode: how many leading steps of the run only observe every block "
                                     "before the blocks are picked and guidance starts."),
                io.Float.Input("auto_kappa", default=1.0, min=0.0, max=10.0, step=0.1, optional=True,
                               tooltip="Auto mode: a block is weak when its score is more than kappa robust "
                                       "sigmas below the depth trend (Semantic Layer Report's rule). 1 is the "
                                       "value at which the trained test model shows its weak block."),
                io.Int.Input("auto_top_r", default=2, min=1, max=16, optional=True,
                             tooltip="Auto mode: how many responsive blocks become sources."),
                io.Int.Input("auto_exclude_ends", default=2, min=0, max=16, optional=True,
                             tooltip="Auto mode: blocks at each end that are never picked."),
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
                branch, cache_heads, cache_columns, window_of=_inputs.WINDOW_OF[0], auto_observe_steps=1,
                auto_kappa=1.0, auto_top_r=2, auto_exclude_ends=2, anchor=None) -> io.NodeOutput:
        _inputs.check_finite(NODE, alpha=alpha, beta=beta, gamma=gamma, auto_kappa=auto_kappa)
        _inputs.check_window(start_percent, end_percent, NODE)
        layout = _inputs.model_layout(model, NODE, anchor)
        pick_weak, pick_sources = _is_auto(weak_blocks), _is_auto(source_blocks)
        weak = frozenset() if pick_weak else frozenset(_inputs.parse_blocks(weak_blocks, layout, NODE, "weak_blocks"))
        sources = frozenset() if pick_sources else frozenset(
            _inputs.parse_blocks(source_blocks, layout, NODE, "source_blocks"))
        if weak & sources:
            raise ValueError(f"{NODE}: blocks {sorted(weak & sources)} are both weak and source; a block cannot "
                             "feed itself.")
        if cache_columns == "keyword tokens" and anchor is None:
            raise ValueError(f"{NODE}: cache_columns 'keyword tokens' needs an anchor; connect a Region "
                             "Anchor or choose 'all text tokens'.")
        if anchor is not None and anchor.is_placeholder and not sources and not pick_sources:
            raise ValueError(f"{NODE}: the anchor comes from Region Anchor's 'model attention (fallback)' mode, "
                             "whose regions are read from the source blocks' attention; name source_blocks "
                             "(e.g. the probe's responsive_blocks) or set them to 'auto'.")
        auto = None
        if pick_weak or pick_sources:
            auto = AutoSettings(auto_observe_steps, auto_kappa, auto_top_r, auto_exclude_ends, pick_weak, pick_sources)
        settings = TransferSettings(
            weak_blocks=weak, source_blocks=sources, alpha=alpha, anchor=anchor, beta=beta, gamma=gamma,
            start_percent=start_percent, end_percent=end_percent, branches=_inputs.BRANCHES[branch],
            per_head=cache_heads == "per head", keyword_columns_only=cache_columns == "keyword tokens",
            window_of=window_of, auto=auto, num_blocks=layout.num_blocks)
        handler = AttentionTransfer(settings, node_id=getattr(cls.hidden, "unique_id", None))
        report = ProbeHandle(handler.recordings, layout)
        idle = _idle_settings(settings)
        if idle:
            warn(NODE, f"{idle}; the model passes through unchanged.")
            return io.NodeOutput(model, report)
        return io.NodeOutput(install(model, layout, handler), report)


def _is_auto(text: str) -> bool:
    return text.strip().lower() == AUTO


def _idle_settings(s: TransferSettings) -> str | None:
    """Why these settings cannot change any block (a real no-op, as Skip Layer Guidance does), or None.

    Settings that cannot act alone are reported too, so no setting is dropped without a word.
    """
    if not s.weak_blocks and (s.auto is None or not s.auto.pick_weak):
        return "weak_blocks is empty (the probe found no Semantic-Weak Layers, or none were named)"
    if s.alpha > 0 and not s.uses_cache:
        warn(NODE, f"alpha {s.alpha:g} has no source_blocks to transfer from, so the Attention Cache is off.")
    if (s.beta > 0 or s.gamma > 0) and s.anchor is None:
        warn(NODE, "beta and gamma need an anchor (connect Region Anchor), so the anchor bias is off.")
    if not s.uses_cache and not s.uses_anchor:
        return ("strength is 0: no Attention Cache (alpha 0 or no source_blocks) and no anchor bias "
                "(no anchor, or beta = gamma = 0)")
    return None
