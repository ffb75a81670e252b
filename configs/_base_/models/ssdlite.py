# SSDLite after ml-cvnets' SSD-MobileViT (config/detection/ssd_mobilevit_*_320.yaml), without a backbone:
# ssdlite_mobilevit.py and ssdlite_mobileformer.py add the backbone, its input normalisation and the
# channels of the two backbone maps (strides 16 and 32) that the neck takes.
# cvnets: prior scales linspace(0.1, 1.05, 7); level k uses s_k and sqrt(s_k * s_k+1).
prior_scales = [0.1 + 0.95 * k / 6 for k in range(7)]
image_side = 320  # anchors are laid out for 320x320 inputs
head_channels = (512, 256, 256, 128, 128, 64)
model = dict(
    type='SingleStageDetector',
    data_preprocessor=dict(type='DetDataPreprocessor', pad_size_divisor=1),
    neck=dict(type='SSDLiteNeck', out_channels=head_channels),
    bbox_head=dict(
        type='SSDLiteHead',
        in_channels=head_channels,
        num_classes=80,
        anchor_generator=dict(
            type='SSDAnchorGenerator',
            scale_major=False,
            # feature maps 20, 10, 5, 3, 2, 1 at 320x320: prior centres at (i + 0.5) * 320 / size.
            strides=[16, 32, 64, image_side / 3, 160, 320],
            ratios=[[2, 3]] * 5 + [[2]],
            min_sizes=[s * image_side for s in prior_scales[:-1]],
            max_sizes=[s * image_side for s in prior_scales[1:]]),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=[0.1, 0.1, 0.2, 0.2])),
    train_cfg=dict(
        assigner=dict(
            type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.,
            ignore_iof_thr=-1, gt_max_assign_all=False),
        sampler=dict(type='PseudoSampler'),
        smoothl1_beta=1.,
        allowed_border=-1,
        pos_weight=-1,
        neg_pos_ratio=3,
        debug=False),
    test_cfg=dict(
        nms_pre=1000,
        nms=dict(type='nms', iou_threshold=0.5),
        min_bbox_size=0,
        score_thr=0.01,
        max_per_img=200))
