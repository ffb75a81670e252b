"""ONNX export of the raw-output wrappers, and onnxruntime sessions to run and check the exports.

We use PyTorch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``): the torch.export
based one (the default since torch 2.9) needs the ``onnxscript`` package, which the pinned stack does
not install. The traced graph is checked against torch eager by :func:`max_output_difference`.

Attention: by default every ``scaled_dot_product_attention`` over at least ``FUSED_ATTENTION_MIN_TOKENS``
tokens (at the traced size) is exported as onnxruntime's ``com.microsoft.MultiHeadAttention`` contrib op
(:func:`onnxruntime_attention`), which onnxruntime's CPU provider runs as a flash-attention kernel, so
the [N, N] attention maps (1024 x 1024 per head for MobileViT's stride-8 block at 512 x 512) are never
materialised. Shorter attentions stay MatMul -> Softmax -> MatMul, which onnxruntime runs faster there
(benchmarks/results.md). Such a graph needs onnxruntime; ``fused_attention=False`` writes the plain ONNX
form everywhere, which any runtime reads.

What is dynamic in the exported graph:

* batch: always (axis 0 of the input and of every output);
* height and width: for segmentors (default), any size >= 32: MobileViT's resize to a multiple of the
  patch size and the final resize to the input size follow the input. For DETR-style detectors
  (default) too: the positional encodings, pixel anchors and attention priors are computed from the
  map sizes in the graph, and the boxes are scaled by the input size. For SSD-style detectors the size
  is fixed by default: SSD's priors are laid out for one input size (320x320 in our configs), so the
  graph is traced at that size and the post-processing's priors match it. ``dynamic_size=True``
  exports such a detector at any size anyway (priors must then be generated for the size used).
"""
from __future__ import annotations

import inspect
import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..apis.inference import DETECTION, task_of
from ..models import layers
from .postprocess import DetectionPostProcess
from .wrappers import DETECTOR_OUTPUTS, SEGMENTOR_OUTPUTS, is_end_to_end, output_names, raw_network

DEFAULT_OPSET = 17
# The TorchScript-based exporter: asked for by name where torch has both (older torch has only it).
_TORCHSCRIPT_EXPORTER = {'dynamo': False} if 'dynamo' in inspect.signature(torch.onnx.export).parameters else {}
ONNXRUNTIME_DOMAIN = 'com.microsoft'
# Sequence length from which onnxruntime's fused attention beats the plain graph on our CPUs
# (benchmarks/results.md: faster at 1024 tokens, slower at 256).
FUSED_ATTENTION_MIN_TOKENS = 512


class _MultiHeadAttention(torch.autograd.Function):
    """``scaled_dot_product_attention`` [B, h, N, C] that exports as com.microsoft MultiHeadAttention.

    The contrib op takes Q, K, V as [B, N, h * C] (default scale 1 / sqrt(C), as SDPA's) and returns
    [B, N, h * C]; h and C are attributes, so they are passed here as Python ints taken while tracing
    (the exporter's shape inference loses them behind the dynamic-batch reshapes)."""

    @staticmethod
    def forward(ctx, query: Tensor, key: Tensor, value: Tensor, heads: int, head_dim: int) -> Tensor:
        return F.scaled_dot_product_attention(query, key, value)

    @staticmethod
    def symbolic(g, query, key, value, heads: int, head_dim: int):
        def tokens_by_channels(x):      # [B, h, N, C] -> [B, N, h * C]
            return g.op('Reshape', g.op('Transpose', x, perm_i=[0, 2, 1, 3]),
                        g.op('Constant', value_t=torch.tensor([0, 0, heads * head_dim])))

        out = g.op(f'{ONNXRUNTIME_DOMAIN}::MultiHeadAttention', tokens_by_channels(query),
                   tokens_by_channels(key), tokens_by_channels(value), num_heads_i=heads)
        out = g.op('Reshape', out, g.op('Constant', value_t=torch.tensor([0, 0, heads, head_dim])))
        return g.op('Transpose', out, perm_i=[0, 2, 1, 3])


@contextmanager
def onnxruntime_attention(min_tokens: int = FUSED_ATTENTION_MIN_TOKENS) -> Iterator[None]:
    """While active, an ONNX export writes :func:`mvdense.models.layers.attention` over >= ``min_tokens``
    tokens (at the traced size) as onnxruntime's fused MultiHeadAttention, shorter ones as plain ONNX
    (see the module docstring; the export needs ``custom_opsets={'com.microsoft': 1}``)."""

    def fused_attention(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        if int(key.shape[2]) < min_tokens:
            return F.scaled_dot_product_attention(query, key, value)
        return _MultiHeadAttention.apply(query, key, value, int(query.shape[1]), int(query.shape[3]))

    saved = layers.onnx_attention
    layers.onnx_attention = fused_attention
    try:
        yield
    finally:
        layers.onnx_attention = saved


def dynamic_axes_for(outputs: list[str], dynamic_size: bool) -> dict[str, dict[int, str]]:
    """Dynamic axes of the input ``image`` and of the outputs: batch always; with ``dynamic_size`` the
    spatial axes of segmentation logits and the prior axis of SSD outputs (whose count follows the input
    size). A DETR-style detector's outputs have a fixed number of queries and detections at any size."""
    image_axes = {0: 'batch', 2: 'height', 3: 'width'} if dynamic_size else {0: 'batch'}
    axes = {'image': image_axes}
    for name in outputs:
        axes[name] = {0: 'batch'}
        if dynamic_size and name in SEGMENTOR_OUTPUTS:
            axes[name] = {0: 'batch', 2: 'height', 3: 'width'}
        elif dynamic_size and name in DETECTOR_OUTPUTS:
            axes[name] = {0: 'batch', 1: 'priors'}
    return axes


# Traced sizes when none is given: SSD's priors are laid out for 320 x 320; DETR-style detectors at the COCO
# test scale; segmentors at 512 x 512.
SSD_INPUT_SIZE, END_TO_END_INPUT_SIZE, SEGMENTOR_INPUT_SIZE = (320, 320), (800, 1333), (512, 512)


def default_input_size(model: nn.Module) -> tuple[int, int]:
    """The traced input size of an export when none is given (see the sizes above)."""
    if task_of(model) != DETECTION:
        return SEGMENTOR_INPUT_SIZE
    return END_TO_END_INPUT_SIZE if is_end_to_end(model) else SSD_INPUT_SIZE


def default_dynamic_size(model: nn.Module) -> bool:
    """Whether an export takes any height and width by default: segmentors and DETR-style detectors do,
    SSD-style detectors (priors laid out for one size) do not."""
    return task_of(model) != DETECTION or is_end_to_end(model)


def export_model(model: nn.Module, path: str, input_size: tuple[int, int], dynamic_size: bool | None = None,
                 opset: int = DEFAULT_OPSET, fused_attention: bool = True) -> dict[str, Any]:
    """Exports an mmdet detector / mmseg segmentor's raw network to ``path`` and writes ``path + '.json'``.

    The JSON holds what running the graph needs: input and output names and layout, which axes are
    dynamic, for SSD-style detectors the post-processing parameters (:class:`DetectionPostProcess`,
    priors included), for DETR-style ones what the in-graph post-processing did, and the class names.
    ``dynamic_size`` None: :func:`default_dynamic_size`. ``fused_attention``: onnxruntime's
    MultiHeadAttention for attention (module docstring). Returns that metadata.
    """
    task = task_of(model)
    if dynamic_size is None:
        dynamic_size = default_dynamic_size(model)
    names = output_names(model)
    example = torch.rand(1, 3, *input_size, generator=torch.Generator().manual_seed(0)) * 255
    export_module(raw_network(model), example, path, names, dynamic_axes_for(names, dynamic_size), opset,
                  fused_attention)
    metadata = export_metadata(model, task, names, input_size, dynamic_size, opset, fused_attention)
    with open(path + '.json', 'w') as file:
        json.dump(metadata, file)
    return metadata


@contextmanager
def traced_for_any_size(module: nn.Module, any_size: bool) -> Iterator[None]:
    """Sets ``trace_any_size`` on the submodules that have it (MobileViT blocks: whether a trace keeps
    the resizes a size may need), restoring it afterwards."""
    blocks = [m for m in module.modules() if hasattr(m, 'trace_any_size')]
    saved = [m.trace_any_size for m in blocks]
    for block in blocks:
        block.trace_any_size = any_size
    try:
        yield
    finally:
        for block, value in zip(blocks, saved):
            block.trace_any_size = value


def export_module(module: nn.Module, example: Tensor, path: str, names: list[str] | None = None,
                  dynamic_axes: dict | None = None, opset: int = DEFAULT_OPSET, fused_attention: bool = True,
                  fused_min_tokens: int = FUSED_ATTENTION_MIN_TOKENS) -> None:
    """Exports ``module(example)`` (one image input named ``image``) with the TorchScript exporter.

    The graph takes any height and width when ``dynamic_axes['image']`` names axes 2 and 3, else only
    the example's; attention over >= ``fused_min_tokens`` tokens is onnxruntime's fused op when
    ``fused_attention``.
    """
    any_size = {2, 3} <= set((dynamic_axes or {}).get('image', {}))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    attention = onnxruntime_attention(fused_min_tokens) if fused_attention else nullcontext()
    with warnings.catch_warnings(), traced_for_any_size(module, any_size), attention:
        # The TorchScript exporter warns that it is deprecated, and the tracer about every Python value
        # taken from a shape; the graphs are checked against eager at other sizes instead (tests).
        warnings.simplefilter('ignore', category=DeprecationWarning)
        warnings.simplefilter('ignore', category=torch.jit.TracerWarning)
        with torch.no_grad():
            torch.onnx.export(module.eval(), (example,), path, **_TORCHSCRIPT_EXPORTER, opset_version=opset,
                              input_names=['image'], output_names=names, dynamic_axes=dynamic_axes,
                              do_constant_folding=True,
                              custom_opsets={ONNXRUNTIME_DOMAIN: 1} if fused_attention else None)


def export_metadata(model: nn.Module, task: str, names: list[str], input_size: tuple[int, int],
                    dynamic_size: bool, opset: int, fused_attention: bool) -> dict[str, Any]:
    """The JSON written next to an export."""
    network = raw_network(model)
    normalizer = network.normalizer
    metadata: dict[str, Any] = {
        'task': task,
        'input': {'name': 'image', 'layout': 'float32 [B, 3, H, W], 0-255, channel order as loaded (BGR)',
                  'traced_size': list(input_size), 'dynamic_batch': True, 'dynamic_size': dynamic_size,
                  'in_graph': {'swap_channels': normalizer.swap_channels,
                               'mean': normalizer.mean.flatten().tolist(),
                               'std': (1 / normalizer.inv_std).flatten().tolist()}},
        'outputs': names,
        'opset': opset,
        'attention': (f'{ONNXRUNTIME_DOMAIN}.MultiHeadAttention (onnxruntime) from {FUSED_ATTENTION_MIN_TOKENS} '
                      'tokens' if fused_attention else 'onnx'),
    }
    if task != DETECTION:
        metadata['align_corners'] = bool(model.decode_head.align_corners)
    elif is_end_to_end(model):
        metadata['outputs_layout'] = end_to_end_layout(network)
    else:
        metadata['postprocess'] = DetectionPostProcess.from_detector(model, input_size).to_dict()
    metadata['class_names'] = list((getattr(model, 'dataset_meta', None) or {}).get('classes', ()))
    return metadata


def end_to_end_layout(network: nn.Module) -> dict[str, str]:
    """What each output of a :class:`~mvdense.deploy.wrappers.RawEndToEndDetector` graph holds."""
    queries = network.detector.num_queries
    if network.sigmoid:
        logits = f'float32 [B, {queries}, {network.num_classes}]: per-class logits (sigmoid scores)'
        picked = f'the top {network.max_per_img} (query, class) pairs by sigmoid score'
    else:
        logits = f'float32 [B, {queries}, {network.num_classes + 1}]: softmax logits, background last'
        picked = f"each query's best foreground class, the top {network.max_per_img} queries by its score"
    return {
        'query_logits': logits + ', last decoder layer',
        'query_boxes': f'float32 [B, {queries}, 4]: (cx, cy, w, h) relative to the input, last decoder layer',
        'boxes': f'float32 [B, {network.max_per_img}, 4]: (x1, y1, x2, y2) in input pixels, clamped to it',
        'scores': f'float32 [B, {network.max_per_img}], descending',
        'labels': f'int64 [B, {network.max_per_img}]: class index into class_names',
        'postprocess': f'{picked} (mmdet DETRHead.predict_by_feat, rescale=False); no NMS',
    }


def make_session(path: str, threads: int = 1):
    """An onnxruntime CPU session: all graph optimisations, ``threads`` intra-op threads, sequential."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def run_session(session, image: Tensor | np.ndarray) -> list[np.ndarray]:
    """Runs the exported graph on ``image`` [B, 3, H, W]; returns its outputs in order."""
    array = image.numpy() if isinstance(image, Tensor) else image
    return session.run(None, {'image': np.ascontiguousarray(array, dtype=np.float32)})


def max_output_difference(model: nn.Module, session, image: Tensor) -> list[float]:
    """Max |onnxruntime - torch eager| per output of the raw network on ``image``."""
    return list(output_differences(model, session, image).values())


# How far onnxruntime may be from eager, per output: raw outputs to float rounding; DETR boxes are
# relative boxes scaled by up to ~1333 pixels; labels must be the same.
TOLERANCES = {'boxes': 1e-3, 'labels': 0.0}
DEFAULT_TOLERANCE = 1e-4


def output_differences(model: nn.Module, session, image: Tensor) -> dict[str, float]:
    """Max |onnxruntime - torch eager| per output name of the raw network on ``image``."""
    with torch.no_grad():
        expected = raw_network(model)(image)
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = run_session(session, image)
    return {name: float(np.abs(g.astype(np.float64) - e.numpy()).max())
            for name, g, e in zip(output_names(model), got, expected)}


def exceeded_tolerances(differences: dict[str, float]) -> dict[str, float]:
    """The outputs of :func:`output_differences` above their tolerance (:data:`TOLERANCES`)."""
    return {name: value for name, value in differences.items()
            if value > TOLERANCES.get(name, DEFAULT_TOLERANCE)}
