"""Mobile-Former backbones: 26M, 52M, 96M, 151M, 214M, 294M and 508M (MAdds at 224x224).

Chen et al., "Mobile-Former: Bridging MobileNet and Transformer", CVPR 2022, following the authors'
code (AAboys/MobileFormer, ``mobile_former.py`` and ``dna_blocks.py``); where that code departs from the
paper's text, the code is followed (noted on the class concerned).

Layout::

    tokens [M, d] (a learned nn.Embedding, the same for every image)
    stem: 3x3 s2 conv -> BN -> ReLU6
    lite_bottleneck: 3x3 depthwise (multiplier e1) -> BN -> ReLU6 -> 1x1 -> BN (+ identity), no bridge
    blocks[i]: Mobile->Former -> Former -> Mobile (DyReLU from token 0) -> Former->Mobile
    final_mobile_to_former (only built for ``with_tokens`` or the classifier)
    head (classifier; only built with ``num_classes``)

Stages (``out_indices``): stage i = 0..3 holds the blocks at stride 4, 8, 16, 32, i.e. from the
table's down-sampling to that stride up to the next one; a stage's output is taken after its last
block, Former->Mobile included. The lite bottleneck belongs to the stem (in 52M/26M it down-samples to
stride 4). With ``output_stride=16`` the down-sampling block that opens stage 3 runs at stride 1, so
stage 3 stays at stride 16 (nothing is dilated: the paper and code have no dense-prediction variant).

Tensors are batch-first throughout: maps [B, C, H, W], tokens [B, M, d] (the authors keep tokens as
[M, B, d]; the arithmetic is the same). The bridges read a map in the layout it comes in, never copying
it (see :class:`MobileToFormer` and :class:`FormerToMobile`): on an NCHW map the attention is batched
matmuls over [B, h, C/h, HW] views (the layout of the authors' equations; what is traced for ONNX export
and counted for MAdds); on a channels-last map, the layout of the CPU fast path, over [B, HW, C] views.

Inference fast path (autograd off, nothing tracing; :func:`fast_inference`). The function is the
authors' to float rounding (``benchmarks/README.md``, "Speed work on the Mobile-Former block"); only
the work differs:

* on CPU the backbone runs channels-last and returns channels-last maps;
* each BatchNorm is applied as the affine map it is at inference, folded into its conv's weight for the
  call where the weight is the smaller tensor (:func:`conv_bn_scaled`); a DyReLU becomes a per-channel
  scale, folded there too, and one ``prelu`` (:func:`conv_bn_dyrelu`);
* depthwise convs with a channel multiplier run as plain depthwise convs at stride 1 (:func:`run_conv`);
* residual additions are written into the branch output, which nothing else holds.

Stochastic depth (``drop_path_rate``; the authors trained with 0) drops whole samples everywhere; the
authors' DropPath on [M, B, d] tokens would drop whole tokens across the batch instead, which we take
for an accident of their layout.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from torch import Tensor, nn

from ...registry import MODELS
from ..layers import FastLinear, attention, conv2d, fast_inference, is_channels_last
from .base import BaseBackbone, check_out_indices, lookup_arch


@dataclass(frozen=True)
class BlockRow:
    """A row of the authors' ``dna_blocks`` tables: ``[b, e1, c, n, s, e2]``.

    kind: ``'lite'`` (their ``DnaBlock3`` with e2 = 0: the conv-only lite bottleneck),
        ``'down'`` (``DnaBlock3``: the down-sampling block) or ``'regular'`` (``DnaBlock``).
    e1: First expansion (depthwise multiplier of 'lite'/'down', 1x1 expansion of 'regular').
    out_channels: c.
    num_blocks: n (1 in every published table).
    stride: s of the first of the n blocks.
    e2: Second expansion (the depthwise conv of 'down'); 0 for 'lite'.
    """

    kind: str
    e1: int
    out_channels: int
    num_blocks: int
    stride: int
    e2: int


def _rows(*rows: tuple) -> tuple[BlockRow, ...]:
    return tuple(BlockRow(*row) for row in rows)


# The ``dna_blocks`` tables and model kwargs of ``mobile_former.py``. Every arch uses 2 bridge heads,
# 4 Former heads, a Former FFN of 2d, DyReLU reduction 4 and a 6C classifier conv.
# (kind, e1, c, n, s, e2)
ARCHS: dict[str, dict] = {
    '508m': dict(
        stem_channels=24, num_tokens=6, token_dim=192, head_channels=1920, groups=1,
        blocks=_rows(('lite', 2, 24, 1, 1, 0),
                     ('down', 6, 40, 1, 2, 4), ('regular', 3, 40, 1, 1, 3),
                     ('down', 6, 72, 1, 2, 4), ('regular', 3, 72, 1, 1, 3),
                     ('down', 6, 128, 1, 2, 4), ('regular', 4, 128, 1, 1, 4), ('regular', 6, 176, 1, 1, 4),
                     ('regular', 6, 176, 1, 1, 4),
                     ('down', 6, 240, 1, 2, 4), ('regular', 6, 240, 1, 1, 4), ('regular', 6, 240, 1, 1, 4))),
    '294m': dict(
        stem_channels=16, num_tokens=6, token_dim=192, head_channels=1920, groups=1,
        blocks=_rows(('lite', 2, 16, 1, 1, 0),
                     ('down', 6, 24, 1, 2, 4), ('regular', 4, 24, 1, 1, 4),
                     ('down', 6, 48, 1, 2, 4), ('regular', 4, 48, 1, 1, 4),
                     ('down', 6, 96, 1, 2, 4), ('regular', 4, 96, 1, 1, 4), ('regular', 6, 128, 1, 1, 4),
                     ('regular', 6, 128, 1, 1, 4),
                     ('down', 6, 192, 1, 2, 4), ('regular', 6, 192, 1, 1, 4), ('regular', 6, 192, 1, 1, 4))),
    '214m': dict(
        stem_channels=12, num_tokens=6, token_dim=192, head_channels=1600, groups=1,
        blocks=_rows(('lite', 2, 12, 1, 1, 0),
                     ('down', 6, 20, 1, 2, 4), ('regular', 3, 20, 1, 1, 4),
                     ('down', 6, 40, 1, 2, 4), ('regular', 4, 40, 1, 1, 4),
                     ('down', 6, 80, 1, 2, 4), ('regular', 4, 80, 1, 1, 4), ('regular', 6, 112, 1, 1, 4),
                     ('regular', 6, 112, 1, 1, 4),
                     ('down', 6, 160, 1, 2, 4), ('regular', 6, 160, 1, 1, 4), ('regular', 6, 160, 1, 1, 4))),
    '151m': dict(
        stem_channels=12, num_tokens=6, token_dim=192, head_channels=1280, groups=1,
        blocks=_rows(('lite', 2, 12, 1, 1, 0),
                     ('down', 6, 16, 1, 2, 4), ('regular', 3, 16, 1, 1, 3),
                     ('down', 6, 32, 1, 2, 4), ('regular', 3, 32, 1, 1, 3),
                     ('down', 6, 64, 1, 2, 4), ('regular', 4, 64, 1, 1, 4), ('regular', 6, 88, 1, 1, 4),
                     ('regular', 6, 88, 1, 1, 4),
                     ('down', 6, 128, 1, 2, 4), ('regular', 6, 128, 1, 1, 4), ('regular', 6, 128, 1, 1, 4))),
    '96m': dict(
        stem_channels=12, num_tokens=4, token_dim=128, head_channels=1280, groups=1,
        blocks=_rows(('lite', 2, 12, 1, 1, 0),
                     ('down', 6, 16, 1, 2, 4),
                     ('down', 6, 32, 1, 2, 4), ('regular', 3, 32, 1, 1, 3),
                     ('down', 6, 64, 1, 2, 4), ('regular', 4, 64, 1, 1, 4), ('regular', 6, 88, 1, 1, 4),
                     ('down', 6, 128, 1, 2, 4), ('regular', 6, 128, 1, 1, 4))),
    '52m': dict(
        stem_channels=8, num_tokens=3, token_dim=128, head_channels=1024, groups=1,
        blocks=_rows(('lite', 3, 12, 1, 2, 0), ('regular', 3, 12, 1, 1, 3),
                     ('down', 6, 24, 1, 2, 4), ('regular', 3, 24, 1, 1, 3),
                     ('down', 6, 48, 1, 2, 4), ('regular', 4, 48, 1, 1, 4), ('regular', 6, 64, 1, 1, 4),
                     ('down', 6, 96, 1, 2, 4), ('regular', 6, 96, 1, 1, 4))),
}
# 26M is 52M with grouped (4) pointwise convs and channel shuffles.
ARCHS['26m'] = dict(ARCHS['52m'], groups=4)

BRIDGE_HEADS = 2
FORMER_HEADS = 4
FORMER_FFN_RATIO = 2
DYRELU_REDUCTION = 4
HEAD_EXPANSION = 6


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
            norm_cfg: dict | None = None) -> nn.Sequential:
    """Conv (no bias) -> BN, as ``Sequential`` so that keys are ``.0.weight`` / ``.1.weight`` as in the
    authors' checkpoints."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups,
                     bias=False)
    return nn.Sequential(conv, build_norm_layer(norm_cfg or dict(type='BN'), out_channels)[1])


def drops_nothing(drop_path: nn.Module) -> bool:
    """Whether a DropPath is the identity now (evaluating, or a drop rate of 0)."""
    return not drop_path.training or drop_path.drop_prob == 0


def add_residual(out: Tensor, residual: Tensor, drop_path: nn.Module | None = None) -> Tensor:
    """``residual + drop_path(out)``; at inference written into ``out`` (a branch output nobody else
    holds), which saves allocating a map."""
    if fast_inference() and (drop_path is None or drops_nothing(drop_path)):
        return out.add_(residual)
    return residual + (out if drop_path is None else drop_path(out))


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """ShuffleNet's shuffle: [B, C, H, W] seen as [B, groups, C / groups, H, W], the two group axes
    swapped. ``groups=1`` returns ``x`` untouched.

    On a channels-last map the permutation moves C-element rows of the NHWC storage: at inference one
    ``index_select`` over each row (2-4x faster than the strided copy of a transpose with few channels
    per group, e.g. 31 vs 76 us for 36 channels at 56², one thread); with autograd on, the transpose,
    whose backward is another transpose. The result stays channels-last.
    """
    if groups == 1:
        return x
    batch, channels, height, width = x.shape
    if is_channels_last(x):
        if fast_inference():
            rows = x.permute(0, 2, 3, 1).reshape(-1, channels)                      # [BHW, C] view
            order = shuffled_order(channels, groups, x.device)
            return rows.index_select(1, order).view(batch, height, width, channels).permute(0, 3, 1, 2)
        x = x.permute(0, 2, 3, 1).reshape(batch, height, width, groups, channels // groups).transpose(3, 4)
        return x.reshape(batch, height, width, channels).permute(0, 3, 1, 2)
    x = x.view(batch, groups, channels // groups, height, width).transpose(1, 2)
    return x.reshape(batch, channels, height, width)


@functools.cache
def shuffled_order(channels: int, groups: int, device: torch.device) -> Tensor:
    """[C]: the input channel at each output position of :func:`channel_shuffle` (an ordinary tensor,
    even when first asked for under ``inference_mode``)."""
    with torch.inference_mode(False):
        return torch.arange(channels, device=device).view(groups, -1).t().reshape(-1)


class DyReLU(nn.Module):
    """Dynamic ReLU with k = 2 and per-channel coefficients from a global token.

    y = max(a1 * x, a2 * x) with a1 in [0, 2] and a2 in [-1, 1] (a1 = 1, a2 = 0 is a ReLU); [a1, a2]
    come from h_sigmoid of a d -> d/4 -> 2C MLP (ReLU inside) of the token, mapped to 2h and 2h - 1.
    The paper's DyReLU reads the token's MLP; the authors feed it token 0 only.

    Shape: x [B, C, H, W], token [B, d] -> [B, C, H, W].
    """

    def __init__(self, channels: int, token_dim: int, reduction: int = DYRELU_REDUCTION) -> None:
        super().__init__()
        self.channels = channels
        self.coefficients = nn.Sequential(
            FastLinear(token_dim, token_dim // reduction), nn.ReLU(inplace=True),
            FastLinear(token_dim // reduction, 2 * channels), nn.Hardsigmoid())
        # h_sigmoid gives [0, 1]; the authors map it to (a - 0.5) * 2 + 1 and (a - 0.5) * 2, i.e. 2a + 0 and
        # 2a - 1: the offsets, as a constant (not in the state dict).
        self.register_buffer('slope_offsets', torch.tensor([[0.0], [-1.0]]), persistent=False)

    def slopes(self, token: Tensor) -> Tensor:
        """[B, d] -> [B, 2, C]: a1 then a2 of every channel."""
        coeffs = self.coefficients(token).view(token.shape[0], 2, self.channels)
        return torch.add(self.slope_offsets, coeffs, alpha=2.0)

    def forward(self, x: Tensor, token: Tensor) -> Tensor:
        slopes = self.slopes(token)[:, :, :, None, None]
        slope1, slope2 = slopes[:, 0], slopes[:, 1]
        # max(a1 x, a2 x) = a2 x + relu((a1 - a2) x): the same function, but its backward is one threshold
        # instead of torch.maximum's eq/where/masked_fill chain, which took a third of a training step of
        # SSDLite-Mobile-Former-151M on CPU.
        return x * slope2 + F.relu(x * (slope1 - slope2))

    def prelu_parameters(self, token: Tensor) -> tuple[Tensor, Tensor]:
        """The DyReLU as a scale and a ``prelu``: ``self(z, token) = prelu(k z, w)`` per channel.

        With hi = max(a1, a2) and lo = min(a1, a2), max(a1 z, a2 z) is hi z for z >= 0 and lo z for
        z < 0: k = hi, w = lo / hi when hi > 0; when hi = 0 (then lo <= 0), k = lo and w = 0, both sides
        being relu(lo z). Either way w <= 1.

        Shape: token [B, d] -> (k, w), each [B, C].
        """
        low, high = torch.aminmax(self.slopes(token), dim=1)
        positive = high > 0
        return torch.where(positive, high, low), torch.where(positive, low / high, 0.0)  # 0/0 masked


def stride1_multiplier(conv: nn.Conv2d) -> int:
    """k for a depthwise conv with channel multiplier k (one group per input channel, k outputs each) at
    stride 1, else 1: the convs :func:`run_conv` runs as plain depthwise convs."""
    if conv.groups != conv.in_channels or conv.stride != (1, 1):
        return 1
    return conv.out_channels // conv.in_channels


def repeat_channels(x: Tensor, repeats: int) -> Tensor:
    """Each channel ``repeats`` times in a row (channel c * repeats + j is channel c), in the layout of
    ``x``. Shape: [B, C, H, W] -> [B, C * repeats, H, W]."""
    batch, channels, height, width = x.shape
    if is_channels_last(x):
        x = x.permute(0, 2, 3, 1)[..., None].expand(batch, height, width, channels, repeats)
        return x.reshape(batch, height, width, channels * repeats).permute(0, 3, 1, 2)
    return x[:, :, None].expand(batch, channels, repeats, height, width).reshape(batch, -1, height, width)


def run_conv(conv: nn.Conv2d, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``conv``'s convolution of ``x`` with the given weight and bias (``conv``'s own, or folded ones).

    A depthwise conv with a channel multiplier k > 1 at stride 1 (:func:`stride1_multiplier`) on CPU runs
    as a plain depthwise conv (one group per output channel) of the input with each channel repeated k
    times: the same products and sums, but oneDNN has fast kernels for plain depthwise convs only, and
    its generic grouped kernel was 2-5x slower at stride 1 (at stride 2, where the copy of the full-size
    input feeds a quarter of the outputs, it does not pay). Pointwise convs at inference go through
    oneDNN (:func:`mvdense.models.layers.conv2d`).
    """
    groups = conv.groups
    repeats = stride1_multiplier(conv)
    if repeats > 1 and x.device.type == 'cpu':
        x, groups = repeat_channels(x, repeats), conv.out_channels
    return conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, groups)


def foldable_norm(norm: nn.Module) -> bool:
    """Whether a conv's norm is an affine map at inference: an eval-mode BatchNorm with running
    statistics, or an identity (a BN already folded into the conv by ``prepare_for_inference``)."""
    if isinstance(norm, nn.Identity):
        return True
    return (isinstance(norm, nn.modules.batchnorm._BatchNorm) and not norm.training
            and norm.running_mean is not None)


def cached(module: nn.Module, name: str, tensors: Sequence[Tensor | None], compute):
    """``compute()``, kept on ``module`` until one of ``tensors`` changes (its storage or, for an in-place
    update such as an optimizer step or ``load_state_dict``, its version counter). For values that
    depend on parameters only, e.g. a BN's affine map at inference, so that no forward recomputes them.
    Inference tensors carry no version counter: with one among ``tensors`` nothing is kept."""
    present = [t for t in tensors if t is not None]
    if any(t.is_inference() for t in present):
        return compute()
    key = tuple((t.data_ptr(), t._version) for t in present)
    entry = module.__dict__.get(name)
    if entry is None or entry[0] != key:
        # Ordinary tensors even when called under inference_mode, so that they stay usable anywhere.
        with torch.inference_mode(False), torch.no_grad():
            entry = (key, compute())
        module.__dict__[name] = entry
    return entry[1]


def bn_affine(norm: nn.modules.batchnorm._BatchNorm) -> tuple[Tensor, Tensor]:
    """(m, s), each [C]: the eval-mode BN as x * m + s (what ``F.batch_norm`` computes internally)."""
    def compute() -> tuple[Tensor, Tensor]:
        multiplier = torch.rsqrt(norm.running_var + norm.eps)
        if norm.weight is not None:
            multiplier = multiplier * norm.weight
        shift = -norm.running_mean * multiplier
        return multiplier, shift if norm.bias is None else shift + norm.bias

    return cached(norm, '_inference_affine', bn_tensors(norm), compute)


def bn_tensors(norm: nn.modules.batchnorm._BatchNorm) -> tuple[Tensor | None, ...]:
    """The tensors an eval-mode BN's output depends on."""
    return norm.running_var, norm.running_mean, norm.weight, norm.bias


def conv_bn_scaled(conv_bn: nn.Sequential, x: Tensor, scale: Tensor | None = None) -> Tensor:
    """``conv_bn(x) * scale`` at inference (``scale`` [C_out] or None), the BN applied as the per-channel
    affine map it is then (:func:`bn_affine`): folded into the conv's weight and bias when the output has
    more elements than the weight (a pass over the weight instead of one over the output: the convs of
    the high-resolution stages; without ``scale`` the folded weight is kept, :func:`cached`), else
    applied to the conv's output in place. ``conv_bn``'s own tensors are not changed.

    Shape: [B, C_in, H, W] -> [B, C_out, H', W'].
    """
    conv, norm = conv_bn[0], conv_bn[1]
    has_norm = isinstance(norm, nn.modules.batchnorm._BatchNorm)
    if not has_norm and scale is None:
        return run_conv(conv, x, conv.weight, conv.bias)
    out_size = x.shape[0] * conv.out_channels * math.ceil(x.shape[2] / conv.stride[0]) * \
        math.ceil(x.shape[3] / conv.stride[1])
    fold = out_size > conv.weight.numel()
    if has_norm and scale is None and fold:
        weight, bias = cached(conv_bn, '_inference_folded', (conv.weight, conv.bias) + bn_tensors(norm),
                              lambda: fold_affine(conv, *bn_affine(norm)))
        return run_conv(conv, x, weight, bias)
    multiplier, shift = bn_affine(norm) if has_norm else (None, None)
    if scale is not None:
        multiplier = scale if multiplier is None else multiplier * scale
        shift = None if shift is None else shift * scale
    if fold:
        return run_conv(conv, x, *fold_affine(conv, multiplier, shift))
    out = run_conv(conv, x, conv.weight, conv.bias)
    view = (1, -1, 1, 1)
    if shift is None:
        return out.mul_(multiplier.view(view))
    return torch.addcmul(shift.view(view), out, multiplier.view(view), out=out)


def fold_affine(conv: nn.Conv2d, multiplier: Tensor, shift: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Weight and bias of ``conv(x) * multiplier + shift`` (per output channel) as one conv."""
    bias = shift if conv.bias is None else conv.bias * multiplier + (0 if shift is None else shift)
    return conv.weight * multiplier[:, None, None, None], bias


def run_conv_bn(conv_bn: nn.Sequential, x: Tensor) -> Tensor:
    """``conv_bn(x)``; at inference with the BN folded (:func:`conv_bn_scaled`)."""
    if fast_inference() and foldable_norm(conv_bn[1]):
        return conv_bn_scaled(conv_bn, x)
    return conv_bn(x)


def conv_bn_dyrelu(conv_bn: nn.Sequential, act: DyReLU, x: Tensor, token: Tensor,
                   shuffle_groups: int = 1) -> Tensor:
    """``act(channel_shuffle(conv_bn(x), shuffle_groups), token)``.

    At inference the DyReLU is ``prelu(k z, w)`` (:meth:`DyReLU.prelu_parameters`), and for a single
    image k is folded with the BN into the conv (:func:`conv_bn_scaled`; with a shuffle in between, each
    conv channel takes the k of the position the shuffle moves it to): the map is then written by the
    conv and read once by the prelu, where BN -> DyReLU read it five times. A batch scales in place and
    takes max(z, w z) (= prelu for w <= 1), ``prelu`` having one slope per channel, not per sample.

    Shape: x [B, C_in, H, W], token [B, d] -> [B, C_out, H', W'].
    """
    if not fast_inference() or not foldable_norm(conv_bn[1]):
        return act(channel_shuffle(conv_bn(x), shuffle_groups), token)
    scale, negative_slope = act.prelu_parameters(token)
    if x.shape[0] == 1:
        out = conv_bn_scaled(conv_bn, x, unshuffle_channels(scale[0], shuffle_groups))
        return F.prelu(channel_shuffle(out, shuffle_groups), negative_slope[0])
    out = channel_shuffle(conv_bn_scaled(conv_bn, x), shuffle_groups).mul_(scale[:, :, None, None])
    return torch.maximum(out, out * negative_slope[:, :, None, None])


def unshuffle_channels(values: Tensor, groups: int) -> Tensor:
    """Per-channel ``values`` [C] of a shuffled map (:func:`channel_shuffle` with ``groups``) brought back to
    the channel order before the shuffle: the shuffle with C / groups groups undoes it."""
    if groups == 1:
        return values
    return values.view(-1, groups).t().reshape(-1)


class MobileToFormer(nn.Module):
    """Mobile->Former bridge: the tokens attend to the feature map (cross attention, post-LN).

    Query: Linear(d -> C) of the tokens; keys = values = the raw features (no projection), 2 heads, each
    over C/2 channels of the map. The attention output is gated by 2 * h_sigmoid(Linear(d -> C)(tokens))
    (the authors' ``use_dynamic``, not in the paper's text), projected back by Linear(C -> d), added to
    the tokens and layer-normalised.

    Shape: x [B, C, H, W], tokens [B, M, d] -> tokens [B, M, d].
    """

    def __init__(self, channels: int, token_dim: int, num_heads: int = BRIDGE_HEADS,
                 drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (channels // num_heads) ** -0.5
        self.q = FastLinear(token_dim, channels)
        self.gate = FastLinear(token_dim, channels)
        self.proj = FastLinear(channels, token_dim)
        self.norm = nn.LayerNorm(token_dim)
        self.drop_path = DropPath(drop_path_rate)

    def forward(self, x: Tensor, tokens: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        num_tokens = tokens.shape[1]
        heads = self.num_heads
        if is_channels_last(x):
            query = self.q(tokens).view(batch, num_tokens, heads, -1).transpose(1, 2)     # [B, h, M, C/h]
            # [B, h, HW, C/h]: a view of the NHWC map, the layout F.scaled_dot_product_attention reads.
            pixels = x.permute(0, 2, 3, 1).reshape(batch, height * width, heads, -1).transpose(1, 2)
            out = attention(query, pixels, pixels).transpose(1, 2)                         # [B, M, h, C/h]
        else:
            # [B, h, C/h, HW]: a view of the NCHW map, used as keys and (transposed, no copy) as values.
            features = x.reshape(batch, heads, channels // heads, height * width)
            query = (self.q(tokens) * self.scale).view(batch, num_tokens, heads, -1).transpose(1, 2)
            attn = (query @ features).softmax(dim=-1)                                      # [B, h, M, HW]
            out = (attn @ features.transpose(-1, -2)).transpose(1, 2)                      # [B, M, h, C/h]
        out = out.reshape(batch, num_tokens, channels) * (2.0 * F.hardsigmoid(self.gate(tokens)))
        return self.norm(tokens + self.drop_path(self.proj(out)))


class Former(nn.Module):
    """Former: one post-LN transformer layer over the M tokens.

    The paper calls it a standard transformer; the authors' attention projects the query only
    (keys = values = the tokens), 4 heads, then an output Linear(d -> d), residual, LN; then an FFN
    d -> 2d -> d with GELU, residual, LN.

    Shape: [B, M, d] -> [B, M, d].
    """

    def __init__(self, token_dim: int, num_heads: int = FORMER_HEADS, ffn_ratio: int = FORMER_FFN_RATIO,
                 drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (token_dim // num_heads) ** -0.5
        self.q = FastLinear(token_dim, token_dim)
        self.proj = FastLinear(token_dim, token_dim)
        self.norm1 = nn.LayerNorm(token_dim)
        self.ffn = nn.Sequential(FastLinear(token_dim, ffn_ratio * token_dim), nn.GELU(),
                                 FastLinear(ffn_ratio * token_dim, token_dim))
        self.norm2 = nn.LayerNorm(token_dim)
        self.drop_path = DropPath(drop_path_rate)

    def forward(self, tokens: Tensor) -> Tensor:
        batch, num_tokens, dim = tokens.shape
        heads = self.num_heads
        keys = tokens.view(batch, num_tokens, heads, dim // heads).transpose(1, 2)     # [B, h, M, d/h]
        query = self.q(tokens).view(batch, num_tokens, heads, -1).transpose(1, 2)
        # One fused call instead of scale, matmul, softmax, matmul: about 3x faster over 6 tokens on CPU.
        out = attention(query, keys, keys).transpose(1, 2).reshape(batch, num_tokens, dim)
        tokens = self.norm1(tokens + self.drop_path(self.proj(out)))
        # The authors put no drop path on the FFN branch.
        return self.norm2(tokens + self.ffn(tokens))


class FormerToMobile(nn.Module):
    """Former->Mobile bridge: every pixel attends to the tokens (cross attention, residual, no norm).

    Query: the raw features (no projection); keys and values: Linear(d -> C) of the tokens; 2 heads, each
    over C/2 channels; no output projection.

    On an NCHW map: [B, h, M, HW] attention with the softmax over the M tokens, so the map is read and
    written in its own [B, C, HW] layout. On a channels-last map: see :meth:`forward_channels_last`.

    Shape: x [B, C, H, W], tokens [B, M, d] -> [B, C, H, W] (in the layout of x).
    """

    def __init__(self, channels: int, token_dim: int, num_heads: int = BRIDGE_HEADS,
                 drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (channels // num_heads) ** -0.5
        self.k = FastLinear(token_dim, channels)
        self.v = FastLinear(token_dim, channels)
        self.drop_path = DropPath(drop_path_rate)
        # [h, 1, C]: 1 where channel c belongs to head i (constants, not in the state dict); the key mask
        # carries the attention scale, so that masking also scales (k * scale, as the NCHW path does).
        head_of_channel = torch.arange(channels) // (channels // num_heads)
        mask = (head_of_channel == torch.arange(num_heads)[:, None]).float()[:, None]
        self.register_buffer('value_mask', mask, persistent=False)
        self.register_buffer('key_mask', mask * self.scale, persistent=False)

    def forward(self, x: Tensor, tokens: Tensor, overwrite: bool = False) -> Tensor:
        """``overwrite``: the caller hands ``x`` over (it holds it nowhere else), so that at inference the
        result may be written into it."""
        if is_channels_last(x):
            return self.forward_channels_last(x, tokens, overwrite)
        batch, channels, height, width = x.shape
        num_tokens = tokens.shape[1]
        heads = self.num_heads
        query = x.reshape(batch, heads, channels // heads, height * width)              # [B, h, C/h, HW]
        keys = (self.k(tokens) * self.scale).view(batch, num_tokens, heads, -1).transpose(1, 2)
        values = self.v(tokens).view(batch, num_tokens, heads, -1).permute(0, 2, 3, 1)  # [B, h, C/h, M]
        attn = (keys @ query).softmax(dim=-2)                                          # [B, h, M, HW]
        out = (values @ attn).view(batch, channels, height, width)
        return x + self.drop_path(out)

    def forward_channels_last(self, x: Tensor, tokens: Tensor, overwrite: bool = False) -> Tensor:
        """The bridge on a channels-last map, read and written through its [B, HW, C] view.

        Keys and values are spread block-diagonally over [B, h*M, C] (row i*M + m: token m on head i's
        channels, zeros elsewhere), so one matmul over all C channels computes every head's logits and
        one ``baddbmm`` every head's output plus the residual (the zeros add nothing; twice the
        multiply-adds of the per-head products, which are a few per cent of the block's). The logits are
        [B, h*M, HW], HW-contiguous, so the softmax over each head's M tokens runs along HW: a softmax
        over rows of M = 6 (the per-head layout of a channels-last map) was several times slower.
        """
        batch, channels, height, width = x.shape
        num_tokens, heads = tokens.shape[1], self.num_heads
        pixels = x.permute(0, 2, 3, 1).reshape(batch, height * width, channels)        # [B, HW, C] view
        keys = (self.k(tokens)[:, None] * self.key_mask).flatten(1, 2)                # [B, hM, C]
        values = (self.v(tokens)[:, None] * self.value_mask).flatten(1, 2)            # [B, hM, C]
        attn = (keys @ pixels.transpose(1, 2)).view(batch, heads, num_tokens, -1).softmax(dim=2)
        attn = attn.view(batch, heads * num_tokens, -1).transpose(1, 2)                # [B, HW, hM]
        if not drops_nothing(self.drop_path):
            out = pixels + self.drop_path(attn @ values)
        elif overwrite and fast_inference():
            out = pixels.baddbmm_(attn, values)
        else:
            out = torch.baddbmm(pixels, attn, values)
        return out.view(batch, height, width, channels).permute(0, 3, 1, 2)


class LiteBottleneck(nn.Module):
    """The conv-only first block: 3x3 depthwise with multiplier e1 -> BN -> ReLU6 -> (shuffle) ->
    1x1 -> BN, plus the identity when the shape allows. No bridge, no tokens.

    Shape: [B, C_in, H, W] -> [B, C_out, ceil(H / stride), ceil(W / stride)].
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int, groups: int = 1,
                 norm_cfg: dict | None = None) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.use_identity = stride == 1 and in_channels == out_channels
        # The authors shuffle with one group per input channel (only when the 1x1 is grouped).
        self.shuffle_groups = in_channels if groups > 1 else 1
        self.depthwise = conv_bn(in_channels, hidden, 3, stride, groups=in_channels, norm_cfg=norm_cfg)
        self.project = conv_bn(hidden, out_channels, 1, groups=groups, norm_cfg=norm_cfg)

    def forward(self, x: Tensor) -> Tensor:
        out = channel_shuffle(F.relu6(run_conv_bn(self.depthwise, x), inplace=True), self.shuffle_groups)
        out = run_conv_bn(self.project, out)
        return add_residual(out, x) if self.use_identity else out


class RegularMobile(nn.Module):
    """Mobile sub-block of a regular block: 1x1 expand (e1) -> BN -> DyReLU -> 3x3 depthwise -> BN ->
    DyReLU -> 1x1 -> BN, identity skip when stride 1 and C_in == C_out.

    Grouped variants (26M) shuffle after both 1x1 convs.

    Shape: x [B, C_in, H, W], token [B, d] -> [B, C_out, ceil(H / stride), ceil(W / stride)].
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int, token_dim: int,
                 groups: int = 1, drop_path_rate: float = 0.0, norm_cfg: dict | None = None) -> None:
        super().__init__()
        hidden = round(in_channels * expansion)
        self.groups = groups
        self.use_identity = stride == 1 and in_channels == out_channels
        self.expand = conv_bn(in_channels, hidden, 1, groups=groups, norm_cfg=norm_cfg)
        self.act1 = DyReLU(hidden, token_dim)
        self.depthwise = conv_bn(hidden, hidden, 3, stride, groups=hidden, norm_cfg=norm_cfg)
        self.act2 = DyReLU(hidden, token_dim)
        self.project = conv_bn(hidden, out_channels, 1, groups=groups, norm_cfg=norm_cfg)
        self.drop_path = DropPath(drop_path_rate)

    def forward(self, x: Tensor, token: Tensor) -> Tensor:
        out = conv_bn_dyrelu(self.expand, self.act1, x, token, self.groups)
        out = conv_bn_dyrelu(self.depthwise, self.act2, out, token)
        out = channel_shuffle(run_conv_bn(self.project, out), self.groups)
        return add_residual(out, x, self.drop_path) if self.use_identity else out


class DownsampleMobile(nn.Module):
    """Mobile sub-block of a down-sampling block: 3x3 depthwise (stride s, multiplier e1) -> BN ->
    DyReLU -> 1x1 -> BN, then an inner residual around 3x3 depthwise (multiplier e2) -> BN -> DyReLU ->
    1x1 -> BN.

    The paper draws a plain dw -> pw -> dw -> pw; the inner residual is the authors' code. Grouped
    variants (26M) shuffle after each depthwise conv, with one group per input channel of that conv.

    Shape: x [B, C_in, H, W], token [B, d] -> [B, C_out, ceil(H / stride), ceil(W / stride)].
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansions: tuple[int, int],
                 token_dim: int, groups: int = 1, drop_path_rate: float = 0.0,
                 norm_cfg: dict | None = None) -> None:
        super().__init__()
        hidden1, hidden2 = round(in_channels * expansions[0]), round(out_channels * expansions[1])
        self.shuffle_groups = (in_channels, out_channels) if groups > 1 else (1, 1)
        self.depthwise1 = conv_bn(in_channels, hidden1, 3, stride, groups=in_channels, norm_cfg=norm_cfg)
        self.act1 = DyReLU(hidden1, token_dim)
        self.project1 = conv_bn(hidden1, out_channels, 1, groups=groups, norm_cfg=norm_cfg)
        self.depthwise2 = conv_bn(out_channels, hidden2, 3, groups=out_channels, norm_cfg=norm_cfg)
        self.act2 = DyReLU(hidden2, token_dim)
        self.project2 = conv_bn(hidden2, out_channels, 1, groups=groups, norm_cfg=norm_cfg)
        self.drop_path = DropPath(drop_path_rate)

    def forward(self, x: Tensor, token: Tensor) -> Tensor:
        out = conv_bn_dyrelu(self.depthwise1, self.act1, x, token, self.shuffle_groups[0])
        out = run_conv_bn(self.project1, out)
        inner = conv_bn_dyrelu(self.depthwise2, self.act2, out, token, self.shuffle_groups[1])
        return add_residual(run_conv_bn(self.project2, inner), out, self.drop_path)


class MobileFormerBlock(nn.Module):
    """Mobile->Former -> Former -> Mobile (its DyReLUs read token 0 of the updated tokens) ->
    Former->Mobile.

    The order is the authors' (``DnaBlock.forward``); the Mobile sub-block's skip is taken before the
    Former->Mobile bridge.

    Shape: x [B, C_in, H, W], tokens [B, M, d] -> ([B, C_out, H / stride, W / stride], [B, M, d]).
    """

    def __init__(self, mobile: RegularMobile | DownsampleMobile, in_channels: int, out_channels: int,
                 token_dim: int, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.mobile_to_former = MobileToFormer(in_channels, token_dim, drop_path_rate=drop_path_rate)
        self.former = Former(token_dim, drop_path_rate=drop_path_rate)
        self.mobile = mobile
        self.former_to_mobile = FormerToMobile(out_channels, token_dim, drop_path_rate=drop_path_rate)

    def forward(self, x: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        tokens = self.former(self.mobile_to_former(x, tokens))
        out = self.mobile(x, tokens[:, 0])
        # The Mobile output is used nowhere else: the bridge may write its result into it.
        return self.former_to_mobile(out, tokens, overwrite=True), tokens


class ClassifierHead(nn.Module):
    """The authors' ``MergeClassifier``: (shuffle) -> 1x1 conv to 6C -> BN -> ReLU6 -> global average
    pool -> h_swish, concatenated with token 0 -> Linear -> BN1d -> h_swish -> dropout -> Linear.

    Shape: x [B, C, H, W], token [B, d] -> logits [B, num_classes].
    """

    def __init__(self, in_channels: int, token_dim: int, hidden_channels: int, num_classes: int,
                 groups: int = 1, drop_rate: float = 0.0, norm_cfg: dict | None = None) -> None:
        super().__init__()
        expanded = HEAD_EXPANSION * in_channels
        self.groups = groups
        self.conv = conv_bn(in_channels, expanded, 1, groups=groups, norm_cfg=norm_cfg)
        self.fc = FastLinear(expanded + token_dim, hidden_channels)
        self.fc_norm = nn.BatchNorm1d(hidden_channels)
        self.dropout = nn.Dropout(drop_rate)
        self.classifier = FastLinear(hidden_channels, num_classes)

    def forward(self, x: Tensor, token: Tensor) -> Tensor:
        x = F.relu6(run_conv_bn(self.conv, channel_shuffle(x, self.groups)), inplace=True)
        pooled = F.hardswish(x.mean(dim=(2, 3)))
        hidden = F.hardswish(self.fc_norm(self.fc(torch.cat((pooled, token), dim=1))))
        return self.classifier(self.dropout(hidden))


@MODELS.register_module()
class MobileFormer(BaseBackbone):
    """Mobile-Former backbone for dense prediction (and the ImageNet classifier, for checkpoints).

    Args:
        arch: ``'26m'``, ``'52m'``, ``'96m'``, ``'151m'``, ``'214m'``, ``'294m'`` or ``'508m'``, or a dict
            shaped like an entry of :data:`ARCHS`.
        out_indices: Stages to return, 0-3 at strides 4, 8, 16, 32 (see the module docstring).
        with_tokens: Also run the last Mobile->Former bridge and return the global tokens [B, M, d] as
            the last element of the output (for DETR-style heads).
        output_stride: 32, or 16 to run stage 3's down-sampling block at stride 1.
        frozen_stages: -1 freezes nothing; k >= 0 freezes the stem (conv, lite bottleneck, token
            embedding) and stages 0..k-1 (the backbone contract, ``backbones/base.py``); 4 also freezes
            the last Mobile->Former bridge.
        norm_eval: Keep BatchNorm layers in eval mode while training.
        num_classes: Build the classifier head (and the last bridge) used by :meth:`forward_classifier`;
            ``forward`` still returns features.
        drop_rate: Dropout before the classifier's last Linear (the authors trained with 0.2-0.3).
        drop_path_rate: Stochastic depth, ramped over the table rows as the authors do (0 = off).
        norm_cfg: Normalisation of the conv layers (BN, or SyncBN for distributed training).
        pretrained: Deprecated alias of ``init_cfg=dict(type='Pretrained', checkpoint=...)``.
        init_cfg: e.g. ``dict(type='Pretrained', checkpoint='mf508m.pth')`` (a converted checkpoint).

    Attributes:
        out_channels / out_strides: Channels and stride of each returned feature map (the tokens, if
            returned, have ``token_dim`` channels and are not listed).

    Shape: [B, 3, H, W] (any H, W >= 32) -> tuple of [B, C_i, ceil(H / s_i), ceil(W / s_i)]
    (then [B, M, d] with ``with_tokens``); at inference on CPU the maps are stored channels-last.
    """

    def __init__(self, arch: str | dict = '508m', out_indices: Sequence[int] = (0, 1, 2, 3),
                 with_tokens: bool = False, output_stride: int = 32, frozen_stages: int = -1,
                 norm_eval: bool = False, num_classes: int | None = None, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, norm_cfg: dict | None = None, pretrained: str | None = None,
                 init_cfg: dict | list | None = None) -> None:
        super().__init__(frozen_stages, norm_eval, pretrained, init_cfg)
        arch = lookup_arch(arch, ARCHS, 'Mobile-Former')
        if output_stride not in (16, 32):
            raise ValueError(f'MobileFormer: output_stride must be 16 or 32, got {output_stride}')
        self.out_indices = check_out_indices(out_indices, 4, 'MobileFormer')
        # Tables written in a config arrive as lists; ours are BlockRows.
        rows = [row if isinstance(row, BlockRow) else BlockRow(*row) for row in arch['blocks']]
        if rows[0].kind != 'lite' or any(row.kind == 'lite' for row in rows[1:]):
            raise ValueError('a Mobile-Former table starts with its one lite bottleneck')
        self.with_tokens = with_tokens
        self.num_tokens, self.token_dim = arch['num_tokens'], arch['token_dim']
        groups, token_dim = arch['groups'], arch['token_dim']

        self.tokens = nn.Embedding(self.num_tokens, token_dim)
        stem_channels = arch['stem_channels']
        self.stem = nn.Sequential(nn.Conv2d(3, stem_channels, 3, 2, 1, bias=False),
                                  build_norm_layer(norm_cfg or dict(type='BN'), stem_channels)[1],
                                  nn.ReLU6(inplace=True))
        lite = rows[0]
        self.lite_bottleneck = LiteBottleneck(stem_channels, lite.out_channels, lite.stride, lite.e1, groups,
                                              norm_cfg)
        self.blocks = nn.ModuleList()
        self.block_stages: list[int] = []   # the stage of each block
        self._build_blocks(rows, output_stride, token_dim, groups, drop_path_rate, norm_cfg)

        # Index of the last block of each stage.
        self.stage_ends = [max(i for i, s in enumerate(self.block_stages) if s == stage) for stage in range(4)]
        stage_channels = [self.blocks[end].former_to_mobile.k.out_features for end in self.stage_ends]
        self.out_channels = [stage_channels[i] for i in self.out_indices]
        self.out_strides = [2 ** (2 + min(i, output_stride.bit_length() - 3)) for i in self.out_indices]
        self._output_blocks = [self.stage_ends[i] for i in self.out_indices]
        # Blocks past the last output are not run, unless the tokens are wanted.
        self._num_blocks_run = len(self.blocks) if with_tokens else max(self._output_blocks) + 1

        channels = stage_channels[-1]
        self.final_mobile_to_former = None
        if with_tokens or num_classes:
            self.final_mobile_to_former = MobileToFormer(channels, token_dim, drop_path_rate=drop_path_rate)
        self.head = None
        if num_classes:
            self.head = ClassifierHead(channels, token_dim, arch['head_channels'], num_classes, groups,
                                       drop_rate, norm_cfg)
        self.freeze_stages()

    def _build_blocks(self, rows: list[BlockRow], output_stride: int, token_dim: int,
                      groups: int, drop_path_rate: float, norm_cfg: dict | None) -> None:
        """Fills ``self.blocks`` and ``self.block_stages`` from the table rows after the lite bottleneck.

        A block's stage counts the table's down-samplings up to it (the stem's is the first); those past
        the output stride run at stride 1 and leave the block in its stage. Stochastic depth is ramped as
        in the authors' code: row i of n gets ``drop_path_rate * (i + 1) / n``.
        """
        max_downsamplings = output_stride.bit_length() - 1
        lite = rows[0]
        channels, downsamplings = lite.out_channels, 1 + (lite.stride == 2)
        for row_index, row in enumerate(rows[1:], start=1):
            rate = drop_path_rate * (row_index + 1) / len(rows)
            for repeat in range(row.num_blocks):
                stride = row.stride if repeat == 0 else 1
                downsamplings += stride == 2
                if stride == 2 and downsamplings > max_downsamplings:
                    stride = 1
                self.blocks.append(self._make_block(row, channels, stride, token_dim, groups, rate, norm_cfg))
                self.block_stages.append(downsamplings - 2)
                channels = row.out_channels
        if sorted(set(self.block_stages)) != [0, 1, 2, 3]:
            raise ValueError('a Mobile-Former table reaches stride 4 before its first block, then has blocks '
                             f'at strides 4, 8, 16 and 32; got stages {self.block_stages}')

    @staticmethod
    def _make_block(row: BlockRow, in_channels: int, stride: int, token_dim: int, groups: int,
                    drop_path_rate: float, norm_cfg: dict | None) -> MobileFormerBlock:
        if row.kind == 'down':
            mobile = DownsampleMobile(in_channels, row.out_channels, stride, (row.e1, row.e2), token_dim,
                                      groups, drop_path_rate, norm_cfg)
        elif row.kind == 'regular':
            mobile = RegularMobile(in_channels, row.out_channels, stride, row.e1, token_dim, groups,
                                   drop_path_rate, norm_cfg)
        else:
            raise ValueError(f'unknown Mobile-Former block kind {row.kind!r}')
        return MobileFormerBlock(mobile, in_channels, row.out_channels, token_dim, drop_path_rate)

    def init_from_scratch(self) -> None:
        """The authors' initialisation (conv: normal, std sqrt(2 / (k * k * C_out)); Linear: normal,
        std 0.01, zero bias; BN: 1/0; embedding and LayerNorm: PyTorch's)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def stem_modules(self) -> list[nn.Module]:
        return [self.stem, self.lite_bottleneck, self.tokens]

    def stage_modules(self) -> list[list[nn.Module]]:
        stages: list[list[nn.Module]] = [[] for _ in range(4)]
        for block, stage in zip(self.blocks, self.block_stages):
            stages[stage].append(block)
        if self.final_mobile_to_former is not None:
            stages[-1].append(self.final_mobile_to_former)
        return stages

    def _initial_tokens(self, batch: int) -> Tensor:
        """[B, M, d]: the learned tokens, the same for every image (a broadcast view, no copy)."""
        return self.tokens.weight.unsqueeze(0).expand(batch, -1, -1)

    @staticmethod
    def _working_layout(x: Tensor) -> Tensor:
        """The image in the layout the network runs in: channels-last for inference on CPU, where
        oneDNN's depthwise convolutions are several times faster on NHWC (``benchmarks/README.md``);
        as given otherwise (training: ``ChannelsLastHook`` chooses; GPUs; tracing)."""
        if x.device.type == 'cpu' and fast_inference():
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def _stem(self, x: Tensor) -> Tensor:
        """Stem and lite bottleneck: [B, 3, H, W] -> [B, C, H / 4, W / 4] (/ 2 for most archs)."""
        x = self._working_layout(x)
        if fast_inference() and foldable_norm(self.stem[1]):
            x = F.relu6(conv_bn_scaled(self.stem, x), inplace=True)
        else:
            x = self.stem(x)
        return self.lite_bottleneck(x)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """[B, 3, H, W] -> the maps of ``out_indices`` (then the tokens [B, M, d] with ``with_tokens``)."""
        tokens = self._initial_tokens(x.shape[0])
        x = self._stem(x)
        outs = []
        for index, block in enumerate(self.blocks[:self._num_blocks_run]):
            x, tokens = block(x, tokens)
            if index in self._output_blocks:
                outs.append(x)
        if self.with_tokens:
            outs.append(self.final_mobile_to_former(x, tokens))
        return tuple(outs)

    def forward_classifier(self, x: Tensor) -> Tensor:
        """[B, 3, H, W] -> ImageNet logits [B, num_classes]; needs ``num_classes``."""
        if self.head is None:
            raise RuntimeError('MobileFormer was built without num_classes: there is no classifier')
        tokens = self._initial_tokens(x.shape[0])
        x = self._stem(x)
        for block in self.blocks:
            x, tokens = block(x, tokens)
        tokens = self.final_mobile_to_former(x, tokens)
        return self.head(x, tokens[:, 0])
