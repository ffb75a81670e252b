"""mvdense: mobile vision transformers as dense-prediction backbones for OpenMMLab.

Importing the package registers its models with mmengine/mmdet/mmseg and installs the safe checkpoint
loader, so ``custom_imports=dict(imports=['mvdense'])`` is all an OpenMMLab config needs.
"""
from . import datasets  # noqa: F401  (registers the segmentation loading transforms)
from .engine import register_checkpoint_io
from .models import *  # noqa: F401,F403  (registers the models)

__version__ = '0.1.0'

register_checkpoint_io()
