"""DeepLabv3 decode head after ml-cvnets' DeepLabv3-MobileViT (``cvnets/models/segmentation/heads/deeplabv3.py``
and ``cvnets/modules/aspp_block.py``, tag cvnets-v0.1).

The segmentor itself is mmseg's ``EncoderDecoder`` with our ``MobileViT`` backbone at output stride 16
(layer 5's output, without the classifier's 1x1 "exp" conv). The head differs from mmseg's ``ASPPHead``
in two places, both of which change the parameter count and the function:

* the five ASPP branches (1x1, three *plain* 3x3 convs dilated 6/12/18, image pooling) are fused by a
  **1x1** projection (BN + ReLU) followed by dropout; mmseg fuses them with a 3x3 conv and no dropout;
* every branch is conv (no bias) + BN + ReLU, and the classifier is Dropout2d + 1x1 conv with bias,
  i.e. ``BaseDecodeHead.cls_seg`` as it is.

cvnets upsamples the stride-16 logits bilinearly (``align_corners=False``) to the input size; mmseg's
``BaseDecodeHead.loss_by_feat`` (to the label size) and ``EncoderDecoder.postprocess_result`` (to the
original image size) do the same resize, so the head returns stride-16 logits.

Branch order in the concatenation follows cvnets (1x1, rates in order, pooling), so converted cvnets
weights line up with ``projection``'s input channels.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.structures import PixelData
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS as MMSEG_MODELS
from mmseg.utils import OptSampleList, SampleList
from torch import Tensor, nn


class ImagePoolingBranch(nn.Module):
    """Global average pool -> 1x1 conv + BN + act -> bilinear upsample back to the input size.

    Shape: [B, C_in, H, W] -> [B, C_out, H, W].
    """

    def __init__(self, in_channels: int, out_channels: int, conv_cfg: dict | None, norm_cfg: dict | None,
                 act_cfg: dict | None, align_corners: bool = False) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = ConvModule(in_channels, out_channels, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                               act_cfg=act_cfg)
        self.align_corners = align_corners

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.conv(self.pool(x))
        # Upsampling a 1x1 map is a broadcast; interpolate keeps it exportable at any input size.
        return F.interpolate(pooled, size=x.shape[-2:], mode='bilinear', align_corners=self.align_corners)


@MMSEG_MODELS.register_module()
class LightASPPHead(BaseDecodeHead):
    """DeepLabv3 head of ml-cvnets: ASPP with a 1x1 projection, then dropout + 1x1 classifier.

    Args:
        dilations: Rates of the 3x3 atrous branches (cvnets: 6, 12, 18). A 1x1 branch and an image
            pooling branch are always added.
        aspp_dropout: Dropout after the projection (cvnets' ``aspp_dropout``, element-wise ``nn.Dropout``).
        **kwargs: ``BaseDecodeHead``'s: ``in_channels`` (backbone width), ``channels`` (ASPP width, 256),
            ``num_classes``, ``dropout_ratio`` (the classifier's Dropout2d, 0.1), ``norm_cfg``, ``act_cfg``
            (ReLU), ``in_index``, ``loss_decode``, ``align_corners``...

    Shape: the backbone's maps, ``inputs[in_index]`` being [B, C_in, H, W] -> logits [B, num_classes, H, W].
    """

    def __init__(self, dilations: Sequence[int] = (6, 12, 18), aspp_dropout: float = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)
        if self.input_transform is not None:
            raise ValueError('LightASPPHead reads one feature map: leave input_transform unset')
        self.dilations = tuple(dilations)
        conv_kwargs = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        branches = [ConvModule(self.in_channels, self.channels, 1, **conv_kwargs)]
        branches += [ConvModule(self.in_channels, self.channels, 3, padding=rate, dilation=rate, **conv_kwargs)
                     for rate in self.dilations]
        branches.append(ImagePoolingBranch(self.in_channels, self.channels, align_corners=self.align_corners,
                                           **conv_kwargs))
        self.aspp_branches = nn.ModuleList(branches)
        self.projection = ConvModule(len(branches) * self.channels, self.channels, 1, **conv_kwargs)
        self.aspp_dropout = nn.Dropout(aspp_dropout) if aspp_dropout > 0 else nn.Identity()

    def aspp(self, x: Tensor) -> Tensor:
        """[B, C_in, H, W] -> [B, channels, H, W]: all branches, concatenated, projected, dropped out."""
        features = torch.cat([branch(x) for branch in self.aspp_branches], dim=1)
        return self.aspp_dropout(self.projection(features))

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Backbone maps -> logits [B, num_classes, H, W] at the resolution of ``inputs[in_index]``."""
        return self.cls_seg(self.aspp(self._transform_inputs(inputs)))


@MMSEG_MODELS.register_module()
class NearestResizeEncoderDecoder(EncoderDecoder):
    """mmseg's ``EncoderDecoder`` that brings the logits to the original image size by **nearest**-neighbour
    interpolation, as ml-cvnets' evaluation does (``engine/eval_segmentation.py``), where mmseg's resizes
    bilinearly. The network's own bilinear upsampling to its input size is unchanged.

    With a test pipeline that resizes every image to 512x512, this is cvnets' evaluation of its DeepLabv3
    model zoo: cv2-bilinear resize to 512x512, stride-16 logits upsampled bilinearly to 512x512, then
    nearest-resized to the original size and argmaxed.
    """

    def postprocess_result(self, seg_logits: Tensor, data_samples: OptSampleList = None) -> SampleList:
        """Logits [B, C, H, W] at the (padded) input size -> per image ``seg_logits`` [C, H0, W0] at the
        original size and ``pred_sem_seg`` [1, H0, W0]."""
        if data_samples is None:
            return super().postprocess_result(seg_logits, data_samples)
        for logits, sample in zip(seg_logits, data_samples):
            logits = nearest_to_original(logits, sample.metainfo)
            if logits.shape[0] > 1:
                prediction = logits.argmax(dim=0, keepdim=True)
            else:
                logits = logits.sigmoid()
                prediction = (logits > self.decode_head.threshold).to(logits)
            sample.set_data(dict(seg_logits=PixelData(data=logits), pred_sem_seg=PixelData(data=prediction)))
        return data_samples


def nearest_to_original(logits: Tensor, img_meta: dict) -> Tensor:
    """Removes the batch padding, undoes a test-time flip and nearest-resizes to ``img_meta['ori_shape']``.

    Shape: [C, H, W] -> [C, H0, W0].
    """
    left, right, top, bottom = img_meta.get('img_padding_size', img_meta.get('padding_size', [0] * 4))
    height, width = logits.shape[-2:]
    logits = logits[:, top:height - bottom, left:width - right]
    if img_meta.get('flip'):
        logits = logits.flip(dims=(2,) if img_meta.get('flip_direction') == 'horizontal' else (1,))
    return F.interpolate(logits[None], size=tuple(img_meta['ori_shape'][:2]), mode='nearest')[0]
