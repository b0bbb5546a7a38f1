"""Region Anchor node in the real host, with tiny random CLIP vision and text towers built from the
host's own classes (comfy.clip_vision / comfy.clip_model / comfy.sd1_clip). Random weights check
wiring, shapes and grid mapping, never region quality (that is test_regions.py's job).
"""
import json

import pytest
import torch
from comfy.text_encoders.hunyuan_video import HunyuanVideo15Tokenizer
from _host import host_clip, hunyuan_tokenizer, wan_tokenizer

from focal_guidance.focal_core.anchors import RegionAnchor
from focal_guidance.nodes.anchor import RegionAnchorNode

PROMPT = "A cat sits on a red car, the cat looks at the camera."
IMAGE_HW = (240, 416)                     # Wan: latent 30×52, token grid 15×26


def randomise(module, seed):
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for name, tensor in module.state_dict().items():
        norm_gain = "norm" in name and name.endswith("weight")
        sd[name] = torch.ones_like(tensor) if norm_gain else torch.randn(tensor.shape, generator=gen) * 0.1
    return sd


def tiny_clip_vision(tmp_path, projection_dim):
    import comfy.clip_vision
    config = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2, "num_hidden_layers": 2,
              "image_size": 56, "patch_size": 14, "num_channels": 3, "projection_dim": projection_dim,
              "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "model_type": "clip_vision_model"}
    path = tmp_path / f"clip_vision_{projection_dim}.json"
    path.write_text(json.dumps(config))
    vision = comfy.clip_vision.ClipVisionModel(str(path))
    vision.load_sd(randomise(vision.model, 1))
    return vision


def tiny_clip_text():
    """clip_l's classes with a 64-wide, 2-layer config, loaded the way CLIPLoader loads clip_l."""
    import comfy.sd
    import comfy.sd1_clip
    target = type("Target", (), {"params": {}, "clip": comfy.sd1_clip.SD1ClipModel,
                                 "tokenizer": comfy.sd1_clip.SD1Tokenizer})
    config = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2, "num_hidden_layers": 2}
    clip = comfy.sd.CLIP(target, model_options={"clip_l_model_config": config})
    clip.load_sd(randomise(clip.cond_stage_model.clip_l.transformer, 2))
    return clip


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clip")
    return {"vision": tiny_clip_vision(tmp, 64), "vision_32": tiny_clip_vision(tmp, 32),
            "clip": tiny_clip_text(), "wan": host_clip(wan_tokenizer()), "hunyuan": host_clip(hunyuan_tokenizer()),
            "hunyuan15": host_clip(HunyuanVideo15Tokenizer())}


def image():
    return torch.rand(1, *IMAGE_HW, 3, generator=torch.Generator().manual_seed(0))


def run(parts, family="wan", **overrides):
    kwargs = dict(image=image(), text_encoder=parts[family], prompt=PROMPT, keywords="cat, red car",
                  mode="clip", threshold=0.02, temperature=0.01, frame_decay=0.5, mask_combine="replace",
                  clip_vision=parts["vision"], clip=parts["clip"])
    kwargs.update(overrides)
    return RegionAnchorNode.execute(**kwargs)


def test_schema_has_a_tooltip_on_every_input_and_output():
    schema = RegionAnchorNode.define_schema()
    assert (schema.node_id, schema.display_name, schema.category) == \
        ("FocalRegionAnchor", "Region Anchor", "sampling/focal_guidance")
    assert all(i.tooltip for i in schema.inputs) and all(o.tooltip for o in schema.outputs)
    assert [o.io_type for o in schema.outputs] == ["FOCAL_ANCHOR", "MASK", "IMAGE"]
    RegionAnchorNode.GET_SCHEMA()                                # the host validates it


@pytest.mark.parametrize("family,latent_frames", [("wan", 5), ("hunyuan", 9)])
def test_clip_mode_outputs_and_token_grid(parts, family, latent_frames):
    latent = {"samples": torch.zeros(1, 16, latent_frames, IMAGE_HW[0] // 8, IMAGE_HW[1] // 8)}
    anchor, union, preview = run(parts, family, latent=latent).args
    assert isinstance(anchor, RegionAnchor) and anchor.keywords == ("cat", "red car")
    assert anchor.masks.shape == (2, *IMAGE_HW) and 0 <= anchor.masks.min() <= anchor.masks.max() <= 1
    assert union.shape == (1, *IMAGE_HW) and preview.shape == (1, *IMAGE_HW, 3)
    assert len(anchor.token_spans[0]) >= 2                       # "cat" twice
    grid = (latent_frames, IMAGE_HW[0] // 16, IMAGE_HW[1] // 16)  # latent = image/8, tokens = latent/2
    columns, bias = anchor.bias(grid, beta=1.0, gamma=0.5)
    assert bias.shape == (grid[0] * grid[1] * grid[2], len(columns))
    assert set(columns.tolist()) == {i for span in anchor.token_spans for i in span}


@pytest.mark.parametrize("family, tokenizer, name, channels, compression", [
    ("wan", "umt5xxl", "Wan", 16, 8), ("hunyuan", "llama", "HunyuanVideo 1.0", 16, 8),
    ("hunyuan15", "qwen25_7b", "HunyuanVideo 1.5", 32, 16)])
def test_anchor_records_the_family_of_its_text_encoder(parts, family, tokenizer, name, channels, compression):
    """The family comes from the text encoder's token key; its latent patching checks the latent."""
    latent = {"samples": torch.zeros(1, channels, 5, IMAGE_HW[0] // compression, IMAGE_HW[1] // compression)}
    out = run(parts, family, mode="mask only", mask=torch.ones(1, 60, 104), clip_vision=None, clip=None, latent=latent)
    anchor = out.args[0]
    assert (anchor.family, anchor.tokenizer) == (name, tokenizer)
    assert anchor.token_spans[0] and f"{name} tokens ({tokenizer})" in out.ui.as_dict()["text"][0]


def test_derived_keywords_are_reported(parts):
    out = run(parts, keywords="")
    assert out.args[0].keywords == ("cat", "sits", "red", "car")
    assert "derived from the prompt" in out.ui.as_dict()["text"][0] and "sits" in out.ui.as_dict()["text"][0]


def test_mask_modes(parts):
    masks = torch.zeros(2, 60, 104)
    masks[0, :30] = 1
    masks[1, 30:] = 1
    anchor = run(parts, mode="mask only", mask=masks, clip_vision=None, clip=None).args[0]
    assert anchor.masks[0, :100].min() == 1 and anchor.masks[0, 140:].max() == 0
    replaced = run(parts, mask=masks[:1], clip_vision=None, clip=None).args[0]
    assert torch.equal(replaced.masks[0], replaced.masks[1])
    union = run(parts, mask=masks, mask_combine="union").args[0]
    assert (union.masks >= anchor.masks).all()


def test_fallback_mode_is_a_uniform_placeholder_with_spans(parts):
    anchor, union, _ = run(parts, mode="model attention (fallback)", clip_vision=None, clip=None).args
    assert torch.all(anchor.masks == 0.5) and torch.all(union == 0.5) and anchor.regions_from_attention
    assert all(anchor.token_spans)


@pytest.mark.parametrize("overrides,message", [
    (dict(keywords="dog"), "dog not found in the prompt"),
    (dict(mask=torch.zeros(1, 60, 104)), "MASK input is all zero"),
    (dict(mask=torch.ones(1, 1, 60, 104)), "MASK has shape (1, 1, 60, 104)"),
    (dict(mask=torch.ones(1, 60, 104).index_fill_(1, torch.tensor([3]), float("nan"))), "NaN or infinite"),
    (dict(mask=torch.full((1, 60, 104), float("nan"))), "NaN or infinite"),   # not "all zero"
    (dict(mode="foo"), "mode is 'foo', which is not one of its options"),
    (dict(mask_combine="foo"), "mask_combine is 'foo', which is not one of its options"),
    (dict(threshold=float("nan")), "threshold is nan. Fix: give a finite number"),
    (dict(frame_decay=float("nan")), "frame_decay is nan"),
    (dict(latent={"samples": torch.zeros(1, 16, 5, 40, 40)}), "does not match the latent"),
    (dict(clip_vision="vision_32"), "embeds into 64 dims but the CLIP_VISION model projects to 32"),
    (dict(clip=None), "needs both 'clip_vision' and 'clip'"),
    (dict(mode="mask only"), "needs a MASK"),
    (dict(clip="wan"), "not a CLIP text tower"),
    (dict(text_encoder="clip"), "gives ['l'] tokens, not one of umt5xxl (Wan), llama (HunyuanVideo 1.0), "
                                "qwen25_7b (HunyuanVideo 1.5)"),
])
def test_clear_errors(parts, overrides, message):
    overrides = {k: parts[v] if isinstance(v, str) and v in parts else v for k, v in overrides.items()}
    with pytest.raises(ValueError, match="Region Anchor") as err:
        run(parts, **overrides)
    assert message in str(err.value)
    assert "Fix:" in str(err.value) or "give a finite number" in str(err.value)


def test_a_pasted_page_is_not_echoed_whole(parts):
    with pytest.raises(ValueError, match="Region Anchor: keyword") as err:
        run(parts, keywords="x" * 10_000)
    assert "(10000 characters)" in str(err.value) and len(str(err.value)) < 500


def test_mask_of_another_aspect_warns_that_it_is_stretched(parts, caplog):
    run(parts, mode="mask only", mask=torch.ones(1, 60, 60), clip_vision=None, clip=None)
    assert "Region Anchor: the MASK is 60x60 (aspect 1.000) but the image is 416x240" in caplog.text
    caplog.clear()
    run(parts, mode="mask only", mask=torch.ones(1, 60, 104), clip_vision=None, clip=None)
    assert "stretched" not in caplog.text


def test_text_embeddings_are_projected_and_options_restored(parts):
    from focal_guidance.nodes.anchor import _joint_text_embeddings
    clip = parts["clip"]
    inner = clip.cond_stage_model.clip_l
    assert inner.return_projected_pooled is False                # how CLIPLoader leaves a bare clip_l
    tokens_of_text = clip.tokenize("a photo.")
    unprojected = clip.encode_from_tokens(tokens_of_text, return_pooled=True)[1]
    projected = _joint_text_embeddings(clip, ["a photo."])
    torch.testing.assert_close(projected, inner.transformer.text_projection(unprojected))
    assert inner.return_projected_pooled is False


def test_penultimate_hidden_state_is_the_last_blocks_input(parts):
    """MaskCLIP needs the last block's input; the host calls it penultimate_hidden_states."""
    from comfy.ldm.modules.attention import optimized_attention_for_device
    vision = parts["vision"]
    out = vision.encode_image(image(), crop=False)
    model = vision.model
    with torch.no_grad():
        hidden = out["penultimate_hidden_states"].clone()
        attention = optimized_attention_for_device(hidden.device, small_input=True)
        x = model.vision_model.encoder.layers[-1](hidden, None, attention)
        pooled = model.visual_projection(model.vision_model.post_layernorm(x[:, 0]))
    torch.testing.assert_close(pooled, out["image_embeds"])
