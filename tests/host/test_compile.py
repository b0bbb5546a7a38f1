"""Core TorchCompileModel: one compiled model runs changed Focal Guidance configurations (other blocks,
other settings, the Probe on and off) with one graph per set of patched blocks, no graph break, and
no recompile-limit hit. Measured with dynamo's own counters.

The node offers the inductor and cudagraphs backends; the test compiles through the node with
dynamo's ``eager`` backend, which runs the same tracing, guards and graph breaks without a C++
compiler. The host's attention is plain SDPA, as on an NVIDIA GPU: ComfyUI's CPU default
(sub-quadratic attention) asks psutil for free memory in every call, a graph break of the host's own.
"""
import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

import comfy.ldm.wan.model
from comfy.ldm.modules.attention import attention_pytorch
from comfy_extras.nodes_torch_compile import TorchCompileModel

import _host
from _host import probe, transfer

# (name, patch, its graph's key): a compiled graph depends only on which blocks are tagged and on how
# many handlers the model's plan has, never on their settings or on the run's state.
CONFIGS = [
    ("unpatched", lambda m: m, ((), 0)),
    ("probe", lambda m: probe(m, steps=2)[0], (range(6), 1)),
    ("transfer", lambda m: transfer(m, weak="2", sources="1, 4"), ((1, 2, 4), 1)),
    ("same blocks, other settings", lambda m: transfer(m, weak="2", sources="1, 4", alpha=0.9, beta=0.5),
     ((1, 2, 4), 1)),
    ("other blocks", lambda m: transfer(m, weak="3", sources="1"), ((1, 3), 1)),
    ("probe and transfer", lambda m: transfer(probe(m, steps=1)[0], weak="3", sources="1"), (range(6), 2)),
    ("probe again, other steps", lambda m: probe(m, steps=1)[0], (range(6), 1)),
    ("back to the first transfer", lambda m: transfer(m, weak="2", sources="1, 4"), ((1, 2, 4), 1)),
]


@pytest.fixture
def dynamo(monkeypatch):
    monkeypatch.setattr(comfy.ldm.wan.model, "optimized_attention", attention_pytorch)
    torch._dynamo.reset()
    counters.clear()
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        yield
    torch._dynamo.reset()


def test_changed_configurations_reuse_the_compiled_model(tiny_models, dynamo):
    """Wan; HunyuanVideo's host code also calls the sub-quadratic kernel outside the blocks (the token
    refiner), so its compiled graph breaks with or without Focal Guidance."""
    family = "wan_t2v"
    model = _host.load(tiny_models, family)
    compiled = TorchCompileModel.execute(model, "eager").args[0]
    if not host_patches_reach_a_compiled_model(compiled, family):
        pytest.skip("this host's compiled model keeps the graph of its first run whatever patch a later run "
                    "adds (no guard on transformer_options): no patch, Focal Guidance's or core's, can act")
    torch._dynamo.reset()
    counters.clear()
    keys = set()
    for name, patch, (blocks, handlers) in CONFIGS:
        out = _host.sample(patch(compiled), family, steps=2)
        assert torch.equal(out, _host.sample(patch(model), family, steps=2)), name
        keys.add((frozenset(blocks), handlers))
        graphs = counters["stats"]["unique_graphs"]
        assert graphs == len(keys), f"{name}: {graphs} graphs for {len(keys)} distinct configurations"
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["frames"]["total"] == counters["frames"]["ok"] == len(keys)
    assert len(keys) < torch._dynamo.config.recompile_limit


def host_patches_reach_a_compiled_model(compiled, family) -> bool:
    """Whether a core block patch added after a first compiled run is called (ComfyUI 0.33 with torch
    2.14 keeps the first graph: its compiled frame has no guard on ``transformer_options``)."""
    _host.sample(compiled, family, steps=1)
    calls = []
    patched = compiled.clone()
    patched.set_model_patch_replace(lambda args, extra: calls.append(1) or extra["original_block"](args),
                                    "dit", "double_block", 0)
    _host.sample(patched, family, steps=1)
    return bool(calls)


def test_context_windows_and_skip_layer_guidance_on_a_compiled_model(tiny_models, dynamo):
    """The run-dependent facts a call needs (its context window's frames, whether Skip Layer Guidance's
    pass is foreign) reach the pack's ops as plain values or run state: outputs equal the uncompiled
    run's, nothing breaks the graph, and the windows add at most one graph each."""
    from comfy_extras.nodes_slg import SkipLayerGuidanceDiT
    family = "wan_t2v"
    model = _host.load(tiny_models, family)
    compiled = TorchCompileModel.execute(model, "eager").args[0]
    if not host_patches_reach_a_compiled_model(compiled, family):
        pytest.skip("this host's compiled model keeps the graph of its first run (see above)")
    torch._dynamo.reset()
    counters.clear()
    latent = _host.latent(frames=17)

    def guided(m):
        slg = SkipLayerGuidanceDiT.execute(transfer(m, weak="2", sources="1, 4"), 3.0, 0.0, 1.0, "3", "", 0.0)
        return _host.context_windows(slg.args[0])
    out = _host.sample(guided(compiled), family, steps=2, latent_image=latent)
    assert torch.equal(out, _host.sample(guided(model), family, steps=2, latent_image=latent))
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] <= 2 * 2   # (whole batch, SLG's pass) × windows at most


def test_a_compiled_model_that_skips_the_patches_is_named(tiny_models, dynamo, caplog):
    """Where the host's compiled model keeps its first graph (ComfyUI 0.12.1 and 0.33.0 with torch 2.14),
    Focal nodes placed after TorchCompileModel cannot act: the run says so instead of doing nothing."""
    import logging
    family = "wan_t2v"
    compiled = TorchCompileModel.execute(_host.load(tiny_models, family), "eager").args[0]
    if host_patches_reach_a_compiled_model(compiled, family):
        pytest.skip("on this host a compiled model runs the patches added after its first run")
    with caplog.at_level(logging.WARNING, logger="FocalGuidance"):
        _host.sample(transfer(compiled, weak="2", sources="1"), family, steps=2)
    assert "none of the blocks it patched ran" in caplog.text
