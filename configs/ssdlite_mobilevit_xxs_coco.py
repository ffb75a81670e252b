# SSDLite-MobileViT-XXS on COCO 2017, 320x320 (paper: 19.9 mAP, 1.7 M parameters).
_base_ = [
    '_base_/models/ssdlite_mobilevit.py', '_base_/datasets/coco_ssd320.py',
    '_base_/schedules/adamw_cosine.py', '_base_/det_runtime.py',
]
model = dict(
    backbone=dict(arch='xxs', init_cfg=dict(checkpoint='checkpoints/mobilevit_xxs.pth')),
    neck=dict(in_channels=(64, 80)))
