"""Mixed precision on CPUs: bfloat16 autocast for training where mmengine's ``AmpOptimWrapper`` refuses.

mmengine 0.10.7's ``AmpOptimWrapper`` asserts a GPU (or NPU/MLU/MUSA), so ``--amp`` fails on a CPU-only
machine. CPUs with AVX-512 BF16 / AMX run convolutions and matmuls in bfloat16 several times faster
than in float32 through oneDNN; bfloat16 keeps float32's exponent range, so no loss scaling is needed
(torch's CPU autocast keeps BatchNorm, softmax and the losses in float32).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from torch import nn


@OPTIM_WRAPPERS.register_module()
class CpuBf16OptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward/backward context is ``torch.autocast('cpu', torch.bfloat16)``.

    Weights, gradients and optimizer state stay float32; only the autocast-listed ops compute in bfloat16.
    """

    @contextmanager
    def optim_context(self, model: nn.Module):
        with super().optim_context(model), torch.autocast(device_type='cpu', dtype=torch.bfloat16):
            yield
