"""Raw-output wrappers: the network of an mmdet detector or mmseg segmentor as one tensor-in,
tensors-out module, for ONNX export and for timing the network without post-processing.

Input of every wrapper: ``image`` float32 [B, 3, H, W], pixel values 0-255 in the channel order the
data pipeline loads (BGR for mmcv's loader). The data preprocessor's channel swap and mean/std are
inside the wrapper (so inside the exported graph); resizing and padding are not.

Outputs:

* detector: ``cls_logits`` [B, A, C + 1] (softmax logits, background last, as mmdet's SSD) and
  ``box_deltas`` [B, A, 4] (encoded by the config's box coder), the A priors of all levels concatenated
  in mmdet's order (level, then row, column, anchor). Box decoding, score threshold, top-k and NMS are
  left out: :class:`mvdense.deploy.postprocess.DetectionPostProcess` does them as mmdet does.
* segmentor: ``seg_logits`` [B, K, H, W], the decode head's logits resized bilinearly to the input size
  (what mmseg's ``EncoderDecoder.encode_decode`` returns); the per-pixel argmax is left out.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..apis.inference import DETECTION, task_of


class ImageNormalizer(nn.Module):
    """The data preprocessor's pixel transform: optional channel reversal, then (x - mean) / std.

    Shape: [B, 3, H, W] -> [B, 3, H, W].
    """

    def __init__(self, data_preprocessor: nn.Module) -> None:
        super().__init__()
        self.swap_channels = bool(getattr(data_preprocessor, '_channel_conversion', False)
                                  or getattr(data_preprocessor, 'channel_conversion', False))
        normalize = getattr(data_preprocessor, '_enable_normalize', False)
        mean = data_preprocessor.mean.reshape(1, -1, 1, 1) if normalize else torch.zeros(1, 3, 1, 1)
        std = data_preprocessor.std.reshape(1, -1, 1, 1) if normalize else torch.ones(1, 3, 1, 1)
        self.register_buffer('mean', mean.clone().float(), persistent=False)
        self.register_buffer('inv_std', 1 / std.clone().float(), persistent=False)

    def forward(self, image: Tensor) -> Tensor:
        if self.swap_channels:
            image = image.flip(1)
        return (image - self.mean) * self.inv_std


def flatten_levels(maps: list[Tensor], channels_per_prior: int) -> Tensor:
    """Per-level head maps [B, A_l * K, H_l, W_l] -> [B, sum_l H_l * W_l * A_l, K], in mmdet's prior order."""
    batch = maps[0].shape[0]
    return torch.cat([m.permute(0, 2, 3, 1).reshape(batch, -1, channels_per_prior) for m in maps], dim=1)


class RawDetector(nn.Module):
    """An mmdet single-stage detector up to its head's raw outputs.

    Shape: image [B, 3, H, W] -> (cls_logits [B, A, C + 1], box_deltas [B, A, 4]).
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        head = getattr(detector, 'bbox_head', None)
        # The post-processing (DetectionPostProcess) decodes against the head's priors: only anchor-based
        # single-stage heads (our SSDLite) have them; two-stage and DETR-style detectors are not exported.
        if head is None or hasattr(detector, 'roi_head') or not hasattr(head, 'prior_generator') \
                or not hasattr(head, 'bbox_coder'):
            raise TypeError(f'{type(detector).__name__} with {type(head).__name__}: only anchor-based '
                            'single-stage detectors (SSD-style heads) are exported')
        self.normalizer = ImageNormalizer(detector.data_preprocessor)
        self.detector = detector
        self.num_score_channels = detector.bbox_head.cls_out_channels
        self.box_code_size = getattr(detector.bbox_head.bbox_coder, 'encode_size', 4)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        features = self.detector.extract_feat(self.normalizer(image))
        head_outputs = self.detector.bbox_head(features)
        if len(head_outputs) != 2:
            raise TypeError('expected a head returning (cls_scores, bbox_preds); '
                            f'{type(self.detector.bbox_head).__name__} returns {len(head_outputs)} lists')
        cls_scores, bbox_preds = head_outputs
        return (flatten_levels(cls_scores, self.num_score_channels),
                flatten_levels(bbox_preds, self.box_code_size))


class RawSegmentor(nn.Module):
    """An mmseg encoder-decoder up to its logits at the input resolution.

    Shape: image [B, 3, H, W] -> seg_logits [B, K, H, W].
    """

    def __init__(self, segmentor: nn.Module) -> None:
        super().__init__()
        self.normalizer = ImageNormalizer(segmentor.data_preprocessor)
        self.segmentor = segmentor
        self.align_corners = segmentor.decode_head.align_corners

    def forward(self, image: Tensor) -> Tensor:
        features = self.segmentor.extract_feat(self.normalizer(image))
        logits = self.segmentor.decode_head(features)
        # image.shape[-2:] stays symbolic in a trace, so the exported resize follows the input size.
        return F.interpolate(logits, size=image.shape[-2:], mode='bilinear', align_corners=self.align_corners)


def raw_network(model: nn.Module) -> nn.Module:
    """The raw-output wrapper of an mmdet detector or mmseg segmentor, in eval mode."""
    wrapper = RawDetector(model) if task_of(model) == DETECTION else RawSegmentor(model)
    return wrapper.eval()


def output_names(model: nn.Module) -> list[str]:
    """Names of the wrapper's outputs (the ONNX output names)."""
    return ['cls_logits', 'box_deltas'] if task_of(model) == DETECTION else ['seg_logits']
