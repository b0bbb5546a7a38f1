"""Semantic Layer Probe and Report inside the real host, on tiny real-architecture checkpoints."""
import json

import pytest
import torch

import _host
from _host import PLANTED, probe, report, smooth_latent, synthetic_wan
from focal_guidance.focal_core.anchors import RegionAnchor


def probe_synthetic(model):
    patched, handle = probe(model, steps=2)
    lat = smooth_latent()
    out = _host.sample(patched, "wan_t2v", steps=4, latent_image=lat, noise=torch.zeros_like(lat), denoise=0.3)
    return json.loads(report(handle, out).args[4])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_probe_finds_exactly_the_planted_weak_blocks(seed):
    data = probe_synthetic(synthetic_wan(seed, PLANTED))
    assert data["weak"] == list(PLANTED)
    assert data["weak_blocks"] == "5, 9"
    assert not set(data["responsive"]) & set(PLANTED) and len(data["responsive"]) == 2
    for block in PLANTED:
        assert data["morans"][block] == pytest.approx(0.0, abs=1e-6)  # uniform attention: a flat map


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unmodified_model_reports_no_weak_blocks(seed):
    data = probe_synthetic(synthetic_wan(seed))
    assert data["weak"] == []
    assert min(data["morans"]) > 0.2  # the quiet model really is spatially coherent everywhere


@pytest.mark.parametrize("family", ["wan_i2v", "hunyuan_i2v"])
def test_recording_is_bit_identical_and_complete(tiny_models, family):
    model = _host.load(tiny_models, family)
    base = _host.sample(model, family, steps=4)
    patched, handle = probe(model, steps=3)
    out = _host.sample(patched, family, steps=4)
    assert torch.equal(base, out)
    recording = handle.recordings.runs[-1]
    assert recording.grid == (2, 4, 6) and len(recording.steps) == 3
    for metric in ("attention", "hidden"):
        assert len(recording.maps[metric]) == 3 * 6
        assert all(m.shape == (2, 4, 6) and m.device.type == "cpu" for m in recording.maps[metric].values())


def test_each_steps_maps_reach_the_cpu_in_one_copy_with_the_values_the_blocks_gave(tiny_models, monkeypatch):
    from focal_guidance.focal_core.recorder import AttentionRecorder
    given, copies = {}, []
    keep, move = AttentionRecorder.keep, AttentionRecorder.flush

    def spy_keep(recorder, metric, step, block, response, frames=None):
        given[(metric, step, block)] = response.detach().clone()
        keep(recorder, metric, step, block, response, frames)

    def spy_move(recorder):
        if recorder.held:
            copies.append(sorted({(held.step, held.block) for held in recorder.held}))
        move(recorder)
    monkeypatch.setattr(AttentionRecorder, "keep", spy_keep)
    monkeypatch.setattr(AttentionRecorder, "flush", spy_move)
    model = _host.load(tiny_models, "wan_i2v")
    patched, handle = probe(model, steps=3)
    _host.sample(patched, "wan_i2v", steps=4)
    recording = handle.recordings.runs[-1]
    assert copies == [[(step, block) for block in range(6)] for step in recording.steps]
    assert len(given) == 2 * 3 * 6
    for (metric, step, block), response in given.items():
        assert torch.equal(recording.maps[metric][(step, block)], response.view(recording.grid))


@pytest.mark.parametrize("family", ["wan_i2v", "hunyuan_i2v"])
def test_report_outputs_images_sets_json_and_ui(tiny_models, family):
    model = _host.load(tiny_models, family)
    patched, handle = probe(model)
    out = report(handle, _host.sample(patched, family), metric="hidden", exclude_ends=1)
    curve, grid, weak, responsive, text = out.args
    assert curve.ndim == 4 and curve.shape[-1] == 3 and grid.ndim == 4
    data = json.loads(text)
    assert len(data["similarity"]) == len(data["morans"]) == len(data["score"]) == 6
    assert [len(f) for f in data["morans_by_frame"]] == [2] * 6  # two latent frames
    for block in range(6):
        assert data["morans"][block] == pytest.approx(sum(data["morans_by_frame"][block]) / 2)
        assert data["similarity"][block] == pytest.approx(sum(data["similarity_by_frame"][block]) / 2)
    assert data["weak_blocks"] == weak and data["responsive_blocks"] == responsive
    panel = out.ui["focal_probe"][0]
    assert len(panel["heatmaps"]) == 6 and len(panel["heatmaps"][0]) == 4 and len(panel["heatmaps"][0][0]) == 6
    assert "images" not in out.ui  # the PNGs are outputs to save; the node itself shows only the canvas chart
    palette = panel["palette"]   # the canvas draws with the colours the PNG was drawn with
    drawn = {tuple(rgb) for rgb in (curve[0] * 255).round().to(torch.uint8).reshape(-1, 3).tolist()}
    for key in ("similarity", "morans", "score", "trend", "weak", "responsive"):
        assert tuple(int(palette[key][i:i + 2], 16) for i in (1, 3, 5)) in drawn, key
    assert len(palette["ramp"]) >= 2 and all(len(stop) == 3 for stop in palette["ramp"])


def test_keyword_columns_from_anchor_change_the_measure(tiny_models):
    model = _host.load(tiny_models, "wan_t2v")
    anchor = RegionAnchor(("cat",), torch.ones(1, 4, 6), ((1, 2),))
    patched_all, all_tokens = probe(model)
    patched_kw, keywords = probe(model, anchor=anchor)
    _host.sample(patched_all, "wan_t2v")
    _host.sample(patched_kw, "wan_t2v")
    all_maps, keyword_maps = (h.recordings.runs[-1].maps["attention"] for h in (all_tokens, keywords))
    key = next(iter(all_maps))
    # mass on 2 of the 7 prompt tokens is strictly less than on all 7, token by token
    assert torch.all(keyword_maps[key] < all_maps[key])


def test_probe_errors_name_the_node_and_the_fix(tiny_models, caplog):
    model = _host.load(tiny_models, "wan_t2v")
    patched, handle = probe(model, branch="negative")
    with pytest.raises(ValueError, match="Semantic Layer Probe: branch 'negative' needs a negative pass"):
        _host.sample(patched, "wan_t2v", cfg=1.0)
    fresh, unused = probe(model)
    with pytest.raises(ValueError, match="Semantic Layer Report: nothing has been recorded"):
        report(unused, _host.latent())
    out = _host.sample(fresh, "wan_t2v")
    with pytest.raises(ValueError, match="Semantic Layer Report: frame 5 does not exist"):
        report(unused, out, frame=5)
    late, late_handle = probe(model, start=0.99, end=1.0)
    late_out = _host.sample(late, "wan_t2v")
    assert "Semantic Layer Probe: the window 0.99-1 (whole schedule) holds none of the 3 sampled steps" in caplog.text
    with pytest.raises(ValueError, match="Semantic Layer Report: nothing has been recorded"):
        report(late_handle, late_out)
    with pytest.raises(ValueError, match=r"Semantic Layer Probe: SD15 \(UNetModel\) is not a supported family"):
        probe(_host.tiny_sd15())
