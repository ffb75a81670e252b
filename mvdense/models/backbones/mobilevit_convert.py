"""Key mappings from public MobileViT (v1) ImageNet checkpoints to :class:`MobileViT`.

Two layouts are understood:

timm ``mobilevit_{xxs,xs,s}`` (ByobNet)::

    stem.{conv,bn}                                  -> stem.{conv,bn}
    stages.i.j.conv1_1x1 / conv2_kxk / conv3_1x1    -> stages.i.j.expand / depthwise / project
    stages.i.1.conv_kxk / conv_1x1                  -> stages.i.1.local_conv / to_tokens
    stages.i.1.transformer.k.{norm1,attn.qkv,attn.proj,norm2}  -> same names
    stages.i.1.transformer.k.mlp.fc{1,2}            -> stages.i.1.transformer.k.ffn.fc{1,2}
    stages.i.1.norm / conv_proj / conv_fusion       -> stages.i.1.norm / from_tokens / fusion
    final_conv.{conv,bn}, head.fc                   -> final_conv.{conv,bn}, head.fc

apple/ml-cvnets (``mobilevit_{xxs,xs,s}.pt``)::

    conv_1.block.{conv,norm}                        -> stem.{conv,bn}
    layer_n.j.block.{exp_1x1,conv_3x3,red_1x1}.block.{conv,norm}
                                                    -> stages.(n-1).j.{expand,depthwise,project}.{conv,bn}
    layer_n.1.local_rep.conv_3x3.block.{conv,norm}  -> stages.(n-1).1.local_conv.{conv,bn}
    layer_n.1.local_rep.conv_1x1.block.conv         -> stages.(n-1).1.to_tokens
    layer_n.1.global_rep.k.pre_norm_mha.0           -> stages.(n-1).1.transformer.k.norm1
    layer_n.1.global_rep.k.pre_norm_mha.1.{qkv_proj,out_proj} -> ...transformer.k.attn.{qkv,proj}
    layer_n.1.global_rep.k.pre_norm_ffn.{0,1,4}     -> ...transformer.k.{norm2,ffn.fc1,ffn.fc2}
    layer_n.1.global_rep.L (the last, a LayerNorm)  -> stages.(n-1).1.norm
    layer_n.1.conv_proj / fusion .block.{conv,norm} -> stages.(n-1).1.from_tokens / fusion .{conv,bn}
    conv_1x1_exp.block.{conv,norm}, classifier.fc   -> final_conv.{conv,bn}, head.fc

Apple's cvnets weights expect BGR input in [0, 1] with no mean/std normalisation.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from torch import Tensor

Rule = tuple[str, str | Callable[[re.Match], str]]

TIMM_RULES: list[Rule] = [
    (r'^stages\.(\d+)\.(\d+)\.conv1_1x1\.', r'stages.\1.\2.expand.'),
    (r'^stages\.(\d+)\.(\d+)\.conv2_kxk\.', r'stages.\1.\2.depthwise.'),
    (r'^stages\.(\d+)\.(\d+)\.conv3_1x1\.', r'stages.\1.\2.project.'),
    (r'^stages\.(\d+)\.(\d+)\.conv_kxk\.', r'stages.\1.\2.local_conv.'),
    (r'^stages\.(\d+)\.(\d+)\.conv_1x1\.', r'stages.\1.\2.to_tokens.'),
    (r'^stages\.(\d+)\.(\d+)\.transformer\.(\d+)\.mlp\.', r'stages.\1.\2.transformer.\3.ffn.'),
    (r'^stages\.(\d+)\.(\d+)\.conv_proj\.', r'stages.\1.\2.from_tokens.'),
    (r'^stages\.(\d+)\.(\d+)\.conv_fusion\.', r'stages.\1.\2.fusion.'),
]


def _stage(match: re.Match) -> str:
    return f'stages.{int(match.group(1)) - 1}.{match.group(2)}.'


CVNETS_RULES: list[Rule] = [
    (r'^conv_1\.block\.', 'stem.'),
    (r'^conv_1x1_exp\.block\.', 'final_conv.'),
    (r'^classifier\.fc\.', 'head.fc.'),
    (r'^layer_(\d+)\.(\d+)\.block\.exp_1x1\.block\.', lambda m: _stage(m) + 'expand.'),
    (r'^layer_(\d+)\.(\d+)\.block\.conv_3x3\.block\.', lambda m: _stage(m) + 'depthwise.'),
    (r'^layer_(\d+)\.(\d+)\.block\.red_1x1\.block\.', lambda m: _stage(m) + 'project.'),
    (r'^layer_(\d+)\.(\d+)\.local_rep\.conv_3x3\.block\.', lambda m: _stage(m) + 'local_conv.'),
    (r'^layer_(\d+)\.(\d+)\.local_rep\.conv_1x1\.block\.conv\.', lambda m: _stage(m) + 'to_tokens.'),
    (r'^layer_(\d+)\.(\d+)\.global_rep\.(\d+)\.pre_norm_mha\.0\.',
     lambda m: _stage(m) + f'transformer.{m.group(3)}.norm1.'),
    (r'^layer_(\d+)\.(\d+)\.global_rep\.(\d+)\.pre_norm_mha\.1\.qkv_proj\.',
     lambda m: _stage(m) + f'transformer.{m.group(3)}.attn.qkv.'),
    (r'^layer_(\d+)\.(\d+)\.global_rep\.(\d+)\.pre_norm_mha\.1\.out_proj\.',
     lambda m: _stage(m) + f'transformer.{m.group(3)}.attn.proj.'),
    (r'^layer_(\d+)\.(\d+)\.global_rep\.(\d+)\.pre_norm_ffn\.0\.',
     lambda m: _stage(m) + f'transformer.{m.group(3)}.norm2.'),
    (r'^layer_(\d+)\.(\d+)\.global_rep\.(\d+)\.pre_norm_ffn\.1\.',
     lambda m: _stage(m) + f'transformer.{m.group(3)}.ffn.fc1.'),
    (r'^layer_(\d+)\.(\d+)\.global_rep\.(\d+)\.pre_norm_ffn\.4\.',
     lambda m: _stage(m) + f'transformer.{m.group(3)}.ffn.fc2.'),
    # The LayerNorm after the last transformer layer: the only global_rep entry holding tensors itself.
    (r'^layer_(\d+)\.(\d+)\.global_rep\.\d+\.(?=(weight|bias)$)', lambda m: _stage(m) + 'norm.'),
    (r'^layer_(\d+)\.(\d+)\.conv_proj\.block\.', lambda m: _stage(m) + 'from_tokens.'),
    (r'^layer_(\d+)\.(\d+)\.fusion\.block\.', lambda m: _stage(m) + 'fusion.'),
]


def _apply_rules(state_dict: Mapping[str, Tensor], rules: list[Rule]) -> dict[str, Tensor]:
    """Renames every key by the first rule that matches it (keys no rule matches are kept)."""
    converted = {}
    for key, value in state_dict.items():
        new_key = key
        for pattern, replacement in rules:
            new_key, count = re.subn(pattern, replacement, new_key)
            if count:
                break
        converted[new_key] = value
    return converted


def convert_timm_mobilevit(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """timm ``mobilevit_*`` state dict -> ours (see the module docstring for the mapping)."""
    return _apply_rules(state_dict, TIMM_RULES)


def convert_cvnets_mobilevit(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """apple/ml-cvnets MobileViT state dict -> ours (see the module docstring for the mapping)."""
    # cvnets' ConvLayer2d names its BatchNorm ``block.norm``; mmcv's ConvModule calls it ``bn``.
    renamed = {re.sub(r'\.block\.norm\.', '.block.bn.', key): value for key, value in state_dict.items()}
    return _apply_rules(renamed, CVNETS_RULES)
