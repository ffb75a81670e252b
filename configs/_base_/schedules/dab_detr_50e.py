# DAB-DETR's recipe (mmdet's dab_detr/dab-detr_r50_8xb2-50e_coco.py: 42.2 AP in 50 epochs where DETR needs
# 500 for 42.0): AdamW lr 1e-4 (backbone 1e-5), weight decay 1e-4, gradient clipping 0.1, 8 GPUs x 2 images,
# 50 epochs with the lr dropped 10x after epoch 40, evaluated after every epoch.
max_epochs = 50
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1, decay_mult=1.0)}))
param_scheduler = [dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[40], gamma=0.1)]
# 8 GPUs x 2 images; `--auto-scale-lr` rescales the lr to the real total batch size.
auto_scale_lr = dict(enable=False, base_batch_size=16)
