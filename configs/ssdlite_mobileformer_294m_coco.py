# SSDLite-Mobile-Former-294M on COCO 2017, 320x320 (see ssdlite_mobileformer_508m_coco.py).
_base_ = './ssdlite_mobileformer_508m_coco.py'
model = dict(
    backbone=dict(arch='294m', init_cfg=dict(checkpoint='checkpoints/mobileformer_294m.pth')),
    neck=dict(in_channels=(128, 192)))
