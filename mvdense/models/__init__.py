"""Models: backbones (registered for mmdet and mmseg alike), and task-specific necks and heads."""
from .backbones import MobileFormer, MobileViT
from .deeplabv3 import LightASPPHead
from .e2e_mobileformer import E2EMobileFormer, MobileFormerDecoder
from .ssdlite import SSDLiteHead, SSDLiteNeck

__all__ = ['E2EMobileFormer', 'LightASPPHead', 'MobileFormerDecoder', 'MobileFormer', 'MobileViT', 'SSDLiteHead', 'SSDLiteNeck']
