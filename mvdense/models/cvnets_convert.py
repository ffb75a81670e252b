"""Key mappings from apple/ml-cvnets' trained SSD-MobileViT (COCO) and DeepLabv3-MobileViT (VOC) checkpoints
(the model zoo of cvnets v0.1: ``detection/ssd_mobilevit_{xxs,xs,s}_320.pt``,
``segmentation/deeplabv3_mobilevit_{xxs,xs,s}.pt``) to our detectors and segmentors.

The files are flat state dicts of the whole model. Every tensor has exactly one place in ours, except each
level's fused SSD prediction conv, which becomes our box conv and our class conv. cvnets' ``ConvLayer``
names its parts ``block.conv`` / ``block.norm``; mmcv's ``ConvModule`` calls them ``conv`` / ``bn``::

    encoder.<key>                                        -> backbone.<key by the ImageNet rules of
                                                            mvdense.models.backbones.mobilevit_convert>
    SSD (levels at output strides 16, 32, 64, 128, 256 and the global-pool level):
    ssd_heads.{0,1}.proj_layer                           -> neck.projections.{0,1}
    extra_layers.os_{64,128,256}.{dw_conv,pw_conv}       -> neck.extra_layers.{0,1,2}.{depthwise,pointwise}
    extra_layers.os_-1.1                                 -> neck.extra_layers.3.1
    ssd_heads.i.loc_cls_layer.dw_conv                    -> bbox_head.depthwise_convs.i
    ssd_heads.i.loc_cls_layer.pw_conv (ssd_heads.5.loc_cls_layer on the global-pool level)
                                                         -> bbox_head.reg_convs.i + bbox_head.cls_convs.i
    DeepLabv3:
    seg_head.aspp.aspp_layer.convs.{0..3}                -> decode_head.aspp_branches.{0..3}
    seg_head.aspp.aspp_layer.convs.4.aspp_pool.conv_1x1  -> decode_head.aspp_branches.4.conv
    seg_head.aspp.aspp_layer.project                     -> decode_head.projection
    seg_head.classifier.classifier.block.conv            -> decode_head.conv_seg

cvnets' prediction conv has output channel ``a * (4 + K) + k`` (anchor ``a``): the 4 box deltas, then K
class logits with background at index 0. mmdet's ``SSDHead`` has the box deltas ``a * 4 + k`` and the
logits ``a * K + c`` with background last (:func:`split_fused_prediction`). Everything else already agrees:
the per-location anchor order (min, max, then wide / tall per aspect ratio), the level order, the spatial
order (y, then x) and the box coding (variances 0.1 / 0.2). VOC's class order is the same.

A conversion is exact or fails: a source tensor that has no place in our model, or a tensor of our model
that the checkpoint does not set, or a shape that differs, is a ``ValueError`` naming the keys.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping

import torch
from mmengine.registry import DefaultScope
from torch import Tensor, nn

from .backbones.mobilevit import ARCHS, MobileViT
from .backbones.mobilevit_convert import convert_cvnets_mobilevit
from .deeplabv3 import LightASPPHead
from .ssdlite import SSDLiteHead, SSDLiteNeck

StateDict = Mapping[str, Tensor]

#: cvnets v0.1's SSD-MobileViT layout (``config/detection/ssd_mobilevit_*_320.yaml``), which our
#: SSDLite configs reproduce: levels at these output strides (-1: global pool), their widths, and the
#: aspect ratios of the priors (2 + 2 * len(ratios) priors per location).
SSD_OUTPUT_STRIDES = (16, 32, 64, 128, 256, -1)
SSD_HEAD_CHANNELS = (512, 256, 256, 128, 128, 64)
SSD_RATIOS = ([2, 3],) * 5 + ([2],)
COCO_CLASSES = 80
VOC_CLASSES = 21
NUM_BOX_DELTAS = 4

_EXTRA_STRIDES = [stride for stride in SSD_OUTPUT_STRIDES if stride > 32] + [-1]


def is_cvnets_ssd(state_dict: StateDict) -> bool:
    """Whether ``state_dict`` is cvnets' SSD-MobileViT (backbone under ``encoder.``, SSD heads)."""
    return ('encoder.conv_1.block.conv.weight' in state_dict
            and 'ssd_heads.0.loc_cls_layer.dw_conv.block.conv.weight' in state_dict)


def is_cvnets_deeplabv3(state_dict: StateDict) -> bool:
    """Whether ``state_dict`` is cvnets' DeepLabv3-MobileViT (backbone under ``encoder.``, ASPP head)."""
    return ('encoder.conv_1.block.conv.weight' in state_dict
            and 'seg_head.aspp.aspp_layer.project.block.conv.weight' in state_dict)


def split_fused_prediction(fused: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """cvnets' fused SSD prediction rows -> our box rows and class rows (background moved last).

    ``num_classes`` counts the background (81 for COCO). Works on a conv weight or bias alike.

    Shape: [A * (4 + K), ...] -> box [A * 4, ...] and class [A * K, ...], K = ``num_classes``.
    """
    width = NUM_BOX_DELTAS + num_classes
    if fused.shape[0] % width:
        raise ValueError(f'a fused SSD prediction of {fused.shape[0]} rows is not anchors x (4 + {num_classes})')
    rows = fused.reshape(fused.shape[0] // width, width, *fused.shape[1:])
    boxes = rows[:, :NUM_BOX_DELTAS]
    logits = rows[:, NUM_BOX_DELTAS:]
    logits = torch.cat([logits[:, 1:], logits[:, :1]], dim=1)   # background: first in cvnets, last in mmdet
    return boxes.reshape(-1, *fused.shape[1:]).clone(), logits.reshape(-1, *fused.shape[1:]).clone()


def _rename_conv_layer(name: str) -> str:
    """cvnets' ``ConvLayer`` parts -> mmcv's ``ConvModule`` ones (``block.conv`` -> ``conv``, ``block.norm``
    -> ``bn``)."""
    return name.replace('.block.conv.', '.conv.').replace('.block.norm.', '.bn.')


_PART = {'dw_conv': 'depthwise', 'pw_conv': 'pointwise'}

SSD_RULES: list[tuple[str, Callable[[re.Match], str]]] = [
    (r'^ssd_heads\.(\d+)\.proj_layer\.(.+)$', lambda m: f'neck.projections.{m[1]}.{m[2]}'),
    (r'^extra_layers\.os_(\d+)\.(dw_conv|pw_conv)\.(.+)$',
     lambda m: f'neck.extra_layers.{_EXTRA_STRIDES.index(int(m[1]))}.{_PART[m[2]]}.{m[3]}'),
    (r'^extra_layers\.os_-1\.1\.(.+)$', lambda m: f'neck.extra_layers.{_EXTRA_STRIDES.index(-1)}.1.{m[1]}'),
    (r'^ssd_heads\.(\d+)\.loc_cls_layer\.dw_conv\.(.+)$', lambda m: f'bbox_head.depthwise_convs.{m[1]}.{m[2]}'),
]
#: The fused prediction conv of a level: a separable conv's pointwise half, or (global-pool level) a plain conv.
FUSED_PREDICTION = re.compile(r'^ssd_heads\.(\d+)\.loc_cls_layer\.(?:pw_conv\.)?block\.conv\.(weight|bias)$')

DEEPLABV3_RULES: list[tuple[str, Callable[[re.Match], str]]] = [
    (r'^seg_head\.aspp\.aspp_layer\.convs\.4\.aspp_pool\.conv_1x1\.(.+)$',
     lambda m: f'decode_head.aspp_branches.4.conv.{m[1]}'),
    (r'^seg_head\.aspp\.aspp_layer\.convs\.(\d+)\.(.+)$', lambda m: f'decode_head.aspp_branches.{m[1]}.{m[2]}'),
    (r'^seg_head\.aspp\.aspp_layer\.project\.(.+)$', lambda m: f'decode_head.projection.{m[1]}'),
    # mmseg's classifier is a plain Conv2d.
    (r'^seg_head\.classifier\.classifier\.block\.conv\.(weight|bias)$', lambda m: f'decode_head.conv_seg.{m[1]}'),
]


class _Converted:
    """The converted tensors and, per new key, the checkpoint key it came from."""

    def __init__(self) -> None:
        self.tensors: dict[str, Tensor] = {}
        self.sources: dict[str, str] = {}

    def put(self, key: str, value: Tensor, source: str) -> None:
        if key in self.tensors:
            raise ValueError(f'inexact conversion: {self.sources[key]} and {source} both map to {key}')
        self.tensors[key], self.sources[key] = value, source


def _convert_encoder(state_dict: StateDict, out: _Converted) -> None:
    """``encoder.*`` -> ``backbone.*`` by the ImageNet rules."""
    for key, value in state_dict.items():
        if key.startswith('encoder.'):
            ((new_key, new_value),) = convert_cvnets_mobilevit({key.removeprefix('encoder.'): value}).items()
            out.put('backbone.' + new_key, new_value, key)


def _apply_rules(key: str, rules: list[tuple[str, Callable[[re.Match], str]]]) -> str | None:
    """``key`` renamed by the first rule that matches it (and its ConvLayer parts renamed), or None."""
    for pattern, rename in rules:
        match = re.match(pattern, key)
        if match:
            return _rename_conv_layer('.' + rename(match))[1:]
    return None


def _find_arch(state_dict: StateDict) -> str:
    """The MobileViT arch whose stage widths the ``encoder.`` tensors have."""
    widths = []
    for stage in range(1, 6):
        weight = state_dict.get(f'encoder.layer_{stage}.0.block.red_1x1.block.conv.weight')
        widths.append(None if weight is None else weight.shape[0])
    for arch, table in ARCHS.items():
        if widths == [stage.out_channels for stage in table['stages']]:
            return arch
    raise ValueError(f'the encoder is no MobileViT arch we know (stage widths {widths}; known: '
                     + ', '.join(f'{arch} {[s.out_channels for s in t["stages"]]}' for arch, t in ARCHS.items())
                     + ')')


def ssdlite_reference(arch: str) -> nn.Module:
    """Our SSDLite-MobileViT (``configs/ssdlite_mobilevit_<arch>_coco.py``) as a module tree with the
    detector's state-dict keys: ``backbone``, ``neck``, ``bbox_head``. Only its tensors' names and shapes
    are used (the prior geometry shapes none of them)."""
    backbone = MobileViT(arch, out_indices=(3, 4))
    neck = SSDLiteNeck(backbone.out_channels, SSD_HEAD_CHANNELS)
    sizes = [float(level + 1) for level in range(len(SSD_OUTPUT_STRIDES) + 1)]
    with DefaultScope.overwrite_default_scope('mmdet'):   # the head builds its parts from mmdet's registries
        head = SSDLiteHead(
            in_channels=SSD_HEAD_CHANNELS, num_classes=COCO_CLASSES,
            anchor_generator=dict(type='SSDAnchorGenerator', scale_major=False, strides=[1] * len(SSD_RATIOS),
                                  ratios=list(SSD_RATIOS), min_sizes=sizes[:-1], max_sizes=sizes[1:]))
    return nn.ModuleDict(dict(backbone=backbone, neck=neck, bbox_head=head))


def deeplabv3_reference(arch: str) -> nn.Module:
    """Our DeepLabv3-MobileViT (``configs/deeplabv3_mobilevit_<arch>_voc.py``) as a module tree with the
    segmentor's state-dict keys: ``backbone``, ``decode_head``."""
    backbone = MobileViT(arch, out_indices=(4,), output_stride=16)
    # The head builds its loss from mmseg's registry, through a function mmseg itself warns about.
    with DefaultScope.overwrite_default_scope('mmseg'), warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='``build_loss`` would be deprecated')
        head = LightASPPHead(in_channels=backbone.out_channels[0], in_index=0, channels=256,
                             dilations=(6, 12, 18), num_classes=VOC_CLASSES, norm_cfg=dict(type='BN'),
                             act_cfg=dict(type='ReLU'),
                             loss_decode=dict(type='CrossEntropyLoss', avg_non_ignore=True))
    return nn.ModuleDict(dict(backbone=backbone, decode_head=head))


def check_exact(converted: StateDict, sources: Mapping[str, str], reference: nn.Module) -> None:
    """Raises a ``ValueError`` unless ``converted`` sets every tensor of ``reference`` with its shape and
    nothing else. ``sources`` maps each converted key to the checkpoint key it came from."""
    expected = {key: tuple(value.shape) for key, value in reference.state_dict().items()}
    problems = []
    unused = sorted(sources[key] for key in converted if key not in expected)
    if unused:
        problems.append(f'checkpoint tensors with no place in the model: {", ".join(unused)}')
    unset = sorted(key for key in expected if key not in converted)
    if unset:
        problems.append(f'model tensors the checkpoint does not set: {", ".join(unset)}')
    mismatched = sorted(f'{sources[key]} {tuple(value.shape)} -> {key} {expected[key]}'
                        for key, value in converted.items() if key in expected and tuple(value.shape) != expected[key])
    if mismatched:
        problems.append(f'shapes that differ: {"; ".join(mismatched)}')
    if problems:
        raise ValueError('inexact conversion: ' + ' | '.join(problems))


def convert_cvnets_ssd(state_dict: StateDict) -> dict[str, Tensor]:
    """cvnets' SSD-MobileViT state dict -> our detector's (see the module docstring for the mapping)."""
    out = _Converted()
    _convert_encoder(state_dict, out)
    for key, value in state_dict.items():
        if key.startswith('encoder.'):
            continue
        fused = FUSED_PREDICTION.match(key)
        if fused:
            level, kind = fused[1], fused[2]
            boxes, logits = split_fused_prediction(value, COCO_CLASSES + 1)
            out.put(f'bbox_head.reg_convs.{level}.{kind}', boxes, key)
            out.put(f'bbox_head.cls_convs.{level}.{kind}', logits, key)
        else:
            out.put(_apply_rules(key, SSD_RULES) or key, value, key)
    check_exact(out.tensors, out.sources, ssdlite_reference(_find_arch(state_dict)))
    return out.tensors


def convert_cvnets_deeplabv3(state_dict: StateDict) -> dict[str, Tensor]:
    """cvnets' DeepLabv3-MobileViT state dict -> our segmentor's (see the module docstring for the mapping)."""
    out = _Converted()
    _convert_encoder(state_dict, out)
    for key, value in state_dict.items():
        if not key.startswith('encoder.'):
            out.put(_apply_rules(key, DEEPLABV3_RULES) or key, value, key)
    check_exact(out.tensors, out.sources, deeplabv3_reference(_find_arch(state_dict)))
    return out.tensors
