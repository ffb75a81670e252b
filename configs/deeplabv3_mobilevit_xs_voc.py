# DeepLabv3-MobileViT-XS on PASCAL VOC 2012 (paper: 77.1 mIoU on val, 2.9 M parameters).
_base_ = [
    '_base_/models/deeplabv3_mobilevit.py', '_base_/datasets/voc12aug_512.py',
    '_base_/schedules/adamw_cosine_seg.py', '_base_/seg_runtime.py',
]
model = dict(
    backbone=dict(arch='xs', init_cfg=dict(checkpoint='checkpoints/mobilevit_xs.pth')),
    decode_head=dict(in_channels=96))
