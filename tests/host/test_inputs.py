"""Every combo input is checked in ``execute`` (ComfyUI 0.3.75 passes unknown values through), and
inputs a user can paste are quoted back short: each error names the node, the input and the fix."""
import pytest
import torch

import _host
from _host import probe, transfer
from focal_guidance.nodes.report import SemanticLayerReport


@pytest.fixture(scope="module")
def model(tiny_models):
    return _host.load(tiny_models, "wan_t2v")


@pytest.mark.parametrize("node, combo", [
    ("Focal Attention Transfer", "branch"), ("Focal Attention Transfer", "cache_heads"),
    ("Focal Attention Transfer", "cache_columns"), ("Focal Attention Transfer", "window_of"),
    ("Semantic Layer Probe", "branch"), ("Semantic Layer Probe", "window_of"),
    ("Semantic Layer Report", "metric"), ("Semantic Layer Report", "adjacency"),
])
def test_an_unknown_combo_value_names_the_node_and_the_input(model, node, combo):
    with pytest.raises(ValueError, match=rf"^{node}: {combo} is 'foo', which is not one of its options\. "
                                         r"Fix: choose one of '") as err:
        if node == "Focal Attention Transfer":
            transfer(model, **{{"cache_heads": "heads", "cache_columns": "columns"}.get(combo, combo): "foo"})
        elif node == "Semantic Layer Probe":
            probe(model, **{combo: "foo"})
        else:
            inputs = {"metric": "attention", "adjacency": "rook", combo: "foo"}
            SemanticLayerReport.execute(probe(model)[1], {"samples": _host.latent()}, inputs["metric"], 2.0, 2, 2,
                                        inputs["adjacency"], 0)
    assert not isinstance(err.value, KeyError)


@pytest.mark.parametrize("text", ["1" * 10_000, "x" * 10_000, "2-" + "9" * 5_000])
def test_a_pasted_page_of_block_text_is_refused_short(model, text):
    with pytest.raises(ValueError, match="^Focal Attention Transfer: weak_blocks: ") as err:
        transfer(model, weak=text)
    message = str(err.value)
    assert "characters)" in message and len(message) < 400 and "set_int_max_str_digits" not in message


def test_leading_zeros_and_long_zero_runs_still_name_a_block(model):
    patched = transfer(model, weak="0" * 5_000 + "2", sources="1")
    assert torch.isfinite(_host.sample(patched, "wan_t2v", steps=1)).all()


@pytest.mark.parametrize("ends", [1, 2])
def test_middle_names_every_block_but_the_ends(model, ends):
    from focal_guidance.nodes._inputs import model_family
    from focal_guidance.nodes.dispatch import PLAN
    patched = transfer(model, weak=" Middle ", sources="0", alpha=0.5, auto_exclude_ends=ends)
    settings = patched.model_options["transformer_options"][PLAN].handlers[-1].handler.settings
    n = model_family(model, "test").num_blocks
    assert settings.weak == frozenset(range(ends, n - ends)) and n - 2 * ends > 0


def test_middle_with_no_block_left_says_so(model):
    from focal_guidance.nodes._inputs import model_family
    n = model_family(model, "test").num_blocks
    with pytest.raises(ValueError, match=rf"^Focal Attention Transfer: weak_blocks 'middle' leaves out {n} blocks at "
                                         r"each end .* Fix: lower auto_exclude_ends or name weak_blocks"):
        transfer(model, weak="middle", sources="", alpha=0.0, auto_exclude_ends=n)
