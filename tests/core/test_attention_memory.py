"""No pack attention call allocates an N×N tensor (N = all tokens of a joint attention).

A dispatch mode records the largest tensor every ATen op returns. Fused kernels' internal tiles are
not visible to it; they are bounded by the kernel's block sizes, not by N. The detector is shown to
catch the old augmented-value joint call, whose odd value head dim sends SDPA to the math path.
"""
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from focal_guidance.focal_core.attention import (
    TextEdit, _joint_attention_lse_math, joint_attention_text_edit, lse_output_is_sdpas, text_cross_attention)

H, D, N_VIDEO, N_TEXT = 2, 16, 280, 20
N = N_VIDEO + N_TEXT


class LargestTensor(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.numel, self.op = 0, None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.numel() > self.numel:
                self.numel, self.op = t.numel(), func
        return out


def qkv(n_keys=N):
    gen = torch.Generator().manual_seed(0)
    return (torch.randn(1, H, N, D, generator=gen), torch.randn(1, H, n_keys, D, generator=gen),
            torch.randn(1, H, n_keys, D, generator=gen))


EDITS = {
    "weak": [TextEdit(bias=torch.randn(N_VIDEO, 2), bias_columns=torch.tensor([1, 4]),
                      source=torch.softmax(torch.randn(N_VIDEO, N_TEXT), -1) * 0.2, alpha=0.3)],
    "source": [TextEdit(record_columns=slice(None))],
    "probe": [TextEdit(record_columns=torch.tensor([1, 4]), record_per_head=True)],
    "plain": [TextEdit()],
}


def test_detector_catches_the_old_augmented_joint_call():
    q, k, v = qkv()
    v_aug = torch.cat([v, torch.ones(1, H, N, 8)], -1)   # value head dim 24 != 16: no fused kernel
    with LargestTensor() as seen:
        F.scaled_dot_product_attention(q, k, v_aug)
    assert seen.numel >= N * N


@pytest.mark.parametrize("kind", EDITS)
@pytest.mark.parametrize("masked", [False, True])
def test_joint_edit_allocates_nothing_of_size_n_by_n(kind, masked):
    q, k, v = qkv()
    mask = None
    if masked:
        mask = torch.zeros(1, 1, 1, N)
        mask[..., -3:] = -torch.finfo(torch.float32).max
    with LargestTensor() as seen:
        joint_attention_text_edit(q, k, v, N_VIDEO, EDITS[kind], key_mask=mask, chunk_size=64)
    assert seen.numel < N * N, (kind, seen.op, seen.numel)


@pytest.mark.parametrize("fused", [True, False])
def test_one_call_recording_allocates_nothing_of_size_n_by_n(fused):
    """The dispatcher's one-call recording (HunyuanVideo on the host's SDPA): the kernel check, then
    the record-only joint edit whose output the block uses; with queries SDPA would not fuse (head
    dim not contiguous) it runs the chunked math."""
    q, k, v = qkv()
    if not fused:
        q = q.transpose(-1, -2).contiguous().transpose(-1, -2)
    with LargestTensor() as seen:
        assert lse_output_is_sdpas(q, k, v) == fused
        joint_attention_text_edit(q, k, v, N_VIDEO, EDITS["source"], chunk_size=64)
    assert seen.numel < N * N, (seen.op, seen.numel)


def test_exact_fallback_allocates_nothing_of_size_n_by_n():
    q, k, v = qkv()
    with LargestTensor() as seen:
        _joint_attention_lse_math(q, k, v, None, chunk_size=64)
    assert seen.numel < N * N, (seen.op, seen.numel)


@pytest.mark.parametrize("kind", EDITS)
def test_text_attention_allocates_nothing_of_size_n_by_n(kind):
    q, k, v = qkv(n_keys=N_TEXT)
    edits = [TextEdit(**{**e.__dict__, "bias": None if e.bias is None else torch.randn(N, 2),
                         "source": None if e.source is None else torch.softmax(torch.randn(N, N_TEXT), -1)})
             for e in EDITS[kind]]
    with LargestTensor() as seen:
        text_cross_attention(q, k, v, edits, chunk_size=64)
    assert seen.numel < N * N, (kind, seen.op, seen.numel)


def peak_bytes(fn):
    """Largest net allocation during ``fn`` (torch.profiler's allocation events)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    now = top = 0
    for e in sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns()):
        now += e.nbytes()
        top = max(top, now)
    return top


@pytest.mark.parametrize("kind", ["weak", "probe"])
def test_edited_calls_peak_at_most_twice_the_unedited_call(kind):
    """Wan- and HunyuanVideo-shaped calls (head dim 128, 512 / 64 text keys): the chunk temporaries
    stay within the output's size. (A source's all-column record is the cache it keeps, not counted.)"""
    gen = torch.Generator().manual_seed(1)
    n, heads, n_text = 1024, 2, 512
    q = torch.randn(1, heads, n, 128, generator=gen)
    k, v = (torch.randn(1, heads, n_text, 128, generator=gen) for _ in range(2))
    edit = {"weak": TextEdit(bias=torch.randn(n, 8), bias_columns=torch.arange(8),
                             source=torch.softmax(torch.randn(n, n_text), -1), alpha=0.3),
            "probe": TextEdit(record_columns=torch.arange(8))}[kind]
    plain = peak_bytes(lambda: F.scaled_dot_product_attention(q, k, v))
    assert peak_bytes(lambda: text_cross_attention(q, k, v, [edit], need_output=kind == "weak")) <= 2 * plain

    n_video, n_text = 512, 64
    q, k, v = (torch.randn(1, heads, n_video + n_text, 128, generator=gen) for _ in range(3))
    edit = {"weak": TextEdit(bias=torch.randn(n_video, 8), bias_columns=torch.arange(8),
                             source=torch.softmax(torch.randn(n_video, n_text), -1) * 0.2, alpha=0.3),
            "probe": TextEdit(record_columns=torch.arange(8))}[kind]
    plain = peak_bytes(lambda: F.scaled_dot_product_attention(q, k, v))
    assert peak_bytes(lambda: joint_attention_text_edit(q, k, v, n_video, [edit])) <= 2 * plain
