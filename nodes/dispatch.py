"""One Focal Guidance dispatcher per patched model; every handler acts through it, in graph order.

The first Focal Guidance node on a model's chain installs, in its clone, four host hooks, each
chained to whatever was there before:
- a ``patches_replace["dit"]`` marker per touched block, which tags ``transformer_options`` with
  the flat block index (ComfyUI 0.3.75 Wan does not set ``block_index`` itself);
- an APPLY_MODEL wrapper that notes, per model call and outside any compiled graph, a pass whose
  block patches another patch changed for that pass only (Skip Layer Guidance's layer-skipped
  pass): it is guided but records nothing (``FocalRun.is_foreign_pass``);
- one ``optimized_attention_override`` that routes each CFG chunk of a tagged block's text
  attention (the call the model's family recognises by its key count): chunks that no handler
  changes keep the host kernel (and any earlier override), called with a ``cond_or_uncond`` that
  lists exactly the chunks it is given; where the text attention is a call of its own (Wan's
  cross-attention), the host computes the whole batch instead and only the edited rows are
  replaced, so an unedited branch is the unpatched output bit for bit whatever the processor's
  kernels do with batch size (one extra text call per edited chunk). One exception: a chunk that
  is only recorded, when the host kernel is plain SDPA with no earlier override and the family's
  edit returns SDPA's very output (HunyuanVideo's joint attention), is computed once by the pack,
  output and recording together; under any other kernel or override the host call stays and the
  recording costs a second joint attention;
- one OUTER_SAMPLE wrapper that starts every handler's run state and resets it in ``finally``; a
  typed error a handler raises is worded there for its node (``nodes/_voice.py``).
Every later node (a probe, a second transfer) only appends its handlers to the model's
:class:`FocalPlan` (IPAdapter's one replacement per layer, accumulating adapters). In one text
attention call all handlers share one edit: biases add, blends apply in graph order, recordings
see the probabilities the model really uses (``focal_core.attention``). No handler ever sees a
partial batch. The plan lives in ``transformer_options``; the run lives in the sampler's per-run
copy of it, so nothing outlives the run.
"""
from dataclasses import dataclass, field, replace
import functools
import re
import weakref

import comfy.patcher_extension
import torch

from ..focal_core.attention import TextEdit, changes_output
from ..focal_core.errors import FocalError
from ..focal_core.families import Family
from ..focal_core.handler import Handler, RunContext, RunState, TextCall
from . import _voice
from .notify import warn

PLAN = "focal_guidance"            # transformer_options key of the model's FocalPlan
RUN = "focal_guidance_run"         # key in the sampler's per-run options: the live FocalRun
BLOCK = "focal_guidance_block"     # key the marker sets for the running block: its flat index


@dataclass(frozen=True)
class Installed:
    """A handler in a plan, with the node that speaks for it (its display name and graph id)."""
    handler: Handler
    node: str
    node_id: str | None = None


@dataclass(frozen=True)
class FocalPlan:
    """The handlers of one patched model, in graph order. Shared by clones (see Handler)."""
    family: Family
    handlers: tuple[Installed, ...] = ()

    def __deepcopy__(self, memo):
        return self

    @property
    def blocks(self) -> frozenset[int]:
        return frozenset().union(*(i.handler.blocks for i in self.handlers))


@dataclass
class HandlerRun:
    """One handler's part of a run: the handler, its node, and the state its ``start_run`` returned."""
    handler: Handler
    node: str
    state: RunState


@dataclass
class FocalRun:
    """One sampling run: the context, each handler's run, and the step of the current model call."""
    plan: FocalPlan
    ctx: RunContext
    runs: list[HandlerRun] = field(default_factory=list)
    warned: set[tuple[str, int]] = field(default_factory=set)
    block_patches: dict = field(default_factory=dict)   # the run's own ``patches_replace["dit"]``
    _sigmas: torch.Tensor | None = None
    _sigma_step: tuple[float, int] = (0.0, 0)
    foreign_pass: bool = False    # the current model call's (set by _apply_model, outside any compiled graph)
    reached: bool = False         # whether a patched block ran (a compiled model may ignore later patches)
    _patches_seen: dict | None = None

    def is_foreign_pass(self, options: dict) -> bool:
        """Whether this model call's block patches differ from the run's: another patch replaced or
        skipped blocks for this pass only, as Skip Layer Guidance does for its extra layer-skipped pass.
        Such a pass is guided like the others but records nothing, so it can neither overwrite the
        cache nor publish probe or auto-mode maps. Compared once per patch dict, not per block."""
        patches = options.get("patches_replace", {}).get("dit", {})
        if patches is not self._patches_seen:
            self._patches_seen, self.foreign_pass = patches, patches != self.block_patches
        return self.foreign_pass

    def __post_init__(self):
        global _newest_run
        _newest_run = weakref.ref(self)   # the run a compiled graph's ops serve (_text_attention_op)

    def sigma_step(self, sigmas: torch.Tensor) -> tuple[float, int]:
        """(sigma, step) of a model call; one host sync per model call, not one per block."""
        if sigmas is not self._sigmas:
            sigma = float(sigmas.flatten()[0])
            self._sigmas, self._sigma_step = sigmas, (sigma, self.ctx.step_index(sigma))
        return self._sigma_step

    def handlers_of(self, block: int) -> list[HandlerRun]:
        return [r for r in self.runs if block in r.handler.blocks]

    def warn_once(self, key, node: str, message: str):
        if key not in self.warned:
            self.warned.add(key)
            warn(node, message)


def install(model, family: Family, *handlers: Handler, node: str = "Focal Guidance", node_id: str | None = None):
    """A clone of ``model`` with ``handlers`` appended to its Focal Guidance plan, in this order;
    ``node`` (its display name) and ``node_id`` speak for them to the user."""
    m = model.clone()
    options = m.model_options.setdefault("transformer_options", {})
    plan = options.get(PLAN)
    if plan is None:
        plan = FocalPlan(family)
        m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, PLAN, _outer_sample)
        m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, PLAN, _apply_model)
        options["optimized_attention_override"] = _dispatcher(options.get("optimized_attention_override"))
    dit = options.setdefault("patches_replace", {}).setdefault("dit", {})
    for block in sorted(frozenset().union(*(h.blocks for h in handlers)) - plan.blocks):
        key = family.block_keys[block]
        dit[key] = _marker(block, dit.get(key))
    options[PLAN] = FocalPlan(plan.family, plan.handlers + tuple(Installed(h, node, node_id) for h in handlers))
    return m


def _outer_sample(executor, *args, **kwargs):
    noise, sigmas = args[0], args[3]
    guider = executor.class_obj
    options = guider.model_options["transformer_options"]   # the sampler's own copy for this run
    plan: FocalPlan = options[PLAN]
    family, grid = plan.family, plan.family.token_grid(noise.shape)
    conds = {branch: conds[0] for branch, name in ((0, "positive"), (1, "negative"))
             if (conds := guider.original_conds.get(name))}
    text = {branch: layout for branch, cond in conds.items() if (layout := family.text_layout(cond)) is not None}
    try:
        family.check_run(conds, text, grid)
        _check_context_windows(guider.model_options.get("context_handler"), noise.ndim)
    except ValueError as err:
        raise ValueError(f"Focal Guidance ({family.variant}): {err}.") from None
    ctx = RunContext(grid=grid, sample_sigmas=sigmas.detach().cpu(), batch=noise.shape[0], cfg=float(guider.cfg),
                     text=text, family=family,
                     percent_to_sigma=guider.model_patcher.get_model_object("model_sampling").percent_to_sigma)
    run, output = FocalRun(plan, ctx, block_patches=dict(options.get("patches_replace", {}).get("dit", {}))), None
    try:
        for installed in plan.handlers:
            told = functools.partial(_voice.tell, installed.node, node_id=installed.node_id)
            try:
                state = installed.handler.start_run(replace(ctx, tell=told))
            except FocalError as err:
                raise ValueError(_voice.run_error(installed.node, err)) from None
            run.runs.append(HandlerRun(installed.handler, installed.node, state))
        options[RUN] = run
        output = executor(*args, **kwargs)
        if not run.reached:
            warn("Focal Guidance", "none of the blocks it patched ran in this sampling run, so it did nothing. A "
                 "model compiled before the Focal nodes (TorchCompileModel placed ahead of them) can keep the "
                 "graph of its first run and skip patches added later (seen on ComfyUI 0.12.1 and 0.33.0): "
                 "place TorchCompileModel after the Focal nodes")
        return output
    finally:
        options.pop(RUN, None)
        for handler_run in run.runs:
            handler_run.handler.end_run(handler_run.state, output)


def _apply_model(executor, *args, **kwargs):
    """Each model call, outside any compiled graph: note whether it is a foreign pass (FocalRun.is_foreign_pass)."""
    options = kwargs["transformer_options"] if "transformer_options" in kwargs else args[5]
    run = options.get(RUN)
    if run is not None:
        run.is_foreign_pass(options)
    return executor(*args, **kwargs)


def _marker(block: int, previous):
    def marker(args, extra):
        options = args["transformer_options"]
        run = options.get(RUN)
        if run is not None:
            run.reached = True
            args = {**args, "transformer_options": {**options, BLOCK: block}}
        out = previous(args, extra) if previous is not None else extra["original_block"](args)
        if run is not None:
            _observe_block(run, block, args, out)
        return out
    return marker


def _check_context_windows(handler, latent_dims: int):
    """Context windows must cut the video's frames (dim 2 of a [b, c, t, h, w] latent), which each call
    then names (``_window_frames``)."""
    dim = getattr(handler, "dim", None)
    if handler is not None and not (latent_dims == 5 and dim == 2):
        raise ValueError(f"context windows over latent dimension {dim} cut something other than the video's "
                         "frames, which Focal Guidance cannot follow; use WAN Context Windows (Manual) or set "
                         "dim to 2 (the frames)")


def _window_frames(options: dict) -> tuple[int, ...] | None:
    """The token frames a model call holds under the host's context windows, or None for the whole video.

    The host names each window's latent frames in ``transformer_options["context_window"]`` (every
    family patches time by 1); from ComfyUI 0.33 a window may also lead with the frame before it
    (``causal_anchor_index``, its causal window fix), as the host's own ``get_tensor`` slices it.
    """
    window = options.get("context_window")
    if window is None:
        return None
    anchor = getattr(window, "causal_anchor_index", None)
    return tuple(([anchor] if anchor is not None and anchor >= 0 else []) + list(window.index_list))


def _observe_block(run: FocalRun, block: int, args, out):
    watchers = [r for r in run.handlers_of(block) if r.handler.wants_block_outputs]
    if not watchers:
        return
    options = args["transformer_options"]
    if torch.compiler.is_compiling():   # the observation is an op of the graph (_block_observation_op)
        out["img"] = _block_observation_op(out["img"], out.get("txt"), args.get("txt"), options["sigmas"], block,
                                           list(options.get("cond_or_uncond", [0])),
                                           list(_window_frames(options) or ()))
        return
    if run.foreign_pass:
        return
    branches = list(options.get("cond_or_uncond", [0]))
    per_chunk = out["img"].shape[0] // len(branches)
    sigma, step = run.sigma_step(options["sigmas"])
    frames = _window_frames(options)
    for i, branch in enumerate(branches):
        call = TextCall(block, branch, sigma, step, row=i * per_chunk, frames=frames)
        for watcher in watchers:
            watcher.handler.on_block(watcher.state, call, args, out, run.ctx)


@functools.cache
def _host_sdpa() -> tuple[tuple, bool]:
    """The host's plain SDPA attention, as the override receives it (``wrap_attn`` passes the
    undecorated function) and decorated, and whether the host runs SDPA under its own CUDA backend
    priority (Windows: cuDNN first), a choice the pack's kernel cannot follow. Looked up at the
    first call, after the host chose its kernel."""
    import comfy.ops
    from comfy.ldm.modules.attention import attention_pytorch
    return ((attention_pytorch, getattr(attention_pytorch, "__wrapped__", attention_pytorch)),
            hasattr(comfy.ops, "SDPA_BACKEND_PRIORITY"))


def _is_host_sdpa(func, q) -> bool:
    kernels, cuda_reprioritised = _host_sdpa()
    return any(func is kernel for kernel in kernels) and not (q.is_cuda and cuda_reprioritised)


def _dispatcher(previous):
    def call_previous(func, *args, **kwargs):
        if previous is not None:
            return previous(func, *args, **kwargs)
        return func(*args, **kwargs)

    def override(func, *args, **kwargs):
        options = kwargs.get("transformer_options") or {}
        run = options.get(RUN)
        if run is None or BLOCK not in options or not run.plan.family.is_text_call(
                args[0], args[1], run.ctx.n_video_of(_window_frames(options)), run.ctx.text):
            return call_previous(func, *args, **kwargs)
        if torch.compiler.is_compiling():
            return _compiled_text_attention(call_previous(func, *args, **kwargs), args, kwargs, options)
        return _text_attention(run, options[BLOCK], func, args, kwargs, options, call_previous,
                               previous is None and _is_host_sdpa(func, args[0]))

    return override


# Under torch.compile (core TorchCompileModel) a tagged block's text attention is one opaque op of the
# graph: the host kernel's output of the whole batch goes in, the handlers' edit of it comes out. The
# graph holds no handler state and no Python branch on it, so a changed configuration (other blocks,
# settings, a probe) finds the same graph where its blocks are the same, and no graph break splits
# the model per block (a break there would compile each block's frames apart and guard them on its
# index). The op finds its run as the newest FocalRun: one sampling runs at a time.
_newest_run = None


@dataclass(frozen=True)
class _WindowFrames:
    """A context window's frames, resolved before an op (ops take plain values), as _window_frames reads them."""
    index_list: tuple[int, ...]


def _op_options(sigmas, branches, frames, **more) -> dict:
    """The transformer_options an op's handlers see: the call's sigmas, CFG chunks and window frames."""
    options = {"sigmas": sigmas, "cond_or_uncond": branches, **more}
    if frames:
        options["context_window"] = _WindowFrames(tuple(frames))
    return options


_OP = "focal_" + re.sub(r"\W", "_", __name__) + "::text_attention"   # one op per copy of the pack loaded


@torch.library.custom_op(_OP, mutates_args=())
def _text_attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, host: torch.Tensor,
                       mask: torch.Tensor | None, sigmas: torch.Tensor, block: int, heads: int,
                       branches: list[int], frames: list[int]) -> torch.Tensor:
    run = _newest_run()
    options = _op_options(sigmas, branches, frames, **{BLOCK: block})

    def host_rows(func, q_rows, *args, **kwargs):
        """The host's output for the rows of ``q`` that ``q_rows`` (a view of them) holds."""
        first = (q_rows.storage_offset() - q.storage_offset()) // q.stride(0)
        return host[first:first + q_rows.shape[0]].clone()

    out = _text_attention(run, block, None, (q, k, v, heads), {"mask": mask, "transformer_options": options},
                          options, host_rows, False)
    return out   # never the host tensor itself: host_rows hands out copies


@_text_attention_op.register_fake
def _(q, k, v, host, mask, sigmas, block, heads, branches, frames):
    return torch.empty_like(host)


@torch.library.custom_op(_OP + "_observation", mutates_args=())
def _block_observation_op(img: torch.Tensor, txt: torch.Tensor | None, context: torch.Tensor | None,
                          sigmas: torch.Tensor, block: int, branches: list[int], frames: list[int]) -> torch.Tensor:
    """A block's outputs shown to the handlers that watch them; returns a copy of ``img`` that the
    model goes on with, so the graph keeps the op in its place."""
    out = {"img": img} if txt is None else {"img": img, "txt": txt}
    args = {"txt": context, "transformer_options": _op_options(sigmas, branches, frames)}
    _observe_block(_newest_run(), block, args, out)
    return img.clone()


@_block_observation_op.register_fake
def _(img, txt, context, sigmas, block, branches, frames):
    return torch.empty_like(img)


def _compiled_text_attention(host, args, kwargs, options):
    q, k, v = args[:3]
    heads = kwargs["heads"] if "heads" in kwargs else args[3]
    return _text_attention_op(q, k, v, host, kwargs.get("mask"), options["sigmas"], options[BLOCK], heads,
                              list(options.get("cond_or_uncond", [0])), list(_window_frames(options) or ()))


@dataclass
class _HandlerEdit:
    """One handler's edit of one CFG chunk."""
    run: HandlerRun
    edit: TextEdit


@dataclass
class _Chunk:
    """One CFG chunk of a text attention call: its rows, the call, the handlers' edits, its mask, and
    whether the pack computes its output (else the host does)."""
    rows: slice
    call: TextCall
    edits: list[_HandlerEdit]
    mask: torch.Tensor | None = None
    computed: bool = False


def _edits_for(run: FocalRun, call: TextCall, foreign: bool) -> list[_HandlerEdit]:
    """The handlers' edits of one chunk; in a foreign pass (FocalRun.is_foreign_pass) without recordings."""
    edits = []
    for handler_run in run.handlers_of(call.block):
        try:
            edit = handler_run.handler.edit_for(handler_run.state, call)
        except FocalError as err:
            raise ValueError(_voice.run_error(handler_run.node, err)) from None
        if edit is not None and foreign:
            edit = replace(edit, record_columns=None)
        if edit is not None and (edit.changes_output or edit.record_columns is not None):
            edits.append(_HandlerEdit(handler_run, edit))
    return edits


@torch.compiler.disable  # explicit attention in a few blocks: keep it out of compiled graphs
def _text_attention(run: FocalRun, block: int, func, args, kwargs, options, call_previous, host_is_sdpa: bool):
    family, ctx = run.plan.family, run.ctx
    q, k, v = args[:3]
    branches = list(options.get("cond_or_uncond", [0]))
    if q.shape[0] % len(branches):
        run.warn_once(("batch", block), "Focal Guidance", f"block {block}: a batch of {q.shape[0]} rows does not "
                      f"split into the CFG chunks {branches}; the block is left to the host")
        return call_previous(func, *args, **kwargs)
    per_chunk = q.shape[0] // len(branches)
    sigma, step = run.sigma_step(options["sigmas"])
    frames = _window_frames(options)
    chunks = []
    for i, branch in enumerate(branches):
        call = TextCall(block, branch, sigma, step, row=i * per_chunk, frames=frames)
        chunks.append(_Chunk(slice(i * per_chunk, (i + 1) * per_chunk), call,
                             _edits_for(run, call, run.foreign_pass)))
    if not any(chunk.edits for chunk in chunks):
        return call_previous(func, *args, **kwargs)

    heads = kwargs["heads"] if "heads" in kwargs else args[3]
    mask = kwargs.get("mask")
    for chunk in chunks:
        rows = chunk.rows
        chunk.mask = None if mask is None else _rows_of(mask, rows, q.shape[0])
        chunk.computed = bool(chunk.edits) and (
            changes_output(e.edit for e in chunk.edits) or host_is_sdpa and
            family.records_with_sdpas_output(q[rows], k[rows], v[rows], chunk.mask))
    out, host_runs = None, _runs(c.computed for c in chunks)   # runs of chunks the host computes
    if family.separate_text_call and host_runs:
        out, host_runs = call_previous(func, *args, **kwargs), []   # whole batch as unpatched; edited rows replaced
    for first, last in host_runs:
        rows = slice(chunks[first].rows.start, chunks[last].rows.stop)
        host = call_previous(func, q[rows], k[rows], v[rows], *args[3:],
                             **_sub_kwargs(kwargs, options, rows, q.shape[0], branches[first:last + 1]))
        if out is None:
            out = host.new_empty((q.shape[0],) + tuple(host.shape[1:]))
        out[rows] = host
    for chunk in chunks:
        if not chunk.edits:
            continue
        rows = chunk.rows
        try:
            res, recorded = family.edit(q[rows], k[rows], v[rows], heads, ctx.n_video_of(frames),
                                        [e.edit for e in chunk.edits], chunk.mask, need_output=chunk.computed)
        except ValueError as err:
            raise ValueError(f"Focal Guidance, block {block} of {family.variant}: {err}.") from None
        if chunk.computed:
            if out is None:
                out = res.new_empty((q.shape[0],) + tuple(res.shape[1:]))
            out[rows] = res
        for handler_edit, probabilities in zip(chunk.edits, recorded):
            if probabilities is not None:
                handler_edit.run.handler.on_probabilities(handler_edit.run.state, chunk.call, probabilities)
    return out


def _runs(flags):
    """(first, last) index pairs of the maximal runs of False in ``flags``."""
    runs, start = [], None
    for i, flag in enumerate(list(flags) + [True]):
        if not flag and start is None:
            start = i
        elif flag and start is not None:
            runs.append((start, i - 1))
            start = None
    return runs


def _rows_of(t, rows, batch):
    return t[rows] if t.shape[0] == batch and batch > 1 else t


def _sub_kwargs(kwargs, options, rows, batch, branches):
    """kwargs for a host call on some CFG chunks: the mask and ``cond_or_uncond`` cut to match."""
    sub = dict(kwargs)
    if kwargs.get("mask") is not None:
        sub["mask"] = _rows_of(kwargs["mask"], rows, batch)
    sub["transformer_options"] = {**options, "cond_or_uncond": branches}
    return sub
