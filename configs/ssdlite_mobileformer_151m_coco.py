# SSDLite-Mobile-Former-151M on COCO 2017, 320x320 (see ssdlite_mobileformer_508m_coco.py).
_base_ = './ssdlite_mobileformer_508m_coco.py'
model = dict(
    backbone=dict(arch='151m', init_cfg=dict(checkpoint='checkpoints/mobileformer_151m.pth')),
    neck=dict(in_channels=(88, 128)))
