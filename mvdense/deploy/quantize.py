"""int8 post-training quantisation of an exported network with onnxruntime (static, QDQ format).

    fp32 ONNX (``export_model``) -> onnxruntime's pre-processing (shape inference, graph optimisation)
    -> calibration on training images (activation ranges) -> QDQ graph: int8 weights per output channel,
    uint8 activations, QuantizeLinear / DequantizeLinear pairs that onnxruntime fuses into integer kernels.

What stays in float, and why: only convolutions (but the first, :func:`weighted_matmuls_and_convs`), fully
connected layers and matrix products with a weight are quantised (``QUANTIZED_OPS``). The products of two activations inside attention (``q kᵀ``,
``attn v``), softmax, LayerNorm, GELU/SiLU, resizes and the element-wise ops stay float: softmax and
attention maps span a range that 8 bits resolve poorly, and quantising the element-wise ops as well
(onnxruntime's QLinearAdd / QLinearMul / QLinearSigmoid) measured no faster on our CPU
(``benchmarks/results.md``, "int8").

Activation ranges: the 0.001-99.999 percentiles of each activation's histogram over the calibration
images (``CALIBRATION_METHODS``), not its min-max: a few extreme values then no longer stretch the 8-bit
grid. On the demo SSDLite-MobileViT-XXS, min-max lost 0.051 AP50 (0.534 -> 0.483) and the percentiles none
(0.541), ``benchmarks/results.md``.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from torch import Tensor

# Op types quantised (when they have a weight initializer, for MatMul): the bulk of the multiply-adds.
QUANTIZED_OPS = ('Conv', 'Gemm', 'MatMul')
# How activation ranges are set from the calibration images: onnxruntime's CalibrationMethod names.
CALIBRATION_METHODS = {'percentile': 'Percentile', 'minmax': 'MinMax'}


@dataclass
class QuantizationReport:
    """What :func:`quantize_network` did."""

    path: str
    quantized_nodes: int
    float_nodes: dict[str, int]  # op type -> count of nodes left in float
    calibration_images: int
    fp32_bytes: int
    int8_bytes: int


class CalibrationReader:
    """onnxruntime ``CalibrationDataReader`` over batches of raw pixels [B, 3, H, W] (0-255)."""

    def __init__(self, batches: Iterable[Tensor | np.ndarray], input_name: str = 'image') -> None:
        self._batches = iter(batches)
        self.input_name = input_name
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        if batch is None:
            return None
        array = batch.numpy() if isinstance(batch, Tensor) else batch
        self.count += array.shape[0]
        return {self.input_name: np.ascontiguousarray(array, dtype=np.float32)}


def weighted_matmuls_and_convs(model_path: str) -> tuple[list[str], dict[str, int]]:
    """Names of the nodes to quantise (every Conv and Gemm but the first Conv; MatMuls with an initializer
    operand) and the count per op type of the others.

    The first convolution (the stem's, which reads the normalised image) stays float: keeping it so took the
    demo DeepLabv3-MobileViT-XXS's int8 loss from 1.17 to 0.67 mIoU (``benchmarks/results.md``), for one of
    about a hundred convolutions."""
    import onnx

    graph = onnx.load(model_path, load_external_data=False).graph
    initializers = {tensor.name for tensor in graph.initializer}
    constants = {out for node in graph.node if node.op_type == 'Constant' for out in node.output}
    weights = initializers | constants
    first_conv = next((node.name for node in graph.node if node.op_type == 'Conv'), None)   # nodes are in order
    chosen: list[str] = []
    left: dict[str, int] = {}
    for node in graph.node:
        quantize = (node.op_type in ('Conv', 'Gemm') and node.name != first_conv) or (
            node.op_type == 'MatMul' and any(name in weights for name in node.input))
        if quantize:
            chosen.append(node.name)
        elif node.op_type not in ('Constant', 'Shape', 'Gather', 'Unsqueeze', 'Concat', 'Reshape', 'Slice'):
            left[node.op_type] = left.get(node.op_type, 0) + 1
    return chosen, left


def quantize_network(fp32_path: str, int8_path: str, calibration: Iterable[Tensor | np.ndarray],
                     per_channel: bool = True, reduce_range: bool = False,
                     method: str = 'percentile') -> QuantizationReport:
    """Writes the int8 (QDQ) version of the ONNX network ``fp32_path`` to ``int8_path``.

    Args:
        calibration: Batches of raw pixels [B, 3, H, W] as the graph takes them (from training images,
            through the config's test-time resize): their activation ranges set the scales.
        per_channel: One weight scale per output channel (much closer to float for depthwise convs).
        reduce_range: 7-bit weights, for CPUs whose int8 instructions can saturate (AVX2's u8s8 path);
            off by default.
        method: How activation ranges are taken from the calibration: ``percentile`` (0.001-99.999 %) or
            ``minmax`` (:data:`CALIBRATION_METHODS`).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as work:
        prepared = os.path.join(work, 'prepared.onnx')
        quant_pre_process(fp32_path, prepared, skip_symbolic_shape=False)
        nodes, left = weighted_matmuls_and_convs(prepared)
        reader = CalibrationReader(calibration)
        quantize_static(prepared, int8_path, reader, quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=per_channel, reduce_range=reduce_range, op_types_to_quantize=list(QUANTIZED_OPS),
                        nodes_to_quantize=nodes, calibrate_method=CalibrationMethod[CALIBRATION_METHODS[method]],
                        extra_options={'ActivationSymmetric': False,
                                                                'WeightSymmetric': True})
    return QuantizationReport(int8_path, len(nodes), left, reader.count, os.path.getsize(fp32_path),
                              os.path.getsize(int8_path))


def calibration_batches(dataset, data_preprocessor, normalizer, count: int) -> Iterator[Tensor]:
    """The first ``count`` samples of an mmengine dataset (its pipeline applied), one image per batch, as
    raw pixels [1, 3, H, W]: batched and padded by ``data_preprocessor``, its normalisation undone."""
    from .onnx_model import raw_pixels

    for index in range(min(count, len(dataset))):
        data = data_preprocessor({'inputs': [dataset[index]['inputs']],
                                  'data_samples': [dataset[index]['data_samples']]}, False)
        yield raw_pixels(normalizer, data['inputs'])
