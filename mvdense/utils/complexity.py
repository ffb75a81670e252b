"""Model complexity: multiply-adds (MAdds) of a forward pass, the one counter every figure of this
project comes from (README tables, ``tools/benchmark.py``, the tests' budgets).

Counted with mmengine's ``mmengine.analysis.FlopAnalyzer`` (fvcore's jit-trace counter), the convention
of the published Mobile-Former numbers (it reproduces the authors' 508M ... 26M to 0.1M MAdds):

* one per multiply-add of convolutions, Linear layers and matmuls (the attention matmuls written as
  plain ``@`` included); no bias adds;
* inference BatchNorm two per element (one without affine parameters), LayerNorm five per element,
  adaptive average pooling one per input element, nearest / bilinear upsampling one / four per output
  element;
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

__all__ = ['count_madds', 'detector_madds']


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


def count_madds(model: Callable[[Tensor], Any], inputs: tuple[int, ...] | Tensor) -> int:
    """Multiply-adds of ``model(inputs)``, e.g. ``count_madds(net, (1, 3, 224, 224))``.

    ``model`` is a module or any callable of one tensor (e.g. ``net.forward_classifier``); ``inputs`` an
    input shape (the input is then zeros on the device of the model's first parameter) or the input
    tensor itself. Modules are counted in their current train/eval mode (BatchNorm as at inference when
    eval). The batch size multiplies the count.
    """
    module = model if isinstance(model, nn.Module) else _CallableModule(model)
    if not isinstance(inputs, Tensor):
        device = next(module.parameters(), torch.empty(0)).device
        inputs = torch.zeros(inputs, device=device)
    analyzer = FlopAnalyzer(module, inputs)
    analyzer.set_op_handle('aten::scaled_dot_product_attention', _sdpa_madds)
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings('none')
    return int(analyzer.total())


class _DetectionTransformerForward(nn.Module):
    """``detector._forward`` of one unpadded image batch: backbone, (neck, encoder,) decoder and the
    head's class and box outputs of every layer, i.e. a DETR-family model before post-processing.

    Shape: [B, 3, H, W] -> (cls_scores [L, B, N, K], bbox_preds [L, B, N, 4]).
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        from mmdet.structures import DetDataSample

        shape = tuple(x.shape[-2:])
        sample = DetDataSample(metainfo=dict(batch_input_shape=shape, img_shape=shape))
        return self.detector._forward(x, [sample] * x.shape[0])


def detector_madds(detector: nn.Module, input_shape: tuple[int, int, int, int]) -> int:
    """:func:`count_madds` of an mmdet DETR-family detector (``DetectionTransformer``: mmdet's DETR, our
    E2E-MF) on ``zeros(input_shape)`` in eval mode, up to the class and box outputs of every layer (no
    post-processing). The detector's train/eval mode is restored afterwards."""
    was_training = detector.training
    detector.eval()
    try:
        with torch.no_grad():
            return count_madds(_DetectionTransformerForward(detector), input_shape)
    finally:
        detector.train(was_training)
