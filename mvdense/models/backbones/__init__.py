"""Backbones, registered in mmengine's root model registry (visible to mmdet and mmseg)."""
from .mobilevit import MobileViT

__all__ = ['MobileViT']
