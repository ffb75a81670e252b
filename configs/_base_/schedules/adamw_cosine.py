# ml-cvnets' recipe for the MobileViT dense-prediction models: AdamW (wd 0.01), cosine lr
# 9e-4 -> 1e-6 with a 500-iteration linear warm-up from 9e-5, 32 images per GPU x 4 GPUs, EMA 0.0005.
# Detection trains 200 epochs; configs change `max_epochs` (and the lr) only.
max_epochs = 200
base_lr = 9e-4
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=base_lr, betas=(0.9, 0.999), weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', eta_min=1e-6, begin=0, end=max_epochs, T_max=max_epochs, by_epoch=True,
         convert_to_iter_based=True),
]
custom_hooks = [dict(type='EMAHook', ema_type='ExponentialMovingAverage', momentum=0.0005, priority=49)]
# 4 GPUs x 32 images; `--auto-scale-lr` rescales the lr to the real total batch size.
auto_scale_lr = dict(enable=False, base_batch_size=128)
# BatchNorm becomes SyncBatchNorm whenever training is distributed.
sync_bn = 'torch'
