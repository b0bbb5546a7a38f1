"""Install Focal Guidance into a ModelPatcher clone without clobbering anything.

Three host extension points, each chained to whatever was installed before:
- a ``patches_replace["dit"]`` marker per chosen block, which tags ``transformer_options`` with
  the flat block index (ComfyUI 0.3.75 Wan does not set ``block_index`` itself);
- an ``optimized_attention_override`` that handles only the text attention call of tagged
  blocks and hands every other call to the previous override or the host kernel;
- an OUTER_SAMPLE wrapper that gives each sampling run fresh state and frees it in ``finally``.
Mutable state lives in a closure: ``ModelPatcher.clone()`` deep-copies ``model_options``, and
closures keep their identity through that copy while plain objects would be split.
"""
from dataclasses import dataclass, field
import logging
import uuid

import comfy.patcher_extension
import torch

from ..focal_core.attention import joint_attention_text_edit, text_cross_attention
from ..focal_core.strategy import Handler, RunContext, TextCall

FOCAL_BLOCK = "focal_block"
log = logging.getLogger("FocalGuidance")


@dataclass
class BlockMark:
    """Per block call scratch: the flat block index and each installer's attention-call count."""
    index: int
    calls: dict = field(default_factory=dict)


def _sub_batch(t, rows):
    return t if t is None or t.shape[0] == 1 else t[rows]


def install(model, layout, blocks, handler: Handler, wants_block_outputs: bool = False):
    """Return a clone of ``model`` with ``handler`` active in ``blocks`` (flat indices)."""
    m = model.clone()
    key = f"focal_guidance.{type(handler).__name__}.{uuid.uuid4().hex[:8]}"
    blocks = frozenset(blocks)
    live = {}  # the current run: {"ctx": RunContext, "state": handler state}

    def outer_sample(executor, *args, **kwargs):
        noise, sigmas = args[0], args[3]
        guider = executor.class_obj
        ctx = RunContext(grid=layout.token_grid(noise.shape), sample_sigmas=sigmas.detach().cpu(),
                         batch=noise.shape[0], cfg=float(guider.cfg), attention=layout.attention,
                         percent_to_sigma=guider.model_patcher.get_model_object("model_sampling").percent_to_sigma,
                         **_text_token_counts(guider))
        live["ctx"], live["state"] = ctx, handler.start_run(ctx)
        try:
            return executor(*args, **kwargs)
        finally:
            handler.end_run(live.pop("state"))
            live.pop("ctx", None)

    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, key, outer_sample)

    transformer_options = m.model_options.setdefault("transformer_options", {})
    previous_override = transformer_options.get("optimized_attention_override")

    def call_previous(func, *args, **kwargs):
        if previous_override is not None:
            return previous_override(func, *args, **kwargs)
        return func(*args, **kwargs)

    def override(func, *args, **kwargs):
        opts = kwargs.get("transformer_options") or {}
        mark = opts.get(FOCAL_BLOCK)
        if mark is None or mark.index not in blocks or "ctx" not in live:
            return call_previous(func, *args, **kwargs)
        call_index = mark.calls.get(key, 0)
        mark.calls[key] = call_index + 1
        if call_index != layout.text_call:
            return call_previous(func, *args, **kwargs)
        return _text_attention(func, args, kwargs, opts, mark.index, call_previous)

    @torch.compiler.disable  # explicit attention in a few blocks: keep it out of compiled graphs
    def _text_attention(func, args, kwargs, opts, block, fallback):
        ctx, state = live["ctx"], live["state"]
        q, k, v = args[:3]
        heads = kwargs["heads"] if "heads" in kwargs else args[3]
        branches = list(opts.get("cond_or_uncond", [0]))
        per_chunk = q.shape[0] // len(branches)
        sigma = float(opts["sigmas"].flatten()[0])
        step = ctx.step_index(sigma)
        edits = {}
        for chunk, branch in enumerate(branches):
            edit = handler.edit_for(state, TextCall(block, branch, sigma, step))
            if edit is not None and (edit.changes_output or edit.record_columns is not None):
                edits[chunk] = (branch, edit)
        if not edits:
            return fallback(func, *args, **kwargs)
        qh, kh, vh = layout.to_heads(q, k, v, heads)
        n_video = qh.shape[-2] if layout.attention == "cross" else ctx.n_video
        if n_video != ctx.n_video or (layout.attention == "joint" and qh.shape[-2] <= n_video):
            log.warning("%s: %d query tokens do not match the %s token grid; block %d left unchanged",
                        handler.node_name, qh.shape[-2], ctx.grid, block)
            return fallback(func, *args, **kwargs)

        changing = {c for c, (_, edit) in edits.items() if edit.changes_output}
        out = None
        host_rows = [r for r in range(q.shape[0]) if r // per_chunk not in changing]
        if host_rows:  # unedited and record-only chunks keep the host kernel's exact output
            host_kwargs = dict(kwargs)
            if kwargs.get("mask") is not None:
                host_kwargs["mask"] = _sub_batch(kwargs["mask"], host_rows)
            host_args = (q[host_rows], k[host_rows], v[host_rows]) + tuple(args[3:])
            host_out = fallback(func, *host_args, **host_kwargs)
            out = host_out.new_empty((q.shape[0],) + tuple(host_out.shape[1:]))
            out[host_rows] = host_out
        mask = kwargs.get("mask")
        for chunk, (branch, edit) in edits.items():
            rows = list(range(chunk * per_chunk, (chunk + 1) * per_chunk))
            chunk_mask = None if mask is None else _sub_batch(mask, rows).float()
            if layout.attention == "cross":
                res, recorded = text_cross_attention(qh[rows], kh[rows], vh[rows], edit, key_mask=chunk_mask,
                                                     need_output=chunk in changing)
            else:
                res, recorded = joint_attention_text_edit(qh[rows], kh[rows], vh[rows], n_video, edit,
                                                          key_mask=_expand_mask(chunk_mask))
            if chunk in changing:
                res = layout.from_heads(res)
                if out is None:
                    out = res.new_empty((q.shape[0],) + tuple(res.shape[1:]))
                out[rows] = res
            if recorded is not None:
                handler.after(state, TextCall(block, branch, sigma, step), recorded)
        return out

    transformer_options["optimized_attention_override"] = override

    dit = transformer_options.setdefault("patches_replace", {}).setdefault("dit", {})
    for block in blocks:
        replace_key = layout.block_keys[block]
        dit[replace_key] = _marker(block, dit.get(replace_key), handler, live, wants_block_outputs)
    return m


def _marker(block, previous, handler, live, wants_block_outputs):
    def marker(args, extra):
        opts = args["transformer_options"]
        mark = opts.get(FOCAL_BLOCK)
        if mark is None or mark.index != block:
            args = {**args, "transformer_options": {**opts, FOCAL_BLOCK: BlockMark(block)}}
        out = previous(args, extra) if previous is not None else extra["original_block"](args)
        if wants_block_outputs and "ctx" in live:
            handler.on_block(live["state"], block, args, out, live["ctx"])
        return out
    return marker


def _expand_mask(mask):
    """Host masks for joint attention are additive [1, 1, L]; SDPA wants [b, h, q, L] broadcastable."""
    if mask is None:
        return None
    while mask.ndim < 4:
        mask = mask.unsqueeze(-2) if mask.ndim == 3 else mask.unsqueeze(0)
    return mask


def _text_token_counts(guider) -> dict:
    """Real and padded prompt-token counts per branch: padded rows of the raw context are zero."""
    real, total = {}, {}
    for branch, name in ((0, "positive"), (1, "negative")):
        for cond in guider.original_conds.get(name) or []:
            context = cond.get("cross_attn")
            if context is not None and context.ndim == 3:
                real[branch] = int((context[0].abs().sum(-1) != 0).sum())
                total[branch] = context.shape[1]
                break
    return {"text_tokens": real, "context_tokens": total}
