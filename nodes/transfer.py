"""Node "Focal Attention Transfer": patch the Semantic-Weak blocks of a Wan/HunyuanVideo model."""
from comfy_api.latest import io

from ..focal_core.transfer import AttentionTransfer, TransferSettings
from . import _inputs
from ._types import Anchor
from .hooks import install

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
                Anchor.Input("anchor", optional=True,
                             tooltip="Region Anchor output: keyword regions and their prompt tokens (FSG)."),
            ],
            outputs=[io.Model.Output(tooltip="The patched model clone; the input model is not changed.")],
        )

    @classmethod
    def execute(cls, model, weak_blocks, source_blocks, alpha, beta, gamma, start_percent, end_percent,
                branch, cache_heads, cache_columns, anchor=None) -> io.NodeOutput:
        layout = _inputs.model_layout(model, NODE)
        weak = _inputs.parse_blocks(weak_blocks, layout, NODE, "weak_blocks")
        sources = _inputs.parse_blocks(source_blocks, layout, NODE, "source_blocks", required=False)
        overlap = sorted(set(weak) & set(sources))
        if overlap:
            raise ValueError(f"{NODE}: blocks {overlap} are both weak and source; a block cannot feed itself.")
        if cache_columns == "keyword tokens" and anchor is None:
            raise ValueError(f"{NODE}: cache_columns 'keyword tokens' needs an anchor; connect a Region "
                             "Anchor or choose 'all text tokens'.")
        _inputs.check_window(start_percent, end_percent, NODE)
        settings = TransferSettings(
            weak_blocks=frozenset(weak), source_blocks=frozenset(sources), alpha=alpha, anchor=anchor,
            beta=beta, gamma=gamma, start_percent=start_percent, end_percent=end_percent,
            branches=_inputs.BRANCHES[branch], per_head=cache_heads == "per head",
            keyword_columns_only=cache_columns == "keyword tokens")
        handler = AttentionTransfer(settings)
        return io.NodeOutput(install(model, layout, handler.blocks, handler))
