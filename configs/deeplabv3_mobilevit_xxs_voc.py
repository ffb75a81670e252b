# DeepLabv3-MobileViT-XXS on PASCAL VOC 2012 (paper: 73.6 mIoU on val, 1.9 M parameters).
_base_ = './deeplabv3_mobilevit_s_voc.py'
model = dict(
    backbone=dict(arch='xxs', init_cfg=dict(checkpoint='checkpoints/mobilevit_xxs.pth')),
    decode_head=dict(in_channels=80))
