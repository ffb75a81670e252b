# ml-cvnets' recipe for DeepLabv3-MobileViT: the shared AdamW + cosine recipe (adamw_cosine.py: wd 0.01,
# 500-iteration warm-up, EMA, 32 images per GPU x 4 GPUs) over 50 epochs, the head at 10x the lr.
_base_ = './adamw_cosine.py'
max_epochs = 50
train_cfg = dict(max_epochs=max_epochs)
# The head learns 10x faster than the pretrained backbone (cvnets' `lr_multiplier: 10`).
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'decode_head': dict(lr_mult=10.0)}))
# The shared recipe's warm-up (500 iterations from 0.1x) and cosine decay, over 50 epochs. cvnets decays every
# parameter group to its own multiple of min_lr (1e-6 x 10 for the head): a ratio does the same.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', eta_min_ratio=1e-6 / 9e-4, begin=0, end=max_epochs, T_max=max_epochs,
         by_epoch=True, convert_to_iter_based=True),
]
