"""Node "Focal Attention Transfer": patch the Semantic-Weak blocks of a Wan/HunyuanVideo model."""
from comfy_api.latest import io

from ..focal_core.transfer import AttentionTransfer, TransferSettings
from . import _inputs
from ._types import Anchor
from .dispatch import install
from .notify import warn

NODE = "Focal Attention Transfer"


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
                                     "(0-based; HunyuanVideo counts double blocks, then single blocks). "
                                     "Wire Semantic Layer Report's weak_blocks here."),
                _inputs.blocks_input("source_blocks", "Responsive blocks whose text attention is cached and "
                                     "transferred. A source deeper than a weak block gives its previous-step "
                                     "map. Empty: anchor bias only."),
                io.Float.Input("alpha", default=0.3, min=0.0, max=1.0, step=0.01,
                               tooltip="Attention Cache blend: P' = (1-alpha)·P_weak + alpha·P_source."),
                io.Float.Input("beta", default=1.0, min=0.0, max=10.0, step=0.05,
                               tooltip="Anchor bias added to keyword-token logits inside the keyword's region."),
                io.Float.Input("gamma", default=0.5, min=0.0, max=10.0, step=0.05,
                               tooltip="Anchor bias subtracted from keyword-token logits outside the region."),
                *_inputs.window_inputs(0.0, 0.5),
                _inputs.branch_input(),
                io.Combo.Input("cache_heads", options=["head mean", "per head"], default="head mean",
                               tooltip="Cache the head-averaged map (small) or one map per head (heads× memory)."),
                io.Combo.Input("cache_columns", options=["all text tokens", "keyword tokens"],
                               default="all text tokens",
                               tooltip="Transfer every text column, or only the anchor's keyword columns "
                                       "(O(N·K) memory; needs an anchor)."),
                _inputs.window_of_input(),
                Anchor.Input("anchor", optional=True,
                             tooltip="Region Anchor output: keyword regions and their prompt tokens (FSG)."),
            ],
            outputs=[io.Model.Output(tooltip="The patched model clone; the input model is not changed.")],
        )

    @classmethod
    def execute(cls, model, weak_blocks, source_blocks, alpha, beta, gamma, start_percent, end_percent,
                branch, cache_heads, cache_columns, window_of=_inputs.WINDOW_OF[0], anchor=None) -> io.NodeOutput:
        _inputs.check_finite(NODE, alpha=alpha, beta=beta, gamma=gamma)
        _inputs.check_window(start_percent, end_percent, NODE)
        layout = _inputs.model_layout(model, NODE, anchor)
        weak = _inputs.parse_blocks(weak_blocks, layout, NODE, "weak_blocks")
        sources = _inputs.parse_blocks(source_blocks, layout, NODE, "source_blocks")
        overlap = sorted(set(weak) & set(sources))
        if overlap:
            raise ValueError(f"{NODE}: blocks {overlap} are both weak and source; a block cannot feed itself.")
        if cache_columns == "keyword tokens" and anchor is None:
            raise ValueError(f"{NODE}: cache_columns 'keyword tokens' needs an anchor; connect a Region "
                             "Anchor or choose 'all text tokens'.")
        if anchor is not None and anchor.is_placeholder and not sources:
            raise ValueError(f"{NODE}: the anchor comes from Region Anchor's 'model attention (fallback)' mode, "
                             "whose regions are read from the source blocks' attention; name source_blocks "
                             "(e.g. the probe's responsive_blocks).")
        settings = TransferSettings(
            weak_blocks=frozenset(weak), source_blocks=frozenset(sources), alpha=alpha, anchor=anchor,
            beta=beta, gamma=gamma, start_percent=start_percent, end_percent=end_percent,
            branches=_inputs.BRANCHES[branch], per_head=cache_heads == "per head",
            keyword_columns_only=cache_columns == "keyword tokens", window_of=window_of)
        idle = _idle_settings(settings)
        if idle:
            warn(NODE, f"{idle}; the model passes through unchanged.")
            return io.NodeOutput(model)
        return io.NodeOutput(install(model, layout, AttentionTransfer(settings)))


def _idle_settings(s: TransferSettings) -> str | None:
    """Why these settings cannot change any block (a real no-op, as Skip Layer Guidance does), or None.

    Settings that cannot act alone are reported too, so no setting is dropped without a word.
    """
    if not s.weak_blocks:
        return "weak_blocks is empty (the probe found no Semantic-Weak Layers, or none were named)"
    if s.alpha > 0 and not s.source_blocks:
        warn(NODE, f"alpha {s.alpha:g} has no source_blocks to transfer from, so the Attention Cache is off.")
    if (s.beta > 0 or s.gamma > 0) and s.anchor is None:
        warn(NODE, "beta and gamma need an anchor (connect Region Anchor), so the anchor bias is off.")
    if not s.uses_cache and not s.uses_anchor:
        return ("strength is 0: no Attention Cache (alpha 0 or no source_blocks) and no anchor bias "
                "(no anchor, or beta = gamma = 0)")
    return None
