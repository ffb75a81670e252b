# The demos' schedule: a short run from scratch on the synthetic set, trained the CPU-fast way. 20 epochs
# (the demos that train longer or shorter restate `max_epochs`, `train_cfg` and the cosine), evaluated at the
# end; AdamW (the recipe's wd 0.01) at lr 2e-3 for one process of 16 images, a 50-iteration linear warm-up
# from 0.1x and a cosine decay to 1e-5.
# CPU speed: bfloat16 autocast (CpuBf16OptimWrapper: float32 master weights and optimizer, losses that need
# it stay float32; mvdense.engine.optim) and channels-last weights (ChannelsLastHook, mvdense.engine.hooks)
# make a step ~1.3-1.5x faster on the 2-core demo machine.
# No EMA: the recipe's (momentum 5e-4, ~2000 iterations to settle) would lag far behind in a short run.
# Logging and checkpoint intervals belong to `default_hooks`, which the runtime base owns (mmengine refuses a
# key defined by two bases): each demo sets them.
max_epochs = 20
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='CpuBf16OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.999), weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', eta_min=1e-5, begin=0, end=max_epochs, T_max=max_epochs, by_epoch=True,
         convert_to_iter_based=True),
]
custom_hooks = [dict(type='ChannelsLastHook')]
auto_scale_lr = dict(enable=False, base_batch_size=16)
# BatchNorm becomes SyncBatchNorm when a demo is trained distributed on GPUs (mvdense.runner drops it on CPUs).
sync_bn = 'torch'
# A fixed seed: short runs from scratch vary from run to run (initialisation, data order, crops and flips),
# so every demo pins it and the README gives the spread over other seeds next to each figure.
randomness = dict(seed=0)
