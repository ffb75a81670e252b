"""Conversion of public checkpoints into mvdense models (used by ``tools/convert_weights.py``): ImageNet
backbones, and apple/ml-cvnets' trained SSD-MobileViT and DeepLabv3-MobileViT whole models.

Each known layout is recognised from its key names; see the family converters for the key mappings.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import Tensor

from .engine.checkpoint import extra_safe_globals, load_local_checkpoint
from .models import cvnets_convert
from .models.backbones.glit_convert import convert_glit_official, is_authors_glit
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
    # bychen515/GLiT (DeiT's training format; the weights are its ``model`` entry).
    Layout('authors-glit', is_authors_glit, convert_glit_official),
    # ml-cvnets' trained detectors and segmentors: whole models, the backbone under ``encoder.``.
    Layout('cvnets-ssd-mobilevit', cvnets_convert.is_cvnets_ssd, cvnets_convert.convert_cvnets_ssd),
    Layout('cvnets-deeplabv3-mobilevit', cvnets_convert.is_cvnets_deeplabv3, cvnets_convert.convert_cvnets_deeplabv3),
]


def unwrap_state_dict(checkpoint: Mapping) -> tuple[dict[str, Tensor], list[str]]:
    """The tensors of a checkpoint (its ``state_dict``/``model`` entry if any, minus a DDP ``module.``
    prefix) and the names of the top-level entries left out (optimizer, EMA, training arguments...)."""
    skipped: list[str] = []
    for key in ('state_dict', 'model', 'model_state'):
        if isinstance(checkpoint.get(key), Mapping):
            skipped = [name for name in checkpoint if name != key]
            checkpoint = checkpoint[key]
            break
    return {k.removeprefix('module.'): v for k, v in checkpoint.items()}, skipped


def detect_layout(state_dict: StateDict) -> Layout:
    """The layout whose key names ``state_dict`` has; a ``ValueError`` listing the known ones otherwise."""
    for layout in LAYOUTS:
        if layout.matches(state_dict):
            return layout
    sample = ', '.join(list(state_dict)[:5])
    raise ValueError(f'unknown checkpoint layout (first keys: {sample}); known layouts: '
                     f'{", ".join(layout.name for layout in LAYOUTS)}')


@dataclass(frozen=True)
class Conversion:
    """What :func:`convert_checkpoint` made of a checkpoint."""

    layout: str
    state_dict: dict[str, Tensor]
    skipped: list[str]   # top-level entries of the checkpoint that hold no model weights


def convert_checkpoint(checkpoint: Mapping) -> Conversion:
    """Detects the layout of ``checkpoint`` and converts it."""
    state_dict, skipped = unwrap_state_dict(checkpoint)
    layout = detect_layout(state_dict)
    return Conversion(layout.name, layout.convert(state_dict), skipped)


# Training checkpoints of other code bases pickle their command-line arguments (DeiT's, GLiT's:
# ``args``, an ``argparse.Namespace`` of strings and numbers). Allowing that one class, while converting
# only, reads them without allowing arbitrary objects: a Namespace only stores attributes.
FOREIGN_CHECKPOINT_GLOBALS = [argparse.Namespace]


def load_foreign_checkpoint(path: str) -> dict:
    """Loads a checkpoint to convert: weights-only, plus :data:`FOREIGN_CHECKPOINT_GLOBALS`."""
    with extra_safe_globals(FOREIGN_CHECKPOINT_GLOBALS):
        return load_local_checkpoint(path, map_location='cpu')
