"""The edits of :mod:`focal_core.attention` on fused attention kernels: same inputs, same outputs, less work.

Shapes use einops letters as there: b batch, h heads, n video queries, l text keys, d head dim,
t tracked text columns (the columns some edit blends or records). The explicit chunked path of
``attention`` stays the reference and the fallback; :func:`kernels.kernel_path` says which runs. A call
whose edit asks for its unedited probabilities (``TextEdit.record_unedited``) runs on the explicit path.

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
import logging
import math

import torch

from .attention import (
    EPS,
    LOW_PRECISION,
    joint_attention_text_edit,
    text_cross_attention,
)
from .kernels import EXPLICIT, MM_OUT_DTYPE, attention_lse, four_dims, kernel_path

log = logging.getLogger(__name__)

# Query rows per chunk at most (memory caps them further, see _rows): on CPU a chunk's maps should stay
# near the caches (measured at 512 keys: 1,024 rows best, 2,048 15 % slower); on a GPU each chunk costs
# kernel launches.
CHUNK_ROWS = {"cpu": 1024}
GPU_CHUNK_ROWS = 16384
MAX_ROUNDING_ERROR = 0.02      # joint bias: kernel output rounding × e^{−min B} may reach this, relative


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
        self.records = [None if r is None else [self._places(r[0]), r[1], None] for r in records]
        self.full_sources = [s for s, _, c in self.blends if c is None]
        self.changes_output = bool(self.biases or self.blends)
        self.n = n

    def _places(self, columns):
        """Places of ``columns`` among the tracked ones; None where they are all of them, in order
        (a recording of every tracked column then takes no gather copy)."""
        places = self.where[columns]
        in_order = torch.arange(len(places), device=places.device)
        every = len(places) == len(self.tracked) and bool((places == in_order).all())
        return None if every else places

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
            picked = pt if rec[0] is None else pt[..., rec[0]]
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
    if a.dtype in LOW_PRECISION and a.is_cuda and MM_OUT_DTYPE and a.ndim == b.ndim == 2:
        return torch.mm(a, b, out_dtype=torch.float32)
    return torch.matmul(a, b).float()


class _Rows:
    """One chunk's edited rows: ``P' = r·P + Σ β_i·S_i`` off the tracked columns, ``pt`` on them.

    p_t: [b, h, rows, t] the base probabilities of the tracked columns; mass: the base rows' total
    over the text keys (1 for a text softmax, [b, h, rows, 1] the text mass of a joint attention).
    ``r`` and each ``β_i`` are numbers until a column blend makes them per row.
    """

    def __init__(self, p_t, mass):
        self.p_t, self.mass, self.pt = p_t, mass, p_t   # pt is copied at the first edit
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
        self.pt = self.pt * self.r
        self.pt[..., pos] = biased.div_(z)

    def blend_full(self, source_t, off, alpha):
        """``P' = (1−α)·P' + α·S`` on every text column; source_t: S on the tracked columns."""
        self.pt = torch.lerp(self.pt, source_t, alpha)
        self.r = self.r * (1 - alpha)
        self.full = [[beta * (1 - alpha), o, s] for beta, o, s in self.full] + [[alpha, off, source_t]]

    def blend_columns(self, source, alpha, pos):
        """A blend on some columns that keeps each row's text mass, as ``attention._blend_`` does."""
        total = self.text_mass()
        picked = self.pt[..., pos]
        new = picked.mul(1 - alpha).add_(source, alpha=alpha)
        rho = (total - new.sum(-1, keepdim=True)).clamp_min_(0).div_(
            (total - picked.sum(-1, keepdim=True)).clamp_min_(EPS))
        self.pt = self.pt * rho
        self.pt[..., pos] = new
        self.r = rho * self.r
        self.full = [[rho * beta, o, s] for beta, o, s in self.full]

    def text_mass(self):
        """Each row's mass over the text keys: off the tracked columns plus on them."""
        total = (self.mass - self.p_t.sum(-1, keepdim=True)) * self.r + self.pt.sum(-1, keepdim=True)
        for beta, off, _ in self.full:
            total = total + beta * off
        return total

    def output(self, base, weight, sources_v, v_t):
        """``weight·base + Σ β_i·S_i·V + (P'_T − r·P_T − Σ β_i·S_i,T)·V_T`` in fp32. base: the kernel's
        output (weight r: ``r·P·V``), sources_v: each full source times V."""
        out = base.float().mul_(weight)
        for (beta, _, _), sv in zip(self.full, sources_v):
            if isinstance(beta, float):
                out.add_(sv, alpha=beta)
            else:
                out.addcmul_(sv, beta)
        if self.pt.shape[-1]:
            corr = self.pt - self.r * self.p_t
            for beta, _, s_t in self.full:
                corr = corr - beta * s_t
            out.add_(torch.matmul(corr, v_t))
        return out


def _rows(q, out_row_bytes, temp_row_bytes, chunk_size):
    """Query rows per chunk: at most ``chunk_size`` (None: :data:`CHUNK_ROWS` for q's device), and few
    enough (but >= 64) that a chunk's temporaries stay within the output's own size (an edited call
    needs at most about twice the memory of the unedited one)."""
    n = q.shape[-2]
    cap = chunk_size or CHUNK_ROWS.get(q.device.type, GPU_CHUNK_ROWS)
    return max(1, min(n, cap, max(64, n * out_row_bytes // max(temp_row_bytes, 1))))


class _TextKeys:
    """What every chunk of one call needs of the text keys: the tracked columns' keys and values,
    and the values laid out for ``S·V``, in the matmul dtype (:func:`_matmul_dtype`)."""

    def __init__(self, plan, q, k, v):
        b, h, l, d = v.shape
        self.plan, self.scale, self.mm_dtype = plan, 1.0 / math.sqrt(d), _matmul_dtype(q)
        self.k_t = k[..., plan.tracked, :]
        self.kt_scaled = (self.k_t.float() * self.scale).transpose(-1, -2).contiguous()
        self.v_t = v[..., plan.tracked, :].float()
        self.v_mm = v.to(self.mm_dtype) if plan.full_sources else None
        # a head-shared source multiplies all heads' values in one [rows, l] × [l, b·h·d] GEMM
        self.v_flat = None if self.v_mm is None else self.v_mm.permute(2, 0, 1, 3).reshape(l, b * h * d)

    def row_bytes(self, b, h, d, l, bias_in_kernel, changes_output):
        """fp32 bytes one query row of a chunk holds: its bias row, tracked-column maps, S·V, output."""
        maps = (4 if changes_output else 1) * len(self.plan.tracked)
        return (l * 4 if bias_in_kernel else 0) + b * h * 4 * (maps + d * (3 + len(self.plan.full_sources)))

    def logits(self, qc, mask, lse_c):
        """fp32 ``q·k_Tᵀ/√d + mask_T − lse`` [b, h, rows, t] of the tracked columns. 16-bit products are
        exact in fp32; on CUDA they accumulate in fp32 without an upcast copy of q."""
        b, h, rows, d = qc.shape
        t = self.k_t.shape[-2]
        if not t:
            return lse_c.new_empty(b, h, rows, 0)
        if qc.is_cuda and qc.dtype in LOW_PRECISION and MM_OUT_DTYPE:
            k_t = self.k_t.expand(b, h, t, d).reshape(-1, t, d).transpose(1, 2)
            logits = torch.bmm(qc.reshape(-1, rows, d), k_t, out_dtype=torch.float32).view(b, h, rows, t) \
                .mul_(self.scale)
        else:
            logits = torch.matmul(qc.float(), self.kt_scaled)
        if mask is not None:
            logits.add_(mask[..., self.plan.tracked].float())
        return logits.sub_(lse_c[..., None])

    def blend_in_place_(self, out_c, start, stop):
        """``O ← r·O + Σ β_i·S_i·V`` on a token-major kernel output chunk, in place: one GEMM
        ``C = β·C + α·A·B`` per cache, which reads the output once and writes it once. For blends into
        every column with head-shared caches and no column tracked (the default weak edit)."""
        r, betas = 1.0, []
        for _, alpha, _ in self.plan.blends:
            betas = [beta * (1 - alpha) for beta in betas] + [alpha]
            r *= 1 - alpha
        b, h, rows, d = out_c.shape
        for i, (source, beta) in enumerate(zip(self.plan.full_sources, betas)):
            source_rows = source[start:stop].to(self.mm_dtype)
            for row in range(b):
                out_c[row].transpose(0, 1).view(rows, h * d).addmm_(
                    source_rows, self.v_flat[:, row * h * d:(row + 1) * h * d], beta=r if i == 0 else 1.0, alpha=beta)
        return out_c

    def sources_times_values(self, start, stop):
        """``S_i·V`` [b, h, rows, d] fp32 for each full blend's source."""
        b, h, _, d = self.v_mm.shape if self.v_mm is not None else (0, 0, 0, 0)
        products = []
        for source in self.plan.full_sources:
            rows = source[..., start:stop, :].to(self.mm_dtype)
            if rows.ndim == 2:
                products.append(_mm_f32(rows, self.v_flat).view(-1, b, h, d).permute(1, 2, 0, 3))
            else:
                products.append(torch.matmul(rows, self.v_mm).float())
        return products

    def edited_rows(self, logits_t, mass, start, stop, low_rank=None):
        """The chunk's :class:`_Rows` after the (joint) bias and every blend, recorded.

        logits_t: from :meth:`logits`, consumed. low_rank: (positions, [n, c] bias) of a joint
        attention's biased columns, or None.
        """
        plan = self.plan
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

    def output(self, edited, base, weight, start, stop):
        """The edited rows times the values, fp32 (see :meth:`_Rows.output`)."""
        return edited.output(base, weight, self.sources_times_values(start, stop), self.v_t)


def _token_major(out):
    """Whether [b, h, n, d] ``out`` is a view of a [b, n, h, d] buffer (the family's head merge is free)."""
    return out.transpose(1, 2).is_contiguous()


def fused_text_cross_attention(q, k, v, edits, key_mask=None, chunk_size: int | None = None,
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
    if _records_unedited(edits) or path == EXPLICIT or _blend_costs_a_gemm(plan, q) \
            or _recording_cheaper_explicit(plan, l, need_output):
        return text_cross_attention(q, k, v, edits, key_mask=key_mask, need_output=need_output)
    mask = None if key_mask is None else four_dims(key_mask).to(q.device, torch.float32)
    whole = None if plan.biases else attention_lse(q, k, v, path, mask)
    if whole is not None and not plan.changes_output and not len(plan.tracked):
        return whole[0] if need_output else None, plan.recorded()
    keys = _TextKeys(plan, q, k, v)
    own = need_output and plan.changes_output
    # the default weak edit (no column tracked, head-shared caches): the blends go into the kernel's output
    # in place, one GEMM per cache, where the hardware multiplies the model dtype
    in_place = own and not len(plan.tracked) and keys.mm_dtype == q.dtype and \
        all(s.ndim == 2 for s in plan.full_sources)
    temp = l * 8 if in_place else keys.row_bytes(b, h, d, l, bool(plan.biases), own)
    rows = _rows(q, b * h * d * q.element_size(), temp, chunk_size)
    whole_out = None if whole is None else whole[0]
    out = None
    if own and whole_out is not None and _token_major(whole_out):
        out = whole_out   # its chunks are views: edited in place or written back
    elif own and rows < n:
        out = torch.empty(b, n, h, d, dtype=q.dtype, device=q.device).transpose(1, 2)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        qc = q[..., start:stop, :]
        chunk_mask = plan.bias_rows(start, stop, l, mask) if plan.biases else mask
        out_c, lse_c = attention_lse(qc, k, v, path, chunk_mask) if whole is None else \
            (whole_out[..., start:stop, :], whole[1][..., start:stop])
        if in_place and _token_major(out_c):
            result = keys.blend_in_place_(out_c, start, stop)
        else:
            edited = keys.edited_rows(keys.logits(qc, chunk_mask, lse_c), 1.0, start, stop)
            if not own:
                continue
            result = keys.output(edited, out_c, edited.r, start, stop)
        if out is None:   # one chunk: its result is the output
            out = result if result is out_c else \
                torch.empty(b, n, h, d, dtype=q.dtype, device=q.device).transpose(1, 2).copy_(result)
        elif not (result is out_c and out is whole_out):
            out[..., start:stop, :] = result
    if need_output and not own:
        out = whole_out
    return out, plan.recorded()


def _blend_costs_a_gemm(plan, q) -> bool:
    """Whether a blend into every column is cheaper explicit: the explicit path folds ``S`` into its own
    ``P·V``, the fused one adds an ``S·V`` GEMM, half the kernel's FLOPs, which costs its time where
    matmuls run in fp32 on a CPU (measured at N = 32,760: +80 % of the call) and little where memory
    traffic, not FLOPs, bounds the call (CUDA, CPUs with bf16 units)."""
    costly = bool(plan.full_sources) and q.device.type == "cpu" and _matmul_dtype(q) == torch.float32
    if costly:
        log.debug("focal attention: explicit path, a blend into every column in fp32 on CPU")
    return costly


def _recording_cheaper_explicit(plan, l, need_output) -> bool:
    """Whether a recording is cheaper explicit: when the output is not wanted (the host's call gives
    it), the fused path runs a whole attention for the log-sum-exp, worth it only for few columns
    (a probe's keywords), not for most of them (a source's map: its fp32 logits cost the same on
    both paths)."""
    costly = not need_output and not plan.changes_output and 2 * len(plan.tracked) > l
    if costly:
        log.debug("focal attention: explicit path, a record-only call of most columns without the output")
    return costly


def _records_unedited(edits) -> bool:
    """Whether an edit asks for the call's unedited probabilities: the fused kernel's log-sum-exp is the
    biased one, so they would need a second kernel call; the explicit path has them from its own logits."""
    unedited = any(e.record_unedited and e.record_columns is not None for e in edits)
    if unedited:
        log.debug("focal attention: explicit path, the call's unedited probabilities are recorded")
    return unedited


def _low_rank_bias_fits(edits, dtype) -> bool:
    """Whether the joint anchor bias may be a rank-c correction: the kernel output's rounding,
    multiplied by at most ``e^{−min B}`` (the summed bias is at least the sum of each edit's minimum),
    stays within :data:`MAX_ROUNDING_ERROR`. The biases are read where they are (the pack keeps them
    on the CPU), so no device sync."""
    floor = sum(min(0.0, float(e.bias.min())) for e in edits if e.bias is not None and e.bias.numel())
    return math.exp(-floor) * torch.finfo(dtype).eps / 2 <= MAX_ROUNDING_ERROR


def fused_joint_attention_text_edit(q, k, v, n_video: int, edits, key_mask=None, chunk_size: int | None = None):
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
    key_mask = four_dims(key_mask)
    path = kernel_path(q, k, v, key_mask)
    k_txt, v_txt = k[..., n_video:, :], v[..., n_video:, :]
    text_mask = None if key_mask is None else key_mask[..., n_video:]
    text_path = kernel_path(q[..., :n_video, :], k_txt, v_txt, text_mask) if plan.changes_output else path
    if _records_unedited(edits) or EXPLICIT in (path, text_path) \
            or (plan.biases and not _low_rank_bias_fits(edits, q.dtype)) or _blend_costs_a_gemm(plan, q):
        log.debug("focal attention: joint edit on the explicit path")
        return joint_attention_text_edit(q, k, v, n_video, edits, key_mask=key_mask)
    out, lse = attention_lse(q, k, v, path, key_mask)
    if not len(plan.tracked) and not plan.changes_output:
        return out, plan.recorded()
    low_rank = None
    if plan.biases:
        columns, bias = plan.summed_bias()
        low_rank = (plan.where[columns], bias)
    keys = _TextKeys(plan, q, k_txt, v_txt)
    if plan.changes_output:   # one call over the text keys: each row's text output and text log-sum-exp
        text_out, text_lse = attention_lse(q[..., :n_video, :], k_txt, v_txt, text_path, text_mask)
    # the text call's output takes half of the budget the chunks get from the output's size
    rows = _rows(q[..., :n_video, :], b * h * d * q.element_size() // (2 if plan.changes_output else 1),
                 keys.row_bytes(b, h, d, l, False, plan.changes_output), chunk_size)
    for start in range(0, n_video, rows):
        stop = min(start + rows, n_video)
        qc, lse_c = q[..., start:stop, :], lse[..., start:stop]
        logits_t = keys.logits(qc, text_mask, lse_c)
        if not plan.changes_output:
            keys.edited_rows(logits_t, 1.0, start, stop)
            continue
        mass = (text_lse[..., start:stop] - lse_c).exp_()[..., None]
        edited = keys.edited_rows(logits_t, mass, start, stop, low_rank)
        # out' = s·(O − m·T) + r·m·T + …  with T the text call's output, s the video part's new scale
        video_scale = (1 - edited.text_mass()).clamp_min_(0).div_(1 - mass.clamp(EPS, 1 - 1e-6))
        text_weight = (edited.r - video_scale).mul_(mass)
        out[..., start:stop, :] = keys.output(edited, text_out[..., start:stop, :], text_weight, start, stop) \
            .add_(out[..., start:stop, :].float().mul_(video_scale))
    return out, plan.recorded()
