"""The edits of :mod:`focal_core.attention` on fused attention kernels: same inputs, same outputs, less work.

Shapes use einops letters as there: b batch, h heads, n video queries, l text keys, d head dim,
t tracked text columns (the columns some edit blends or records). The explicit chunked path of
``attention`` stays the reference and the fallback; :func:`kernel_path` says which one runs.

Why it is exact: every edit is linear in the probability rows. One fused call gives the
(biased) attention output ``O`` and each row's log-sum-exp ``lse``; a tracked column's
probability is ``exp(q·kᵀ/√d + bias − lse)``, one small QKᵀ for those columns only. A row of
the edited map is then ``r·P + Σ β_i·S_i`` off the tracked columns (``r``, ``β_i`` per row) and
an explicit ``[t]`` vector on them, so ``P'·V = r·O + Σ β_i·(S_i·V) + (P'_T − r·P_T − Σ β_i·S_i,T)·V_T``.
The default Wan weak edit (anchor bias, cache blended into all columns) tracks no column:
``(1−α)·SDPA(q, k, v, attn_mask=B) + α·S·V``. No per-head [n, l] map is formed beyond one chunk.

Joint attention (HunyuanVideo) cannot take the anchor bias into the kernel (the mask would be
[n, n]): the bias is a rank-c correction of the unbiased call, ``Z = 1 + Σ_c p_c·(e^{B_c} − 1)``,
which is exact but multiplies the kernel output's rounding by up to ``e^{−min B}``; the call
falls back to the explicit path where that could exceed :data:`MAX_ROUNDING_ERROR`. A second
fused call over the text keys only gives each row's text mass and text output.

Matmuls: bf16/fp16 operands with fp32 accumulation on CUDA (fp32 output) and on CPUs with bf16
units (model-dtype output, used only for ``S·V``); column logits are fp32 everywhere, since a
probability ``exp(logit − lse)`` inherits the logit's absolute error.
"""
from dataclasses import dataclass
import logging
import math

import torch
from torch.nn.attention import SDPBackend

from .attention import EPS, LOW_PRECISION, joint_attention_text_edit, text_cross_attention

log = logging.getLogger(__name__)

EXPLICIT, CPU_FLASH, CUDA_FLASH, CUDA_EFFICIENT, CUDA_CUDNN = (
    "explicit", "cpu_flash", "cuda_flash", "cuda_efficient", "cuda_cudnn")
FUSED_CHUNK = 16384            # query rows per chunk at most; memory caps it further (see _rows)
MAX_ROUNDING_ERROR = 0.02      # joint bias: kernel output rounding × e^{−min B} may reach this, relative

_FLASH, _EFFICIENT, _CUDNN = (int(SDPBackend.FLASH_ATTENTION), int(SDPBackend.EFFICIENT_ATTENTION),
                              int(SDPBackend.CUDNN_ATTENTION))
_OPS = torch.ops.aten
# The CPU flash kernel takes an additive mask from torch 2.3 on; read the schema, not the version.
CPU_FLASH_TAKES_MASK = "attn_mask" in str(_OPS._scaled_dot_product_flash_attention_for_cpu.default._schema)
CUDNN_TAKES_BIAS = (hasattr(_OPS, "_scaled_dot_product_cudnn_attention")
                    and "attn_bias" in str(_OPS._scaled_dot_product_cudnn_attention.default._schema))
_MM_OUT_DTYPE = "out_dtype" in (torch.bmm.__doc__ or "")   # CUDA, torch >= 2.8


@dataclass(frozen=True)
class KernelQuery:
    """What decides the kernel: plain values, so the CUDA choice can be dry-run without a GPU.

    sdpa_choice: the ``SDPBackend`` value ``F.scaled_dot_product_attention`` picks for the host's own
    call (``torch._fused_sdp_choice``); None where unknown. bias: the call needs an additive
    [n, l] bias in the kernel (an anchor bias on a cross-attention). masked: a key mask is given.
    """
    device: str
    dtype: torch.dtype
    head_dim: int
    value_dim: int
    last_dim_contiguous: bool
    bias: bool
    masked: bool
    sdpa_choice: int | None


def choose_kernel(query: KernelQuery) -> str:
    """The fused kernel that serves these inputs, or :data:`EXPLICIT`.

    CPU: the flash kernel wherever SDPA itself picks it (a bias needs torch >= 2.3). CUDA: SDPA's own
    pick where it returns the log-sum-exp and takes what the call needs (cuDNN takes a bias from
    torch 2.5; flash none); else the memory-efficient kernel, which takes a bias in any float dtype.
    """
    fits = query.last_dim_contiguous and query.head_dim == query.value_dim
    if query.device == "cpu":
        ok = fits and query.sdpa_choice in (_FLASH, None) and (CPU_FLASH_TAKES_MASK or not (query.bias or query.masked))
        return CPU_FLASH if ok else EXPLICIT
    if query.device != "cuda" or not fits:
        return EXPLICIT
    needs_bias = query.bias or query.masked
    low = query.dtype in LOW_PRECISION
    if query.sdpa_choice == _CUDNN and low and (CUDNN_TAKES_BIAS or not needs_bias):
        return CUDA_CUDNN
    if query.sdpa_choice in (_FLASH, None) and low and not needs_bias and query.head_dim % 8 == 0 \
            and query.head_dim <= 256:
        return CUDA_FLASH
    if query.dtype in (torch.float32, *LOW_PRECISION) and query.head_dim % (4 if query.dtype == torch.float32 else 8) == 0:
        return CUDA_EFFICIENT
    return EXPLICIT


def kernel_path(q, k, v, key_mask=None, bias: bool = False) -> str:
    """:func:`choose_kernel` for these tensors (logged at debug level)."""
    choice, key_mask = None, _four_dims(key_mask)
    if q.device.type in ("cpu", "cuda"):
        choice = torch._fused_sdp_choice(q, k, v, attn_mask=key_mask)
    path = choose_kernel(KernelQuery(q.device.type, q.dtype, q.shape[-1], v.shape[-1],
                                     all(t.stride(-1) == 1 for t in (q, k, v)), bias, key_mask is not None, choice))
    log.debug("focal attention: %s kernel for q %s %s (SDPA picks %s, bias %s, mask %s)", path, tuple(q.shape),
              q.dtype, choice, bias, key_mask is not None)
    return path


def output_is_sdpas(q, k, v, key_mask=None) -> bool:
    """Whether the kernel :func:`kernel_path` picks without a bias is SDPA's own for these inputs, so
    its output is ``F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)`` bit for bit.
    cuDNN is left out: SDPA runs its graph without the log-sum-exp output, a different graph."""
    path = kernel_path(q, k, v, key_mask)
    if q.device.type == "cpu":
        return path == CPU_FLASH
    choice = torch._fused_sdp_choice(q, k, v, attn_mask=key_mask) if q.is_cuda else None
    return (path, choice) in ((CUDA_FLASH, _FLASH), (CUDA_EFFICIENT, _EFFICIENT))


def attention_lse(q, k, v, path: str, mask=None):
    """``(out, lse)`` of ``softmax(q·kᵀ/√d + mask)·v`` on the named kernel; ``lse [b, h, n]`` fp32.

    mask: additive, broadcastable to [b, h, n, l] (fp32 or q's dtype), or None.
    """
    b, h, n, _ = q.shape
    if path == CPU_FLASH:
        if mask is not None and mask.dtype not in (torch.float32, q.dtype):
            mask = mask.float()
        return _OPS._scaled_dot_product_flash_attention_for_cpu(q, k, v, attn_mask=mask)[:2]
    if path == CUDA_FLASH:
        return _OPS._scaled_dot_product_flash_attention(q, k, v)[:2]
    bias = None if mask is None else _kernel_bias(mask, q, k.shape[-2])
    if path == CUDA_EFFICIENT:
        out, lse = _OPS._scaled_dot_product_efficient_attention(q, k, v, bias, True)[:2]
        return out, lse[..., :n]
    if path == CUDA_CUDNN:
        out, lse = _OPS._scaled_dot_product_cudnn_attention(q, k, v, bias, True)[:2]
        return out, lse.reshape(b, h, n)
    raise ValueError(f"no fused kernel named {path!r}")


def _kernel_bias(mask, q, l):
    """A CUDA kernel's bias: q's dtype, viewed as [b, h, n, l], each row 16-element aligned as the
    kernels require; its broadcast dims (batch, heads, a key mask's rows) stay stride 0, so neither a
    per-head copy nor, for a joint key mask, an [n, n] one is formed."""
    b, h, n, _ = q.shape
    lead = mask.shape[:-1]
    padded = -(-l // 16) * 16
    bias = torch.empty(*lead, padded, dtype=q.dtype, device=q.device)[..., :l]
    bias.copy_(mask.expand(*lead, l))
    return bias.expand(b, h, n, l)


def _four_dims(mask):
    """An additive key mask ([l], [1, l], ...) with the leading dims SDPA's kernels expect."""
    return None if mask is None else mask.reshape((1,) * (4 - mask.ndim) + tuple(mask.shape))


def _columns(index, l, device):
    """Text-key columns as a long tensor on ``device`` (a slice or a tensor)."""
    if isinstance(index, slice):
        return torch.arange(l, device=device)[index]
    return index.to(device)


class _FusedPlan:
    """One call's edits for the fused path: biases, blends (full or on columns), recordings, and the
    tracked columns (every column a column blend or a recording touches), all on q's device."""

    def __init__(self, edits, device, n, l, track_bias=False):
        f32 = torch.float32
        self.biases = [(_columns(e.bias_columns, l, device), e.bias.to(device, f32))
                       for e in edits if e.bias is not None]
        self.blends = [(e.source.to(device, f32), e.alpha,
                        None if e.source_columns is None else _columns(e.source_columns, l, device))
                       for e in edits if e.source is not None and e.alpha > 0]
        records = [None if e.record_columns is None else (_columns(e.record_columns, l, device), e.record_per_head)
                   for e in edits]
        parts = ([c for _, _, c in self.blends if c is not None] + [r[0] for r in records if r is not None]
                 + ([c for c, _ in self.biases] if track_bias else []))
        self.tracked = torch.unique(torch.cat(parts)) if parts else torch.empty(0, dtype=torch.long, device=device)
        self.where = torch.full((l,), -1, dtype=torch.long, device=device)
        self.where[self.tracked] = torch.arange(len(self.tracked), device=device)
        self.blends = [(s, a, None if c is None else self.where[c]) for s, a, c in self.blends]
        self.records = [None if r is None else [self.where[r[0]], r[1], None] for r in records]
        self.full_sources = [s for s, _, c in self.blends if c is None]
        self.changes_output = bool(self.biases or self.blends)
        self.n = n

    def bias_rows(self, start, stop, l, key_mask):
        """[rows, l] fp32 (or broadcast with the key mask): every bias added as ``text_cross_attention`` adds it."""
        rows = self.biases[0][1].new_zeros(stop - start, l)
        for columns, bias in self.biases:
            rows[:, columns] += bias[start:stop]
        return rows if key_mask is None else rows + key_mask

    def summed_bias(self):
        """(columns, [n, c]): the biases summed per distinct column, as the joint reference sums them."""
        columns, inverse = torch.unique(torch.cat([c for c, _ in self.biases]), return_inverse=True)
        biases = torch.cat([b for _, b in self.biases], dim=-1)
        return columns, biases.new_zeros(biases.shape[0], len(columns)).index_add_(-1, inverse, biases)

    def record(self, pt, start, stop):
        for rec in self.records:
            if rec is None:
                continue
            picked = pt[..., rec[0]]
            if not rec[1]:
                picked = picked.mean(dim=-3)
            if rec[2] is None:   # allocated at the first chunk, when the shape is known
                rec[2] = picked.new_empty(picked.shape[:-2] + (self.n, picked.shape[-1]))
            rec[2][..., start:stop, :] = picked

    def recorded(self):
        return [None if rec is None else rec[2] for rec in self.records]


def _matmul_dtype(t):
    """The dtype the edit's own matmuls take their operands in: the model's where the hardware
    multiplies it with fp32 accumulation (CUDA, CPUs with bf16/fp16 units), else fp32."""
    if t.dtype not in LOW_PRECISION:
        return torch.float32
    if t.is_cuda:
        return t.dtype
    units = torch.ops.mkldnn._is_mkldnn_bf16_supported() if t.dtype == torch.bfloat16 else \
        torch.ops.mkldnn._is_mkldnn_fp16_supported()
    return t.dtype if t.device.type == "cpu" and units else torch.float32


def _mm_f32(a, b):
    """``a @ b`` as fp32: fp32 output from 16-bit operands where torch has it (CUDA), else the
    operands' own output upcast (16-bit CPU units accumulate in fp32 and round once)."""
    if a.dtype in LOW_PRECISION and a.is_cuda and _MM_OUT_DTYPE and a.ndim == b.ndim == 2:
        return torch.mm(a, b, out_dtype=torch.float32)
    return torch.matmul(a, b).float()


def _column_logits(qc, kt):
    """fp32 ``q·k_Tᵀ`` [b, h, rows, t]; kt = scaled k_Tᵀ in fp32 [b, h, d, t]. Upcasting the chunk
    keeps the products of 16-bit values exact (a 16-bit output would cost ~2^-9 of each logit)."""
    return torch.matmul(qc.float(), kt)


class _Rows:
    """One chunk's edited rows: ``P' = r·P + Σ β_i·S_i`` off the tracked columns, ``pt`` on them.

    p_t: [b, h, rows, t] the base probabilities of the tracked columns; mass: the base rows' total
    over the text keys (1 for a text softmax, [b, h, rows, 1] the text mass of a joint attention).
    ``r`` and each ``β_i`` are numbers until a column blend makes them per row.
    """

    def __init__(self, p_t, mass):
        self.p_t, self.mass, self.pt = p_t, mass, p_t.clone()
        self.r = 1.0
        self.full = []   # per full blend: [β, the source's mass off the tracked columns, the source on them]

    def bias_low_rank(self, a_c, pos):
        """The anchor bias of a joint attention as a rank-c correction. a_c: ``logit − lse + B`` of the
        biased columns (at ``pos`` among the tracked ones), shifted so no exponent overflows."""
        shift = a_c.amax(-1, keepdim=True).clamp_min_(0)
        down = torch.exp(-shift)
        biased = a_c.sub_(shift).exp_()
        z = (1 - self.p_t[..., pos].sum(-1, keepdim=True)).clamp_min_(0).mul_(down).add_(biased.sum(-1, keepdim=True))
        self.r = down.div_(z)
        self.pt.mul_(self.r)
        self.pt[..., pos] = biased.div_(z)

    def blend_full(self, source_t, off, alpha):
        """``P' = (1−α)·P' + α·S`` on every text column; source_t: S on the tracked columns."""
        self.pt.mul_(1 - alpha).add_(source_t, alpha=alpha)
        self.r = self.r * (1 - alpha)
        self.full = [[beta * (1 - alpha), o, s] for beta, o, s in self.full] + [[alpha, off, source_t]]

    def blend_columns(self, source, alpha, pos):
        """A blend on some columns that keeps each row's text mass, as ``attention._blend_`` does."""
        total = self.text_mass()
        picked = self.pt[..., pos]
        new = picked.mul(1 - alpha).add_(source, alpha=alpha)
        rho = (total - new.sum(-1, keepdim=True)).clamp_min_(0).div_(
            (total - picked.sum(-1, keepdim=True)).clamp_min_(EPS))
        self.pt.mul_(rho)
        self.pt[..., pos] = new
        self.r = rho * self.r
        self.full = [[rho * beta, o, s] for beta, o, s in self.full]

    def text_mass(self):
        """Each row's mass over the text keys: off the tracked columns plus on them."""
        total = (self.mass - self.p_t.sum(-1, keepdim=True)) * self.r + self.pt.sum(-1, keepdim=True)
        for beta, off, _ in self.full:
            total = total + beta * off
        return total

    def output(self, base, sources_v, v_t):
        """``r·base + Σ β_i·S_i·V + (P'_T − r·P_T − Σ β_i·S_i,T)·V_T`` in fp32; base: the kernel's
        output over the text keys (fp32), sources_v: each full source times V."""
        out = base.mul_(self.r)
        for (beta, _, _), sv in zip(self.full, sources_v):
            out.add_(sv.mul_(beta))
        if self.pt.shape[-1]:
            corr = self.pt - self.r * self.p_t
            for beta, _, s_t in self.full:
                corr = corr - beta * s_t
            out.add_(torch.matmul(corr, v_t))
        return out


def _rows(n, out_row_bytes, temp_row_bytes, chunk_size):
    """Query rows per chunk: at most ``chunk_size``, and few enough (but >= 64) that a chunk's
    temporaries stay within the output's own size (an edited call needs at most about twice the
    memory of the unedited one)."""
    return max(1, min(n, chunk_size, max(64, n * out_row_bytes // max(temp_row_bytes, 1))))


def _temp_row_bytes(plan, b, h, d, l, bias_in_kernel):
    """fp32 bytes one query row of a chunk holds: bias row, tracked-column maps, S·V and the output."""
    return (l * 4 if bias_in_kernel else 0) + b * h * 4 * (4 * len(plan.tracked) + d * (2 + len(plan.full_sources)))


def _source_times_values(source_rows, v, mm_dtype):
    """``S·V`` [b, h, rows, d] fp32. A head-shared source is one [rows, l] × [l, b·h·d] GEMM (no
    per-head copy of S); a per-head one a batched matmul."""
    b, h, l, d = v.shape
    if source_rows.ndim == 2:
        flat = v.to(mm_dtype).permute(2, 0, 1, 3).reshape(l, b * h * d)
        return _mm_f32(source_rows.to(mm_dtype), flat).view(-1, b, h, d).permute(1, 2, 0, 3)
    return torch.matmul(source_rows.to(mm_dtype), v.to(mm_dtype)).float()


def _edited_rows(plan, logits_t, mass, start, stop, low_rank=None):
    """The chunk's :class:`_Rows` after the (joint) bias and every blend, recorded.

    logits_t: [b, h, rows, t] fp32 ``logit + mask (+ bias) − lse`` of the tracked columns, consumed.
    low_rank: (positions, [n, c] bias) of a joint attention's biased columns, or None.
    """
    a_c = None if low_rank is None else logits_t[..., low_rank[0]] + low_rank[1][start:stop]
    edited = _Rows(logits_t.exp_(), mass)
    if a_c is not None:
        edited.bias_low_rank(a_c, low_rank[0])
    for source, alpha, pos in plan.blends:
        rows = source[..., start:stop, :]
        if pos is None:
            source_t = rows[..., plan.tracked]
            edited.blend_full(source_t, rows.sum(-1, keepdim=True) - source_t.sum(-1, keepdim=True), alpha)
        else:
            edited.blend_columns(rows, alpha, pos)
    plan.record(edited.pt, start, stop)
    return edited


def fused_text_cross_attention(q, k, v, edits, key_mask=None, chunk_size: int = FUSED_CHUNK,
                               need_output: bool = True):
    """:func:`attention.text_cross_attention` on a fused kernel: same arguments, same results.

    q: [b, h, n, d]; k, v: [b, h, l, d]; key_mask: additive, broadcastable to [b, h, 1, l], or None.
    Returns ``(out [b, h, n, d] or None, recorded)``; with an edit that changes the output, ``out`` is a
    view of a [b, n, h, d] buffer. Without one, ``out`` is the kernel's own output (SDPA's, bit for
    bit, where :func:`output_is_sdpas` holds), returned with the recordings of the same call. The
    kernel runs once over all rows, or once per chunk with the chunk's [rows, l] bias. Falls back
    to the explicit path where no fused kernel fits.
    """
    b, h, n, d = q.shape
    l = k.shape[-2]
    plan = _FusedPlan(edits, q.device, n, l)
    path = kernel_path(q, k, v, key_mask, bias=bool(plan.biases))
    if path == EXPLICIT:
        return text_cross_attention(q, k, v, edits, key_mask=key_mask, need_output=need_output)
    mask = None if key_mask is None else _four_dims(key_mask).to(q.device, torch.float32)
    whole = None if plan.biases else attention_lse(q, k, v, path, mask)
    if whole is not None and not plan.changes_output and not len(plan.tracked):
        return whole[0] if need_output else None, plan.recorded()
    mm_dtype = _matmul_dtype(q)
    rows = _rows(n, b * h * d * q.element_size(), _temp_row_bytes(plan, b, h, d, l, bool(plan.biases)), chunk_size)
    kt = (k[..., plan.tracked, :].float() * (1.0 / math.sqrt(d))).transpose(-1, -2)
    v_t = v[..., plan.tracked, :].float()
    own = need_output and plan.changes_output
    out = torch.empty(b, n, h, d, dtype=q.dtype, device=q.device).transpose(1, 2) if own else None
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        qc = q[..., start:stop, :]
        chunk_mask = plan.bias_rows(start, stop, l, mask) if plan.biases else mask
        out_c, lse_c = attention_lse(qc, k, v, path, chunk_mask) if whole is None else \
            (whole[0][..., start:stop, :], whole[1][..., start:stop])
        logits_t = _column_logits(qc, kt)
        if chunk_mask is not None:
            logits_t.add_(chunk_mask[..., plan.tracked])
        edited = _edited_rows(plan, logits_t.sub_(lse_c[..., None]), 1.0, start, stop)
        if own:
            sources_v = [_source_times_values(s[..., start:stop, :], v, mm_dtype) for s in plan.full_sources]
            out[..., start:stop, :] = edited.output(out_c.float(), sources_v, v_t)
    if need_output and out is None:
        out = whole[0] if whole is not None else None
    return out, plan.recorded()


def _low_rank_bias_fits(edits, dtype) -> bool:
    """Whether the joint anchor bias may be a rank-c correction: the kernel output's rounding,
    multiplied by at most ``e^{−min B}`` (the summed bias is at least the sum of each edit's minimum),
    stays within :data:`MAX_ROUNDING_ERROR`. The biases are read where they are (the pack keeps them
    on the CPU), so no device sync."""
    floor = sum(min(0.0, float(e.bias.min())) for e in edits if e.bias is not None and e.bias.numel())
    return math.exp(-floor) * torch.finfo(dtype).eps / 2 <= MAX_ROUNDING_ERROR


def fused_joint_attention_text_edit(q, k, v, n_video: int, edits, key_mask=None, chunk_size: int = FUSED_CHUNK):
    """:func:`attention.joint_attention_text_edit` on fused kernels: same arguments, same results.

    q, k, v: [b, h, n_video + l, d], video tokens first; key_mask additive, broadcastable to
    [b, h, 1, n_video + l]. One joint call gives the output and each row's log-sum-exp (SDPA's own
    output where :func:`output_is_sdpas` holds: it is returned untouched with only recordings); an
    edit that changes the output adds one call over the text keys for each row's text mass and text
    output, and only the tracked text columns' logits are computed. Falls back to the explicit path
    where no fused kernel fits or the bias is too negative for the rank-c form in this dtype.
    """
    b, h, total, d = q.shape
    l = total - n_video
    plan = _FusedPlan(edits, q.device, n_video, l, track_bias=True)
    key_mask = _four_dims(key_mask)
    path = kernel_path(q, k, v, key_mask)
    k_txt, v_txt = k[..., n_video:, :], v[..., n_video:, :]
    text_mask = None if key_mask is None else key_mask[..., n_video:]
    text_path = kernel_path(q[..., :n_video, :], k_txt, v_txt, text_mask) if plan.changes_output else path
    if EXPLICIT in (path, text_path) or (plan.biases and not _low_rank_bias_fits(edits, q.dtype)):
        log.debug("focal attention: joint edit on the explicit path")
        return joint_attention_text_edit(q, k, v, n_video, edits, key_mask=key_mask)
    out, lse = attention_lse(q, k, v, path, key_mask)
    if not len(plan.tracked) and not plan.changes_output:
        return out, plan.recorded()
    low_rank = None
    if plan.biases:
        columns, bias = plan.summed_bias()
        low_rank = (plan.where[columns], bias)
    kt = (k_txt[..., plan.tracked, :].float() * (1.0 / math.sqrt(d))).transpose(-1, -2)
    v_t = v_txt[..., plan.tracked, :].float()
    mm_dtype = _matmul_dtype(q)
    temp = _temp_row_bytes(plan, b, h, d, l, False) + b * h * d * 12
    rows = _rows(n_video, b * h * d * q.element_size(), temp, chunk_size)
    for start in range(0, n_video, rows):
        stop = min(start + rows, n_video)
        qc, lse_c = q[..., start:stop, :], lse[..., start:stop, None]
        logits_t = _column_logits(qc, kt)
        if text_mask is not None:
            logits_t.add_(text_mask[..., plan.tracked].float())
        if not plan.changes_output:
            _edited_rows(plan, logits_t.sub_(lse_c), 1.0, start, stop)
            continue
        text_out, text_lse = attention_lse(qc, k_txt, v_txt, text_path, text_mask)
        mass = (text_lse[..., None] - lse_c).exp_()
        edited = _edited_rows(plan, logits_t.sub_(lse_c), mass, start, stop, low_rank)
        text_part = text_out.float().mul_(mass)
        video_part = out[..., start:stop, :].float().sub_(text_part)
        sources_v = [_source_times_values(s[..., start:stop, :], v_txt, mm_dtype) for s in plan.full_sources]
        scale = (1 - edited.text_mass()).clamp_min_(0).div_(1 - mass.clamp_(EPS, 1 - 1e-6))
        out[..., start:stop, :] = video_part.mul_(scale).add_(edited.output(text_part, sources_v, v_t))
    return out, plan.recorded()
