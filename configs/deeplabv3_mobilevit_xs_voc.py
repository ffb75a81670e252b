# DeepLabv3-MobileViT-XS on PASCAL VOC 2012 (paper: 77.1 mIoU on val, 2.9 M parameters).
_base_ = './deeplabv3_mobilevit_s_voc.py'
model = dict(
    backbone=dict(arch='xs', init_cfg=dict(checkpoint='checkpoints/mobilevit_xs.pth')),
    decode_head=dict(in_channels=96))
