"""MobileViT (v1) backbones: XXS, XS and S.

Mehta & Rastegari, "MobileViT: Light-weight, General-purpose, and Mobile-friendly Vision Transformer",
ICLR 2022, following the authors' code (apple/ml-cvnets, ``cvnets/models/classification/mobilevit.py``
and ``cvnets/modules/mobilevit_block.py``).

Layout: a 3x3 stride-2 stem, then five stages (``stages[0..4]``, cvnets' ``layer_1..layer_5``) at
strides 2, 4, 8, 16 and 32. Stages 0-1 are MV2 blocks; stages 2-4 are one strided MV2 block followed by
one MobileViT block. The classifier's 1x1 "exp" conv (``final_conv``) is left out unless asked for:
ml-cvnets drops it for detection and segmentation.

Output stride 16 (or 8) is obtained as in ml-cvnets: the strided MV2 block of stage 4 (and 3) runs at
stride 1; only the depthwise conv of the *following* MV2 block would be dilated. The MobileViT block
itself is never dilated (timm dilates it; ml-cvnets does not).

Input convention of Apple's released ImageNet weights: **BGR in [0, 1], no mean/std**.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from torch import Tensor, nn

from ...registry import MODELS
from ..layers import FastLinear, InvertedResidual, PreNormTransformerLayer
from .base import BaseBackbone, check_out_indices, lookup_arch


@dataclass(frozen=True)
class MV2Stage:
    """A stage of MobileNetV2 blocks."""

    out_channels: int
    num_blocks: int
    stride: int
    expand_ratio: int


@dataclass(frozen=True)
class MobileViTStage:
    """A strided MV2 block followed by one MobileViT block."""

    out_channels: int
    transformer_dim: int
    ffn_dim: int
    transformer_layers: int
    stride: int
    expand_ratio: int
    patch_size: int = 2
    num_heads: int = 4


# The arch tables of ml-cvnets (``config/mobilevit.py``); ``dropout`` is the transformer dropout the
# authors trained each arch with.
ARCHS: dict[str, dict] = {
    'xxs': dict(
        stem_channels=16, final_channels=320, dropout=0.05,
        stages=(
            MV2Stage(out_channels=16, num_blocks=1, stride=1, expand_ratio=2),
            MV2Stage(out_channels=24, num_blocks=3, stride=2, expand_ratio=2),
            MobileViTStage(out_channels=48, transformer_dim=64, ffn_dim=128,
                           transformer_layers=2, stride=2, expand_ratio=2),
            MobileViTStage(out_channels=64, transformer_dim=80, ffn_dim=160,
                           transformer_layers=4, stride=2, expand_ratio=2),
            MobileViTStage(out_channels=80, transformer_dim=96, ffn_dim=192,
                           transformer_layers=3, stride=2, expand_ratio=2))),
    'xs': dict(
        stem_channels=16, final_channels=384, dropout=0.1,
        stages=(
            MV2Stage(out_channels=32, num_blocks=1, stride=1, expand_ratio=4),
            MV2Stage(out_channels=48, num_blocks=3, stride=2, expand_ratio=4),
            MobileViTStage(out_channels=64, transformer_dim=96, ffn_dim=192,
                           transformer_layers=2, stride=2, expand_ratio=4),
            MobileViTStage(out_channels=80, transformer_dim=120, ffn_dim=240,
                           transformer_layers=4, stride=2, expand_ratio=4),
            MobileViTStage(out_channels=96, transformer_dim=144, ffn_dim=288,
                           transformer_layers=3, stride=2, expand_ratio=4))),
    's': dict(
        stem_channels=16, final_channels=640, dropout=0.1,
        stages=(
            MV2Stage(out_channels=32, num_blocks=1, stride=1, expand_ratio=4),
            MV2Stage(out_channels=64, num_blocks=3, stride=2, expand_ratio=4),
            MobileViTStage(out_channels=96, transformer_dim=144, ffn_dim=288,
                           transformer_layers=2, stride=2, expand_ratio=4),
            MobileViTStage(out_channels=128, transformer_dim=192, ffn_dim=384,
                           transformer_layers=4, stride=2, expand_ratio=4),
            MobileViTStage(out_channels=160, transformer_dim=240, ffn_dim=480,
                           transformer_layers=3, stride=2, expand_ratio=4))),
}


class MobileViTBlock(nn.Module):
    """Local kxk conv -> 1x1 to d -> unfold into patches -> L transformer layers -> LN -> fold ->
    1x1 back to C -> concat with the input -> kxk fusion conv.

    Feature maps whose size is not a multiple of the patch size are resized bilinearly up to the next
    multiple before unfolding and back after folding (as ml-cvnets does).

    Shape: [B, C, H, W] -> [B, C, H, W].
    """

    # While tracing (ONNX export) the sizes are symbolic and a Python test on them would freeze the
    # traced size into the graph; with this set the resize is always traced instead (resizing to the
    # same size is exactly the identity), so the graph is right for every input size. Exports at a
    # fixed size turn it off (``mvdense.deploy.onnx_export``) and get the graph of the traced size only.
    trace_any_size: bool = True

    def __init__(self, channels: int, transformer_dim: int, ffn_dim: int, num_layers: int, num_heads: int,
                 patch_size: int, drop: float, attn_drop: float = 0.0, ffn_drop: float = 0.0,
                 drop_paths: Sequence[float] | None = None, kernel_size: int = 3, norm_cfg: dict | None = None,
                 act_cfg: dict | None = None) -> None:
        super().__init__()
        norm_cfg = norm_cfg or dict(type='BN')
        act_cfg = act_cfg or dict(type='SiLU')
        padding = kernel_size // 2
        self.patch_size = patch_size
        self.local_conv = ConvModule(channels, channels, kernel_size, padding=padding, norm_cfg=norm_cfg,
                                     act_cfg=act_cfg)
        self.to_tokens = nn.Conv2d(channels, transformer_dim, 1, bias=False)
        drop_paths = drop_paths or [0.0] * num_layers
        self.transformer = nn.Sequential(*[
            PreNormTransformerLayer(transformer_dim, ffn_dim, num_heads, drop=drop, attn_drop=attn_drop,
                                    ffn_drop=ffn_drop, drop_path=drop_paths[i])
            for i in range(num_layers)])
        self.norm = nn.LayerNorm(transformer_dim)
        self.from_tokens = ConvModule(transformer_dim, channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.fusion = ConvModule(2 * channels, channels, kernel_size, padding=padding, norm_cfg=norm_cfg,
                                 act_cfg=act_cfg)

    def unfold(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """[B, d, H, W] (H, W multiples of the patch size) -> ([B * P, N, d], (n_h, n_w)).

        P = patch pixels, N = patches: the P pixel positions of a patch attend separately, each over the N
        patches. One copy (the permute); on a channels-last input it reads d-long contiguous runs.
        """
        batch, dim, height, width = x.shape
        patch = self.patch_size
        n_h, n_w = height // patch, width // patch
        # [B, d, n_h, p, n_w, p] is a view of either memory format; -> [B, p, p, n_h, n_w, d].
        x = x.reshape(batch, dim, n_h, patch, n_w, patch).permute(0, 3, 5, 2, 4, 1)
        return x.reshape(-1, n_h * n_w, dim), (n_h, n_w)

    def fold(self, tokens: Tensor, grid: tuple[int, int], channels_last: bool = False) -> Tensor:
        """[B * P, N, d] -> [B, d, H, W]: the inverse of :meth:`unfold`, in one copy.

        ``channels_last`` picks the memory format of the result (the values are the same), so that a
        channels-last network stays channels-last without a conversion.
        """
        n_h, n_w = grid
        patch = self.patch_size
        dim = tokens.shape[-1]
        x = tokens.reshape(-1, patch, patch, n_h, n_w, dim)
        if channels_last:
            # -> [B, n_h, p, n_w, p, d] = [B, H, W, d] contiguous, seen as [B, d, H, W].
            x = x.permute(0, 3, 1, 4, 2, 5).reshape(-1, n_h * patch, n_w * patch, dim)
            return x.permute(0, 3, 1, 2)
        return x.permute(0, 5, 3, 1, 4, 2).reshape(-1, dim, n_h * patch, n_w * patch)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        features = self.to_tokens(self.local_conv(x))
        patch = self.patch_size
        # Integer ceil (not math.ceil) so that a trace records it as shape arithmetic.
        padded_h, padded_w = (height + patch - 1) // patch * patch, (width + patch - 1) // patch * patch
        resized = (self.trace_any_size and torch.jit.is_tracing()) or (padded_h, padded_w) != (height, width)
        if resized:
            features = F.interpolate(features, size=(padded_h, padded_w), mode='bilinear', align_corners=False)
        tokens, grid = self.unfold(features)
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        features = self.fold(self.norm(self.transformer(tokens)), grid, channels_last)
        if resized:
            features = F.interpolate(features, size=(height, width), mode='bilinear', align_corners=False)
        return self.fusion(torch.cat((x, self.from_tokens(features)), dim=1))


@MODELS.register_module()
class MobileViT(BaseBackbone):
    """MobileViT backbone for dense prediction (the backbone contract: ``backbones/base.py``).

    Args:
        arch: ``'xxs'``, ``'xs'`` or ``'s'``, or a dict shaped like an entry of :data:`ARCHS`.
        out_indices: Stages to return, 0-4 at strides 2, 4, 8, 16, 32 (before ``output_stride``).
        output_stride: 32, 16 or 8. 16 runs stage 4's strided MV2 block at stride 1 (ml-cvnets' DeepLabv3).
        with_final_conv: Apply the classifier's 1x1 "exp" conv to the last stage's output.
        num_classes: If set, build the ImageNet classifier ``head`` (pool -> dropout -> Linear) used by
            :meth:`forward_classifier` (with the final conv). For checkpoints and parameter checks.
        proj_drop_rate: Transformer dropout after attention and FFN; ``None`` takes the arch's (0.05 XXS,
            0.1 XS/S, as the authors trained).
        attn_drop_rate / ffn_drop_rate: Dropout on attention weights / inside the FFN (0 in ml-cvnets).
        drop_rate: Dropout before the classifier's Linear.
        drop_path_rate: Stochastic depth of the transformer layers, ramped linearly over them from 0 to
            this value (0 in ml-cvnets).
        frozen_stages: -1 nothing; 0 the stem; k the stem and stages ``0..k-1``.
        norm_eval: Keep BatchNorm layers in eval mode while training.
        norm_cfg / act_cfg: Normalisation (BN, SyncBN) and activation (SiLU) of the conv layers.
        pretrained: Deprecated alias of ``init_cfg=dict(type='Pretrained', checkpoint=...)``.
        init_cfg: e.g. ``dict(type='Pretrained', checkpoint='mobilevit_xxs.pth')``.

    Attributes:
        out_channels / out_strides: Channels and stride of each returned map.

    Shape: [B, 3, H, W] (any H, W >= 32) -> tuple of [B, C_i, ceil(H / s_i), ceil(W / s_i)].
    """

    def __init__(self, arch: str | dict = 's', out_indices: Sequence[int] = (3, 4), output_stride: int = 32,
                 with_final_conv: bool = False, num_classes: int | None = None,
                 proj_drop_rate: float | None = None, attn_drop_rate: float = 0.0, ffn_drop_rate: float = 0.0,
                 drop_rate: float = 0.1, drop_path_rate: float = 0.0, frozen_stages: int = -1,
                 norm_eval: bool = False, norm_cfg: dict | None = None, act_cfg: dict | None = None,
                 pretrained: str | None = None, init_cfg: dict | list | None = None) -> None:
        super().__init__(frozen_stages, norm_eval, pretrained, init_cfg)
        arch = lookup_arch(arch, ARCHS, 'MobileViT')
        if output_stride not in (8, 16, 32):
            raise ValueError(f'MobileViT: output_stride must be 8, 16 or 32, got {output_stride}')
        self.out_indices = check_out_indices(out_indices, len(arch['stages']), 'MobileViT')
        norm_cfg = norm_cfg or dict(type='BN')
        act_cfg = act_cfg or dict(type='SiLU')
        drop = dict(proj=arch['dropout'] if proj_drop_rate is None else proj_drop_rate, attn=attn_drop_rate,
                    ffn=ffn_drop_rate)
        self.with_final_conv = with_final_conv

        self.stem = ConvModule(3, arch['stem_channels'], 3, stride=2, padding=1, norm_cfg=norm_cfg,
                               act_cfg=act_cfg)
        self.stages = nn.ModuleList()
        channels, stride, dilation = arch['stem_channels'], 2, 1
        stage_channels, stage_strides = [], []
        drop_paths = iter(stochastic_depth_rates(arch['stages'], drop_path_rate))
        for spec in arch['stages']:
            # A stage's strided MV2 block keeps the dilation of the stage before it (ml-cvnets'
            # ``prev_dilation``); past the output stride it runs at stride 1 and the dilation doubles for
            # the next stage (ml-cvnets' dilate_l4 / dilate_l5).
            block_stride, block_dilation = spec.stride, dilation
            if spec.stride == 2 and stride >= output_stride:
                block_stride, dilation = 1, dilation * 2
            stride *= block_stride
            self.stages.append(self._make_stage(spec, channels, block_stride, block_dilation, drop,
                                                drop_paths, norm_cfg, act_cfg))
            channels = spec.out_channels
            stage_channels.append(channels)
            stage_strides.append(stride)
        self._last_index = self.out_indices[-1]

        self.final_conv = None
        self.head = None
        if with_final_conv or num_classes:
            self.final_conv = ConvModule(channels, arch['final_channels'], 1, norm_cfg=norm_cfg,
                                         act_cfg=act_cfg)
            if with_final_conv:
                stage_channels[-1] = arch['final_channels']
        if num_classes:
            self.head = nn.Sequential(OrderedDict(
                pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), dropout=nn.Dropout(drop_rate),
                fc=FastLinear(arch['final_channels'], num_classes)))
        self.out_channels = [stage_channels[i] for i in self.out_indices]
        self.out_strides = [stage_strides[i] for i in self.out_indices]
        self.freeze_stages()

    @staticmethod
    def _make_stage(spec: MV2Stage | MobileViTStage, in_channels: int, stride: int, dilation: int,
                    drop: dict, drop_paths: Iterator[float], norm_cfg: dict, act_cfg: dict) -> nn.Sequential:
        """Builds one stage; ``dilation`` applies to its first MV2 block's depthwise conv; the transformer
        layers take their stochastic-depth rates from ``drop_paths`` in order."""
        if isinstance(spec, MV2Stage):
            blocks = [InvertedResidual(in_channels if i == 0 else spec.out_channels, spec.out_channels,
                                       stride if i == 0 else 1, spec.expand_ratio, norm_cfg=norm_cfg,
                                       act_cfg=act_cfg)
                      for i in range(spec.num_blocks)]
            return nn.Sequential(*blocks)
        rates = [next(drop_paths) for _ in range(spec.transformer_layers)]
        return nn.Sequential(
            InvertedResidual(in_channels, spec.out_channels, stride, spec.expand_ratio,
                             dilation=dilation, norm_cfg=norm_cfg, act_cfg=act_cfg),
            MobileViTBlock(spec.out_channels, spec.transformer_dim, spec.ffn_dim, spec.transformer_layers,
                           spec.num_heads, spec.patch_size, drop['proj'], drop['attn'], drop['ffn'],
                           drop_paths=rates, norm_cfg=norm_cfg, act_cfg=act_cfg))

    def stem_modules(self) -> list[nn.Module]:
        return [self.stem]

    def stage_modules(self) -> list[list[nn.Module]]:
        stages = [[stage] for stage in self.stages]
        if self.final_conv is not None:
            stages[-1].append(self.final_conv)
        return stages

    def init_from_scratch(self) -> None:
        """ml-cvnets' initialisation (conv: Kaiming-normal fan-out; linear: normal, std 0.01; norms: 1/0).
        It trains markedly faster from scratch than PyTorch's defaults."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode='fan_out')
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.01)
            elif isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
                nn.init.ones_(module.weight)
            else:
                continue
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """[B, 3, H, W] -> the feature maps of ``out_indices``."""
        x = self.stem(x)
        outs = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index == 4 and self.with_final_conv:
                x = self.final_conv(x)
            if index in self.out_indices:
                outs.append(x)
            if index >= self._last_index:
                break
        return tuple(outs)

    def forward_classifier(self, x: Tensor) -> Tensor:
        """[B, 3, H, W] -> ImageNet logits [B, num_classes]; needs ``num_classes``."""
        if self.head is None:
            raise RuntimeError('MobileViT was built without num_classes: there is no classifier')
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(self.final_conv(x))


def stochastic_depth_rates(stages: Sequence[MV2Stage | MobileViTStage], drop_path_rate: float) -> list[float]:
    """One rate per transformer layer of the table, linear from 0 to ``drop_path_rate`` (timm's ramp)."""
    num_layers = sum(spec.transformer_layers for spec in stages if isinstance(spec, MobileViTStage))
    if num_layers < 2:
        return [drop_path_rate] * num_layers
    return [drop_path_rate * i / (num_layers - 1) for i in range(num_layers)]
