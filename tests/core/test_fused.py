"""focal_core.fused against the explicit reference (focal_core.attention) on CPU, where torch's fused
flash kernel runs; the CUDA kernel choice is checked as plain logic (KernelQuery), without a GPU.

Tolerances, fused against explicit on the same inputs:
- fp32: output 1e-5 (two fp32 computations of one softmax; the kernel sums in another order);
  recordings 1e-6 absolute, 1e-5 relative.
- bf16 / fp16: both outputs are rounded to the model dtype once; the fused kernel also rounds the
  probabilities to that dtype for P·V (as SDPA does) and ``S·V`` may run in it, so the outputs may
  differ by about two units in the last place: 2e-2 for bf16 (8-bit mantissa), 3e-3 for fp16.
  Recordings are fp32 on both paths (fp32 column logits from the same 16-bit q and k, the kernel's
  fp32 log-sum-exp), so they keep the fp32 tolerance times 10 for the log-sum-exp of 16-bit products.
"""
import logging
import math

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend

from focal_guidance.focal_core import fused, kernels
from focal_guidance.focal_core.attention import TextEdit, joint_attention_text_edit, text_cross_attention
from focal_guidance.focal_core.fused import fused_joint_attention_text_edit, fused_text_cross_attention
from focal_guidance.focal_core.kernels import (
    CPU_FLASH, CUDA_CUDNN, CUDA_EFFICIENT, CUDA_FLASH, EXPLICIT, KernelQuery, choose_kernel, kernel_path,
    output_is_sdpas)
from test_attention_memory import LargestTensor, peak_bytes   # the explicit path's memory probes

LOGGER = "focal_guidance.focal_core"   # both modules log the path they take under it

H, D, N, L = 3, 16, 67, 13          # odd query count, several heads


@pytest.fixture
def every_edit_fused(monkeypatch):
    """The equality tests check the fused math on every host: this lifts the cost rule that sends a
    blend into every column to the explicit path where matmuls run in fp32 on CPU (tested below)."""
    monkeypatch.setattr(fused, "_blend_costs_a_gemm", lambda plan, q: False)
OUT_TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 3e-3}
REC_TOL = {torch.float32: (1e-6, 1e-5), torch.bfloat16: (1e-5, 1e-4), torch.float16: (1e-5, 1e-4)}
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def inputs(dtype, batch=1, n=N, l=L, seed=0):
    """q as the Wan family passes it: a heads view of a token-major [b, n, h·d] tensor."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, n, H, D, generator=gen).to(dtype).transpose(1, 2)
    k, v = (torch.randn(batch, H, l, D, generator=gen).to(dtype) for _ in range(2))
    return q, k, v


def key_mask(l, masked):
    if not masked:
        return None
    mask = torch.zeros(l)
    mask[-2:] = -1e9   # two padded keys
    return mask


def cross_edits(kind, n=N, l=L, seed=1):
    gen = torch.Generator().manual_seed(seed)
    columns, bias = torch.tensor([2, 5, 7]), torch.randn(n, 3, generator=gen)
    shared = torch.softmax(torch.randn(n, l, generator=gen) * 3, -1)
    per_head = torch.softmax(torch.randn(H, n, l, generator=gen) * 3, -1)
    keywords, keyword_source = torch.tensor([1, 5, 9]), torch.softmax(torch.randn(n, 3, generator=gen), -1) * 0.7
    return {
        # the default weak block: anchor bias on keyword columns, the head-mean cache into every column
        "weak": [TextEdit(bias=bias, bias_columns=columns, source=shared, alpha=0.3)],
        "bias only": [TextEdit(bias=bias, bias_columns=columns)],
        "weak, per-head cache, recorded": [TextEdit(bias=bias, bias_columns=columns, source=per_head, alpha=0.4,
                                                    record_columns=slice(None))],
        "keyword-columns blend": [TextEdit(source=keyword_source, source_columns=keywords, alpha=0.6,
                                           record_columns=slice(None), record_per_head=True)],
        "source": [TextEdit(record_columns=slice(None))],
        "probe": [TextEdit(record_columns=columns, record_per_head=True)],
        # tracked columns short of all: the blends' weights off them matter
        "composed": [TextEdit(bias=bias, bias_columns=columns, source=shared, alpha=0.3,
                              record_columns=torch.tensor([0, 7])),
                     TextEdit(source=keyword_source, source_columns=keywords, alpha=0.5),
                     TextEdit(bias=torch.randn(n, 2, generator=gen), bias_columns=torch.tensor([5, l - 1]),
                              source=per_head, alpha=0.2),
                     TextEdit(record_columns=torch.tensor([5]), record_per_head=True)],
    }[kind]


CROSS_KINDS = ["weak", "bias only", "weak, per-head cache, recorded", "keyword-columns blend", "source", "probe",
               "composed"]


def assert_same(fused_result, reference, dtype):
    (out, recorded), (ref_out, ref_recorded) = fused_result, reference
    if ref_out is None:
        assert out is None
    else:
        assert out.dtype == ref_out.dtype == dtype and out.shape == ref_out.shape
        torch.testing.assert_close(out.float(), ref_out.float(), atol=OUT_TOL[dtype], rtol=OUT_TOL[dtype])
    atol, rtol = REC_TOL[dtype]
    assert len(recorded) == len(ref_recorded)
    for rec, ref in zip(recorded, ref_recorded):
        assert (rec is None) == (ref is None)
        if ref is not None:
            assert rec.dtype == torch.float32 and rec.shape == ref.shape
            torch.testing.assert_close(rec, ref, atol=atol, rtol=rtol)


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("masked", [False, True], ids=["no mask", "key mask"])
@pytest.mark.parametrize("kind", CROSS_KINDS)
def test_cross_attention_equals_the_explicit_reference(kind, masked, dtype, every_edit_fused):
    q, k, v = inputs(dtype)
    edits, mask = cross_edits(kind), key_mask(L, masked)
    assert kernel_path(q, k, v, mask, bias=kind in ("weak", "bias only")) == CPU_FLASH
    for need_output in (True, False):
        reference = text_cross_attention(q, k, v, edits, key_mask=mask, need_output=need_output)
        for chunk in (16, None):   # several chunks, odd last one; and one chunk
            assert_same(fused_text_cross_attention(q, k, v, edits, key_mask=mask, chunk_size=chunk,
                                                   need_output=need_output), reference, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_cross_attention_batch_of_two_equals_the_reference(dtype, every_edit_fused):
    q, k, v = inputs(dtype, batch=2, seed=3)
    edits = cross_edits("composed")
    assert_same(fused_text_cross_attention(q, k, v, edits, key_mask=key_mask(L, True), chunk_size=20),
                text_cross_attention(q, k, v, edits, key_mask=key_mask(L, True)), dtype)


def test_weak_edit_is_the_biased_kernel_plus_the_cache_times_values(every_edit_fused):
    """The default weak edit, written out: (1-α)·SDPA(q, k, v, attn_mask = B) + α·S·V."""
    q, k, v = inputs(torch.float32)
    (edit,) = cross_edits("weak")
    bias = torch.zeros(N, L)
    bias[:, edit.bias_columns] = edit.bias
    expected = 0.7 * F.scaled_dot_product_attention(q, k, v, attn_mask=bias) + 0.3 * edit.source @ v
    out, _ = fused_text_cross_attention(q, k, v, [edit])
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_output_is_a_heads_view_of_a_token_major_buffer(every_edit_fused):
    """Like the explicit path's: the Wan family's merge of the heads back to [b, n, h·d] is a view."""
    out, _ = fused_text_cross_attention(*inputs(torch.float32), cross_edits("weak"), chunk_size=16)
    merged = out.transpose(1, 2).reshape(1, N, H * D)
    assert merged.data_ptr() == out.data_ptr() and merged._base is not None


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("masked", [False, True], ids=["no mask", "key mask"])
def test_recording_returns_sdpas_own_output_bit_for_bit(dtype, masked):
    """A record-only call runs the kernel SDPA picks, once over all rows: the output it returns with
    the recording is SDPA's, so one call can serve the block and the recording."""
    q, k, v = inputs(dtype)
    mask = key_mask(L, masked)
    mask = None if mask is None else mask.view(1, 1, 1, L)   # as the host passes it to SDPA
    assert output_is_sdpas(q, k, v, mask)
    for kind in ("source", "probe"):
        out, _ = fused_text_cross_attention(q, k, v, cross_edits(kind), key_mask=mask, chunk_size=16)
        assert torch.equal(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_inputs_no_fused_kernel_takes_run_the_explicit_path_itself():
    """A head dim that is not contiguous sends SDPA to its math path on CPU: the fused functions then
    return the explicit path's own results, bit for bit, and say so in the debug log."""
    q, k, v = inputs(torch.float32)
    q = q.transpose(-1, -2).contiguous().transpose(-1, -2)
    assert kernel_path(q, k, v) == EXPLICIT and not output_is_sdpas(q, k, v)
    edits = cross_edits("composed")
    out, recorded = fused_text_cross_attention(q, k, v, edits)
    ref_out, ref_recorded = text_cross_attention(q, k, v, edits)
    assert torch.equal(out, ref_out) and all(torch.equal(a, b) for a, b in zip(recorded, ref_recorded) if a is not None)


@pytest.mark.parametrize("family", ["cross", "joint"])
def test_a_full_blend_in_fp32_on_cpu_runs_the_explicit_path(family, caplog):
    """There the explicit path folds the cache into its own P·V; the fused one would add an S·V GEMM
    (half the kernel's FLOPs). Its results are then the explicit path's own, bit for bit."""
    if family == "cross":
        q, k, v = inputs(torch.float32)
        edits = cross_edits("weak")
        run_fused, run_reference = (lambda: fused_text_cross_attention(q, k, v, edits),
                                    lambda: text_cross_attention(q, k, v, edits))
    else:
        q, k, v, mask = joint_inputs(torch.float32, True)
        edits = joint_edits("weak")
        run_fused, run_reference = (lambda: fused_joint_attention_text_edit(q, k, v, N_VIDEO, edits, key_mask=mask),
                                    lambda: joint_attention_text_edit(q, k, v, N_VIDEO, edits, key_mask=mask))
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        out, _ = run_fused()
    assert any("fp32 on CPU" in r.getMessage() for r in caplog.records)
    assert torch.equal(out, run_reference()[0])


def test_recording_most_columns_without_the_output_runs_the_explicit_path(caplog):
    """The host's call gives the output: the explicit path then skips the fused call the log-sum-exp
    would need; its results are the explicit path's own, bit for bit. A probe's few columns stay fused."""
    q, k, v = inputs(torch.bfloat16)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        _, (rec,) = fused_text_cross_attention(q, k, v, cross_edits("source"), need_output=False)
        assert any("record-only call of most columns" in r.getMessage() for r in caplog.records)
        caplog.clear()
        fused_text_cross_attention(q, k, v, cross_edits("probe"), need_output=False)
        assert not any("explicit path" in r.getMessage() for r in caplog.records)
    assert torch.equal(rec, text_cross_attention(q, k, v, cross_edits("source"), need_output=False)[1][0])


def test_the_path_taken_is_logged_at_debug_level(caplog):
    q, k, v = inputs(torch.bfloat16)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        fused_text_cross_attention(q, k, v, cross_edits("weak"))
    assert any("cpu_flash kernel" in r.getMessage() and "bias True" in r.getMessage() for r in caplog.records)


# ---- joint attention (HunyuanVideo): video tokens first, then the text stream ----

N_VIDEO, N_TEXT = 45, 11


def joint_inputs(dtype, masked, seed=5):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, H, N_VIDEO + N_TEXT, D, generator=gen).to(dtype) for _ in range(3))
    mask = None
    if masked:   # the host's padding value in the model dtype, as the family passes it
        mask = torch.zeros(1, 1, 1, N_VIDEO + N_TEXT, dtype=dtype)
        mask[..., -2:] = torch.finfo(dtype).min
    return q, k, v, mask


def joint_edits(kind, seed=6):
    gen = torch.Generator().manual_seed(seed)
    columns = torch.tensor([1, 4, 6])
    bias = torch.rand(N_VIDEO, 3, generator=gen) * 1.5 - 0.5   # the anchor's range at beta 1, gamma 0.5
    source = torch.softmax(torch.randn(N_VIDEO, N_TEXT, generator=gen), -1) * 0.2   # a joint text mass
    keyword_source = torch.softmax(torch.randn(N_VIDEO, 3, generator=gen), -1) * 0.05
    keyword_source2 = keyword_source[:, :2]
    return {
        "weak": [TextEdit(bias=bias, bias_columns=columns, source=source, alpha=0.3)],
        "bias, recorded": [TextEdit(bias=bias, bias_columns=columns, record_columns=slice(None)),
                           TextEdit(bias=torch.rand(N_VIDEO, 2, generator=gen), bias_columns=torch.tensor([4, 7]))],
        "blend, recorded": [TextEdit(source=source, alpha=0.6, record_columns=slice(None))],
        "keyword-columns blend": [TextEdit(source=keyword_source, source_columns=columns, alpha=0.6,
                                           record_columns=slice(None), record_per_head=True)],
        "composed": [TextEdit(bias=bias, bias_columns=columns, source=source, alpha=0.3),
                     TextEdit(source=keyword_source2, source_columns=torch.tensor([2, 4]), alpha=0.5,
                              record_columns=torch.tensor([0, 4]))],
        "source": [TextEdit(record_columns=slice(None))],
        "probe": [TextEdit(record_columns=columns, record_per_head=True)],
    }[kind]


JOINT_KINDS = ["weak", "bias, recorded", "blend, recorded", "keyword-columns blend", "composed", "source", "probe"]


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("masked", [False, True], ids=["no mask", "key mask"])
@pytest.mark.parametrize("kind", JOINT_KINDS)
def test_joint_edit_equals_the_explicit_reference(kind, masked, dtype, caplog, every_edit_fused):
    q, k, v, mask = joint_inputs(dtype, masked)
    edits = joint_edits(kind)
    reference = joint_attention_text_edit(q, k, v, N_VIDEO, edits, key_mask=mask, chunk_size=7)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        for chunk in (16, None):
            assert_same(fused_joint_attention_text_edit(q, k, v, N_VIDEO, edits, key_mask=mask, chunk_size=chunk),
                        reference, dtype)
    assert not any("explicit" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("masked", [False, True], ids=["no mask", "key mask"])
def test_joint_recording_keeps_sdpas_output_bit_for_bit(masked):
    q, k, v, mask = joint_inputs(torch.bfloat16, masked)
    assert output_is_sdpas(q, k, v, mask)
    out, _ = fused_joint_attention_text_edit(q, k, v, N_VIDEO, joint_edits("probe"), key_mask=mask)
    assert torch.equal(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


@pytest.mark.parametrize("dtype, falls_back", [(torch.float32, False), (torch.bfloat16, True)], ids=["fp32", "bf16"])
def test_a_strongly_negative_joint_bias_in_16_bits_runs_the_explicit_path(dtype, falls_back, caplog):
    """gamma = 3: the rank-c form would multiply the kernel output's rounding by up to e^3 = 20, 8 %
    in bf16, so bf16 takes the explicit path; fp32 rounding is small enough to stay fused. Both
    equal the reference."""
    q, k, v, mask = joint_inputs(dtype, True)
    edits = [TextEdit(bias=torch.full((N_VIDEO, 3), -3.0), bias_columns=torch.tensor([1, 4, 6]),
                      record_columns=slice(None))]
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        result = fused_joint_attention_text_edit(q, k, v, N_VIDEO, edits, key_mask=mask)
    assert any("explicit" in r.getMessage() for r in caplog.records) == falls_back
    assert_same(result, joint_attention_text_edit(q, k, v, N_VIDEO, edits, key_mask=mask), dtype)


def test_joint_bias_far_beyond_exp_range_stays_exact():
    """A bias of 200 (exp overflows fp32 at 88): the rank-c form shifts before exponentiating."""
    q, k, v, mask = joint_inputs(torch.float32, True)
    bias = torch.rand(N_VIDEO, 2)
    bias[:5, 1] = 200.0
    edits = [TextEdit(bias=bias, bias_columns=torch.tensor([1, 4]), record_columns=slice(None))]
    assert_same(fused_joint_attention_text_edit(q, k, v, N_VIDEO, edits, key_mask=mask),
                joint_attention_text_edit(q, k, v, N_VIDEO, edits, key_mask=mask), torch.float32)


# ---- which kernel: plain logic, so the CUDA choice is checked without a GPU ----

def query(device="cuda", dtype=torch.bfloat16, head_dim=128, bias=False, masked=False,
          choice=int(SDPBackend.FLASH_ATTENTION), contiguous=True):
    return KernelQuery(device, dtype, head_dim, head_dim, contiguous, bias, masked, choice)


@pytest.mark.parametrize("case, expected", [
    ({}, CUDA_FLASH),                                                         # Wan record / Hunyuan, Ampere
    ({"bias": True}, CUDA_EFFICIENT),                                            # Wan weak: flash takes no bias
    ({"masked": True}, CUDA_EFFICIENT),
    ({"choice": int(SDPBackend.CUDNN_ATTENTION)}, CUDA_CUDNN),                   # Hopper: SDPA picks cuDNN
    ({"dtype": torch.float32}, CUDA_EFFICIENT),                                  # flash and cuDNN are 16-bit only
    ({"dtype": torch.float32, "head_dim": 6}, EXPLICIT),                            # memory-efficient needs d % 4
    ({"head_dim": 320}, CUDA_EFFICIENT),                                         # flash needs d <= 256
    ({"contiguous": False}, EXPLICIT),
    ({"device": "mps"}, EXPLICIT),
    ({"device": "cpu", "bias": True}, CPU_FLASH),
    ({"device": "cpu", "choice": int(SDPBackend.MATH)}, EXPLICIT),                  # inputs SDPA would not fuse
])
def test_kernel_choice(case, expected):
    assert choose_kernel(query(**case)) == expected


def test_cudnn_serves_a_bias_only_where_torch_gives_it_one():
    chosen = choose_kernel(query(bias=True, choice=int(SDPBackend.CUDNN_ATTENTION)))
    assert chosen == (CUDA_CUDNN if kernels.CUDNN_TAKES_BIAS else CUDA_EFFICIENT)


def test_kernel_bias_is_aligned_and_never_materialises_broadcast_dims():
    """The CUDA kernels' bias layout, built on CPU: rows 16-element aligned, broadcast dims stride 0."""
    q = torch.zeros(2, 4, 9, 8)
    mask = torch.randn(1, 1, 1, 13)
    bias = kernels._kernel_bias(mask, q, 13)
    assert bias.shape == (2, 4, 9, 13) and bias.stride()[:3] == (0, 0, 0) and bias.stride(-1) == 1
    assert bias.untyped_storage().nbytes() == 16 * 4
    assert torch.equal(bias, mask.expand(2, 4, 9, 13))


# ---- memory: no N×N map, no per-head fp32 [n, l] map beyond one chunk ----

def memory_edits(kind, n, l):
    gen = torch.Generator().manual_seed(2)
    columns = torch.tensor([1, 4, 9])
    return {"weak": [TextEdit(bias=torch.randn(n, 3, generator=gen), bias_columns=columns,
                              source=torch.softmax(torch.randn(n, l, generator=gen), -1), alpha=0.3)],
            "source": [TextEdit(record_columns=slice(None))],
            "keyword-columns blend": [TextEdit(source=torch.rand(n, 3, generator=gen) * 0.1, source_columns=columns,
                                               alpha=0.5, record_columns=slice(None))],
            "probe": [TextEdit(record_columns=columns, record_per_head=True)]}[kind]


@pytest.mark.parametrize("kind", ["weak", "source", "keyword-columns blend", "probe"])
def test_cross_attention_forms_no_per_head_map_beyond_one_chunk(kind, every_edit_fused):
    """n = 600 rows of 64 keys, 3 heads of 16, chunks of 64 rows: nothing larger than a head-mean
    [n, l] map (the cache, or a source's recording) or the output is formed; a per-head [n, l] map
    would be three times that."""
    n, l = 600, 64
    q, k, v = inputs(torch.float32, n=n, l=l)
    with LargestTensor() as seen:
        fused_text_cross_attention(q, k, v, memory_edits(kind, n, l), chunk_size=64)
    assert seen.numel <= max(n * l, H * n * D) < H * n * l, (seen.op, seen.numel)


@pytest.mark.parametrize("kind", JOINT_KINDS)
def test_joint_edit_allocates_nothing_of_size_n_by_n(kind, every_edit_fused):
    q, k, v, mask = joint_inputs(torch.float32, True)
    total = N_VIDEO + N_TEXT
    with LargestTensor() as seen:
        fused_joint_attention_text_edit(q, k, v, N_VIDEO, joint_edits(kind), key_mask=mask, chunk_size=16)
    assert seen.numel < total * total, (kind, seen.op, seen.numel)


@pytest.mark.parametrize("kind", ["weak", "probe"])
def test_edited_calls_peak_at_most_twice_the_unedited_call(kind, every_edit_fused):
    """Wan- and HunyuanVideo-shaped calls (head dim 128, 512 / 64 text keys), bf16 as on a GPU."""
    gen = torch.Generator().manual_seed(1)
    n, heads, n_text = 1024, 2, 512
    q = torch.randn(1, heads, n, 128, generator=gen).bfloat16()
    k, v = (torch.randn(1, heads, n_text, 128, generator=gen).bfloat16() for _ in range(2))
    edit = {"weak": TextEdit(bias=torch.randn(n, 8), bias_columns=torch.arange(8),
                             source=torch.softmax(torch.randn(n, n_text), -1), alpha=0.3),
            "probe": TextEdit(record_columns=torch.arange(8))}[kind]
    plain = peak_bytes(lambda: F.scaled_dot_product_attention(q, k, v))
    assert peak_bytes(lambda: fused_text_cross_attention(q, k, v, [edit])) <= 2 * plain

    n_video, n_text = 512, 64
    q, k, v = (torch.randn(1, heads, n_video + n_text, 128, generator=gen).bfloat16() for _ in range(3))
    edit = {"weak": TextEdit(bias=torch.rand(n_video, 8), bias_columns=torch.arange(8),
                             source=torch.softmax(torch.randn(n_video, n_text), -1) * 0.2, alpha=0.3),
            "probe": TextEdit(record_columns=torch.arange(8))}[kind]
    plain = peak_bytes(lambda: F.scaled_dot_product_attention(q, k, v))
    assert peak_bytes(lambda: fused_joint_attention_text_edit(q, k, v, n_video, [edit])) <= 2 * plain


def test_scale_matches_the_kernels():
    """The column logits use 1/√d, the scale SDPA's kernels apply by default."""
    q, k, v = inputs(torch.float32)
    _, (rec,) = fused_text_cross_attention(q, k, v, [TextEdit(record_columns=slice(None), record_per_head=True)])
    torch.testing.assert_close(rec, torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D), -1), atol=1e-6, rtol=1e-5)


# ---- CUDA (skipped without a GPU; never run in the session that wrote them) ----

CUDA_DTYPES = [torch.float32, torch.bfloat16, torch.float16]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device; the CPU tests cover the math")


@needs_cuda
@pytest.mark.parametrize("dtype", CUDA_DTYPES, ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("kind", CROSS_KINDS)
def test_cuda_cross_attention_equals_the_explicit_reference(kind, dtype):
    q, k, v = (t.cuda() for t in inputs(dtype))   # 13 keys: the bias rows need the 16-element padding
    edits = cross_edits(kind)
    assert kernel_path(q, k, v, bias=kind in ("weak", "bias only")) != EXPLICIT
    for need_output in (True, False):
        assert_same(fused_text_cross_attention(q, k, v, edits, need_output=need_output),
                    text_cross_attention(q, k, v, edits, need_output=need_output), dtype)


@needs_cuda
@pytest.mark.parametrize("dtype", CUDA_DTYPES, ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("kind", JOINT_KINDS)
def test_cuda_joint_edit_equals_the_explicit_reference(kind, dtype):
    q, k, v, mask = (t.cuda() for t in joint_inputs(dtype, True))
    edits = joint_edits(kind)
    assert_same(fused_joint_attention_text_edit(q, k, v, N_VIDEO, edits, key_mask=mask),
                joint_attention_text_edit(q, k, v, N_VIDEO, edits, key_mask=mask), dtype)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_cuda_recording_returns_sdpas_output_where_it_says_so(dtype):
    q, k, v, _ = (t.cuda() if t is not None else None for t in joint_inputs(dtype, False))
    out, _ = fused_joint_attention_text_edit(q, k, v, N_VIDEO, joint_edits("probe"))
    assert torch.equal(out, F.scaled_dot_product_attention(q, k, v)) or not output_is_sdpas(q, k, v)
