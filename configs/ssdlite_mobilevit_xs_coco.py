# SSDLite-MobileViT-XS on COCO 2017, 320x320 (paper: 24.8 mAP, 2.7 M parameters).
_base_ = [
    '_base_/models/ssdlite_mobilevit.py', '_base_/datasets/coco_ssd320.py',
    '_base_/schedules/adamw_cosine.py', '_base_/det_runtime.py',
]
model = dict(
    backbone=dict(arch='xs', init_cfg=dict(checkpoint='checkpoints/mobilevit_xs.pth')),
    neck=dict(in_channels=(80, 96)))
