# SSDLite-Mobile-Former (ssdlite.py with a Mobile-Former backbone; arch 508M, the configs set the others):
# the backbone's stages 2 and 3 (strides 16 and 32) feed the neck. No paper reports this pairing.
_base_ = ['./ssdlite.py', './imagenet_input.py']
model = dict(
    data_preprocessor={{_base_.imagenet_normalisation}},
    backbone=dict(
        type='MobileFormer', arch='508m', out_indices=(2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mobileformer_508m.pth')),
    neck=dict(in_channels=(176, 240)))
