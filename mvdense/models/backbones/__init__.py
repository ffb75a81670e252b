"""Backbones, registered in mmengine's root model registry (visible to mmdet and mmseg)."""
from .mobileformer import MobileFormer
from .mobilevit import MobileViT

__all__ = ['MobileFormer', 'MobileViT']
