# DeepLabv3-Mobile-Former-294M on PASCAL VOC 2012 (see deeplabv3_mobileformer_508m_voc.py).
_base_ = './deeplabv3_mobileformer_508m_voc.py'
model = dict(
    backbone=dict(arch='294m', init_cfg=dict(checkpoint='checkpoints/mobileformer_294m.pth')),
    decode_head=dict(in_channels=192))
