"""Building blocks shared by the mvdense model families.

Everything here is plain PyTorch/mmcv; the family files (``backbones/mobilevit.py``, heads, necks)
compose these blocks from tables.
"""
from __future__ import annotations

import functools
import weakref
from collections.abc import Callable

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmcv.cnn.bricks import DropPath
from torch import Tensor, nn

DEFAULT_NORM = dict(type='BN')


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Rounds ``value`` to the nearest multiple of ``divisor`` without going 10% below it.

    The rule of MobileNetV2 (and of ml-cvnets / timm), which channel tables depend on.
    """
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class InvertedResidual(nn.Module):
    """MobileNetV2 block ("MV2"): 1x1 expand -> kxk depthwise -> 1x1 linear projection.

    Args:
        in_channels: C_in.
        out_channels: C_out.
        stride: Stride of the depthwise conv.
        expand_ratio: Hidden width is ``make_divisible(C_in * expand_ratio)``; 1 skips the expansion.
        dilation: Dilation of the depthwise conv.
        norm_cfg / act_cfg: Normalisation and activation of the expand and depthwise convs.

    Shape: [B, C_in, H, W] -> [B, C_out, H / stride, W / stride] (ceil). The identity shortcut is
    used when the stride is 1 and C_in == C_out.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: float,
                 dilation: int = 1, norm_cfg: dict = DEFAULT_NORM, act_cfg: dict | None = None) -> None:
        super().__init__()
        act_cfg = act_cfg or dict(type='SiLU')
        hidden = make_divisible(round(in_channels * expand_ratio), 8)
        self.use_shortcut = stride == 1 and in_channels == out_channels
        self.expand = None
        if expand_ratio != 1:
            self.expand = ConvModule(in_channels, hidden, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.depthwise = ConvModule(hidden, hidden, 3, stride=stride, padding=dilation, dilation=dilation,
                                    groups=hidden, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.project = ConvModule(hidden, out_channels, 1, norm_cfg=norm_cfg, act_cfg=None)

    def forward(self, x: Tensor) -> Tensor:
        out = x if self.expand is None else self.expand(x)
        out = self.project(self.depthwise(out))
        return x + out if self.use_shortcut else out


class SeparableConv(nn.Module):
    """Depthwise kxk conv + BN, then a pointwise 1x1 conv (ml-cvnets' ``SeparableConv2d``).

    The depthwise half always has BN and no activation; ``pw_norm_cfg`` / ``pw_act_cfg`` choose
    whether the pointwise half has them (SSD extra layers: yes; prediction layers: no, with bias).

    Shape: [B, C_in, H, W] -> [B, C_out, ceil(H / stride), ceil(W / stride)].
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 norm_cfg: dict = DEFAULT_NORM, pw_norm_cfg: dict | None = None,
                 pw_act_cfg: dict | None = None) -> None:
        super().__init__()
        self.depthwise = ConvModule(in_channels, in_channels, kernel_size, stride=stride,
                                    padding=kernel_size // 2, groups=in_channels, norm_cfg=norm_cfg,
                                    act_cfg=None)
        self.pointwise = ConvModule(in_channels, out_channels, 1, norm_cfg=pw_norm_cfg, act_cfg=pw_act_cfg,
                                    bias=pw_norm_cfg is None)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


# While an ONNX export wants a fused attention op (mvdense.deploy.onnx_export.onnxruntime_attention), the
# function that writes it; None otherwise.
onnx_attention: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None


def fast_inference() -> bool:
    """Whether the inference fast paths apply: autograd is off, autocast is off (the fast paths fold
    float32 parameters into convs, write results in place and call oneDNN directly, which autocast's mixed
    dtypes break or bypass) and nothing traces or compiles the graph (ONNX export and the MAdds counter
    trace the reference formulation; ``torch.compile`` compiles it, with its own fusions and packed
    weights, and could not compile the fast path's cached weights and direct oneDNN calls)."""
    return (not torch.is_grad_enabled() and not is_compiling() and not torch.jit.is_tracing()
            and not autocast_enabled())


# Whether torch.compile / torch.export is tracing the code (torch._dynamo's before torch 2.3).
is_compiling: Callable[[], bool] = getattr(getattr(torch, 'compiler', None), 'is_compiling', None) \
    or torch._dynamo.is_compiling


def is_channels_last(x: Tensor) -> bool:
    """Whether a map [B, C, H, W] is stored channels-last (NHWC) and not also NCHW-contiguous (as a map
    with H = W = 1 is): such a map is read through [B, HW, C] views."""
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


# Below this many multiply-adds a pointwise conv is as fast through ATen's default kernel as through
# oneDNN (the call costs more than it saves; measured by benchmarks/pointwise_conv.py).
ONEDNN_POINTWISE_MIN_MADDS = 2**21


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> Tensor:
    """``F.conv2d``; at inference a pointwise conv (1x1, stride 1) of a float32 channels-last CPU map runs
    through oneDNN directly: a grouped one always, a one-group one above
    :data:`ONEDNN_POINTWISE_MIN_MADDS`.

    Why: with one thread and fewer than 16 images ATen sends 1x1 convs to its im2col + GEMM kernel
    (``use_mkldnn`` in ATen's ConvUtils), one GEMM per group, each group's channels copied out first. On
    our CPU oneDNN is about twice as fast on every one-group pointwise conv of our models above
    :data:`ONEDNN_POINTWISE_MIN_MADDS`, and on grouped ones (Mobile-Former-26M's) at every size we run,
    up to 4x at 56² (``benchmarks/pointwise_conv.py``). With more threads ATen picks oneDNN itself: the
    same kernel. Same function; the sums are accumulated in another order (float rounding). Only where
    :func:`fast_inference` holds, not under CPU autocast, and not in an ONNX export.

    Shape: x [B, C_in, H, W], weight [C_out, C_in / groups, kh, kw] -> [B, C_out, H', W'].
    """
    if _onednn_pointwise(x, weight, stride, padding, dilation, groups):
        return torch.ops.aten.mkldnn_convolution(x, weight, bias, [0, 0], [1, 1], [1, 1], groups)
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


def _onednn_pointwise(x: Tensor, weight: Tensor, stride, padding, dilation, groups: int) -> bool:
    """Whether :func:`conv2d` should run this conv through oneDNN."""
    return (tuple(weight.shape[-2:]) == (1, 1) and _all_equal(stride, 1) and _all_equal(padding, 0)
            and _all_equal(dilation, 1) and x.dim() == 4
            and (groups > 1 or x.numel() * weight.shape[0] >= ONEDNN_POINTWISE_MIN_MADDS)
            and is_channels_last(x) and _onednn_inference(x))


def _onednn_inference(x: Tensor) -> bool:
    """What every direct oneDNN call of ours needs: a float32 CPU input, the inference fast path
    (:func:`fast_inference`: no autocast, whose casts a direct call would bypass), no ONNX export, and
    oneDNN built in and enabled."""
    return (x.device.type == 'cpu' and x.dtype == torch.float32 and fast_inference()
            and not torch.onnx.is_in_onnx_export() and torch.backends.mkldnn.enabled
            and torch.backends.mkldnn.is_available())


def _all_equal(value, expected: int) -> bool:
    """Whether an int-or-tuple conv argument is ``expected`` in every dimension."""
    return all(v == expected for v in value) if isinstance(value, (tuple, list)) else value == expected


class FastConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose convolution is :func:`conv2d` (same parameters and state dict).
    ``mvdense.deploy.optimize.prepare_for_inference`` turns a model's plain ``nn.Conv2d`` into these."""

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if self.padding_mode != 'zeros':
            return super()._conv_forward(input, weight, bias)
        return conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)


# Below this many multiply-adds a Linear is as fast through ATen (addmm) as through oneDNN (measured by
# benchmarks/linear.py).
ONEDNN_LINEAR_MIN_MADDS = 2**20


class FastLinear(nn.Linear):
    """``nn.Linear`` (same parameters and state dict) whose product is :func:`linear`: at inference a large
    float32 CPU product runs through oneDNN with the weight packed once.
    ``mvdense.deploy.optimize.prepare_for_inference`` turns a model's plain ``nn.Linear`` into these.

    Shape: [..., in_features] -> [..., out_features].
    """

    def forward(self, input: Tensor) -> Tensor:
        return linear(input, self.weight, self.bias, owner=self)


# Packed weights (oneDNN's blocked layout: opaque tensors without storage, which cannot be copied or
# pickled) per owning module, outside the module so that deepcopy / pickle never meet them.
_PACKED_WEIGHTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def linear(x: Tensor, weight: Tensor, bias: Tensor | None, owner: nn.Module) -> Tensor:
    """``F.linear``; at inference a product of at least :data:`ONEDNN_LINEAR_MIN_MADDS` on float32 CPU
    tensors runs through oneDNN, with ``weight`` packed into oneDNN's layout once and kept for ``owner``
    (the module holding the weight) until the weight changes (its storage or version counter).

    Why: ATen's ``addmm`` measured about half as fast as oneDNN on every Linear product of our models
    above the threshold on our CPU, from the E2E head's 106 query tokens to MobileViT's thousands of patch
    tokens (``benchmarks/linear.py``); below it (most of Mobile-Former's 6-token Linears) the call's fixed
    cost dominates. Same function; the sums are accumulated in another order (float rounding). Only where
    :func:`fast_inference` holds, not under CPU autocast, and not in an ONNX export.

    Shape: x [..., in], weight [out, in] -> [..., out].
    """
    if not _onednn_linear_applies(x, weight):
        return F.linear(x, weight, bias)
    return torch.ops.mkldnn._linear_pointwise(x, _packed_weight(owner, weight), bias, 'none', [], '')


def _onednn_linear_applies(x: Tensor, weight: Tensor) -> bool:
    # The size first: it turns most small token Linears away cheaply; the weight's inference flag after
    # _onednn_inference, which is False under torch.compile (that cannot trace the flag).
    return (x.numel() * weight.shape[0] >= ONEDNN_LINEAR_MIN_MADDS and x.dim() >= 2
            and weight.dtype == torch.float32 and _onednn_inference(x) and not weight.is_inference()
            and _has_onednn_linear_ops())


def _packed_weight(owner: nn.Module, weight: Tensor) -> Tensor:
    """``weight`` in oneDNN's blocked layout, packed again when it changes."""
    key = (weight.data_ptr(), weight._version, tuple(weight.shape))
    entry = _PACKED_WEIGHTS.get(owner)
    if entry is None or entry[0] != key:
        with torch.inference_mode(False), torch.no_grad():
            entry = (key, torch.ops.mkldnn._reorder_linear_weight(weight.detach()))
        _PACKED_WEIGHTS[owner] = entry
    return entry[1]


@functools.cache
def _has_onednn_linear_ops() -> bool:
    """Whether this torch build has the oneDNN Linear ops its CPU compiler uses (torch >= 2.0)."""
    return hasattr(torch.ops.mkldnn, '_linear_pointwise') and hasattr(torch.ops.mkldnn, '_reorder_linear_weight')


def _autocast_takes_a_device() -> bool:
    """Whether ``torch.is_autocast_enabled`` takes a device type (torch >= 2.4). Older torch (2.1) has
    none (the call reports CUDA there) but ``is_autocast_cpu_enabled``."""
    try:
        torch.is_autocast_enabled('cpu')
    except TypeError:
        return False
    return True


# Decided once: these run in every inference fast-path check.
_AUTOCAST_TAKES_A_DEVICE = _autocast_takes_a_device()
# torch's own any-device check (torch 2.1-2.14 have it; private, hence the fallback): a tenth of the time of
# asking device by device, and it covers every device type.
_ANY_AUTOCAST: Callable[[], bool] | None = getattr(torch._C, '_is_any_autocast_enabled', None)


def autocast_enabled() -> bool:
    """Whether autocast is on for any device."""
    if _ANY_AUTOCAST is not None:
        return _ANY_AUTOCAST()
    # Without a device argument (torch < 2.4) is_autocast_enabled reports CUDA.
    return cpu_autocast_enabled() or torch.is_autocast_enabled(*(('cuda',) if _AUTOCAST_TAKES_A_DEVICE else ()))


def cpu_autocast_enabled() -> bool:
    """Whether CPU autocast is on."""
    return torch.is_autocast_enabled('cpu') if _AUTOCAST_TAKES_A_DEVICE else torch.is_autocast_cpu_enabled()


def attention(query: Tensor, key: Tensor, value: Tensor, dropout_p: float = 0.0) -> Tensor:
    """``F.scaled_dot_product_attention``, kept in float32 under CPU bfloat16 autocast.

    Shape: [B, heads, N, C] (x3) -> [B, heads, N, C]. torch's CPU bfloat16 flash-attention kernel trains
    MobileViT's attention several times slower than the float32 one (``benchmarks/results.md``), so the
    kernel runs in float32 while the projections around it stay in bfloat16.
    """
    if onnx_attention is not None and torch.onnx.is_in_onnx_export():
        return onnx_attention(query, key, value)
    if query.device.type == 'cpu' and cpu_autocast_enabled():
        with torch.autocast('cpu', enabled=False):
            return F.scaled_dot_product_attention(query.float(), key.float(), value.float(), dropout_p=dropout_p)
    return F.scaled_dot_product_attention(query, key, value, dropout_p=dropout_p)


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (the layout of ml-cvnets and timm).

    Shape: [B, N, C] -> [B, N, C]. Uses ``F.scaled_dot_product_attention`` (a fused kernel where
    the platform has one).
    """

    def __init__(self, dim: int, num_heads: int, attn_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'embedding dim {dim} is not divisible by num_heads={num_heads}')
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.qkv = FastLinear(dim, dim * 3)
        self.proj = FastLinear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape
        # [B, N, 3C] -> [3, B, heads, N, C / heads]
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        out = attention(qkv[0], qkv[1], qkv[2], dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class FeedForward(nn.Module):
    """Linear -> activation -> dropout -> Linear. Shape: [..., C] -> [..., C]."""

    def __init__(self, dim: int, hidden_dim: int, act_layer: type[nn.Module] = nn.SiLU,
                 drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = FastLinear(dim, hidden_dim)
        self.act = act_layer()
        self.drop = nn.Dropout(drop)
        self.fc2 = FastLinear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.drop(self.act(self.fc1(x))))


class PreNormTransformerLayer(nn.Module):
    """Pre-norm transformer encoder layer: x + Drop(MHSA(LN(x))); x + Drop(FFN(LN(x))).

    Args:
        dim: Token width C.
        ffn_dim: Hidden width of the FFN.
        num_heads: Attention heads.
        drop: Dropout after the attention and after the FFN (ml-cvnets' ``dropout``).
        attn_drop: Dropout on the attention weights.
        ffn_drop: Dropout between the two FFN linears.
        drop_path: Stochastic depth on both residual branches (per sample).

    Shape: [B, N, C] -> [B, N, C].
    """

    def __init__(self, dim: int, ffn_dim: int, num_heads: int, drop: float = 0.0, attn_drop: float = 0.0,
                 ffn_drop: float = 0.0, act_layer: type[nn.Module] = nn.SiLU, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, num_heads, attn_drop)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim, act_layer, ffn_drop)
        self.drop = nn.Dropout(drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.drop(self.attn(self.norm1(x))))
        return x + self.drop_path(self.drop(self.ffn(self.norm2(x))))


def freeze_module(module: nn.Module) -> None:
    """Puts ``module`` in eval mode and stops gradients to its parameters."""
    module.eval()
    for param in module.parameters():
        param.requires_grad = False


def set_norm_eval(module: nn.Module) -> None:
    """Puts every BatchNorm of ``module`` in eval mode (frozen running statistics)."""
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.eval()


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``module``."""
    return sum(p.numel() for p in module.parameters())


__all__ = [
    'make_divisible', 'InvertedResidual', 'SeparableConv', 'FastConv2d', 'FastLinear', 'MultiHeadSelfAttention',
    'FeedForward', 'PreNormTransformerLayer', 'freeze_module', 'set_norm_eval', 'count_parameters',
]
