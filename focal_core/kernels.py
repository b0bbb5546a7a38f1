"""Which fused attention kernel serves an edited call, and the kernels' own (output, log-sum-exp).

SDPA's fused kernels return each query row's log-sum-exp beside the output; focal_core.fused builds
every edit from the two. CPU: the flash kernel (an additive mask from torch 2.3). CUDA: flash (no
bias, 16-bit), memory-efficient (an additive bias, any float dtype) and cuDNN (16-bit; a bias from
torch 2.5). The choice is plain logic over :class:`KernelQuery`, so it can be dry-run without a GPU;
anything no kernel takes runs on the explicit path of focal_core.attention.
"""
import logging
from dataclasses import dataclass

import torch
from torch.nn.attention import SDPBackend

from .attention import LOW_PRECISION

log = logging.getLogger(__name__)

EXPLICIT, CPU_FLASH, CUDA_FLASH, CUDA_EFFICIENT, CUDA_CUDNN = (
    "explicit", "cpu_flash", "cuda_flash", "cuda_efficient", "cuda_cudnn")

_FLASH, _EFFICIENT, _CUDNN = (int(SDPBackend.FLASH_ATTENTION), int(SDPBackend.EFFICIENT_ATTENTION),
                              int(SDPBackend.CUDNN_ATTENTION))
_OPS = torch.ops.aten
# The CPU flash kernel takes an additive mask from torch 2.3 on; read the schema, not the version.
CPU_FLASH_TAKES_MASK = "attn_mask" in str(_OPS._scaled_dot_product_flash_attention_for_cpu.default._schema)
CUDNN_TAKES_BIAS = (hasattr(_OPS, "_scaled_dot_product_cudnn_attention")
                    and "attn_bias" in str(_OPS._scaled_dot_product_cudnn_attention.default._schema))
MM_OUT_DTYPE = "out_dtype" in (torch.bmm.__doc__ or "")   # CUDA, torch >= 2.8


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
    alignment = 4 if query.dtype == torch.float32 else 8
    if query.dtype in (torch.float32, *LOW_PRECISION) and query.head_dim % alignment == 0:
        return CUDA_EFFICIENT
    return EXPLICIT


def kernel_path(q, k, v, key_mask=None, bias: bool = False) -> str:
    """:func:`choose_kernel` for these tensors (logged at debug level)."""
    choice, key_mask = None, four_dims(key_mask)
    if q.device.type in ("cpu", "cuda"):
        choice = torch._fused_sdp_choice(q, k, v, attn_mask=key_mask)
    path = choose_kernel(KernelQuery(q.device.type, q.dtype, q.shape[-1], v.shape[-1],
                                     all(t.stride(-1) == 1 for t in (q, k, v)), bias, key_mask is not None, choice))
    log.debug("focal attention: %s kernel for q %s %s (SDPA picks %s, bias %s, mask %s)", path, tuple(q.shape),
              q.dtype, choice, bias, key_mask is not None)
    return path


def output_is_sdpas(q, k, v, key_mask=None) -> bool:
    """Whether the kernel :func:`kernel_path` picks without a bias is SDPA's own for these inputs, so
    its output is ``F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)`` bit for bit: by
    construction for the CPU flash, CUDA flash and memory-efficient kernels (SDPA calls the same op);
    for cuDNN checked once per input signature (:func:`_cudnn_output_is_sdpas`). Logged at debug level:
    a recording then takes one call."""
    key_mask = four_dims(key_mask)
    path = kernel_path(q, k, v, key_mask)
    choice = torch._fused_sdp_choice(q, k, v, attn_mask=key_mask) if q.device.type in ("cpu", "cuda") else None
    if q.device.type == "cpu":
        same = path == CPU_FLASH
    elif (path, choice) == (CUDA_CUDNN, _CUDNN):
        same = _cudnn_output_is_sdpas(q, k, v, key_mask)
    else:
        same = (path, choice) in ((CUDA_FLASH, _FLASH), (CUDA_EFFICIENT, _EFFICIENT))
    log.debug("focal attention: the %s kernel's output %s SDPA's own (a recording takes %s)", path,
              "is" if same else "is not", "one call" if same else "the host's call and another")
    return same


_CUDNN_CHECKED = {}


def _cudnn_output_is_sdpas(q, k, v, key_mask) -> bool:
    """SDPA runs cuDNN's graph without the log-sum-exp output, so the graph that gives it may be
    another engine: whether its output equals SDPA's is run once per input signature (shapes,
    strides, dtypes, device) on the real inputs, both ways, and remembered."""
    signature = (q.device, *((tuple(t.shape), t.stride(), t.dtype) for t in (q, k, v) if t is not None),
                 None if key_mask is None else (tuple(key_mask.shape), key_mask.stride(), key_mask.dtype))
    if signature not in _CUDNN_CHECKED:
        out, _ = attention_lse(q, k, v, CUDA_CUDNN, key_mask)
        same = torch.equal(out, torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=key_mask))
        _CUDNN_CHECKED[signature] = same
        log.debug("focal attention: cuDNN with its log-sum-exp %s SDPA's output for %s", "gives" if same else
                  "does not give", signature)
    return _CUDNN_CHECKED[signature]


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
        try:
            out, lse = _OPS._scaled_dot_product_cudnn_attention(q, k, v, bias, True)[:2]
            return out, lse.reshape(b, h, n)
        except RuntimeError as err:   # a bias layout or size this cuDNN build refuses
            log.debug("focal attention: cuDNN refused (%s); memory-efficient kernel instead", err)
            return attention_lse(q, k, v, CUDA_EFFICIENT, mask)
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


def four_dims(mask):
    """An additive key mask ([l], [1, l], ...) with the leading dims SDPA's kernels expect."""
    return None if mask is None else mask.reshape((1,) * (4 - mask.ndim) + tuple(mask.shape))
