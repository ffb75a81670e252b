# E2E-MF-508M on COCO 2017 (paper: 43.1 AP, 41.4 G MAdds, 26.6 M parameters; DETR-R50 42.0 AP).
# Mobile-Former is backbone and head of a DETR (mvdense/models/e2e_mobileformer.py documents the head,
# which is our design: the paper's detection section was not reachable). Its queries are anchored to
# reference boxes refined block by block, as in DAB-DETR, so the recipe is DAB-DETR's (mmdet's
# dab-detr_r50_8xb2-50e_coco.py: 42.2 AP in 50 epochs where DETR needs 500 for 42.0): DETR's data pipeline
# (flip, multi-scale 480-800 x 1333, random crop), AdamW lr 1e-4 (backbone 1e-5), weight decay 1e-4,
# gradient clipping 0.1, 8 x 2 images, 50 epochs with the lr dropped 10x after epoch 40, sigmoid focal
# classification (loss and matching cost), L1 x 5 + GIoU x 2 boxes; DETR's 100 queries.
_base_ = 'mmdet::detr/detr_r50_8xb2-500e_coco.py'
custom_imports = dict(imports=['mvdense'], allow_failed_imports=False)

model = dict(
    type='E2EMobileFormer',
    num_queries=100,
    # DETR's data preprocessor already normalises as Mobile-Former's ImageNet weights expect (RGB, mean/std).
    backbone=dict(
        _delete_=True, type='MobileFormer', arch='508m', out_indices=(1, 2, 3), with_tokens=True,
        # DETR freezes ResNet's stem and first stage and keeps BN statistics fixed (2 images per GPU).
        frozen_stages=1, norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mobileformer_508m.pth')),
    neck=None,
    encoder=None,
    # The head (MobileFormerDecoder): levels coarse to fine at strides 32, 16, 8. Sized so that the whole
    # detector lands within 5% of the paper's 26.6 M parameters and 41.4 G MAdds at 800 x 1333.
    decoder=dict(_delete_=True, token_dim=256, channels=(512, 256, 240), num_blocks=(2, 2, 2), expansion=6,
                 bridge_heads=2, former_heads=4, spatial_prior=0.5),
    positional_encoding=dict(_delete_=True, temperature=10000),
    bbox_head=dict(
        type='DABDETRHead', embed_dims=256,
        loss_cls=dict(_delete_=True, type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0)),
    train_cfg=dict(assigner=dict(match_costs=[
        dict(type='FocalLossCost', weight=2.0, eps=1e-8),
        dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
        dict(type='IoUCost', iou_mode='giou', weight=2.0)])))

max_epochs = 50
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[40], gamma=0.1)]
