# DeepLabv3-Mobile-Former-151M on PASCAL VOC 2012 (see deeplabv3_mobileformer_508m_voc.py).
_base_ = [
    '_base_/models/deeplabv3_mobileformer.py', '_base_/datasets/voc12aug_512.py',
    '_base_/schedules/adamw_cosine_seg.py', '_base_/seg_runtime.py',
]
model = dict(
    backbone=dict(arch='151m', init_cfg=dict(checkpoint='checkpoints/mobileformer_151m.pth')),
    decode_head=dict(in_channels=128))
