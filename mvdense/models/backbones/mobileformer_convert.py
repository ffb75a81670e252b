"""Key mapping from the authors' Mobile-Former checkpoints (AAboys/MobileFormer) to :class:`MobileFormer`.

Their checkpoints hold ``{'state_dict': {...}}`` (keys possibly prefixed by ``module.``) in the layout of
``mobile_former.py``; ``features.i`` is row i of the arch table, ``features.0`` the lite bottleneck::

    tokens.weight, stem.{0,1}                  -> tokens.weight, stem.{0,1}
    features.0.conv.{0,1}                      -> lite_bottleneck.depthwise.{0,1}
    features.0.conv.{4,5}                      -> lite_bottleneck.project.{0,1}

    features.i (i >= 1) -> blocks.(i-1); bridges and Former:
    .local_global.{q,proj,layer_norm}          -> .mobile_to_former.{q,proj,norm}
    .local_global.alpha.0                      -> .mobile_to_former.gate
    .global_block.{q,channel_mlp,layer_norm}   -> .former.{q,proj,norm1}
    .global_block.{ffn.0,ffn.2,ffn_norm}       -> .former.{ffn.0,ffn.2,norm2}
    .global_local.{k,proj}                     -> .former_to_mobile.{k,v}

    regular blocks (DnaBlock):
    .conv1 / .conv2 / .conv3                   -> .mobile.expand / .mobile.depthwise / .mobile.project
    .hyper1.hyper / .hyper2.hyper              -> .mobile.act1.coefficients / .mobile.act2.coefficients

    down-sampling blocks (DnaBlock3, the ones with a ``conv4``):
    .conv1 / .conv2 / .conv3 / .conv4          -> .mobile.depthwise1 / .project1 / .depthwise2 / .project2
    .hyper1.hyper / .hyper3.hyper              -> .mobile.act1.coefficients / .mobile.act2.coefficients

    local_global (after the last block)        -> final_mobile_to_former (same renames as above)
    classifier.conv.{1,2}                      -> head.conv.{0,1}
    classifier.fc.{0,1}                        -> head.fc, head.fc_norm
    classifier.classifier.1                    -> head.classifier

Inside the renamed modules the ``Sequential`` indices are the same as theirs (``.0`` conv, ``.1`` BN;
``coefficients.0`` / ``.2`` the two Linears of the DyReLU MLP).
"""
from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

_BRIDGE_AND_FORMER = {
    'local_global.q': 'mobile_to_former.q',
    'local_global.proj': 'mobile_to_former.proj',
    'local_global.layer_norm': 'mobile_to_former.norm',
    'local_global.alpha.0': 'mobile_to_former.gate',
    'global_block.q': 'former.q',
    'global_block.channel_mlp': 'former.proj',
    'global_block.layer_norm': 'former.norm1',
    'global_block.ffn.0': 'former.ffn.0',
    'global_block.ffn.2': 'former.ffn.2',
    'global_block.ffn_norm': 'former.norm2',
    'global_local.k': 'former_to_mobile.k',
    'global_local.proj': 'former_to_mobile.v',
}
_REGULAR_MOBILE = {
    'conv1': 'mobile.expand', 'conv2': 'mobile.depthwise', 'conv3': 'mobile.project',
    'hyper1.hyper': 'mobile.act1.coefficients', 'hyper2.hyper': 'mobile.act2.coefficients',
}
_DOWNSAMPLE_MOBILE = {
    'conv1': 'mobile.depthwise1', 'conv2': 'mobile.project1', 'conv3': 'mobile.depthwise2',
    'conv4': 'mobile.project2',
    'hyper1.hyper': 'mobile.act1.coefficients', 'hyper3.hyper': 'mobile.act2.coefficients',
}
_LITE = {'conv.0': 'depthwise.0', 'conv.1': 'depthwise.1', 'conv.4': 'project.0', 'conv.5': 'project.1'}
_TOP_LEVEL = {
    'classifier.conv.1': 'head.conv.0', 'classifier.conv.2': 'head.conv.1',
    'classifier.fc.0': 'head.fc', 'classifier.fc.1': 'head.fc_norm',
    'classifier.classifier.1': 'head.classifier',
    **{f'local_global.{name}': f'final_mobile_to_former.{ours}'
       for name, ours in (('q', 'q'), ('proj', 'proj'), ('layer_norm', 'norm'), ('alpha.0', 'gate'))},
}
_FEATURE_KEY = re.compile(r'^features\.(\d+)\.(.+)$')


def _rename(name: str, table: Mapping[str, str]) -> str | None:
    """``name`` with its longest module prefix found in ``table`` replaced, or None."""
    for prefix in sorted(table, key=len, reverse=True):
        if name.startswith(prefix + '.'):
            return table[prefix] + name[len(prefix):]
    return None


def _unwrap(checkpoint: Mapping) -> dict[str, Tensor]:
    """The tensors of a checkpoint (its ``state_dict`` entry if it has one), without ``module.``."""
    if isinstance(checkpoint.get('state_dict'), Mapping):
        checkpoint = checkpoint['state_dict']
    return {key.removeprefix('module.'): value for key, value in checkpoint.items()}


def convert_mobileformer_official(state_dict: Mapping) -> dict[str, Tensor]:
    """AAboys/MobileFormer state dict (or whole checkpoint) -> ours; see the module docstring.

    The block kind of ``features.i`` is read from the keys (down-sampling blocks have a ``conv4``), so
    every arch converts without being named. Unknown keys raise a ``KeyError``.
    """
    state_dict = _unwrap(state_dict)
    downsampling_blocks = {int(m.group(1)) for key in state_dict
                           if (m := _FEATURE_KEY.match(key)) and m.group(2).startswith('conv4.')}
    converted = {}
    for key, value in state_dict.items():
        match = _FEATURE_KEY.match(key)
        if key in ('tokens.weight',) or key.startswith('stem.'):
            new_key = key
        elif match is None:
            new_key = _rename(key, _TOP_LEVEL)
        elif match.group(1) == '0':
            new_key = _rename(match.group(2), _LITE)
            new_key = new_key and f'lite_bottleneck.{new_key}'
        else:
            index, rest = int(match.group(1)), match.group(2)
            mobile = _DOWNSAMPLE_MOBILE if index in downsampling_blocks else _REGULAR_MOBILE
            new_key = _rename(rest, _BRIDGE_AND_FORMER) or _rename(rest, mobile)
            new_key = new_key and f'blocks.{index - 1}.{new_key}'
        if new_key is None:
            raise KeyError(f'{key!r} is not a key of the authors\' Mobile-Former layout')
        converted[new_key] = value
    return converted
