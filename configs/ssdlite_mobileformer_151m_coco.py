# SSDLite-Mobile-Former-151M on COCO 2017, 320x320 (see ssdlite_mobileformer_508m_coco.py).
_base_ = [
    '_base_/models/ssdlite_mobileformer.py', '_base_/datasets/coco_ssd320.py',
    '_base_/schedules/adamw_cosine.py', '_base_/det_runtime.py',
]
model = dict(
    backbone=dict(arch='151m', init_cfg=dict(checkpoint='checkpoints/mobileformer_151m.pth')),
    neck=dict(in_channels=(88, 128)))
