"""Inference-only rewrites of a trained model: conv-BN folding, the channels-last memory format and
convs that take oneDNN's pointwise kernels.

All keep the function (same outputs to float rounding) and are meant for CPU inference; none is
reversible, so apply them to a copy when the model is still to be trained:

    model = prepare_for_inference(copy.deepcopy(model))

What they buy on a 2-core x86 CPU is measured by ``tools/benchmark.py`` (see ``benchmarks/results.md``).
"""
from __future__ import annotations

import torch
from mmcv.cnn import ConvModule
from torch import Tensor, nn

from ..models.layers import FastConv2d, FastLinear


def fold_batchnorm_into_conv(conv: nn.Conv2d, norm: nn.modules.batchnorm._BatchNorm) -> None:
    """Folds an eval-mode BatchNorm that follows ``conv`` into the conv's weight and bias, in place.

    BN(conv(x)) = s * (W x + b - mean) + beta with s = gamma / sqrt(var + eps), i.e. a conv with weight
    s * W (per output channel) and bias s * (b - mean) + beta.
    """
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps) if norm.affine else \
        1 / torch.sqrt(norm.running_var + norm.eps)
    shift = norm.bias if norm.affine else torch.zeros_like(norm.running_mean)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
    with torch.no_grad():
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
        conv.bias = nn.Parameter(scale * (bias - norm.running_mean) + shift)


def _foldable(norm: nn.Module) -> bool:
    """An eval-mode BatchNorm with running statistics (a fixed affine map)."""
    return isinstance(norm, nn.modules.batchnorm._BatchNorm) and norm.track_running_stats and \
        norm.running_mean is not None


def fuse_sequential_conv_bn(model: nn.Module) -> nn.Module:
    """Folds every BatchNorm that directly follows a ``Conv2d`` inside an ``nn.Sequential`` into that
    conv, in place, and puts an ``nn.Identity`` in the BN's slot (so indices, and the Sequential's
    other members, stay where they were). Mobile-Former's conv -> BN pairs are such Sequentials (the
    authors' checkpoint layout). Call on an eval-mode model."""
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module._modules.items())
        for (_, conv), (name, norm) in zip(children, children[1:]):
            if isinstance(conv, nn.Conv2d) and _foldable(norm):
                fold_batchnorm_into_conv(conv, norm)
                module._modules[name] = nn.Identity()
    return model


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Folds the BatchNorm of every mmcv ``ConvModule`` (conv -> norm order), and every BatchNorm that
    follows a conv in an ``nn.Sequential`` (:func:`fuse_sequential_conv_bn`), into its conv, in place.

    The BN layers are removed (``ConvModule.with_norm = False``; an ``nn.Identity`` in a Sequential), so
    the state dict changes: save the trained model, not the fused one. Returns ``model`` in eval mode.
    Works on any model built from ConvModules or conv -> BN Sequentials (our backbones, necks and heads,
    mmdet's and mmseg's).
    """
    model.eval()
    fuse_sequential_conv_bn(model)
    for module in model.modules():
        if not isinstance(module, ConvModule) or not module.with_norm:
            continue
        norm = module.norm
        if not isinstance(norm, nn.modules.batchnorm._BatchNorm) or not norm.track_running_stats:
            continue
        order = list(module.order)
        if order.index('conv') + 1 != order.index('norm'):
            continue  # norm before conv (pre-activation order): not foldable into this conv
        fold_batchnorm_into_conv(module.conv, norm)
        delattr(module, module.norm_name)
        module.norm_name = None
        module.with_norm = False
    return model


def _to_channels_last_input(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: hands the module its 4-D image input in channels-last memory format."""
    if args and isinstance(args[0], Tensor) and args[0].dim() == 4:
        return (args[0].contiguous(memory_format=torch.channels_last),) + tuple(args[1:])
    return args


def to_channels_last(model: nn.Module, entry: nn.Module | None = None) -> nn.Module:
    """Stores the 4-D weights of ``model`` channels-last and converts the input of ``entry``.

    ``entry`` is the module that receives the image (default: ``model``; for an mmdet/mmseg model pass
    its backbone, since the data preprocessor comes first). oneDNN's convolutions, depthwise ones in
    particular, are several times faster on NHWC than on NCHW on x86 CPUs, and the MobileViT block's
    unfold/fold then copies contiguous channel runs.
    """
    model.to(memory_format=torch.channels_last)
    (entry or model).register_forward_pre_hook(_to_channels_last_input)
    return model


def use_fast_convs(model: nn.Module) -> nn.Module:
    """Turns every plain ``nn.Conv2d`` of ``model`` into a :class:`~mvdense.models.layers.FastConv2d`,
    in place (same parameters and state dict): at inference its large pointwise convs on channels-last
    maps run through oneDNN, which ATen skips with one thread. Returns ``model``."""
    for module in model.modules():
        if type(module) is nn.Conv2d:
            module.__class__ = FastConv2d
    return model


def use_fast_linears(model: nn.Module) -> nn.Module:
    """Turns every plain ``nn.Linear`` of ``model`` into a :class:`~mvdense.models.layers.FastLinear`, in
    place (same parameters and state dict): at inference its large products run through oneDNN.
    Returns ``model``."""
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = FastLinear
    return model


def prepare_for_inference(model: nn.Module, entry: nn.Module | None = None, fuse: bool = True,
                          channels_last: bool = True) -> nn.Module:
    """eval(), then conv-BN folding and channels-last (each optional; channels-last also brings
    :func:`use_fast_convs`), and :func:`use_fast_linears`, in place. Returns ``model``."""
    model.eval()
    if fuse:
        fuse_conv_bn(model)
    if channels_last:
        to_channels_last(model, entry)
        use_fast_convs(model)
    use_fast_linears(model)
    return model
