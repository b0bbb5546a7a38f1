"""Explicit, query-chunked text attention with anchor biases and attention-cache blends.

Shapes use einops letters: b batch, h heads, n video queries, l text keys, d head dim,
c selected text columns. Probabilities are computed in fp32 one chunk of queries at a time,
so peak extra memory is ``b·h·chunk·l`` floats and a self-attention map is never formed.

One call takes the edits of every handler on the block, in graph order, and composes them by
one rule: all biases add to the logits, then the blends apply in order to the probabilities,
then each edit that asks for a recording receives the final probabilities (what the model uses).
"""
from dataclasses import dataclass
import math

import torch
import torch.nn.functional as F

EPS = 1e-12


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
    """
    bias: torch.Tensor | None = None
    bias_columns: torch.Tensor | None = None
    source: torch.Tensor | None = None
    source_columns: torch.Tensor | None = None
    alpha: float = 0.0
    record_columns: torch.Tensor | None = None
    record_per_head: bool = False

    @property
    def changes_output(self) -> bool:
        return self.bias is not None or (self.source is not None and self.alpha > 0)


def blend_probabilities(p, source, alpha, columns=None):
    """Blend ``source`` into the rows of ``p`` and keep each row's total mass.

    p: [..., n, l] probabilities. source: broadcastable to ``p[..., columns]``.
    With ``columns`` None every column is blended: ``(1-alpha)·p + alpha·source``.
    Otherwise only those columns are blended and the other columns are rescaled so each
    row keeps the total it had (1 for a text softmax, the text mass for joint attention).
    """
    if columns is None:
        return (1 - alpha) * p + alpha * source
    total = p.sum(-1, keepdim=True)
    picked = p[..., columns]
    new_picked = (1 - alpha) * picked + alpha * source
    rest_old = total - picked.sum(-1, keepdim=True)
    rest_new = (total - new_picked.sum(-1, keepdim=True)).clamp_min(0)
    out = p * (rest_new / rest_old.clamp_min(EPS))
    out[..., columns] = new_picked
    return out


def changes_output(edits) -> bool:
    return any(edit.changes_output for edit in edits)


def _apply_biases(logits, edits, start, stop):
    for edit in edits:
        if edit.bias is not None:
            logits[..., edit.bias_columns.to(logits.device)] += edit.bias[start:stop].to(logits)
    return logits


def _apply_blends(p, edits, start, stop):
    for edit in edits:
        if edit.source is not None and edit.alpha > 0:
            source = edit.source[..., start:stop, :].to(torch.float32)
            p = blend_probabilities(p, source, edit.alpha, edit.source_columns)
    return p


def _record(p, edits, recs):
    for edit, chunks in zip(edits, recs):
        if edit.record_columns is not None:
            picked = p[..., edit.record_columns]
            chunks.append(picked if edit.record_per_head else picked.mean(dim=-3))


def _recorded(edits, recs):
    return [torch.cat(chunks, dim=-2) if edit.record_columns is not None else None
            for edit, chunks in zip(edits, recs)]


def text_cross_attention(q, k, v, edits, key_mask=None, chunk_size: int = 1024, need_output: bool = True):
    """``softmax(q·kᵀ/√d + Σ bias)·v`` with the cache blends, for a text-only cross attention.

    q: [b, h, n, d]; k, v: [b, h, l, d]; key_mask: additive [l] (or broadcastable), or None.
    edits: a sequence of :class:`TextEdit`, composed as the module docstring says.
    Returns ``(out [b, h, n, d] in q's dtype or None, recorded)``: ``recorded[i]`` is
    ``[b, n, c]`` / ``[b, h, n, c]`` for an edit that asks for a recording, else None.
    ``need_output=False`` only records, for callers that keep the host kernel's exact output.
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    kf, vf = k.float(), v.float()
    outs, recs = [], [[] for _ in edits]
    for start in range(0, q.shape[-2], chunk_size):
        stop = min(start + chunk_size, q.shape[-2])
        logits = torch.matmul(q[..., start:stop, :].float(), kf.transpose(-1, -2)) * scale
        if key_mask is not None:
            logits = logits + key_mask.float()
        p = torch.softmax(_apply_biases(logits, edits, start, stop), dim=-1)
        p = _apply_blends(p, edits, start, stop)
        if need_output:
            outs.append(torch.matmul(p, vf).to(q.dtype))
        _record(p, edits, recs)
    return (torch.cat(outs, dim=-2) if need_output else None), _recorded(edits, recs)


def joint_attention_text_edit(q, k, v, n_video: int, edits, key_mask=None, chunk_size: int = 1024):
    """Edit only the video-query × text-key block of a joint attention (MMDiT), in O(n·l).

    q, k, v: [b, h, n_video + l, d], video tokens first. key_mask: additive, broadcastable
    to [b, h, 1, n_video + l]. One fused SDPA call over all keys, with a value channel that
    is 1 on text keys, gives the original output and each query's joint text mass ``m``
    without forming the [n, n] map. The text block is then recomputed explicitly; the
    video→video part is rescaled so every row stays normalised over all keys.
    Returns ``(out [b, h, n_video + l, d], recorded)`` as :func:`text_cross_attention` does;
    text-query rows are unchanged.
    """
    b, h, total, d = q.shape
    is_text = torch.zeros(total, device=v.device, dtype=v.dtype)
    is_text[n_video:] = 1
    pad = (-(d + 1)) % 8  # keep fused kernels on an aligned head size
    v_aug = torch.cat([v, is_text[:, None].expand(b, h, total, 1), v.new_zeros(b, h, total, pad)], dim=-1)
    fused = F.scaled_dot_product_attention(q, k, v_aug, attn_mask=key_mask)
    out = fused[..., :d].clone()
    text_mass = fused[..., :n_video, d].float()

    scale = 1.0 / math.sqrt(d)
    k_txt, v_txt = k[..., n_video:, :].float(), v[..., n_video:, :].float()
    txt_mask = None if key_mask is None else key_mask[..., n_video:].float()
    recs = [[] for _ in edits]
    for start in range(0, n_video, chunk_size):
        stop = min(start + chunk_size, n_video)
        logits = torch.matmul(q[..., start:stop, :].float(), k_txt.transpose(-1, -2)) * scale
        if txt_mask is not None:
            logits = logits + txt_mask
        m = text_mass[..., start:stop].clamp(EPS, 1 - 1e-6).unsqueeze(-1)
        lse_txt = torch.logsumexp(logits, dim=-1, keepdim=True)
        p_orig = torch.exp(logits - lse_txt) * m
        log_z_video = lse_txt + torch.log1p(-m) - torch.log(m)
        edited = _apply_biases(logits.clone(), edits, start, stop)
        log_z_new = torch.logaddexp(log_z_video, torch.logsumexp(edited, dim=-1, keepdim=True))
        p_new = _apply_blends(torch.exp(edited - log_z_new), edits, start, stop)
        video_part = out[..., start:stop, :].float() - torch.matmul(p_orig, v_txt)
        video_scale = (1 - p_new.sum(-1, keepdim=True)).clamp_min(0) / (1 - m)
        out[..., start:stop, :] = (video_part * video_scale + torch.matmul(p_new, v_txt)).to(out.dtype)
        _record(p_new, edits, recs)
    return out, _recorded(edits, recs)
