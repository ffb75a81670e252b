# SSDLite-MobileViT-S on COCO 2017, 320x320 (paper: 27.7 mAP, 5.7 M parameters).
_base_ = [
    '_base_/models/ssdlite_mobilevit.py', '_base_/datasets/coco_ssd320.py',
    '_base_/schedules/adamw_cosine.py', '_base_/det_runtime.py',
]
