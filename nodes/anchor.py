"""Region Anchor node: CLIP keyword → region anchors on the reference frame (FSG), bound to the
prompt's own tokens. Glue only: regions come from ``focal_core.regions``, spans from
``focal_core.tokens``; this file reaches into host objects (CLIP, CLIP_VISION) and nothing else.
"""
import logging
import numbers

import torch
from comfy_api.latest import io, ui

from ..focal_core import families, regions, tokens
from ..focal_core.anchors import RegionAnchor
from ..focal_core.errors import AnchorAspectMismatch
from . import _inputs, _voice
from ._types import Anchor
from .notify import warn

NODE = "Region Anchor"
CLIP, MASK_ONLY, ATTENTION = "clip", "mask only", "model attention (fallback)"
MODES = (CLIP, MASK_ONLY, ATTENTION)
REPLACE, UNION = "replace", "union"
MASK_COMBINES = (REPLACE, UNION)
KEYWORD_TEMPLATE = "a photo of a {}."
REFERENCE_PROMPTS = ("a photo.", "a photo of the background.")


def _fail(problem: str, fix: str):
    _voice.fail(NODE, problem, fix)


def _prompt_pieces(text_encoder, prompt: str):
    """The video family this text encoder feeds, the prompt's token pieces in the order its DiT
    sees them, and the piece scheme."""
    token_sets = text_encoder.tokenize(prompt)
    family = families.family_for_tokenizer(token_sets)
    if family is None:
        _fail(f"text_encoder gives {sorted(token_sets)} tokens, not one of {families.tokenizers()}",
              "connect the CLIP that encodes this prompt for the video model "
              "(CLIPLoader type 'wan', or DualCLIPLoader type 'hunyuan_video' or 'hunyuan_video_15')")
    key = family.tokenizer
    tokenizer = next(t for t in vars(text_encoder.tokenizer).values() if getattr(t, "embedding_key", None) == key)
    ids = [int(p[0]) if isinstance(p[0], numbers.Integral) else None for chunk in token_sets[key] for p in chunk]
    start, end = family.prompt_range(ids)
    pieces = [None if t is None else tokenizer.inv_vocab.get(t) for t in ids[start:end]]
    return family, pieces, tokens.is_byte_level(tokenizer.inv_vocab.values())


def _joint_text_embeddings(clip, texts) -> torch.Tensor:
    """Projected pooled CLIP text embeddings [n, d]: the space CLIP vision projects into."""
    token_sets = [clip.tokenize(text) for text in texts]
    if not set(token_sets[0]) <= {"l", "h", "g"}:
        _fail(f"the 'clip' input is a {sorted(token_sets[0])} text encoder, not a CLIP text tower",
              "load clip_l (or an SD2.x OpenCLIP-H / clip_g text encoder) with CLIPLoader "
              "type 'stable_diffusion' and connect it to 'clip'")
    model, out = clip.cond_stage_model, []
    clip.load_model()
    for tokens_of_text in token_sets:
        model.reset_clip_options()
        model.set_clip_options({"projected_pooled": True})   # a bare CLIPLoader clip_l defaults to unprojected
        try:
            out.append(model.encode_token_weights(tokens_of_text)[1].float().reshape(-1))
        finally:
            model.reset_clip_options()
    return torch.stack(out)


def _patch_features(clip_vision, image) -> torch.Tensor:
    """MaskCLIP patch features [g, g, d] of the whole (stretched, uncropped) reference image."""
    vision = clip_vision.model.vision_model
    out = clip_vision.encode_image(image[:1], crop=False)
    hidden = out["penultimate_hidden_states"].to(clip_vision.load_device, torch.float32)
    feats = regions.maskclip_patch_tokens(hidden, vision.encoder.layers[-1], vision.post_layernorm,
                                          clip_vision.model.visual_projection)[0].float().cpu()
    side = round(feats.shape[0] ** 0.5)
    return feats.reshape(side, side, -1)


def _clip_masks(words, image, size, clip_vision, clip, threshold, temperature) -> torch.Tensor:
    if clip_vision is None or clip is None:
        _fail("mode 'clip' needs both 'clip_vision' and 'clip'",
              "connect a CLIPVisionLoader and a matching CLIP text encoder (see docs/anchors.md), "
              "or give a MASK with mask_combine 'replace', or use another mode")
    vision_dim = regions.projection_dim(getattr(clip_vision.model, "visual_projection", None))
    if vision_dim == 0 or not hasattr(clip_vision.model, "vision_model"):
        _fail("this CLIP_VISION model has no projection into a CLIP text space (SigLIP or DINOv2)",
              "load an OpenAI/OpenCLIP vision file such as clip_vision_l or clip_vision_h")
    text = _joint_text_embeddings(clip, [KEYWORD_TEMPLATE.format(w) for w in words] + list(REFERENCE_PROMPTS))
    if text.shape[-1] != vision_dim:
        _fail(f"the CLIP text model embeds into {text.shape[-1]} dims but the CLIP_VISION model "
              f"projects to {vision_dim}, so they share no embedding space",
              "pair clip_vision_l with clip_l (768), clip_vision_h with an SD2.x OpenCLIP ViT-H "
              "text encoder (1024), clip_vision_g with clip_g (1280)")
    patches = _patch_features(clip_vision, image)
    return regions.keyword_masks(patches, text[:len(words)], text[len(words):], size, threshold, temperature)


def _region_masks(mode, words, image, clip_vision, clip, mask, mask_combine, threshold, temperature):
    size = tuple(image.shape[1:3])
    if mode == ATTENTION:
        return regions.placeholder_masks(len(words), size)
    user = None
    if mask is not None:
        if torch.isfinite(mask).all() and not torch.any(mask > 0):
            _fail("the MASK input is all zero", "paint the keyword regions white, or disconnect MASK")
        try:
            user = regions.fit_mask(mask.cpu(), len(words), size)
        except ValueError as err:
            _fail(str(err), "paint a finite [h, w] or [batch, h, w] MASK (e.g. with the mask editor), "
                            f"batched in keyword order: {_voice.cut(', '.join(words))}")
        _warn_on_stretch(mask.shape[-2:], size)
    if mode == MASK_ONLY or (user is not None and mask_combine == REPLACE):
        if user is None:
            _fail("mode 'mask only' needs a MASK", "connect a MASK or switch mode to 'clip'")
        return user
    masks = _clip_masks(words, image, size, clip_vision, clip, threshold, temperature)
    return masks if user is None else torch.maximum(masks, user)


def _warn_on_stretch(mask_size, image_size, tolerance: float = 0.02) -> None:
    """A MASK of another aspect than the image is stretched onto it: say so, it is rarely meant."""
    mask_aspect, image_aspect = mask_size[1] / mask_size[0], image_size[1] / image_size[0]
    if abs(mask_aspect - image_aspect) > tolerance * image_aspect:
        warn(NODE, f"the MASK is {mask_size[1]}x{mask_size[0]} (aspect {mask_aspect:.3f}) but the image is "
                   f"{image_size[1]}x{image_size[0]} (aspect {image_aspect:.3f}); the MASK is stretched to fit. "
                   "Paint the mask on the reference image itself to keep regions in place.")


def _check_latent(size, latent, patch) -> None:
    """Refuse a latent whose token grid (``patch``: the family's latent patching) has another aspect
    ratio than the reference image."""
    samples = latent["samples"]
    if samples.ndim != 5:
        _fail(f"LATENT has shape {tuple(samples.shape)}, not a video latent [b, c, t, h, w]",
              "connect the latent of WanImageToVideo / HunyuanImageToVideo / EmptyHunyuanLatentVideo")
    t, h, w = samples.shape[-3:]
    frame = RegionAnchor(("image",), torch.zeros(1, 1, 1).expand(1, *size), ((0,),))
    try:
        frame.check_grid((t, -(-h // patch[1]), -(-w // patch[2])))
    except AnchorAspectMismatch as err:
        _fail(str(err), "scale the reference image to the video's width × height (ImageScale) and feed the "
                        "same image to this node and to the image-to-video node")


class RegionAnchorNode(io.ComfyNode):
    """FSG: where each prompt keyword sits in the reference frame, and which text tokens it is."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FocalRegionAnchor", display_name="Region Anchor", category=_inputs.CATEGORY,
            description="Binds prompt keywords to regions of the reference frame for Focal Attention Transfer.",
            inputs=[
                io.Image.Input("image", tooltip="Reference frame: the image the video starts from (first of the "
                                                "batch), at the video's aspect ratio."),
                io.Clip.Input("text_encoder", tooltip="The video model's text encoder (umT5 for Wan, LLaVA-LLaMA "
                                                      "for HunyuanVideo 1.0, Qwen2.5-VL for HunyuanVideo 1.5); its "
                                                      "tokenizer locates each keyword's tokens and sets the "
                                                      "anchor's family."),
                io.String.Input("prompt", multiline=True,
                                tooltip="The positive prompt exactly as encoded for the video model."),
                io.String.Input("keywords", default="",
                                tooltip="Comma-separated words from the prompt to anchor. Empty: the first 4 "
                                        "content words of the prompt."),
                io.Combo.Input("mode", options=list(MODES), default=CLIP,
                               tooltip="clip: regions from CLIP similarity. mask only: regions from the MASK "
                                       "input. model attention (fallback): uniform placeholder regions that the "
                                       "transfer node is meant to refine."),
                io.Float.Input("threshold", default=0.02, min=-0.5, max=0.5, step=0.005,
                               tooltip="Cosine margin by which a patch must match the keyword better than "
                                       "'a photo.'. Raise for tighter regions."),
                io.Float.Input("temperature", default=0.01, min=0.001, max=0.5, step=0.001,
                               tooltip="Softness of region edges in cosine units (CLIP's own scale is 0.01). "
                                       "Smaller is harder."),
                io.Float.Input("frame_decay", default=1.0, min=0.0, max=1.0, step=0.05,
                               tooltip="Anchor weight of latent frame f is frame_decay**f: 1 anchors every frame "
                                       "alike (measured: 0.5 lost most of the effect on the last frames), 0 the "
                                       "reference frame only. Lower it for a subject that travels away."),
                io.Combo.Input("mask_combine", options=list(MASK_COMBINES), default=REPLACE,
                               tooltip="With a MASK in mode 'clip': replace the CLIP regions, or add to them."),
                io.ClipVision.Input("clip_vision", optional=True,
                                    tooltip="CLIP vision model (CLIPVisionLoader) for mode 'clip', e.g. "
                                            "clip_vision_l or clip_vision_h."),
                io.Clip.Input("clip", optional=True,
                              tooltip="CLIP text model in clip_vision's embedding space: clip_l for clip_vision_l, "
                                      "an SD2.x OpenCLIP-H text encoder for clip_vision_h."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Hand-painted region: one mask for all keywords, or one per keyword in "
                                      "keyword order."),
                io.Latent.Input("latent", optional=True,
                                tooltip="The video latent, to check that its token grid has the reference "
                                        "image's aspect ratio."),
            ],
            outputs=[
                Anchor.Output("anchor", tooltip="Keyword regions and token spans for Focal Attention Transfer."),
                io.Mask.Output("union_mask", display_name="mask",
                               tooltip="Union of all keyword regions at image resolution."),
                io.Image.Output("preview", tooltip="Reference image with each keyword's region tinted its own colour."),
            ],
        )

    @classmethod
    def execute(cls, image, text_encoder, prompt, keywords, mode, threshold, temperature, frame_decay,
                mask_combine, clip_vision=None, clip=None, mask=None, latent=None) -> io.NodeOutput:
        mode = _inputs.choice(NODE, "mode", mode, list(MODES))
        mask_combine = _inputs.choice(NODE, "mask_combine", mask_combine, list(MASK_COMBINES))
        _inputs.check_finite(NODE, threshold=threshold, temperature=temperature, frame_decay=frame_decay)
        words = tokens.parse_keywords(keywords)
        derived = not words
        words = words or tokens.content_words(prompt)
        if not words:
            _fail("no keywords given and no content word found in the prompt", "type keywords, comma-separated")
        family, pieces, byte_level = _prompt_pieces(text_encoder, prompt)
        spans = [tokens.keyword_span(pieces, w, byte_level) for w in words]
        missing = [w for w, span in zip(words, spans) if not span]
        if missing:
            _fail(f"keyword(s) {_voice.cut(', '.join(missing))} not found in the prompt's tokens",
                  "use words that appear in the prompt (plurals match), or leave keywords empty")
        if latent is not None:
            _check_latent(tuple(image.shape[1:3]), latent, family.latent_patch)
        with torch.no_grad():
            masks = _region_masks(mode, words, image, clip_vision, clip, mask, mask_combine, threshold, temperature)
        anchor = RegionAnchor(tuple(words), masks, tuple(spans), frame_decay, prompt_tokens=len(pieces),
                              family=family.name, tokenizer=family.tokenizer,
                              regions_from_attention=mode == ATTENTION)
        source = "derived from the prompt" if derived else "given"
        lines = [f"{NODE}: {family.name} tokens ({family.tokenizer}), mode '{mode}', keywords {source}:"] + [
            f"  {w}: tokens {list(s)}, area {m.mean().item():.0%}" for w, s, m in zip(words, spans, masks)]
        summary = "\n".join(lines)
        logging.info(summary)
        return io.NodeOutput(anchor, masks.amax(0, keepdim=True), regions.overlay(image[0], masks)[None],
                             ui=ui.PreviewText(summary))
