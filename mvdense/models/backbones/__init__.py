"""Backbones, registered in mmengine's root model registry (visible to mmdet and mmseg).

All of them keep one contract (``base.py``): ``out_indices``, ``frozen_stages``, ``norm_eval``,
``init_cfg``/``pretrained``, ``drop_rate``/``drop_path_rate``, and ``out_channels``/``out_strides``.
"""
from .base import BaseBackbone
from .glit import GLiT
from .mobileformer import MobileFormer
from .mobilevit import MobileViT

__all__ = ['BaseBackbone', 'GLiT', 'MobileFormer', 'MobileViT']
