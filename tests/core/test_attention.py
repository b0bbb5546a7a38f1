"""focal_core.attention against naive references on small tensors (pure PyTorch, no host, no sampling)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from focal_guidance.focal_core.attention import (
    TextEdit, _joint_attention_lse_math, blend_probabilities, joint_attention_lse, joint_attention_text_edit,
    lse_output_is_sdpas, text_cross_attention)

B, H, N, L, D = 1, 2, 37, 11, 16

# Output tolerance per input dtype against the fp32 reference on the same (rounded) inputs: the
# output is rounded to the model dtype once (bf16 8 bits, fp16 11 bits of mantissa), and on CUDA
# P is cast to that dtype for P·V, as the host's own flash kernels do. The probabilities are fp32.
OUT_TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 3e-3}


@pytest.fixture
def qkv():
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(B, H, N, D, generator=gen)
    k = torch.randn(B, H, L, D, generator=gen)
    v = torch.randn(B, H, L, D, generator=gen)
    return q, k, v


def naive_text_attention(q, k, v, bias=None, columns=None, source=None, alpha=0.0, source_columns=None):
    """Row-by-row reference: full logits, bias, softmax, blend, renormalise, P·V."""
    logits = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if bias is not None:
        for j, c in enumerate(columns.tolist()):
            logits[..., c] = logits[..., c] + bias[:, j]
    p = torch.softmax(logits, -1)
    if source is not None:
        cols = list(range(p.shape[-1])) if source_columns is None else source_columns.tolist()
        rest = [c for c in range(p.shape[-1]) if c not in cols]
        new = p.clone()
        new[..., cols] = (1 - alpha) * p[..., cols] + alpha * source
        if rest:
            keep = 1 - new[..., cols].sum(-1, keepdim=True)
            new[..., rest] = p[..., rest] / p[..., rest].sum(-1, keepdim=True) * keep
        p = new
    return p @ v, p


def random_source(n, cols, seed=1):
    return torch.softmax(torch.randn(n, cols, generator=torch.Generator().manual_seed(seed)) * 3, -1)


def test_unedited_equals_sdpa(qkv, dtype):
    """With no edit the explicit path is plain attention (tests/host checks it against the host's kernel)."""
    q, k, v = (t.to(dtype) for t in qkv)
    out, (rec,) = text_cross_attention(q, k, v, [TextEdit()])
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    assert out.dtype == dtype and rec is None
    torch.testing.assert_close(out.float(), ref, atol=OUT_TOL[dtype], rtol=OUT_TOL[dtype])


def test_bias_and_full_blend_match_naive(qkv):
    q, k, v = qkv
    columns = torch.tensor([2, 5])
    bias = torch.randn(N, 2)
    source = random_source(N, L)
    edit = TextEdit(bias=bias, bias_columns=columns, source=source, alpha=0.4,
                    record_columns=slice(None))
    out, (rec,) = text_cross_attention(q, k, v, [edit])
    ref_out, ref_p = naive_text_attention(q, k, v, bias, columns, source, 0.4)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rec, ref_p.mean(1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(rec.sum(-1), torch.ones(B, N))


def test_keyword_column_blend_matches_naive_and_keeps_rows_normalised(qkv):
    q, k, v = qkv
    cols = torch.tensor([1, 7, 8])
    source = random_source(N, 3) * 0.8
    edit = TextEdit(source=source, source_columns=cols, alpha=0.7, record_columns=slice(None),
                    record_per_head=True)
    out, (rec,) = text_cross_attention(q, k, v, [edit])
    ref_out, ref_p = naive_text_attention(q, k, v, source=source, alpha=0.7, source_columns=cols)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rec, ref_p, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(rec.sum(-1), torch.ones(B, H, N))


@pytest.mark.parametrize("chunk", [1, 5, 16, 36])
def test_chunked_equals_unchunked(qkv, chunk):
    q, k, v = qkv
    edit = TextEdit(bias=torch.randn(N, 1), bias_columns=torch.tensor([3]), source=random_source(N, L),
                    alpha=0.3, record_columns=torch.tensor([3, 4]))
    whole, (rec_whole,) = text_cross_attention(q, k, v, [edit], chunk_size=10_000)
    parts, (rec_parts,) = text_cross_attention(q, k, v, [edit], chunk_size=chunk)
    torch.testing.assert_close(parts, whole, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(rec_parts, rec_whole, atol=1e-7, rtol=1e-6)


def test_blend_probabilities_preserves_joint_row_mass():
    p = torch.softmax(torch.randn(4, 9), -1) * 0.3  # joint attention: text mass 0.3 per row
    out = blend_probabilities(p, torch.full((4, 2), 0.1), 0.5, torch.tensor([0, 4]))
    torch.testing.assert_close(out.sum(-1), p.sum(-1))
    torch.testing.assert_close(out[:, [0, 4]], 0.5 * p[:, [0, 4]] + 0.05)


def naive_joint(q, k, v, n_video, bias=None, columns=None, source=None, alpha=0.0, mask=None):
    """Materialise the whole joint map (fine at this size), edit the video×text block, renormalise."""
    logits = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if mask is not None:
        logits = logits + mask
    p = torch.softmax(logits, -1)
    vid_logits = logits[..., :n_video, :].clone()
    if bias is not None:
        for j, c in enumerate(columns.tolist()):
            vid_logits[..., n_video + c] += bias[:, j]
    pv = torch.softmax(vid_logits, -1)
    if source is not None:
        text = (1 - alpha) * pv[..., n_video:] + alpha * source
        video = pv[..., :n_video] * ((1 - text.sum(-1, keepdim=True)) / pv[..., :n_video].sum(-1, keepdim=True))
        pv = torch.cat([video, text], -1)
    p = torch.cat([pv, p[..., n_video:, :]], -2)
    return p @ v, p[..., :n_video, n_video:]


@pytest.mark.parametrize("with_mask", [False, True])
def test_joint_edit_matches_materialised_reference(with_mask):
    gen = torch.Generator().manual_seed(3)
    n_video, n_text = 30, 9
    q, k, v = (torch.randn(1, H, n_video + n_text, D, generator=gen) for _ in range(3))
    mask = None
    if with_mask:
        mask = torch.zeros(1, 1, 1, n_video + n_text)
        mask[..., -2:] = -1e9  # two padded text tokens
    columns, bias = torch.tensor([1, 4]), torch.randn(n_video, 2)
    source = random_source(n_video, n_text) * 0.2
    edit = TextEdit(bias=bias, bias_columns=columns, source=source, alpha=0.5, record_columns=slice(None))
    out, (rec,) = joint_attention_text_edit(q, k, v, n_video, [edit], key_mask=mask, chunk_size=7)
    ref_out, ref_text_p = naive_joint(q, k, v, n_video, bias, columns, source, 0.5, mask)
    torch.testing.assert_close(out, ref_out, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(rec, ref_text_p.mean(1), atol=1e-5, rtol=1e-4)


def test_joint_without_edit_equals_sdpa():
    gen = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(1, H, 25, D, generator=gen) for _ in range(3))
    out, _ = joint_attention_text_edit(q, k, v, 20, [TextEdit()])
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=1e-5, rtol=1e-5)


def test_blend_moves_map_toward_source_monotonically(qkv):
    q, k, v = qkv
    source = random_source(N, L, seed=9)
    correlations = []
    for alpha in (0.0, 0.25, 0.5, 0.75, 1.0):
        _, (rec,) = text_cross_attention(q, k, v, [TextEdit(source=source, alpha=alpha, record_columns=slice(None))])
        correlations.append(torch.corrcoef(torch.stack([rec[0].flatten(), source.flatten()]))[0, 1].item())
    assert all(b > a for a, b in zip(correlations, correlations[1:])), correlations
    assert correlations[-1] == pytest.approx(1.0, abs=1e-5)


def test_two_edits_compose_biases_add_then_blends_in_order(qkv):
    """The dispatcher's composition rule: every bias adds to the logits, then blends apply in order,
    and every recording sees the final probabilities."""
    q, k, v = qkv
    cols_a, cols_b = torch.tensor([2, 5]), torch.tensor([5, 9])
    bias_a, bias_b = torch.randn(N, 2), torch.randn(N, 2)
    src_a, src_b = random_source(N, L, seed=2), random_source(N, L, seed=3)
    first = TextEdit(bias=bias_a, bias_columns=cols_a, source=src_a, alpha=0.3, record_columns=slice(None))
    second = TextEdit(bias=bias_b, bias_columns=cols_b, source=src_b, alpha=0.5)
    recorder = TextEdit(record_columns=torch.tensor([5]))
    out, (rec_first, rec_second, rec_recorder) = text_cross_attention(q, k, v, [first, second, recorder])
    summed = torch.zeros(N, L)
    summed[:, cols_a] += bias_a
    summed[:, cols_b] += bias_b
    p = torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(D) + summed, -1)
    p = 0.5 * (0.7 * p + 0.3 * src_a) + 0.5 * src_b
    torch.testing.assert_close(out, p @ v, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rec_first, p.mean(1), atol=1e-6, rtol=1e-5)
    assert rec_second is None
    torch.testing.assert_close(rec_recorder, p.mean(1)[..., [5]], atol=1e-6, rtol=1e-5)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("chunk", [6, 1024])
def test_model_dtype_matches_fp32_reference(qkv, device, dtype, chunk):
    q, k, v = (t.to(device, dtype) for t in qkv)
    columns, bias = torch.tensor([2, 5]), torch.randn(N, 2)
    source = random_source(N, L)
    edit = TextEdit(bias=bias, bias_columns=columns, source=source, alpha=0.4, record_columns=torch.tensor([2, 5]))
    out, (rec,) = text_cross_attention(q, k, v, [edit], chunk_size=chunk)
    ref_out, ref_p = naive_text_attention(q.cpu().float(), k.cpu().float(), v.cpu().float(), bias, columns, source, 0.4)
    assert out.dtype == dtype and rec.dtype == torch.float32
    torch.testing.assert_close(out.cpu().float(), ref_out, atol=OUT_TOL[dtype], rtol=OUT_TOL[dtype])
    torch.testing.assert_close(rec.cpu(), ref_p.mean(1)[..., [2, 5]], atol=1e-5, rtol=1e-4)


def test_output_is_a_heads_view_of_a_token_major_buffer(qkv):
    """The caller's [b, n, h·d] merge of the heads is then a view, not a copy."""
    out, _ = text_cross_attention(*qkv, [TextEdit(bias=torch.randn(N, 1), bias_columns=torch.tensor([0]))])
    merged = out.transpose(1, 2).reshape(B, N, H * D)
    assert merged.data_ptr() == out.data_ptr() and merged._base is not None


class DeviceCopies(TorchDispatchMode):
    """Counts copies that cross devices."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten._to_copy.default and args[0].device != out.device:
            self.count += 1
        return out


@pytest.mark.parametrize("chunk", [5, 1024])
def test_edit_tensors_cross_to_the_device_once_per_call_not_per_chunk(chunk):
    """q on another device (meta stands in for a GPU): bias, its columns, the source and the
    recorded columns are copied there once, whatever the chunk count."""
    q, k, v = torch.randn(1, H, N, D, device="meta"), torch.randn(1, H, L, D, device="meta"), \
        torch.randn(1, H, L, D, device="meta")
    edit = TextEdit(bias=torch.randn(N, 2), bias_columns=torch.tensor([1, 3]), source=random_source(N, L),
                    alpha=0.3, record_columns=torch.tensor([2]))
    with DeviceCopies() as copies:
        out, (rec,) = text_cross_attention(q, k, v, [edit], chunk_size=chunk)
    assert copies.count == 4
    assert out.device.type == rec.device.type == "meta"


def test_blend_probabilities_leaves_its_input_alone():
    p = torch.softmax(torch.randn(3, 5), -1)
    before = p.clone()
    blend_probabilities(p, torch.full((3, 2), 0.2), 0.5, torch.tensor([1, 2]))
    blend_probabilities(p, torch.full((3, 5), 0.2), 0.5)
    assert torch.equal(p, before)


def joint_inputs(n_video=30, n_text=9, seed=3, masked=True):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, H, n_video + n_text, D, generator=gen) for _ in range(3))
    mask = None
    if masked:
        mask = torch.zeros(1, 1, 1, n_video + n_text)
        mask[..., -2:] = -torch.finfo(torch.float32).max  # the host's padding value
    return q, k, v, mask


@pytest.mark.parametrize("with_mask", [False, True])
def test_joint_record_only_keeps_the_sdpa_output_bit_for_bit(with_mask):
    q, k, v, mask = joint_inputs(masked=with_mask)
    out, (rec,) = joint_attention_text_edit(q, k, v, 30, [TextEdit(record_columns=torch.tensor([0, 3]),
                                                                   record_per_head=True)], key_mask=mask, chunk_size=7)
    assert torch.equal(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    _, ref_text_p = naive_joint(q, k, v, 30, mask=mask)
    torch.testing.assert_close(rec, ref_text_p[..., [0, 3]], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("with_mask", [False, True])
def test_record_only_joint_edit_in_model_dtype_is_sdpas_output_when_it_says_so(dtype, with_mask):
    """The dispatcher's one-call recording: where ``lse_output_is_sdpas`` holds, the edit's output is
    the host's SDPA output bit for bit, the mask in the model dtype as the host passes it."""
    q, k, v, mask = (t.to(dtype) if t is not None else None for t in joint_inputs(seed=11, masked=with_mask))
    if mask is not None:
        mask = mask.clamp_min(torch.finfo(dtype).min)   # the host's padding value in the model dtype
    assert lse_output_is_sdpas(q, k, v, mask)
    out, (rec,) = joint_attention_text_edit(q, k, v, 30, [TextEdit(record_columns=slice(None))], key_mask=mask)
    assert torch.equal(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    _, ref_text_p = naive_joint(q.float(), k.float(), v.float(), 30, mask=None if mask is None else mask.float())
    torch.testing.assert_close(rec, ref_text_p.mean(1), atol=OUT_TOL[dtype] / 4, rtol=1e-2)


def test_inputs_sdpa_runs_in_its_math_path_are_not_claimed_and_stay_exact():
    """Queries whose head dim is not contiguous send SDPA to its math path on CPU: no fused kernel
    gives the log-sum-exp, so the dispatcher keeps the host call; the chunked fallback is still exact."""
    q, k, v, mask = joint_inputs(seed=12)
    q = q.transpose(-1, -2).contiguous().transpose(-1, -2)
    assert not lse_output_is_sdpas(q, k, v, mask)
    out, lse = joint_attention_lse(q, k, v, mask, chunk_size=8)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-5, rtol=1e-5)
    logits = (q @ k.transpose(-1, -2)) / math.sqrt(D) + mask
    torch.testing.assert_close(lse, torch.logsumexp(logits, -1), atol=1e-5, rtol=1e-5)


def test_joint_blend_without_bias_matches_materialised_reference():
    q, k, v, mask = joint_inputs(seed=5)
    source = random_source(30, 9) * 0.3
    edit = TextEdit(source=source, alpha=0.6, record_columns=slice(None))
    out, (rec,) = joint_attention_text_edit(q, k, v, 30, [edit], key_mask=mask, chunk_size=8)
    ref_out, ref_text_p = naive_joint(q, k, v, 30, source=source, alpha=0.6, mask=mask)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rec, ref_text_p.mean(1), atol=1e-6, rtol=1e-5)


def test_joint_edit_in_model_dtype_matches_fp32_reference(dtype):
    q, k, v, mask = (t.to(dtype) if t is not None else None for t in joint_inputs(seed=6))
    columns, bias = torch.tensor([1, 4]), torch.randn(30, 2)
    edit = TextEdit(bias=bias, bias_columns=columns, record_columns=slice(None))
    out, (rec,) = joint_attention_text_edit(q, k, v, 30, [edit], key_mask=mask.float())
    ref_out, ref_text_p = naive_joint(q.float(), k.float(), v.float(), 30, bias, columns, mask=mask.float())
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref_out, atol=OUT_TOL[dtype], rtol=OUT_TOL[dtype])
    torch.testing.assert_close(rec, ref_text_p.mean(1), atol=OUT_TOL[dtype] / 4, rtol=1e-2)


@pytest.mark.parametrize("with_mask", [False, True])
def test_exact_chunked_fallback_equals_the_fused_kernel(with_mask):
    """The path for devices without a fused kernel that returns the log-sum-exp."""
    q, k, v, mask = joint_inputs(n_video=50, seed=7, masked=with_mask)
    fused_out, fused_lse = joint_attention_lse(q, k, v, mask)
    out, lse = _joint_attention_lse_math(q, k, v, mask, chunk_size=8)
    logits = (q @ k.transpose(-1, -2)) / math.sqrt(D) + (0 if mask is None else mask)
    torch.testing.assert_close(lse, torch.logsumexp(logits, -1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused_lse, lse, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused_out, out, atol=1e-5, rtol=1e-5)


def test_joint_biases_add_per_column_and_survive_huge_values():
    """Two edits whose columns overlap sum their biases; a bias far beyond exp's fp32 range (200)
    still gives the exact softmax."""
    q, k, v, mask = joint_inputs(seed=8)
    cols_a, cols_b = torch.tensor([1, 4]), torch.tensor([4, 6])
    bias_a, bias_b = torch.randn(30, 2), torch.randn(30, 2)
    bias_b[:5, 1] = 200.0
    edits = [TextEdit(bias=bias_a, bias_columns=cols_a, record_columns=slice(None)),
             TextEdit(bias=bias_b, bias_columns=cols_b)]
    out, (rec, _) = joint_attention_text_edit(q, k, v, 30, edits, key_mask=mask, chunk_size=8)
    summed = torch.zeros(30, 9)
    summed[:, cols_a] += bias_a
    summed[:, cols_b] += bias_b
    ref_out, ref_text_p = naive_joint(q, k, v, 30, summed, torch.arange(9), mask=mask)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rec, ref_text_p.mean(1), atol=1e-6, rtol=1e-5)
