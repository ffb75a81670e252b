# E2E-MF (arch 508M; the configs set the others): Mobile-Former is backbone and head of a DETR
# (mvdense/models/e2e_mobileformer.py documents the head, which is our design: the paper's detection section
# was not reachable). Its queries are anchored to reference boxes refined block by block, as in DAB-DETR, whose
# head and losses it uses: sigmoid focal classification (loss and matching cost), L1 x 5 + GIoU x 2 boxes;
# DETR's 100 queries.
_base_ = './imagenet_input.py'
model = dict(
    type='E2EMobileFormer',
    num_queries=100,
    # Mobile-Former's ImageNet input convention (RGB, mean/std), which is also DETR's.
    data_preprocessor=dict(
        type='DetDataPreprocessor', mean={{_base_.imagenet_normalisation.mean}},
        std={{_base_.imagenet_normalisation.std}}, bgr_to_rgb=True, pad_size_divisor=1),
    backbone=dict(
        type='MobileFormer', arch='508m', out_indices=(1, 2, 3), with_tokens=True,
        # DETR freezes ResNet's stem and first stage and keeps BN statistics fixed (2 images per GPU).
        frozen_stages=1, norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mobileformer_508m.pth')),
    neck=None,
    encoder=None,
    # The head (MobileFormerDecoder): levels coarse to fine at strides 32, 16, 8. Sized so that the whole
    # detector lands within 5% of the paper's 26.6 M parameters and 41.4 G MAdds at 800 x 1333.
    decoder=dict(token_dim=256, channels=(512, 256, 240), num_blocks=(2, 2, 2), expansion=6,
                 bridge_heads=2, former_heads=4, spatial_prior=0.5),
    positional_encoding=dict(temperature=10000),
    bbox_head=dict(
        type='DABDETRHead', num_classes=80, embed_dims=256,
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(assigner=dict(type='HungarianAssigner', match_costs=[
        dict(type='FocalLossCost', weight=2.0, eps=1e-8),
        dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
        dict(type='IoUCost', iou_mode='giou', weight=2.0)])),
    test_cfg=dict(max_per_img=100))
