# SSDLite-MobileViT-XXS on COCO 2017, 320x320 (paper: 19.9 mAP, 1.7 M parameters).
_base_ = './ssdlite_mobilevit_s_coco.py'
model = dict(
    backbone=dict(arch='xxs', init_cfg=dict(checkpoint='checkpoints/mobilevit_xxs.pth')),
    neck=dict(in_channels=(64, 80)))
