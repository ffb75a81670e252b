"""Models: backbones (registered for mmdet and mmseg alike), and task-specific necks and heads."""
from .backbones import GLiT, MobileFormer, MobileViT
from .deeplabv3 import LightASPPHead, NearestResizeEncoderDecoder
from .e2e_mobileformer import E2EMobileFormer
from .e2e_mobileformer_layers import MobileFormerDecoder
from .necks import SimpleFeaturePyramid
from .ssdlite import SSDLiteHead, SSDLiteNeck

__all__ = ['E2EMobileFormer', 'GLiT', 'LightASPPHead', 'MobileFormerDecoder', 'MobileFormer', 'MobileViT', 'NearestResizeEncoderDecoder', 'SimpleFeaturePyramid', 'SSDLiteHead', 'SSDLiteNeck']
