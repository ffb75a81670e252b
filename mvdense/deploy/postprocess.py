"""Post-processing of raw network outputs, outside the exported graph, reproducing mmdet and mmseg.

Needs torch and torchvision only (no mmdet), so it runs next to onnxruntime in a deployment:

    post = DetectionPostProcess.from_json('ssdlite.onnx.json')   # written by tools/export_onnx.py
    cls_logits, box_deltas = session.run(None, {'image': image})
    boxes, scores, labels = post(torch.from_numpy(cls_logits[0]), torch.from_numpy(box_deltas[0]))

Detection follows mmdet 3.3.0's ``BaseDenseHead._predict_by_feat_single`` for softmax heads with
``DeltaXYWHBBoxCoder`` (SSD): per level, softmax without the background column, score threshold, top
``nms_pre`` (score, class) pairs; decoding of the kept deltas against their priors (clipped to the
image); boxes not wider and taller than ``min_bbox_size`` dropped; class-wise NMS; the best
``max_per_img`` kept. Same boxes as mmdet (up to float rounding and the order of exactly tied scores),
several times faster when many candidates pass the score threshold (``benchmarks/results.md``).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import batched_nms


@dataclass
class DetectionPostProcess:
    """Box decoding + NMS for the outputs of :class:`mvdense.deploy.wrappers.RawDetector`.

    Attributes:
        priors: [A, 4] anchors (x1, y1, x2, y2) in input pixels, in the raw outputs' order.
        level_sizes: Priors per level (the score threshold and top-k apply per level, as in mmdet).
        image_size: (H, W) of the network input the priors are laid out for; boxes are clipped to it.
        means / stds: The box coder's delta normalisation.
        score_thr / nms_pre / iou_threshold / max_per_img / min_bbox_size: mmdet's ``test_cfg``.
        wh_ratio_clip: Bounds |log(width or height scale)| by log(1 / wh_ratio_clip); mmdet's heads call
            the coder's ``decode`` with its default, 16 / 1000.
        clip_border: Clip decoded boxes to ``image_size`` (the coder's ``clip_border``).
    """

    priors: Tensor
    level_sizes: list[int]
    image_size: tuple[int, int]
    means: tuple[float, ...] = (0., 0., 0., 0.)
    stds: tuple[float, ...] = (1., 1., 1., 1.)
    score_thr: float = 0.0
    nms_pre: int = -1
    iou_threshold: float = 0.5
    max_per_img: int = 100
    min_bbox_size: float = -1
    wh_ratio_clip: float = 16 / 1000
    clip_border: bool = True
    class_names: list[str] = field(default_factory=list)

    @classmethod
    def from_detector(cls, detector: torch.nn.Module, image_size: tuple[int, int]) -> DetectionPostProcess:
        """Reads priors, coder and ``test_cfg`` off an mmdet single-stage detector for this input size."""
        head = detector.bbox_head
        level_priors = head.prior_generator.grid_priors(head_level_sizes(detector, image_size), device='cpu')
        classes = detector.dataset_meta.get('classes', ()) if getattr(detector, 'dataset_meta', None) else ()
        return cls.from_head(head, level_priors, image_size, class_names=list(classes))

    @classmethod
    def from_head(cls, head: torch.nn.Module, level_priors: list[Tensor], image_size: tuple[int, int],
                  cfg: dict | None = None, class_names: list[str] | None = None) -> DetectionPostProcess:
        """For an mmdet softmax head with ``DeltaXYWHBBoxCoder`` (SSD), its priors per level ([A_l, 4]
        each) and an input size; ``cfg`` overrides the head's ``test_cfg``."""
        coder = head.bbox_coder
        cfg = cfg or head.test_cfg
        check_reproducible(head, cfg)
        return cls(priors=torch.cat(level_priors), level_sizes=[len(p) for p in level_priors],
                   image_size=(int(image_size[0]), int(image_size[1])), means=tuple(coder.means),
                   stds=tuple(coder.stds), score_thr=float(cfg.get('score_thr', 0)),
                   nms_pre=int(cfg.get('nms_pre', -1)),
                   iou_threshold=float(cfg.get('nms', {}).get('iou_threshold', 0.5)),
                   max_per_img=int(cfg.get('max_per_img', 100)),
                   min_bbox_size=float(cfg.get('min_bbox_size', -1)),
                   clip_border=bool(getattr(coder, 'clip_border', True)), class_names=list(class_names or ()))

    def to_dict(self) -> dict:
        """JSON-ready dict (priors as nested lists)."""
        data = asdict(self)
        data['priors'] = self.priors.tolist()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> DetectionPostProcess:
        data = dict(data)
        data['priors'] = torch.tensor(data['priors'], dtype=torch.float32)
        data['image_size'] = tuple(data['image_size'])
        data['means'], data['stds'] = tuple(data['means']), tuple(data['stds'])
        return cls(**data)

    @classmethod
    def from_json(cls, path: str) -> DetectionPostProcess:
        """Reads the ``postprocess`` entry of the JSON file ``tools/export_onnx.py`` writes beside the model."""
        with open(path) as file:
            return cls.from_dict(json.load(file)['postprocess'])

    def decode(self, deltas: Tensor, priors: Tensor) -> Tensor:
        """Deltas [N, 4] against priors [N, 4] -> boxes [N, 4] (x1, y1, x2, y2), clipped to the image."""
        deltas = deltas * deltas.new_tensor(self.stds) + deltas.new_tensor(self.means)
        centres = (priors[:, :2] + priors[:, 2:]) * 0.5
        sizes = priors[:, 2:] - priors[:, :2]
        max_ratio = abs(math.log(self.wh_ratio_clip))
        new_centres = centres + sizes * deltas[:, :2]
        new_sizes = sizes * deltas[:, 2:].clamp(min=-max_ratio, max=max_ratio).exp()
        boxes = torch.cat([new_centres - new_sizes * 0.5, new_centres + new_sizes * 0.5], dim=-1)
        if self.clip_border:
            height, width = self.image_size
            boxes[:, 0::2] = boxes[:, 0::2].clamp(min=0, max=width)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(min=0, max=height)
        return boxes

    def select_candidates(self, cls_logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """cls_logits [A, C + 1] -> (scores [M], labels [M], prior indices [M]): per level, the top
        ``nms_pre`` (prior, class) pairs scoring above ``score_thr``.

        mmdet (``filter_scores_and_topk``) thresholds, then sorts all survivors; the best ``nms_pre`` of
        all pairs, then thresholded, are the same pairs, and ``topk`` finds them without sorting
        everything (what costs most when, as with untrained weights, most pairs pass the threshold).
        """
        all_scores, all_labels, all_priors = [], [], []
        start = 0
        for size in self.level_sizes:
            scores = cls_logits[start:start + size].softmax(-1)[:, :-1]
            num_classes = scores.shape[1]
            flat = scores.reshape(-1)
            keep = flat.numel() if self.nms_pre < 0 else min(self.nms_pre, flat.numel())
            top_scores, top_index = flat.topk(keep)
            above = top_scores > self.score_thr
            top_scores, top_index = top_scores[above], top_index[above]
            all_scores.append(top_scores)
            all_labels.append(top_index % num_classes)
            all_priors.append(top_index // num_classes + start)
            start += size
        return torch.cat(all_scores), torch.cat(all_labels), torch.cat(all_priors)

    def __call__(self, cls_logits: Tensor, box_deltas: Tensor,
                 scale_factor: tuple[float, float] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """One image's raw outputs -> (boxes [D, 4], scores [D], labels [D]), best first.

        Args:
            cls_logits: [A, C + 1] (background last).
            box_deltas: [A, 4].
            scale_factor: (w_scale, h_scale) by which the image was resized before the network; the boxes
                are divided by it (mmdet's ``rescale=True``). None: boxes in network-input pixels.
        """
        if cls_logits.shape[0] != self.priors.shape[0]:
            raise ValueError(f'{cls_logits.shape[0]} predictions for {self.priors.shape[0]} priors: the priors '
                             f'are laid out for {self.image_size} inputs')
        scores, labels, prior_index = self.select_candidates(cls_logits)
        boxes = self.decode(box_deltas[prior_index], self.priors[prior_index])
        if scale_factor is not None:
            # mmdet multiplies by the reciprocal (scale_boxes): same rounding.
            boxes = boxes * boxes.new_tensor([1 / s for s in scale_factor]).repeat(2)
        if self.min_bbox_size >= 0:
            widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
            large = (widths > self.min_bbox_size) & (heights > self.min_bbox_size)
            boxes, scores, labels = boxes[large], scores[large], labels[large]
        keep = class_wise_nms(boxes, scores, labels, self.iou_threshold)[:self.max_per_img]
        return boxes[keep], scores[keep], labels[keep]


def head_level_sizes(detector: torch.nn.Module, image_size: tuple[int, int]) -> list[tuple[int, int]]:
    """(H_l, W_l) of each level of a single-stage detector's head for an input size, from one forward of a
    blank image through its network."""
    with torch.no_grad():
        features = detector.extract_feat(torch.zeros(1, 3, *image_size))
        return [tuple(m.shape[-2:]) for m in detector.bbox_head(features)[0]]


def flatten_levels(maps: list[Tensor], channels_per_prior: int) -> Tensor:
    """Per-level head maps [B, A_l * K, H_l, W_l] -> [B, sum_l H_l * W_l * A_l, K], in mmdet's prior order."""
    batch = maps[0].shape[0]
    return torch.cat([m.permute(0, 2, 3, 1).reshape(batch, -1, channels_per_prior) for m in maps], dim=1)


def reproducible(head: torch.nn.Module, cfg: dict) -> str:
    """Why :class:`DetectionPostProcess` would not reproduce ``head``'s post-processing with ``cfg``
    (mmdet's ``test_cfg``), or '' when it does."""
    coder = head.bbox_coder
    if type(coder).__name__ != 'DeltaXYWHBBoxCoder' or getattr(head, 'use_sigmoid_cls', False):
        return f'only softmax heads with DeltaXYWHBBoxCoder (SSD), not {type(head).__name__} with ' \
               f'{type(coder).__name__}'
    if getattr(coder, 'add_ctr_clamp', False):
        return 'DeltaXYWHBBoxCoder with add_ctr_clamp'
    nms_cfg = cfg.get('nms') or {}
    if nms_cfg.get('type', 'nms') != 'nms' or nms_cfg.get('class_agnostic', False):
        return f'NMS {dict(nms_cfg)}'
    return ''


def check_reproducible(head: torch.nn.Module, cfg: dict) -> None:
    """Raises ``NotImplementedError`` naming what :class:`DetectionPostProcess` does not reproduce."""
    problem = reproducible(head, cfg)
    if problem:
        raise NotImplementedError(problem)


def class_wise_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each class: boxes [N, 4], scores [N], labels [N] -> kept indices [K], best first.

    mmcv's ``batched_nms`` shifts each class's boxes apart and runs one NMS; torchvision's does the same
    for small N and one NMS per class for large N (several times faster for thousands of boxes). Both
    keep the same boxes (up to the rounding of the shifted coordinates at IoU = iou_threshold).
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    return batched_nms(boxes, scores, labels, iou_threshold)


def segmentation_mask(seg_logits: Tensor, output_size: tuple[int, int] | None = None,
                      align_corners: bool = False, threshold: float = 0.5) -> Tensor:
    """seg_logits [B, K, H, W] -> class indices [B, H', W'] (int64), as mmseg's ``postprocess_result``.

    ``output_size`` (H', W'): resize the logits (bilinear) to the original image size first, when the
    image was resized before the network. One channel (K = 1) means a sigmoid and ``threshold`` (the
    decode head's ``threshold``).
    """
    if output_size is not None and tuple(seg_logits.shape[-2:]) != tuple(output_size):
        seg_logits = F.interpolate(seg_logits, size=output_size, mode='bilinear', align_corners=align_corners)
    if seg_logits.shape[1] == 1:
        return (seg_logits.sigmoid() > threshold).squeeze(1).long()
    # max().indices is argmax (first maximum on ties), and faster than argmax() over dim 1 of NCHW.
    return seg_logits.max(dim=1).indices
