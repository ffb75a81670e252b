# DeepLabv3 after ml-cvnets' DeepLabv3-MobileViT (config/segmentation/deeplabv3_mobilevit_*.yaml), without a
# backbone: deeplabv3_mobilevit.py and deeplabv3_mobileformer.py add the backbone (its last stage at output
# stride 16), its input normalisation and the head's input channels. The head: an ASPP of 256 channels (1x1,
# plain 3x3 convs dilated 6/12/18, image pooling; 1x1 projection, dropout 0.1) and a Dropout2d(0.1) + 1x1
# classifier; logits are upsampled bilinearly to the label / image size.
#
# The pipeline pads every training crop to the crop size (image 0, label 255 = ignore); mmseg's
# preprocessor insists on a padding rule as well, and padding a batch to a multiple of the output stride is
# a no-op for those crops.
norm_cfg = dict(type='BN')  # becomes SyncBatchNorm in distributed runs (`sync_bn` in the schedule)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', pad_val=0, seg_pad_val=255, size_divisor=16),
    decode_head=dict(
        type='LightASPPHead',
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
