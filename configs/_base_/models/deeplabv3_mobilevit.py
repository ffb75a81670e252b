# DeepLabv3-MobileViT (deeplabv3.py with a MobileViT backbone; arch S, the configs set the others): the
# backbone's last stage (layer 5, no 1x1 "exp" conv) at output stride 16 feeds the head.
# Apple's MobileViT ImageNet weights were trained on BGR images in [0, 1] with no mean/std: mmseg loads
# images as BGR, so we only divide by 255.
_base_ = './deeplabv3.py'
model = dict(
    data_preprocessor=dict(mean=[0., 0., 0.], std=[255., 255., 255.], bgr_to_rgb=False),
    backbone=dict(
        type='MobileViT', arch='s', out_indices=(4,), output_stride=16, norm_cfg={{_base_.norm_cfg}},
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mobilevit_s.pth')),
    decode_head=dict(in_channels=160))  # MobileViT-S layer 5
