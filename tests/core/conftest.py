"""Host-free: only torch, numpy and kornia are imported (``pytest tests/core`` runs without ComfyUI).

``dtype`` parametrises a test over the three dtypes users run a DiT in; each test states its own
tolerance against an fp32 reference.
"""
import pytest
import torch


@pytest.fixture(params=[torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
def dtype(request):
    return request.param
