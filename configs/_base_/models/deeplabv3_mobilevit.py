# DeepLabv3 with a MobileViT backbone, after ml-cvnets' DeepLabv3-MobileViT
# (config/segmentation/deeplabv3_mobilevit_*.yaml): the backbone's last stage (layer 5, no 1x1 "exp" conv)
# at output stride 16, then an ASPP of 256 channels (1x1, plain 3x3 convs dilated 6/12/18, image pooling;
# 1x1 projection, dropout 0.1) and a Dropout2d(0.1) + 1x1 classifier; logits are upsampled bilinearly to
# the label / image size. The arch (default: S) and the widths that depend on it are set by the configs
# that inherit this file.
#
# Apple's MobileViT ImageNet weights were trained on BGR images in [0, 1] with no mean/std: mmseg loads
# images as BGR, so we only divide by 255. The pipeline pads every training crop to the crop size (image 0,
# label 255 = ignore); mmseg's preprocessor insists on a padding rule as well, and padding a batch to a
# multiple of the output stride is a no-op for those crops.
norm_cfg = dict(type='BN')  # becomes SyncBatchNorm in distributed runs (`sync_bn` in the schedule)
data_preprocessor = dict(
    type='SegDataPreProcessor', mean=[0., 0., 0.], std=[255., 255., 255.], bgr_to_rgb=False, pad_val=0,
    seg_pad_val=255, size_divisor=16)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='MobileViT', arch='s', out_indices=(4,), output_stride=16, norm_cfg=norm_cfg,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mobilevit_s.pth')),
    decode_head=dict(
        type='LightASPPHead',
        in_channels=160,  # MobileViT-S layer 5
        in_index=0,
        channels=256,
        dilations=(6, 12, 18),
        aspp_dropout=0.1,
        dropout_ratio=0.1,  # the classifier's Dropout2d
        num_classes=21,
        norm_cfg=norm_cfg,
        act_cfg=dict(type='ReLU'),
        align_corners=False,
        # PyTorch's cross-entropy as cvnets uses it: the mean over the pixels that are not ignored (255).
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True)),
    train_cfg=dict(),
    # cvnets evaluates whole images at their original size.
    test_cfg=dict(mode='whole'))
