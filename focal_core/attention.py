"""Explicit, query-chunked text attention with anchor biases and attention-cache blends.

Shapes use einops letters: b batch, h heads, n video queries, l text keys, d head dim,
c selected text columns. Probabilities are computed in fp32 one chunk of queries at a time,
so peak extra memory is about ``2·b·h·chunk·l`` floats and a self-attention map is never formed.

One call takes the edits of every handler on the block, in graph order, and composes them by
one rule: all biases add to the logits, then the blends apply in order to the probabilities,
then each edit that asks for a recording receives the final probabilities (what the model uses);
one that also asks for the unedited probabilities (``record_unedited``) receives the pair
(final, unedited), the unedited ones being the same call's softmax before any bias or blend.

Hot-path rules: every per-call tensor (bias, columns, source) moves to q's device once per call,
never per chunk; chunks are written into one preallocated output; scale, mask, bias and blend act
in place on the chunk's own buffers.
"""
from dataclasses import dataclass
import math

import torch
from torch.nn.attention import SDPBackend

EPS = 1e-12
LOW_PRECISION = (torch.bfloat16, torch.float16)
# bmm with an fp32 output from bf16/fp16 operands (fp32 accumulation); CUDA only, torch >= 2.8.
_BMM_OUT_DTYPE = "out_dtype" in (torch.bmm.__doc__ or "")


@dataclass
class TextEdit:
    """What to change in the video→text probabilities of one attention call.

    bias:            [n, c] additive logits on ``bias_columns`` (the FSG anchor), or None.
    source:          [n, s] or [h, n, s] cached probabilities from responsive blocks, or None.
    source_columns:  [s] text columns the source covers; None means all text columns.
    alpha:           blend weight of the source, ``P' = (1-alpha)·P + alpha·P_src``.
    record_columns:  text columns whose probabilities to return; None records nothing,
                     an empty tensor is invalid.
    record_per_head: return [h, n, c] instead of the head mean [n, c].
    record_unedited: return ``(final, unedited)`` on ``record_columns``, the unedited probabilities
                     being the call's own before every edit's bias and blend (head mean or per head
                     alike); the fused paths run such a call on the explicit path.
    """
    bias: torch.Tensor | None = None
    bias_columns: torch.Tensor | None = None
    source: torch.Tensor | None = None
    source_columns: torch.Tensor | None = None
    alpha: float = 0.0
    record_columns: torch.Tensor | None = None
    record_per_head: bool = False
    record_unedited: bool = False

    @property
    def changes_output(self) -> bool:
        return self.bias is not None or (self.source is not None and self.alpha > 0)


def blend_probabilities(p, source, alpha, columns=None):
    """Blend ``source`` into the rows of ``p`` and keep each row's total mass (``p`` is not modified).

    p: [..., n, l] probabilities. source: broadcastable to ``p[..., columns]``.
    With ``columns`` None every column is blended: ``(1-alpha)·p + alpha·source``.
    Otherwise only those columns are blended and the other columns are rescaled so each
    row keeps the total it had (1 for a text softmax, the text mass for joint attention).
    """
    return _blend_(p.clone(), source, alpha, columns)


def _blend_(p, source, alpha, columns):
    """In-place :func:`blend_probabilities` on a chunk buffer the caller owns."""
    if columns is None:
        return p.lerp_(source.expand_as(p), alpha)
    total = p.sum(-1, keepdim=True)
    picked = p[..., columns]
    new_picked = picked.mul(1 - alpha).add_(source, alpha=alpha)
    rest_old = (total - picked.sum(-1, keepdim=True)).clamp_min_(EPS)
    rest_new = total.sub_(new_picked.sum(-1, keepdim=True)).clamp_min_(0)
    p.mul_(rest_new.div_(rest_old))
    p[..., columns] = new_picked
    return p


def changes_output(edits) -> bool:
    return any(edit.changes_output for edit in edits)


@dataclass
class _Record:
    """One edit's recording: its columns on the device, head mean or per head, and the buffer it fills."""
    columns: torch.Tensor | slice
    per_head: bool
    buffer: torch.Tensor | None = None   # allocated at the first chunk, when the column count is known
    unedited: "_Record | None" = None     # the same columns before any edit, for ``record_unedited``

    def take(self, p, start, stop, n):
        """Copy this chunk's columns of ``p`` [b, h, rows, l] into the buffer."""
        picked = p[..., self.columns]
        if not self.per_head:
            picked = picked.mean(dim=-3)
        if self.buffer is None:
            self.buffer = p.new_empty(picked.shape[:-2] + (n, picked.shape[-1]))
        self.buffer[..., start:stop, :] = picked

    def result(self):
        return self.buffer if self.unedited is None else (self.buffer, self.unedited.buffer)


def _on(t, device):
    """Index tensors and slices on the device, once per call."""
    return t.to(device) if isinstance(t, torch.Tensor) else t


class _Plan:
    """One call's edits with their tensors on q's device (fp32 values), and the recording buffers."""

    def __init__(self, edits, device, n):
        f32 = torch.float32
        self.biases = [(_on(e.bias_columns, device), e.bias.to(device, f32))
                       for e in edits if e.bias is not None]
        self.blends = [(e.source.to(device, f32), e.alpha, _on(e.source_columns, device))
                       for e in edits if e.source is not None and e.alpha > 0]
        self.records = [None if e.record_columns is None else _Record(_on(e.record_columns, device), e.record_per_head)
                        for e in edits]
        for rec, edit in zip(self.records, edits):
            if rec is not None and edit.record_unedited:
                rec.unedited = _Record(rec.columns, rec.per_head)
        self.n = n

    @property
    def wants_unedited(self) -> bool:
        return any(rec is not None and rec.unedited is not None for rec in self.records)

    def record_unedited(self, p, start, stop):
        """Record the chunk's probabilities before any edit, for the edits that ask for them."""
        for rec in self.records:
            if rec is not None and rec.unedited is not None:
                rec.unedited.take(p, start, stop, self.n)

    def summed_bias(self):
        """(columns, [n, c] bias): every bias summed per distinct column, for the joint edit."""
        columns, inverse = torch.unique(torch.cat([c for c, _ in self.biases]), return_inverse=True)
        biases = torch.cat([b for _, b in self.biases], dim=-1)
        return columns, biases.new_zeros(biases.shape[0], len(columns)).index_add_(-1, inverse, biases)

    def add_biases_(self, logits, start, stop):
        for columns, bias in self.biases:
            logits[..., columns] += bias[start:stop]
        return logits

    def blend_(self, p, start, stop):
        for source, alpha, columns in self.blends:
            p = _blend_(p, source[..., start:stop, :], alpha, columns)
        return p

    def record(self, p, start, stop):
        for rec in self.records:
            if rec is not None:
                rec.take(p, start, stop, self.n)

    def recorded(self):
        return [None if rec is None else rec.result() for rec in self.records]


def _low_precision_matmuls(q) -> bool:
    """bf16/fp16 matmuls with fp32 accumulation only where the hardware has them (CUDA).

    On CPUs without bf16 units (AVX2) a bf16 matmul is ~20× slower than fp32, so there the
    operands are upcast; the result is the same up to fp32 rounding.
    """
    return q.is_cuda and q.dtype in LOW_PRECISION and _BMM_OUT_DTYPE


def _bmm_f32(a, b):
    """``a @ b`` in fp32 from bf16/fp16 operands, accumulated in fp32 (CUDA)."""
    lead = a.shape[:-2]
    out = torch.bmm(a.reshape(-1, *a.shape[-2:]), b.expand(*lead, *b.shape[-2:]).reshape(-1, *b.shape[-2:]),
                    out_dtype=torch.float32)
    return out.view(*lead, *out.shape[-2:])


def _rows_per_chunk(n, d, keys, itemsize, chunk_size):
    """At most ``chunk_size`` query rows, and otherwise few enough (but >= 64) that a chunk's fp32
    temporaries, about three [rows, keys] maps per head, stay within the output's own size: an edited
    call then needs at most about twice the memory of the unedited one."""
    return min(chunk_size, max(64, n * d * itemsize // (12 * keys)))


def text_cross_attention(q, k, v, edits, key_mask=None, chunk_size: int = 1024, need_output: bool = True):
    """``softmax(q·kᵀ/√d + Σ bias)·v`` with the cache blends, for a text-only cross attention.

    q: [b, h, n, d]; k, v: [b, h, l, d]; key_mask: additive [l] (or broadcastable), or None.
    edits: a sequence of :class:`TextEdit`, composed as the module docstring says.
    Returns ``(out [b, h, n, d] in q's dtype or None, recorded)``: ``recorded[i]`` is
    ``[b, n, c]`` / ``[b, h, n, c]`` for an edit that asks for a recording (a pair with
    ``record_unedited``), else None.
    ``out`` is a [b, h, n, d] view of a [b, n, h, d] buffer, so the caller's merge of the heads
    back to [b, n, h·d] is free. ``need_output=False`` only records, for callers that keep the
    host kernel's exact output. On CUDA, bf16/fp16 inputs run both matmuls in their own dtype with
    fp32 accumulation; the softmax and the edits are always fp32.
    """
    b, h, n, d = q.shape
    scale = 1.0 / math.sqrt(d)
    low = _low_precision_matmuls(q)
    plan = _Plan(edits, q.device, n)
    mask = None if key_mask is None else key_mask.to(q.device, torch.float32)
    kt = k.transpose(-1, -2) if low else k.transpose(-1, -2).float() * scale   # fp32: the scale folds into k
    vv = v if low else v.float()
    out = torch.empty(b, n, h, d, dtype=q.dtype, device=q.device).transpose(1, 2) if need_output else None
    rows = _rows_per_chunk(n, d, k.shape[-2], q.element_size(), chunk_size)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        qc = q[..., start:stop, :]
        logits = _bmm_f32(qc, kt).mul_(scale) if low else torch.matmul(qc.float(), kt)
        if mask is not None:
            logits.add_(mask)
        if plan.wants_unedited:
            plan.record_unedited(torch.softmax(logits, dim=-1), start, stop)
        p = torch.softmax(plan.add_biases_(logits, start, stop), dim=-1)
        del logits
        p = plan.blend_(p, start, stop)
        if need_output:
            out[..., start:stop, :] = torch.matmul(p.to(vv.dtype), vv) if low else torch.matmul(p, vv)
        plan.record(p, start, stop)
    return out, plan.recorded()


_FLASH, _EFFICIENT = int(SDPBackend.FLASH_ATTENTION), int(SDPBackend.EFFICIENT_ATTENTION)


def _sdpa_choice(q, k, v, key_mask) -> int:
    """The kernel ``F.scaled_dot_product_attention`` runs for these inputs (an ``SDPBackend`` value)."""
    return torch._fused_sdp_choice(q, k, v, attn_mask=key_mask)


def _cuda_flash_fits(q, key_mask) -> bool:
    return q.dtype in LOW_PRECISION and key_mask is None and q.shape[-1] <= 256 and q.shape[-1] % 8 == 0


def lse_output_is_sdpas(q, k, v, key_mask=None) -> bool:
    """Whether :func:`joint_attention_lse` returns, for these inputs, exactly the output of
    ``F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)``: SDPA picks a fused kernel that
    also gives the log-sum-exp, and :func:`joint_attention_lse` calls that very kernel. Then one
    attention serves both the block's output and the recording."""
    choice = _sdpa_choice(q, k, v, key_mask)
    if q.device.type == "cpu":
        return choice == _FLASH
    if q.is_cuda:
        return choice == (_FLASH if _cuda_flash_fits(q, key_mask) else _EFFICIENT)
    return False


def joint_attention_lse(q, k, v, key_mask=None, chunk_size: int = 1024):
    """``(out, lse)`` of one joint attention, ``lse [b, h, n]`` (fp32) the natural log-sum-exp of each
    query's scaled logits over all keys; never forms the [n, n] map.

    CPU: the fused flash kernel, when SDPA itself picks it for these inputs (then ``out`` equals
    SDPA's output bit for bit). CUDA: the flash kernel (bf16/fp16, no mask) or the memory-efficient
    kernel, both of which return the lse. Anything else: exact math in query chunks sized so one
    chunk's logits stay within ``chunk_size·n`` floats per head.
    """
    if q.device.type == "cpu":
        if _sdpa_choice(q, k, v, key_mask) == _FLASH:
            out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, attn_mask=key_mask)[:2]
            return out, lse
    elif q.is_cuda:
        try:   # a kernel that refuses these inputs (head dim, mask layout, dtype) says so at the call
            if _cuda_flash_fits(q, key_mask):
                out, lse = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v)[:2]
                return out, lse
            bias = None if key_mask is None else key_mask.to(q.dtype).expand(q.shape[0], q.shape[1], q.shape[2], -1)
            out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, bias, True)[:2]
            return out, lse[..., :q.shape[-2]]
        except RuntimeError:
            pass
    return _joint_attention_lse_math(q, k, v, key_mask, chunk_size)


def _joint_attention_lse_math(q, k, v, key_mask, chunk_size):
    b, h, n, d = q.shape
    scale = 1.0 / math.sqrt(d)
    rows = max(1, chunk_size * chunk_size // max(n, 1))
    kt, vf = k.transpose(-1, -2).float(), v.float()
    out = torch.empty_like(q)
    lse = q.new_empty((b, h, n), dtype=torch.float32)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        logits = torch.matmul(q[..., start:stop, :].float(), kt).mul_(scale)
        if key_mask is not None:
            logits.add_(key_mask if key_mask.ndim < 2 or key_mask.shape[-2] == 1 else key_mask[..., start:stop, :])
        lse[..., start:stop] = torch.logsumexp(logits, dim=-1)
        out[..., start:stop, :] = torch.matmul(logits.sub_(lse[..., start:stop, None]).exp_(), vf)
    return out, lse


def joint_attention_text_edit(q, k, v, n_video: int, edits, key_mask=None, chunk_size: int = 1024):
    """Edit only the video-query × text-key block of a joint attention (MMDiT), in one joint attention.

    q, k, v: [b, h, n_video + l, d], video tokens first. key_mask: additive, broadcastable
    to [b, h, 1, n_video + l]. One fused attention over all keys gives the original output and
    each query's log-sum-exp over all keys (:func:`joint_attention_lse`); the original joint text
    probabilities are ``exp(logit - lse)``. The text block is then recomputed explicitly in query
    chunks and the video→video part is rescaled so every row stays normalised over all keys.
    Nothing of size [n, n] is ever allocated.
    Returns ``(out [b, h, n_video + l, d], recorded)`` as :func:`text_cross_attention` does;
    text-query rows are unchanged, and with only recording edits ``out`` is the fused kernel's
    output itself: SDPA's own output, bit for bit, where :func:`lse_output_is_sdpas` says so.
    """
    d = q.shape[-1]
    out, lse = joint_attention_lse(q, k, v, key_mask, chunk_size)
    plan = _Plan(edits, q.device, n_video)
    change = changes_output(edits)
    if not change and not any(r is not None for r in plan.records):
        return out, plan.recorded()

    kt = k[..., n_video:, :].transpose(-1, -2).float() * (1.0 / math.sqrt(d))   # the scale folds into k
    v_txt = v[..., n_video:, :].float()
    txt_mask = None if key_mask is None else key_mask[..., n_video:].to(torch.float32)
    rows = _rows_per_chunk(n_video, d, kt.shape[-1], q.element_size(), chunk_size)
    bias_columns, bias = plan.summed_bias() if plan.biases else (None, None)
    for start in range(0, n_video, rows):
        stop = min(start + rows, n_video)
        logits = torch.matmul(q[..., start:stop, :].float(), kt)
        if txt_mask is not None:
            logits.add_(txt_mask)
        lse_c = lse[..., start:stop, None]
        if bias is not None:   # the biased columns' new log-probabilities before normalising
            biased = logits[..., bias_columns].sub_(lse_c).add_(bias[start:stop])
        p_orig = logits.sub_(lse_c).exp_()   # the original joint text probabilities
        plan.record_unedited(p_orig, start, stop)
        if not change:   # recording only
            plan.record(p_orig, start, stop)
            continue
        text_mass = p_orig.sum(-1, keepdim=True)
        m = text_mass.clamp(EPS, 1 - 1e-6)
        if bias is not None:
            # Softmax over all keys with the text logits biased, from p_orig: unbiased columns keep
            # p_orig, biased ones get exp(logit − lse + bias); everything is shifted by the largest
            # biased value so no exponent overflows, then normalised with the video mass 1 − m.
            shift = biased.amax(-1, keepdim=True).clamp_min_(0)
            down = torch.exp(-shift)
            p_new = p_orig * down
            p_new[..., bias_columns] = biased.sub_(shift).exp_()
            p_new.div_((1 - text_mass).clamp_min_(0).mul_(down).add_(p_new.sum(-1, keepdim=True)))
        else:
            p_new = p_orig.clone()
        p_new = plan.blend_(p_new, start, stop)
        plan.record(p_new, start, stop)
        # out' = video_part·s + p_new·v_txt with video_part = out − p_orig·v_txt: one matmul
        s = (1 - p_new.sum(-1, keepdim=True)).clamp_min_(0).div_(1 - m)
        o = out[..., start:stop, :].float().mul_(s)
        out[..., start:stop, :] = o.add_(torch.matmul(p_new.sub_(p_orig.mul_(s)), v_txt))
    return out, plan.recorded()
