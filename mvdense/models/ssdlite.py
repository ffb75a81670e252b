"""SSDLite neck and head after ml-cvnets' SSD (``cvnets/models/detection/ssd.py``, ``modules/ssd_heads.py``).

The detector itself is mmdet's ``SingleStageDetector``; anchors (``SSDAnchorGenerator`` with explicit
``min_sizes``/``max_sizes``), the box coder (``DeltaXYWHBBoxCoder`` with stds 0.1/0.2), the assigner
(``MaxIoUAssigner`` at IoU 0.5, each box forced onto its best prior) and the loss (softmax CE with 3:1
hard-negative mining + smooth L1) are mmdet's.

cvnets' layout, which these modules reproduce parameter for parameter:

* the stride-16 and stride-32 backbone maps are projected by 1x1 conv + BN + act when their width
  differs from the head's (``proj_channels``), and the extra levels are built from the *unprojected*
  stride-32 map: separable 3x3 stride-2 convs (dw + BN, pw + BN + act) to strides 64/128/256, then a
  global-pool level (pool, 1x1 conv without bias + act);
* each level predicts class scores and box offsets with one depthwise-separable conv: a 3x3 depthwise
  conv + BN shared by both outputs, then 1x1 convs (with bias). The global-pool level uses a plain 1x1
  conv. cvnets fuses the two 1x1 convs into one; two convs over the same input are the same function
  and the same parameter count (``mvdense.models.cvnets_convert`` splits cvnets' fused weights);
* every prior's width and height is capped at the input size, as cvnets clamps its priors to the image
  (mmdet's ``SSDAnchorGenerator`` does not: at 320x320, 18 of the 3,232 priors would be wider or taller
  than the image).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from mmcv.cnn import ConvModule
from mmdet.models.dense_heads import SSDHead
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine.config import ConfigDict
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor, nn

from ..deploy.postprocess import DetectionPostProcess, flatten_levels, reproducible
from .layers import SeparableConv

# cvnets initialises the SSD extra layers with Xavier-uniform (``SingleShotMaskDetector.reset_layers``);
# BaseModule deep-copies init_cfg, so sharing this default is safe.
XAVIER_INIT = dict(type='Xavier', layer='Conv2d', distribution='uniform')


@MMDET_MODELS.register_module()
class SSDLiteNeck(BaseModule):
    """Projects the backbone maps and adds stride-2 separable levels and a global-pool level.

    Args:
        in_channels: Widths of the backbone maps (e.g. stride 16 and 32).
        out_channels: Widths of all output levels: first one per backbone map, then one per extra level.
            The last extra level is the global-pool one.
        norm_cfg / act_cfg: Of the projections and extra layers (cvnets: BN/SyncBN and ReLU).

    Shape: ``len(in_channels)`` maps -> ``len(out_channels)`` maps; the extra ones halve the size of the
    previous level (ceil) and the last is 1x1.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int], norm_cfg: dict | None = None,
                 act_cfg: dict | None = None,
                 init_cfg: dict | list | None = XAVIER_INIT) -> None:
        super().__init__(init_cfg=init_cfg)
        if len(out_channels) < len(in_channels) + 1:
            raise ValueError('SSDLiteNeck needs at least one extra (global-pool) level: '
                             f'in_channels={in_channels}, out_channels={out_channels}')
        norm_cfg = norm_cfg or dict(type='BN')
        act_cfg = act_cfg or dict(type='ReLU')
        self.projections = nn.ModuleList(
            nn.Identity() if c_in == c_out else ConvModule(c_in, c_out, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
            for c_in, c_out in zip(in_channels, out_channels))
        self.extra_layers = nn.ModuleList()
        previous = in_channels[-1]
        extra_channels = list(out_channels[len(in_channels):])
        for width in extra_channels[:-1]:
            self.extra_layers.append(SeparableConv(previous, width, 3, stride=2, norm_cfg=norm_cfg,
                                                   pw_norm_cfg=norm_cfg, pw_act_cfg=act_cfg))
            previous = width
        self.extra_layers.append(nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            ConvModule(previous, extra_channels[-1], 1, norm_cfg=None, act_cfg=act_cfg, bias=False)))

    def forward(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        outs = [projection(x) for projection, x in zip(self.projections, inputs)]
        x = inputs[-1]
        for layer in self.extra_layers:
            x = layer(x)
            outs.append(x)
        return tuple(outs)


@MMDET_MODELS.register_module()
class SSDLiteHead(SSDHead):
    """mmdet's ``SSDHead`` with cvnets' depthwise-separable prediction layers.

    Args:
        kernel_sizes: Depthwise kernel per level; 1 means a plain 1x1 prediction conv (cvnets uses 1 on the
            global-pool level). Defaults to 3 everywhere but the last level.
        norm_cfg: Norm of the depthwise convs (BN / SyncBN).
        max_prior_size: Cap on every prior's width and height, in pixels (each prior keeps its centre), as
            cvnets clamps its priors to the image. Defaults to the stride of the last level: SSDLite's
            last level is the global-pool one, a single location whose stride is the input side (320).
        Other arguments as mmdet's ``SSDHead`` (``use_depthwise``/``stacked_convs`` are not used).

    ``test_cfg`` takes mmdet's keys and two of cvnets' post-processing rules: ``max_per_class`` (keep the
    best k boxes of each class after NMS) and ``clip_after_nms`` (clip the boxes to the image after NMS;
    with ``bbox_coder.clip_border=False``, nothing is clipped before).

    Also repairs mmdet 3.3.0's ``SSDHead.predict``, which reads a ``loss_cls`` attribute that ``SSDHead``
    never sets (SSD computes its softmax CE inline): we set ``loss_cls = None``, which is what the
    prediction code's ``getattr(self.loss_cls, 'custom_cls_channels', False)`` expects of a plain head.

    Shape: per level [B, C_l, H_l, W_l] -> scores [B, A_l * (num_classes + 1), H_l, W_l] and
    offsets [B, A_l * 4, H_l, W_l].
    """

    def __init__(self, *args, kernel_sizes: Sequence[int] | None = None, norm_cfg: dict | None = None,
                 max_prior_size: float | None = None, **kwargs) -> None:
        self._kernel_sizes = kernel_sizes
        self._dw_norm_cfg = norm_cfg or dict(type='BN')
        super().__init__(*args, **kwargs)
        self.loss_cls = None
        if max_prior_size is None:
            max_prior_size = max(self.prior_generator.strides[-1])
        self.prior_generator.base_anchors = [cap_prior_size(anchors, max_prior_size)
                                             for anchors in self.prior_generator.base_anchors]

    def _init_layers(self) -> None:
        kernel_sizes = self._kernel_sizes or [3] * (len(self.in_channels) - 1) + [1]
        if len(kernel_sizes) != len(self.in_channels):
            raise ValueError(f'kernel_sizes {kernel_sizes} must give one entry per level '
                             f'(in_channels={self.in_channels})')
        self.depthwise_convs = nn.ModuleList()
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        for channels, num_priors, kernel in zip(self.in_channels, self.num_base_priors, kernel_sizes):
            self.depthwise_convs.append(
                nn.Identity() if kernel == 1 else
                ConvModule(channels, channels, kernel, padding=kernel // 2, groups=channels,
                           norm_cfg=self._dw_norm_cfg, act_cfg=None))
            self.cls_convs.append(nn.Conv2d(channels, num_priors * self.cls_out_channels, 1))
            self.reg_convs.append(nn.Conv2d(channels, num_priors * 4, 1))

    def forward(self, x: tuple[Tensor, ...]) -> tuple[list[Tensor], list[Tensor]]:
        cls_scores, bbox_preds = [], []
        for feat, depthwise, cls_conv, reg_conv in zip(x, self.depthwise_convs, self.cls_convs, self.reg_convs):
            shared = depthwise(feat)
            cls_scores.append(cls_conv(shared))
            bbox_preds.append(reg_conv(shared))
        return cls_scores, bbox_preds

    def predict_by_feat(self, cls_scores: list[Tensor], bbox_preds: list[Tensor],
                        score_factors: list[Tensor] | None = None, batch_img_metas: list[dict] | None = None,
                        cfg: ConfigDict | None = None, rescale: bool = False,
                        with_nms: bool = True) -> list[InstanceData]:
        """Per-level maps (as :meth:`forward` returns them) -> one ``InstanceData`` (bboxes [N, 4],
        scores [N], labels [N]) per image.

        The same detections as mmdet's ``predict_by_feat`` (tested), computed by
        :class:`mvdense.deploy.postprocess.DetectionPostProcess`: top-k instead of sorting every
        candidate and per-class NMS, which matters when many candidates pass the score threshold (an
        untrained or early model: mmdet's path then costs more than the network). Settings it does not
        reproduce (another NMS type, ``with_nms=False``) take mmdet's path.
        """
        cfg = self.test_cfg if cfg is None else cfg
        if not with_nms or reproducible(self, cfg):
            return super().predict_by_feat(cls_scores, bbox_preds, score_factors, batch_img_metas, cfg,
                                           rescale, with_nms)
        level_priors = self.prior_generator.grid_priors([m.shape[-2:] for m in cls_scores],
                                                        dtype=cls_scores[0].dtype, device=cls_scores[0].device)
        cls_logits = flatten_levels(cls_scores, self.cls_out_channels)
        box_deltas = flatten_levels(bbox_preds, self.bbox_coder.encode_size)
        results, posts = [], {}   # one post-processing per image size in the batch (usually one)
        for logits, deltas, img_meta in zip(cls_logits, box_deltas, batch_img_metas):
            size = tuple(img_meta['img_shape'][:2])
            if size not in posts:
                posts[size] = DetectionPostProcess.from_head(self, level_priors, size, cfg)
            post = posts[size]
            bboxes, scores, labels = post(logits, deltas, img_meta['scale_factor'] if rescale else None)
            detections = InstanceData(bboxes=bboxes, scores=scores, labels=labels)
            results.append(self._apply_cvnets_rules(detections, cfg, rescale, img_meta))
        return results

    def _bbox_post_process(self, results: InstanceData, cfg: ConfigDict, rescale: bool = False,
                           with_nms: bool = True, img_meta: dict | None = None) -> InstanceData:
        """mmdet's post-processing (rescale, NMS, ``max_per_img``), then ``cfg.max_per_class`` and
        ``cfg.clip_after_nms`` if set. ``results.bboxes``: [N, 4] (x1, y1, x2, y2)."""
        results = super()._bbox_post_process(results, cfg, rescale=rescale, with_nms=with_nms, img_meta=img_meta)
        return self._apply_cvnets_rules(results, cfg, rescale, img_meta)

    @staticmethod
    def _apply_cvnets_rules(results: InstanceData, cfg: ConfigDict, rescale: bool,
                            img_meta: dict | None) -> InstanceData:
        """cvnets' rules after NMS: the best ``cfg.max_per_class`` boxes of each class, and boxes clipped
        to the (original, with ``rescale``) image with ``cfg.clip_after_nms``."""
        if cfg.get('max_per_class'):
            results = results[top_k_per_class(results.scores, results.labels, cfg.max_per_class)]
        if cfg.get('clip_after_nms'):
            height, width = img_meta['ori_shape' if rescale else 'img_shape'][:2]
            results.bboxes[:, 0::2] = results.bboxes[:, 0::2].clamp(0, width)
            results.bboxes[:, 1::2] = results.bboxes[:, 1::2].clamp(0, height)
        return results


def cap_prior_size(anchors: Tensor, max_size: float) -> Tensor:
    """Caps the width and height of boxes at ``max_size``, keeping their centres (other boxes are returned
    as they are).

    Shape: [N, 4] (x1, y1, x2, y2) -> [N, 4].
    """
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    too_large = (anchors[:, 2:] - anchors[:, :2] > max_size).repeat(1, 2)
    capped = torch.cat([centres - max_size / 2, centres + max_size / 2], dim=1)
    return torch.where(too_large, capped, anchors)


def top_k_per_class(scores: Tensor, labels: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` best-scoring boxes of each class, in descending score order.

    Shape: scores [N], labels [N] -> indices [M], M <= N.
    """
    order = scores.argsort(descending=True, stable=True)
    sorted_labels = labels[order]
    # Rank of each box within its class: boxes of one class are contiguous after a stable sort by label.
    by_class = sorted_labels.argsort(stable=True)
    class_starts = torch.searchsorted(sorted_labels[by_class], sorted_labels[by_class])
    ranks = torch.empty_like(by_class)
    ranks[by_class] = torch.arange(len(by_class), device=labels.device) - class_starts
    return order[ranks < k]
