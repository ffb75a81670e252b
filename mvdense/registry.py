"""Where mvdense registers its modules.

Backbones (and any module that is not specific to one codebase) go into mmengine's *root* model
registry. mmdet's and mmseg's ``MODELS`` are children of that root and fall back to their parent when
a type is not found locally, so one registration serves both toolboxes, and any other OpenMMLab project
that loads us with ``custom_imports=dict(imports=['mvdense'])``.

Detection-only modules register into ``mmdet.registry.MODELS`` and segmentation-only ones into
``mmseg.registry.MODELS`` (imported where they are defined), so that they sit beside the classes they
extend.
"""
from mmengine.registry import MODELS

__all__ = ['MODELS']
