# DeepLabv3-Mobile-Former (deeplabv3.py with a Mobile-Former backbone; arch 508M, the configs set the
# others): the backbone's last stage runs at output stride 16 (its down-sampling block at stride 1) and
# feeds the head. No paper reports this pairing.
_base_ = ['./deeplabv3.py', './imagenet_input.py']
model = dict(
    data_preprocessor={{_base_.imagenet_normalisation}},
    backbone=dict(
        type='MobileFormer', arch='508m', out_indices=(3,), output_stride=16, norm_cfg={{_base_.norm_cfg}},
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mobileformer_508m.pth')),
    decode_head=dict(in_channels=240))  # Mobile-Former-508M stage 3
