"""Models: backbones (registered for mmdet and mmseg alike), and task-specific necks and heads."""
from .backbones import MobileViT
from .ssdlite import SSDLiteHead, SSDLiteNeck

__all__ = ['MobileViT', 'SSDLiteHead', 'SSDLiteNeck']
