"""Model families (focal_core/families) on tiny checkpoints built from the host's own classes.

For every supported family: recording is bit-identical, only the chosen block changes, and the probe
reads exactly the prompt columns of the family's own token layout (checked against the layout the
test conditioning builds, not against the family code). Other families, reference-token Wan models
and anchors of another family are refused with errors that say what is supported or what differs.
"""
from dataclasses import dataclass, field

import pytest
import torch

import _host
from _host import probe, transfer
from focal_guidance.focal_core.anchors import RegionAnchor
from focal_guidance.focal_core.attention import TextEdit
from focal_guidance.focal_core.families import ModelInfo, UnsupportedModelError, family_for
from focal_guidance.focal_core.probe import ProbeSettings, SemanticProbe
from focal_guidance.focal_core.handler import Handler
from focal_guidance.nodes._inputs import model_family
from focal_guidance.nodes.dispatch import install

T = _host.TEXT_TOKENS
# family -> (host config class, family variant, text keys of the text call, prompt columns among them)
LAYOUTS = {
    "wan_i2v": ("WAN21_I2V", "Wan2.1 I2V", 512, range(T)),        # CLIP tokens have their own call
    "wan_t2v": ("WAN21_T2V", "Wan2.1 T2V / Wan2.2 I2V A14B", 512, range(T)),
    "wan22_i2v": ("WAN21_T2V", "Wan2.1 T2V / Wan2.2 I2V A14B", 512, range(T)),
    "wan22_ti2v": ("WAN22_T2V", "Wan2.2 TI2V-5B", 512, range(T)),
    "hunyuan_i2v": ("HunyuanVideoI2V", "HunyuanVideo 1.0", T + 8, range(T + 8)),   # image tokens inside the context
    "hunyuan15_i2v": ("HunyuanVideo15", "HunyuanVideo 1.5", _host.SIGLIP_TOKENS + _host.GLYPH_TOKENS + T,
                      range(_host.SIGLIP_TOKENS + _host.GLYPH_TOKENS, _host.SIGLIP_TOKENS + _host.GLYPH_TOKENS + T)),
}


@pytest.fixture(scope="module", params=list(LAYOUTS))
def family_model(request, tiny_models):
    return request.param, _host.load(tiny_models, request.param)


@dataclass
class Columns:
    maps: dict = field(default_factory=dict)

    def reset(self):
        pass


class AllColumns(Handler):
    """Records one block's positive text attention over every text key, as the model uses it."""

    def __init__(self, block):
        self.block = block

    @property
    def blocks(self):
        return frozenset({self.block})

    def start_run(self, ctx):
        return Columns()

    def edit_for(self, state, call):
        return TextEdit(record_columns=slice(None)) if call.branch == 0 else None

    def on_probabilities(self, state, call, recorded):
        state.maps[call.step] = recorded[0]
        self.last = state


class LastRunProbe(SemanticProbe):
    """The probe, keeping its last run's recording for the test."""

    def end_run(self, state, output):
        self.last = state.recording
        super().end_run(state, output)


def probed(model, steps, anchor=None):
    handler = LastRunProbe(ProbeSettings(steps=steps, start=0.0, end=1.0, anchor=anchor), 6)
    return install(model, model_family(model, "test"), handler), handler


def test_each_family_is_detected_with_its_blocks(family_model):
    family, model = family_model
    config, variant, _, _ = LAYOUTS[family]
    layout = model_family(model, "test")
    assert type(model.model.model_config).__name__ == config
    assert layout.variant == f"{variant} ({config})" and layout.num_blocks == 6


def test_recording_is_bit_identical_and_reads_the_familys_prompt_columns(family_model):
    family, model = family_model
    _, _, keys, prompt = LAYOUTS[family]
    spy = AllColumns(3)
    patched, handler = probed(model, steps=3)
    patched = install(patched, model_family(model, "test"), spy)
    assert torch.equal(_host.sample(model, family), _host.sample(patched, family))
    recording = handler.last
    assert recording.grid == (2, 4, 6) and len(recording.maps["hidden"]) == 3 * 6
    step, full = next(iter(spy.last.maps.items()))
    assert full.shape == (2 * 4 * 6, keys)
    torch.testing.assert_close(recording.maps["attention"][(step, 3)].flatten(),
                               full[:, list(prompt)].float().sum(-1).cpu())


@pytest.fixture
def joint_rows(monkeypatch):
    """The host's plain SDPA kernel for the joint blocks (what --use-pytorch-cross-attention selects,
    set where the blocks read it), and the joint-attention rows computed by the host's SDPA and by
    the pack's fused kernel, counted where each is called."""
    import comfy.ldm.flux.math
    import comfy.ops
    from comfy.ldm.modules.attention import attention_pytorch
    from focal_guidance.focal_core import attention, fused
    monkeypatch.setattr(comfy.ldm.flux.math, "optimized_attention", attention_pytorch)
    rows = {"host": 0, "pack": 0}
    video_tokens = 2 * 4 * 6

    def counting(kind, fn):
        def counted(q, *args, **kwargs):
            if q.shape[-2] > video_tokens:
                rows[kind] += q.shape[0]
            return fn(q, *args, **kwargs)
        return counted
    host_sdpa = comfy.ops.scaled_dot_product_attention
    monkeypatch.setattr(comfy.ops, "scaled_dot_product_attention", counting("host", host_sdpa))
    # the pack's joint attention: the fused kernel (focal_core.fused), or the explicit fallback
    monkeypatch.setattr(fused, "attention_lse", counting("pack", fused.attention_lse))
    monkeypatch.setattr(attention, "joint_attention_lse", counting("pack", attention.joint_attention_lse))
    return rows


def identity_override(func, *args, **kwargs):
    """Another pack's attention override, installed before Focal Guidance: it keeps the host kernel."""
    return func(*args, **kwargs)


@pytest.mark.parametrize("family", ["hunyuan_i2v", "hunyuan15_i2v"])
@pytest.mark.parametrize("earlier_override", [False, True], ids=["sdpa", "sdpa-under-another-override"])
def test_recorded_joint_attention_runs_once_on_the_hosts_sdpa(tiny_models, joint_rows, family, earlier_override):
    """On the host's SDPA a recorded HunyuanVideo block attends each row once: the pack's fused
    kernel gives the output and the text mass together, bit-identical. Under another pack's override
    the host call stays in charge of the output and the recording costs a second attention."""
    model = _host.load(tiny_models, family)
    if earlier_override:
        model = model.clone()
        model.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = identity_override
    base = _host.sample(model, family, steps=4)
    plain = joint_rows["host"]
    assert plain == 4 * 6 * 2   # 4 steps × 6 blocks × (cond, uncond)
    joint_rows.update(host=0, pack=0)
    patched, handler = probed(model, steps=3)
    assert torch.equal(base, _host.sample(patched, family, steps=4))
    assert joint_rows["pack"] == 3 * 6   # the positive row of 3 recorded steps × 6 blocks
    assert joint_rows["host"] == (plain if earlier_override else plain - joint_rows["pack"])
    assert len(handler.last.maps["attention"]) == 3 * 6


def test_only_the_chosen_block_changes(family_model):
    family, model = family_model

    def recorded(patch):
        """Every block's outputs, recorded by block replaces that Focal Guidance chains to."""
        seen, m = {}, model.clone()
        for flat, key in enumerate(model_family(model, "test").block_keys):
            def record(args, extra, flat=flat):
                out = extra["original_block"](args)
                seen.setdefault(flat, []).append(out["img"].clone())
                return out
            m.set_model_patch_replace(record, "dit", *key)
        _host.sample(patch(m), family, steps=1)
        return seen

    base, edited = recorded(lambda m: m), recorded(lambda m: transfer(m, weak="3", sources="1"))
    for block in range(3):
        assert all(torch.equal(a, b) for a, b in zip(base[block], edited[block], strict=True)), block
    assert not torch.equal(base[3][0], edited[3][0])


def test_hunyuan15_anchor_columns_follow_the_siglip_and_glyph_tokens(tiny_models):
    model = _host.load(tiny_models, "hunyuan15_i2v")
    anchor = RegionAnchor(("cat",), torch.ones(1, 4, 6), ((1, 2),), prompt_tokens=T,
                          family="HunyuanVideo 1.5", tokenizer="qwen25_7b")
    spy = AllColumns(2)
    patched, handler = probed(model, steps=1, anchor=anchor)
    _host.sample(install(patched, model_family(model, "test"), spy), "hunyuan15_i2v", steps=2)
    step = handler.last.steps[0]
    full = spy.last.maps[step]
    lead = _host.SIGLIP_TOKENS + _host.GLYPH_TOKENS
    torch.testing.assert_close(handler.last.maps["attention"][(step, 2)].flatten(),
                               full[:, [lead + 1, lead + 2]].float().sum(-1).cpu())


@pytest.mark.parametrize("name, config", [("flux", "Flux"), ("hunyuan_image_21", "HunyuanImage21"),
                                          ("ltxv", "LTXV"), ("sd15", "SD15")])
def test_other_families_are_refused_when_the_node_runs(name, config):
    model = _host.tiny_unsupported(name)
    for run in (lambda: transfer(model), lambda: probe(model)):
        with pytest.raises(ValueError, match=rf"^(Focal Attention Transfer|Semantic Layer Probe): {config} "
                                             r"\(\w+\) is not a supported family \(supported: Wan2\.1 I2V/T2V, "
                                             r".*HunyuanVideo 1\.5"):
            run()


@pytest.mark.parametrize("config, network, extra, reason", [
    ("WAN22_Animate", "AnimateWanModel", {}, "Wan Animate prepends reference-frame tokens"),
    ("WAN22_S2V", "WanModel_S2V", {}, "Wan S2V appends reference and motion tokens"),
    ("WAN21_FunControl2V", "WanModel", {"in_dim_ref_conv": 16}, "prepends ref_conv reference tokens"),
])
def test_wan_models_with_reference_tokens_are_refused(config, network, extra, reason):
    info = ModelInfo(config, network, {"num_layers": 6, "num_heads": 2, "model_type": "i2v", **extra})
    with pytest.raises(UnsupportedModelError, match=f"{config} is not supported: .*{reason}.*supported: Wan2.1"):
        family_for(info)


def test_a_wan_video_as_long_as_its_text_context_is_refused():
    """Self-attention and text attention would have the same key count, so the text call is ambiguous."""
    from focal_guidance.focal_core.families import TextLayout
    wan = family_for(ModelInfo("WAN21_T2V", "WanModel", {"num_layers": 6, "num_heads": 2}))
    text = {0: TextLayout(keys=512, prompt_start=0, stream_start=0, real=7)}
    wan.check_run({0: {}}, text, (2, 16, 12))
    with pytest.raises(ValueError, match="the video has 512 tokens, as many as the text context"):
        wan.check_run({0: {}}, text, (2, 16, 16))


def test_phantom_reference_frames_are_refused_when_sampling(tiny_models):
    """Phantom's subject images join the video as extra latent frames (time_dim_concat)."""
    model = _host.load(tiny_models, "wan_t2v")
    latent = _host.latent()
    positive = _host.conditioning("wan_t2v", 1)
    positive[0][1]["time_dim_concat"] = torch.zeros_like(latent[:, :, :1])
    with pytest.raises(ValueError, match=r"Focal Guidance \(Wan2\.1 T2V .*\): the conditioning appends reference "
                                         r"frames to the video \(time_dim_concat"):
        import comfy.sample
        comfy.sample.sample(transfer(model, weak="2", sources="1"), comfy.sample.prepare_noise(latent, 0), 2, 5.0,
                            "euler", "simple", positive, _host.conditioning("wan_t2v", 2), latent, disable_pbar=True)


@pytest.mark.parametrize("family, anchor_family, tokenizer", [("hunyuan15_i2v", "Wan", "umt5xxl"),
                                                              ("wan_i2v", "HunyuanVideo 1.0", "llama")])
def test_an_anchor_of_another_family_is_refused_naming_both(tiny_models, family, anchor_family, tokenizer):
    model = _host.load(tiny_models, family)
    anchor = RegionAnchor(("cat",), torch.ones(1, 4, 6), ((1,),), family=anchor_family, tokenizer=tokenizer)
    own = model_family(model, "test")
    expected = (rf"the anchor was built for {anchor_family} \(tokenizer {tokenizer}\) but the model is "
                rf".*{own.name} tokens \(tokenizer {own.tokenizer}\)")
    with pytest.raises(ValueError, match="Focal Attention Transfer: " + expected):
        transfer(model, anchor=anchor, beta=1.0)
    with pytest.raises(ValueError, match="Semantic Layer Probe: " + expected):
        probe(model, anchor=anchor)
