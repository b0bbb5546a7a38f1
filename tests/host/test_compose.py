"""The pack's nodes composed on one model (one dispatcher), and settings that cannot act saying so.

Each test here failed before the dispatcher: stacked nodes crashed or dropped each other, the
fallback anchor never acted in the templates' layout, and idle settings passed without a word.
"""
import json

import pytest
import torch

import comfy.sd

import _host
import make_tiny_models as tiny
from _host import probe, transfer
from focal_guidance.focal_core.anchors import RegionAnchor
from focal_guidance.nodes.report import SemanticLayerReport

def report_json(handle, latent):
    return json.loads(SemanticLayerReport.execute(handle, {"samples": latent}, "attention", 2.0, 2, 1,
                                                  "rook", 0).args[4])


def attention_maps(handle, step=0):
    maps = handle.recordings.runs[-1].maps["attention"]
    return {block: m for (s, block), m in maps.items() if s == step}


@pytest.mark.parametrize("family", ["wan_i2v", "hunyuan_i2v"])
@pytest.mark.parametrize("cfg", [5.0, 1.0])
def test_probe_then_transfer_samples_like_the_transfer_alone(tiny_models, family, cfg):
    model = _host.load(tiny_models, family)
    probed, handle = probe(model, steps=2)
    both = _host.sample(transfer(probed, weak="2", sources="1"), family, cfg=cfg)
    assert torch.equal(both, _host.sample(transfer(model, weak="2", sources="1"), family, cfg=cfg))
    assert len(attention_maps(handle)) == 6  # the probe recorded every block, with cfg 1 too


def test_probe_then_transfer_on_the_hosts_sdpa_samples_like_the_transfer_alone(tiny_models, monkeypatch):
    """HunyuanVideo on the host's SDPA kernel: the probe's record-only blocks compute their own output
    in one joint attention (tests/host/test_families.py); beside the transfer's edited blocks the
    sample is still exactly the transfer's alone."""
    import comfy.ldm.flux.math
    from comfy.ldm.modules.attention import attention_pytorch
    monkeypatch.setattr(comfy.ldm.flux.math, "optimized_attention", attention_pytorch)
    model = _host.load(tiny_models, "hunyuan_i2v")
    probed, handle = probe(model, steps=2)
    both = _host.sample(transfer(probed, weak="2", sources="1"), "hunyuan_i2v")
    assert torch.equal(both, _host.sample(transfer(model, weak="2", sources="1"), "hunyuan_i2v"))
    assert len(attention_maps(handle)) == 6


def test_probe_records_the_attention_the_model_uses_in_either_order(tiny_models):
    model = _host.load(tiny_models, "wan_t2v")
    probed_plain, plain = probe(model)
    after, after_handle = probe(transfer(model, weak="2", sources="1", alpha=0.9))
    before_model, before_handle = probe(model)
    before = transfer(before_model, weak="2", sources="1", alpha=0.9)
    _host.sample(probed_plain, "wan_t2v")
    _host.sample(after, "wan_t2v")
    _host.sample(before, "wan_t2v")
    plain_maps, after_maps, before_maps = (attention_maps(h) for h in (plain, after_handle, before_handle))
    # before the edited block, the first step is untouched. Block 0 is recorded alike in both runs; block 1
    # is also the transfer's source, and a recording of all 512 columns takes the explicit path where the
    # probe's few columns alone take the fused kernel's log-sum-exp (focal_core.fused): fp32 rounding apart.
    assert torch.equal(after_maps[0], plain_maps[0])
    torch.testing.assert_close(after_maps[1], plain_maps[1], rtol=1e-5, atol=1e-7)
    assert not torch.allclose(after_maps[2], plain_maps[2], atol=1e-4)
    for block in range(6):  # graph order does not matter: recordings see the final probabilities
        assert torch.equal(after_maps[block], before_maps[block])


def test_two_transfers_on_one_block_compose_blends_in_order(tiny_models):
    """Blends apply in graph order: alpha 0.3 then 0.5 from the same source is alpha 1-(0.7·0.5) = 0.65."""
    model = _host.load(tiny_models, "wan_i2v")
    stacked = transfer(transfer(model, weak="2", sources="1", alpha=0.3), weak="2", sources="1", alpha=0.5)
    out = _host.sample(stacked, "wan_i2v")
    torch.testing.assert_close(out, _host.sample(transfer(model, weak="2", sources="1", alpha=0.65), "wan_i2v"),
                               atol=1e-4, rtol=1e-4)
    nearby = _host.sample(transfer(model, weak="2", sources="1", alpha=0.6), "wan_i2v")
    assert (out - nearby).abs().max() > 1e-3  # the tolerance above tells 0.65 from 0.6


def test_two_transfers_with_anchors_add_their_biases(tiny_models):
    model = _host.load(tiny_models, "wan_i2v")
    masks = torch.zeros(1, 8, 12)
    masks[:, 2:6, 3:8] = 1
    anchor = RegionAnchor(("cat",), masks, ((1, 2),))
    stacked = transfer(transfer(model, weak="2", sources="", alpha=0.0, beta=1.0, gamma=0.5, anchor=anchor),
                       weak="2", sources="", alpha=0.0, beta=1.0, gamma=0.5, anchor=anchor)
    out = _host.sample(stacked, "wan_i2v")
    doubled = transfer(model, weak="2", sources="", alpha=0.0, beta=2.0, gamma=1.0, anchor=anchor)
    torch.testing.assert_close(out, _host.sample(doubled, "wan_i2v"), atol=1e-4, rtol=1e-4)
    nearby = transfer(model, weak="2", sources="", alpha=0.0, beta=1.8, gamma=1.0, anchor=anchor)
    assert (out - _host.sample(nearby, "wan_i2v")).abs().max() > 1e-3  # the tolerance tells 2.0 from 1.8


def _model_with_blocks(family, count):
    if family == "wan_i2v":
        return comfy.sd.load_diffusion_model_state_dict(tiny.wan_state_dict("i2v", 36, num_layers=count, dim=128))
    return comfy.sd.load_diffusion_model_state_dict(tiny.hunyuan_i2v_state_dict(depth=20, depth_single=count - 20))


@pytest.mark.parametrize("family, weak, sources", [("wan_i2v", "16-23", "10-11"), ("hunyuan_i2v", "30-37", "18-19")])
def test_fallback_anchor_with_shallower_sources_applies_its_bias(family, weak, sources):
    """The templates' layout before auto mode (sources shallower than the weak blocks, Wan 40 and
    HunyuanVideo 20+40 blocks) with a fallback anchor: the bias acts."""
    model = _model_with_blocks(family, int(weak.split("-")[1]) + 2)
    placeholder = RegionAnchor(("cat", "ball"), torch.full((2, 4, 6), 0.5), ((0,), (2, 3)), regions_from_attention=True,
                               prompt_tokens=_host.TEXT_TOKENS)
    cache_only = transfer(model, weak=weak, sources=sources, alpha=0.3)
    with_anchor = transfer(model, weak=weak, sources=sources, alpha=0.3, beta=1.0, gamma=0.5, anchor=placeholder)
    assert not torch.equal(_host.sample(cache_only, family, steps=2), _host.sample(with_anchor, family, steps=2))


def test_window_outside_the_sampled_steps_warns_and_sampled_steps_acts(tiny_models, caplog):
    """A Wan2.2 low-noise expert samples the late steps only: a 0-0.5 window of the whole schedule
    holds none of them; the same window of its sampled steps acts."""
    model = _host.load(tiny_models, "wan22_i2v")
    second_half = {"steps": 8, "start_step": 5, "last_step": 8}
    base = _host.sample(model, "wan22_i2v", **second_half)
    idle = _host.sample(transfer(model, weak="2", sources="1", end=0.5), "wan22_i2v", **second_half)
    assert torch.equal(idle, base)
    assert ("Focal Attention Transfer: the window 0-0.5 (whole schedule) holds none of the 3 sampled steps"
            in caplog.text)
    caplog.clear()
    acting = transfer(model, weak="2", sources="1", end=0.5, window_of="sampled steps")
    assert not torch.equal(_host.sample(acting, "wan22_i2v", **second_half), base)
    assert "holds none" not in caplog.text


def test_report_reads_the_run_of_its_own_latent(tiny_models):
    model = _host.load(tiny_models, "wan_t2v")
    probed, handle = probe(model, steps=1, end=0.2)
    small = _host.sample(probed, "wan_t2v", steps=3, latent_image=_host.latent(height=32, width=48))
    large = _host.sample(probed, "wan_t2v", steps=3, latent_image=_host.latent(height=64, width=96))
    assert report_json(handle, small)["grid"] == [2, 2, 3]
    assert report_json(handle, large)["grid"] == [2, 4, 6]
    other_seed = _host.sample(probed, "wan_t2v", steps=3, seed=1)
    _, first, second = handle.recordings.runs   # same grid, two runs: each latent finds its own
    assert handle.recordings.recording_for(large, (2, 4, 6)) is first
    assert handle.recordings.recording_for(other_seed, (2, 4, 6)) is second
    with pytest.raises(ValueError, match="Semantic Layer Report: this LATENT .* is not the output of a run"):
        report_json(handle, torch.zeros_like(large))   # two runs of that grid: which one is ambiguous


def test_idle_settings_return_the_input_model_and_say_why(tiny_models, caplog):
    model = _host.load(tiny_models, "wan_i2v")
    assert transfer(model, alpha=0.0) is model
    assert "Focal Attention Transfer: strength is 0" in caplog.text
    assert transfer(model, weak="") is model
    assert "weak_blocks is empty" in caplog.text
    caplog.clear()
    assert transfer(model, sources="", alpha=0.5, beta=1.0) is model
    assert "alpha 0.5 has no source_blocks" in caplog.text and "beta and gamma need an anchor" in caplog.text
    caplog.clear()   # the node at its defaults (anchor bias only) without an anchor: idle, and says so
    from focal_guidance.nodes.transfer import FocalAttentionTransfer
    defaults = {i.id: i.default for i in FocalAttentionTransfer.define_schema().inputs
                if getattr(i, "default", None) is not None}
    assert FocalAttentionTransfer.execute(model=model, **defaults).args[0] is model
    assert "beta and gamma need an anchor" in caplog.text and "strength is 0" in caplog.text
