# SSDLite-MobileViT (ssdlite.py with a MobileViT backbone; arch S, the configs set the others): the
# backbone's layers 4 and 5 (strides 16 and 32) feed the neck.
# Apple's MobileViT ImageNet weights were trained on BGR images in [0, 1] with no mean/std: mmdet loads
# images as BGR, so we only divide by 255.
_base_ = './ssdlite.py'
model = dict(
    data_preprocessor=dict(mean=[0., 0., 0.], std=[255., 255., 255.], bgr_to_rgb=False),
    backbone=dict(
        type='MobileViT', arch='s', out_indices=(3, 4),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mobilevit_s.pth')),
    neck=dict(in_channels=(128, 160)))
