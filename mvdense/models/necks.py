"""Necks shared by the detection and segmentation models (registered in the root registry)."""
from __future__ import annotations

from collections.abc import Sequence

from mmcv.cnn import ConvModule, build_norm_layer
from mmengine.model import BaseModule
from torch import Tensor, nn

from ..registry import MODELS


@MODELS.register_module()
class SimpleFeaturePyramid(BaseModule):
    """A pyramid from one map of an isotropic transformer, after ViTDet (Li et al., 2022).

    Each level resamples the input by its scale (ViTDet's ops: 2x max-pool for 0.5, identity for 1, a 2x2
    stride-2 transposed conv for 2; for 4, transposed conv -> norm -> GELU -> transposed conv), then a 1x1
    ConvModule (norm + activation) maps it to the level's width when that differs from the input's.
    ViTDet's per-level 3x3 convs are left out: the SSDLite neck and head that follow bring their own
    convolutions, and they would triple the parameters of a mobile detector.

    Args:
        in_channels: Width C of the input map.
        out_channels: Width of each level.
        scales: Size of each level relative to the input (0.5, 1, 2 or 4).
        norm_cfg / act_cfg: Of the 1x1 convs (and the norm between the two transposed convs of scale 4).

    Shape: [B, C, H, W] (or a one-element sequence of it) -> tuple of [B, C_i, H s_i, W s_i]
    (a 0.5 level of an odd size rounds up).
    """

    def __init__(self, in_channels: int, out_channels: Sequence[int], scales: Sequence[float] = (1, 0.5),
                 norm_cfg: dict | None = None, act_cfg: dict | None = None,
                 init_cfg: dict | list | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if len(out_channels) != len(scales):
            raise ValueError(f'SimpleFeaturePyramid: {len(out_channels)} out_channels for {len(scales)} scales')
        norm_cfg = norm_cfg or dict(type='BN')
        act_cfg = act_cfg or dict(type='ReLU')
        self.resamplers = nn.ModuleList(self._resampler(in_channels, scale, norm_cfg) for scale in scales)
        self.laterals = nn.ModuleList(
            nn.Identity() if width == in_channels else
            ConvModule(in_channels, width, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
            for width in out_channels)

    @staticmethod
    def _resampler(channels: int, scale: float, norm_cfg: dict) -> nn.Module:
        if scale == 0.5:
            return nn.MaxPool2d(2, ceil_mode=True)
        if scale == 1:
            return nn.Identity()
        if scale == 2:
            return nn.ConvTranspose2d(channels, channels, 2, stride=2)
        if scale == 4:
            return nn.Sequential(nn.ConvTranspose2d(channels, channels, 2, stride=2),
                                 build_norm_layer(norm_cfg, channels)[1], nn.GELU(),
                                 nn.ConvTranspose2d(channels, channels, 2, stride=2))
        raise ValueError(f'SimpleFeaturePyramid: scale must be 0.5, 1, 2 or 4, got {scale}')

    def forward(self, inputs: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
        x = inputs if isinstance(inputs, Tensor) else inputs[-1]
        return tuple(lateral(resample(x)) for resample, lateral in zip(self.resamplers, self.laterals))
