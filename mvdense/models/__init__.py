"""Models: backbones (registered for mmdet and mmseg alike), and task-specific necks and heads."""
from .backbones import MobileFormer, MobileViT
from .deeplabv3 import LightASPPHead
from .ssdlite import SSDLiteHead, SSDLiteNeck

__all__ = ['LightASPPHead', 'MobileFormer', 'MobileViT', 'SSDLiteHead', 'SSDLiteNeck']
