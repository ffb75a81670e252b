"""Key mapping from the authors' GLiT checkpoints (bychen515/GLiT, DeiT's training format) to :class:`GLiT`.

Their released checkpoint is DeiT's ``{'model', 'model_ema', 'optimizer', 'lr_scheduler', 'epoch',
'scaler', 'args'}``; the weights are under ``model``. Each block is a one-element ``ModuleList``::

    patch_embed.proj                    -> patch_embed
    cls_token, pos_embed, norm          -> the same names
    head                                -> head.1            (after the classifier's dropout)
    blocks.i.0.{norm1,norm2}            -> blocks.i.{norm1,norm2}
    blocks.i.0.attn.{qkv,proj}          -> blocks.i.mixer.attn.{qkv,proj}      (global part)
    blocks.i.0.attn.net.{1,3.conv,4,6}  -> blocks.i.mixer.conv.{pw1,dw,bn,pw2} (local part)
    blocks.i.0.mlp.{fc1,fc2}            -> blocks.i.ffn.{fc1,fc2}

Their models take RGB input normalised with the ImageNet mean/std (DeiT's pipeline).
"""
from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

_TOP_LEVEL = {'patch_embed.proj': 'patch_embed', 'head': 'head.1', 'norm': 'norm'}
_BLOCK = {'norm1': 'norm1', 'norm2': 'norm2', 'attn.qkv': 'mixer.attn.qkv', 'attn.proj': 'mixer.attn.proj',
          'attn.net.1': 'mixer.conv.pw1', 'attn.net.3.conv': 'mixer.conv.dw', 'attn.net.4': 'mixer.conv.bn',
          'attn.net.6': 'mixer.conv.pw2', 'mlp.fc1': 'ffn.fc1', 'mlp.fc2': 'ffn.fc2'}
_BLOCK_KEY = re.compile(r'^blocks\.(\d+)\.0\.(.+)\.([^.]+)$')


def is_authors_glit(state_dict: Mapping) -> bool:
    """Whether ``state_dict`` has the authors' GLiT key layout."""
    return 'patch_embed.proj.weight' in state_dict and 'blocks.0.0.norm1.weight' in state_dict


def convert_glit_official(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The authors' GLiT state dict -> ours (see the module docstring); unknown keys raise a KeyError."""
    converted = {}
    for key, value in state_dict.items():
        if key in ('cls_token', 'pos_embed'):
            converted[key] = value
            continue
        module, _, leaf = key.rpartition('.')
        match = _BLOCK_KEY.match(key)
        if match and match.group(2) in _BLOCK:
            converted[f'blocks.{match.group(1)}.{_BLOCK[match.group(2)]}.{match.group(3)}'] = value
        elif module in _TOP_LEVEL:
            converted[f'{_TOP_LEVEL[module]}.{leaf}'] = value
        else:
            raise KeyError(f"{key!r} is not a key of the authors' GLiT layout")
    return converted
