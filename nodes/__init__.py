"""ComfyUI glue: V3 node schemas that translate inputs into one ``focal_core`` call each."""
from comfy_api.latest import ComfyExtension, io

from .anchor import RegionAnchorNode
from .probe import SemanticLayerProbe
from .report import SemanticLayerReport
from .transfer import FocalAttentionTransfer


class FocalGuidanceExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [SemanticLayerProbe, SemanticLayerReport, RegionAnchorNode, FocalAttentionTransfer]
