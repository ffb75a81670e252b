"""Conversion of public ImageNet checkpoints into mvdense backbones (used by ``tools/convert_weights.py``).

Each known layout is recognised from its key names; see the family converters for the key mappings.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import Tensor

from .models.backbones.mobileformer_convert import convert_mobileformer_official
from .models.backbones.mobilevit_convert import convert_cvnets_mobilevit, convert_timm_mobilevit

StateDict = Mapping[str, Tensor]


@dataclass(frozen=True)
class Layout:
    """A checkpoint key layout we can convert."""

    name: str
    matches: Callable[[StateDict], bool]
    convert: Callable[[StateDict], dict[str, Tensor]]


LAYOUTS: list[Layout] = [
    Layout('timm-mobilevit', lambda sd: 'stem.conv.weight' in sd and 'stages.2.1.conv_kxk.conv.weight' in sd,
           convert_timm_mobilevit),
    Layout('cvnets-mobilevit', lambda sd: 'conv_1.block.conv.weight' in sd and 'layer_3.1.fusion.block.conv.weight'
           in sd, convert_cvnets_mobilevit),
    # AAboys/MobileFormer: the lite bottleneck is features.0, and every model ends with a Mobile->Former bridge.
    Layout('authors-mobileformer', lambda sd: 'features.0.conv.0.weight' in sd and 'local_global.q.weight' in sd,
           convert_mobileformer_official),
]


def unwrap_state_dict(checkpoint: Mapping) -> dict[str, Tensor]:
    """Returns the tensors of a checkpoint: its ``state_dict``/``model`` entry if any, minus a DDP
    ``module.`` prefix."""
    for key in ('state_dict', 'model', 'model_state'):
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    return {(k[len('module.'):] if k.startswith('module.') else k): v for k, v in checkpoint.items()}


def detect_layout(state_dict: StateDict) -> Layout:
    """The layout whose key names ``state_dict`` has; a ``ValueError`` listing the known ones otherwise."""
    for layout in LAYOUTS:
        if layout.matches(state_dict):
            return layout
    sample = ', '.join(list(state_dict)[:5])
    raise ValueError(f'unknown checkpoint layout (first keys: {sample}); known layouts: '
                     f'{", ".join(layout.name for layout in LAYOUTS)}')


def convert_checkpoint(checkpoint: Mapping) -> tuple[str, dict[str, Tensor]]:
    """Detects the layout of ``checkpoint`` and converts it: returns (layout name, our state dict)."""
    state_dict = unwrap_state_dict(checkpoint)
    layout = detect_layout(state_dict)
    return layout.name, layout.convert(state_dict)
