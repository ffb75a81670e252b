"""An exported network (fp32 or int8 ONNX) in place of the torch model of an mmdet/mmseg config, so that
``tools/test.py --backend onnxruntime`` evaluates it with the config's own data pipeline, data
preprocessor, post-processing and metric:

    model = onnxruntime_model(runner.model, 'work_dirs/onnx/ssdlite.onnx')   # then runner.test()

What runs where: the config's pipeline (loading, resizing) and data preprocessor (batching, padding,
normalisation) as in a torch evaluation; the exported graph (which normalises inside, see
:mod:`mvdense.deploy.wrappers`) on the batch with the normalisation undone; then the model's own
post-processing: the SSD head's ``predict_by_feat`` (decoding, NMS, rescaling to the original image) or
mmseg's ``postprocess_result`` (crop of the padding, resize to the original image, argmax). Only the
network's weights come from the ONNX file; the torch model is built for its post-processing and priors.
"""
from __future__ import annotations

import json
import os.path as osp
import types

import torch
from torch import Tensor, nn

from ..apis.inference import DETECTION, task_of
from .onnx_export import make_session, run_session
from .postprocess import head_level_sizes
from .wrappers import DETECTOR_OUTPUTS, SEGMENTOR_OUTPUTS, ImageNormalizer


class OnnxModelError(ValueError):
    """The ONNX file does not fit the config's model (task, class count, input size)."""


def raw_pixels(normalizer: ImageNormalizer, inputs: Tensor) -> Tensor:
    """Undoes the data preprocessor's normalisation and channel swap: the batch [B, 3, H, W] as the
    exported graph takes it (0-255, channel order as loaded). Padding, which the preprocessor fills with
    0 after normalising, comes back as the mean, which the graph normalises to 0 again."""
    pixels = inputs.float() / normalizer.inv_std + normalizer.mean
    return pixels.flip(1) if normalizer.swap_channels else pixels


class OnnxRuntimeModel(nn.Module):
    """Runs ``model.test_step`` with the network replaced by an onnxruntime session.

    Args:
        model: The config's detector (an SSD-style single-stage one) or segmentor; its data preprocessor
            and post-processing are used, its network weights are not.
        path: The ONNX file written by ``tools/export_onnx.py`` or ``tools/quantize.py``.
        threads: onnxruntime intra-op threads.
    """

    def __init__(self, model: nn.Module, path: str, threads: int = 1) -> None:
        super().__init__()
        self.model = model.eval()
        self.path = path
        self.task = task_of(model)
        self.normalizer = ImageNormalizer(model.data_preprocessor)
        self.session = make_session(path, threads)
        self._check_outputs()
        self._level_shapes: dict[tuple[int, int], list[tuple[int, int]]] = {}

    @property
    def data_preprocessor(self) -> nn.Module:
        return self.model.data_preprocessor

    def _check_outputs(self) -> None:
        names = [output.name for output in self.session.get_outputs()]
        expected = DETECTOR_OUTPUTS if self.task == DETECTION else SEGMENTOR_OUTPUTS
        if names[:len(expected)] != expected:
            raise OnnxModelError(f'{self.path}: outputs {names}, but the config is a {self.task} model whose '
                                 f'export has outputs {expected}')
        width = self.session.get_outputs()[0].shape[-1 if self.task == DETECTION else 1]
        classes = (self.model.bbox_head.cls_out_channels if self.task == DETECTION
                   else self.model.decode_head.out_channels)
        if isinstance(width, int) and width != classes:
            raise OnnxModelError(f'{self.path}: {width} score channels, the config\'s model has {classes}: '
                                 'exported from another config?')

    def run(self, inputs: Tensor) -> list[Tensor]:
        """Normalised batch [B, 3, H, W] -> the graph's outputs as tensors."""
        pixels = raw_pixels(self.normalizer, inputs)
        try:
            outputs = run_session(self.session, pixels)
        except Exception as error:  # onnxruntime raises its own Fail / InvalidArgument types
            raise OnnxModelError(f'{self.path}: onnxruntime could not run a batch of shape '
                                 f'{list(pixels.shape)} (a fixed-size export and another test size?): '
                                 f'{str(error).splitlines()[0]}') from None
        return [torch.from_numpy(output) for output in outputs]

    def test_step(self, data: dict) -> list:
        data = self.model.data_preprocessor(data, False)
        with torch.no_grad():
            if self.task == DETECTION:
                return self._detect(data['inputs'], data['data_samples'])
            return self._segment(data['inputs'], data['data_samples'])

    val_step = test_step

    def _detect(self, inputs: Tensor, data_samples: list) -> list:
        """mmdet's ``SingleStageDetector.predict`` with the network's maps from onnxruntime."""
        cls_logits, box_deltas = self.run(inputs)[:2]
        head = self.model.bbox_head
        shapes = self.level_shapes(tuple(inputs.shape[-2:]))
        cls_maps = unflatten_levels(cls_logits, shapes, head.num_base_priors)
        box_maps = unflatten_levels(box_deltas, shapes, head.num_base_priors)
        metas = [sample.metainfo for sample in data_samples]
        results = head.predict_by_feat(cls_maps, box_maps, batch_img_metas=metas, rescale=True)
        return self.model.add_pred_to_datasample(data_samples, results)

    def level_shapes(self, input_size: tuple[int, int]) -> list[tuple[int, int]]:
        """(H_l, W_l) of the head's levels for an input size: the torch network's, computed once per size."""
        if input_size not in self._level_shapes:
            self._level_shapes[input_size] = head_level_sizes(self.model, input_size)
        return self._level_shapes[input_size]

    def _segment(self, inputs: Tensor, data_samples: list) -> list:
        """mmseg's ``EncoderDecoder.predict`` (whole or sliding-window inference) with every
        ``encode_decode`` call run by onnxruntime."""
        model = self.model
        model.encode_decode = types.MethodType(lambda _, crops, metas: self.run(crops)[0], model)
        try:
            return model.predict(inputs, data_samples)
        finally:
            del model.encode_decode


def unflatten_levels(flat: Tensor, level_shapes: list[tuple[int, int]], priors_per_cell: list[int]) -> list[Tensor]:
    """[B, sum_l H_l * W_l * A_l, K] (mmdet's prior order) -> per-level maps [B, A_l * K, H_l, W_l], the
    inverse of :func:`mvdense.deploy.postprocess.flatten_levels`."""
    counts = [h * w * a for (h, w), a in zip(level_shapes, priors_per_cell)]
    if sum(counts) != flat.shape[1]:
        raise OnnxModelError(f'the graph gives {flat.shape[1]} priors, the config\'s head has {sum(counts)} '
                             f'at levels {level_shapes}: exported for another input size or config?')
    maps = []
    for chunk, (height, width) in zip(flat.split(counts, dim=1), level_shapes):
        maps.append(chunk.reshape(flat.shape[0], height, width, -1).permute(0, 3, 1, 2))
    return maps


def onnxruntime_model(model: nn.Module, path: str, threads: int = 1) -> OnnxRuntimeModel:
    """``model`` (unwrapped, eval) evaluated through the ONNX file ``path``; checks the file and the task
    recorded beside it (``path + '.json'``, written by the export) against the config."""
    if not osp.isfile(path):
        raise OnnxModelError(f'ONNX file not found: {path}')
    metadata_path = path + '.json'
    if osp.isfile(metadata_path):
        with open(metadata_path) as file:
            task = json.load(file).get('task')
        if task and task != task_of(model):
            raise OnnxModelError(f'{path} is a {task} model ({metadata_path}), the config a {task_of(model)} one')
    return OnnxRuntimeModel(model, path, threads)

