"""Every node of the pack documents every input and output, and lives in the pack's category."""
import asyncio

import pytest

from focal_guidance.nodes import FocalGuidanceExtension

NODES = asyncio.run(FocalGuidanceExtension().get_node_list())


@pytest.mark.parametrize("node", NODES, ids=lambda n: n.__name__)
def test_every_input_and_output_has_a_tooltip(node):
    schema = node.define_schema()
    assert [i.id for i in schema.inputs if not i.tooltip] == []
    assert [o.display_name or o.id for o in schema.outputs if not o.tooltip] == []
    assert schema.category == "sampling/focal_guidance" and schema.description


def test_the_pack_registers_its_four_nodes():
    ids = sorted(n.define_schema().node_id for n in NODES)
    assert ids == ["FocalAttentionTransfer", "FocalRegionAnchor", "FocalSemanticLayerProbe",
                   "FocalSemanticLayerReport"]
