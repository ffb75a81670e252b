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
* DETR-style detector (mmdet's ``DetectionTransformer``: our E2E-MF, mmdet's DETR): the last decoder
  layer's ``query_logits`` [B, N, K] and ``query_boxes`` [B, N, 4] (normalised cx, cy, w, h), and the
  detections the head's ``predict_by_feat`` keeps from them, ``boxes`` [B, D, 4] (x1, y1, x2, y2 in
  input pixels), ``scores`` [B, D], ``labels`` [B, D] int64. Set prediction needs no NMS: the
  post-processing is a top-k, cheap enough to live in the graph.
* segmentor: ``seg_logits`` [B, K, H, W], the decode head's logits resized bilinearly to the input size
  (what mmseg's ``EncoderDecoder.encode_decode`` returns); the per-pixel argmax is left out.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from mmdet.models.dense_heads import DeformableDETRHead, DETRHead
from mmdet.models.detectors import DetectionTransformer
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from torch import Tensor, nn

from ..apis.inference import DETECTION, task_of
from .postprocess import flatten_levels

DETECTOR_OUTPUTS = ['cls_logits', 'box_deltas']
END_TO_END_OUTPUTS = ['query_logits', 'query_boxes', 'boxes', 'scores', 'labels']
SEGMENTOR_OUTPUTS = ['seg_logits']


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


class RawDetector(nn.Module):
    """An mmdet single-stage detector up to its head's raw outputs.

    Shape: image [B, 3, H, W] -> (cls_logits [B, A, C + 1], box_deltas [B, A, 4]).
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        head = getattr(detector, 'bbox_head', None)
        # The post-processing (DetectionPostProcess) decodes against the head's priors: only anchor-based
        # single-stage heads (our SSDLite) have them. Two-stage detectors are not exported; DETR-style
        # ones have RawEndToEndDetector.
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


class RawEndToEndDetector(nn.Module):
    """A DETR-style mmdet detector (``DetectionTransformer`` with a DETR / DAB-DETR head: our
    E2EMobileFormer, mmdet's DETR) up to its last decoder layer's predictions, then the detections its
    head's ``predict_by_feat`` keeps from them (with ``rescale=False``: boxes in input pixels).

    Shape: image [B, 3, H, W] -> (query_logits [B, N, K], query_boxes [B, N, 4] sigmoid (cx, cy, w, h)
    relative to the image, boxes [B, D, 4] (x1, y1, x2, y2) in input pixels, scores [B, D], labels [B, D]
    int64), N queries, D = ``test_cfg.max_per_img``; K = C classes for a sigmoid head, C + 1 (background
    last) for a softmax one.
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        head = getattr(detector, 'bbox_head', None)
        if not is_end_to_end(detector) or not _has_stacked_layer_outputs(head):
            raise TypeError(f'{type(detector).__name__} with {type(head).__name__}: only DETR-style detectors '
                            'with a DETR / Conditional / DAB-DETR head are exported end to end')
        self.normalizer = ImageNormalizer(detector.data_preprocessor)
        self.detector = detector
        self.sigmoid = bool(head.loss_cls.use_sigmoid)
        self.num_classes = head.num_classes
        self.max_per_img = int(head.test_cfg.get('max_per_img', detector.num_queries))

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        query_logits, query_boxes = self.predict_queries(image)
        return (query_logits, query_boxes, *self.top_detections(query_logits, query_boxes, image))

    def predict_queries(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """image [B, 3, H, W] -> last layer's logits [B, N, K] and boxes [B, N, 4] (normalised cx, cy, w, h)."""
        features = self.detector.extract_feat(self.normalizer(image))
        head_inputs = self.detector.forward_transformer(features, unpadded_samples(image))
        # Only the last decoder layer predicts at test time (mmdet's heads do the same in predict).
        cls_scores, bbox_preds = self.detector.bbox_head(**{k: v[-1:] for k, v in head_inputs.items()})
        return cls_scores[0], bbox_preds[0]

    def top_detections(self, query_logits: Tensor, query_boxes: Tensor,
                       image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """mmdet's ``DETRHead._predict_by_feat_single`` for a batch: logits [B, N, K], boxes [B, N, 4] ->
        boxes [B, D, 4] (x1, y1, x2, y2, clamped to the image), scores [B, D], labels [B, D].

        Sigmoid head: the top D (query, class) pairs; softmax head: each query's best foreground class,
        then the top D queries."""
        if self.sigmoid:
            scores, indices = query_logits.sigmoid().flatten(1).topk(self.max_per_img, dim=1)
            labels, query = indices % self.num_classes, indices // self.num_classes
        else:
            best, classes = query_logits.softmax(-1)[..., :-1].max(-1)
            scores, query = best.topk(self.max_per_img, dim=1)
            labels = classes.gather(1, query)
        boxes = bbox_cxcywh_to_xyxy(query_boxes.gather(1, query[..., None].expand(-1, -1, 4)))
        # [W, H, W, H] from the input's shape as a tensor: the graph then scales by the size it is run at.
        scale = torch._shape_as_tensor(image)[2:].flip(0).repeat(2).to(boxes.dtype)
        return torch.minimum((boxes * scale).clamp(min=0), scale), scores, labels


def unpadded_samples(image: Tensor) -> list:
    """One data sample per image of ``image`` [B, 3, H, W], each filling the batch (no padding masks):
    what DETR-style detectors read the batch and image shapes from."""
    size = tuple(image.shape[-2:])
    return [DetDataSample(metainfo=dict(batch_input_shape=size, img_shape=size)) for _ in range(len(image))]


def is_end_to_end(model: nn.Module) -> bool:
    """Whether ``model`` is a DETR-style (set-prediction) mmdet detector."""
    return isinstance(model, DetectionTransformer)


def _has_stacked_layer_outputs(head: nn.Module | None) -> bool:
    """DETR-family heads whose inputs are per-layer tensors [L, ...] (Deformable DETR's and DINO's take a
    list of references per layer, and two-stage encoder outputs)."""
    return isinstance(head, DETRHead) and not isinstance(head, DeformableDETRHead)


def raw_network(model: nn.Module) -> nn.Module:
    """The raw-output wrapper of an mmdet detector (single-stage or DETR-style) or mmseg segmentor, in eval
    mode."""
    if task_of(model) != DETECTION:
        return RawSegmentor(model).eval()
    return (RawEndToEndDetector(model) if is_end_to_end(model) else RawDetector(model)).eval()


def output_names(model: nn.Module) -> list[str]:
    """Names of the wrapper's outputs (the ONNX output names)."""
    if task_of(model) != DETECTION:
        return list(SEGMENTOR_OUTPUTS)
    return list(END_TO_END_OUTPUTS if is_end_to_end(model) else DETECTOR_OUTPUTS)
