# DeepLabv3-Mobile-Former-151M on PASCAL VOC 2012 (see deeplabv3_mobileformer_508m_voc.py).
_base_ = './deeplabv3_mobileformer_508m_voc.py'
model = dict(
    backbone=dict(arch='151m', init_cfg=dict(checkpoint='checkpoints/mobileformer_151m.pth')),
    decode_head=dict(in_channels=128))
