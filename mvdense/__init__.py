"""mvdense: mobile vision transformers as dense-prediction backbones for OpenMMLab.

Importing the package registers its models with mmengine/mmdet/mmseg and installs the safe checkpoint
loader, so ``custom_imports=dict(imports=['mvdense'])`` is all an OpenMMLab config needs. It also lets
configs start from ours (``_base_ = 'mvdense::<config>'``, :mod:`mvdense.mim`) and mmseg's
``MMSegInferencer`` run our segmentation configs (:mod:`mvdense.apis.inferencers`).
"""
from . import datasets  # noqa: F401  (registers the segmentation loading transforms)
from .apis.inferencers import register_inferencer_support
from .engine import register_checkpoint_io
from .mim import register_config_package
from .models import *  # noqa: F401,F403  (registers the models)

__version__ = '0.1.0'

register_checkpoint_io()
register_config_package()
register_inferencer_support()
