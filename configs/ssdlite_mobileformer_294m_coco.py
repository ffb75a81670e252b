# SSDLite-Mobile-Former-294M on COCO 2017, 320x320 (see ssdlite_mobileformer_508m_coco.py).
_base_ = [
    '_base_/models/ssdlite_mobileformer.py', '_base_/datasets/coco_ssd320.py',
    '_base_/schedules/adamw_cosine.py', '_base_/det_runtime.py',
]
model = dict(
    backbone=dict(arch='294m', init_cfg=dict(checkpoint='checkpoints/mobileformer_294m.pth')),
    neck=dict(in_channels=(128, 192)))
