"""Model complexity: multiply-adds (MAdds) of a forward pass.

Counted with mmengine's ``mmengine.analysis.FlopAnalyzer`` (fvcore's jit-trace counter), the convention
of the published Mobile-Former numbers (it reproduces the authors' 508M ... 26M to 0.1M MAdds):

* one per multiply-add of convolutions, Linear layers and matmuls (the attention matmuls written as
  plain ``@`` included); no bias adds;
* inference BatchNorm one per element, LayerNorm five per element, adaptive average pooling one per
  input element;
* ``F.scaled_dot_product_attention`` its two matmuls (added here: mmengine has no handle for it);
* nothing for activations, softmax or other element-wise work.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import get_shape
from torch import Tensor, nn


def _sdpa_madds(inputs: list[Any], outputs: list[Any]) -> int:
    """softmax(Q K^T) V: [..., L, E] x [..., S, E] then [..., L, S] x [..., S, E_v]."""
    query, key, value = (get_shape(v) for v in inputs[:3])
    return math.prod(query[:-1]) * key[-2] * (query[-1] + value[-1])


class _CallableModule(nn.Module):
    """Lets the analyzer trace any callable; a bound method keeps its module registered, so that its
    parameters are traced as parameters."""

    def __init__(self, fn: Callable[[Tensor], Any]) -> None:
        super().__init__()
        owner = getattr(fn, '__self__', None)
        self.owner = owner if isinstance(owner, nn.Module) else None
        self.fn = fn

    def forward(self, x: Tensor) -> Any:
        return self.fn(x)


def count_madds(model: Callable[[Tensor], Any], input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of ``model(zeros(input_shape))``, e.g. ``count_madds(net, (1, 3, 224, 224))``.

    ``model`` is a module or any callable of one tensor (e.g. ``net.forward_classifier``); modules are
    counted in their current train/eval mode (BatchNorm is counted as in eval mode when eval). The batch
    size in ``input_shape`` multiplies the count. Runs on the device of the model's first parameter.
    """
    module = model if isinstance(model, nn.Module) else _CallableModule(model)
    device = next(module.parameters(), torch.empty(0)).device
    analyzer = FlopAnalyzer(module, torch.zeros(input_shape, device=device))
    analyzer.set_op_handle('aten::scaled_dot_product_attention', _sdpa_madds)
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings('none')
    return int(analyzer.total())
