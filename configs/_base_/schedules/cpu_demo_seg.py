# The segmentation demos' schedule: the CPU demo schedule (cpu_demo.py) over 16 epochs x 50 iterations of
# 8 crops, decaying to 1% of the lr, evaluated at the end. One lr for backbone and head (not the VOC recipe's
# 10x head): from scratch there are no pretrained features for a slow backbone lr to protect.
_base_ = './cpu_demo.py'
max_epochs = 16
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', eta_min_ratio=1e-2, begin=0, end=max_epochs, T_max=max_epochs, by_epoch=True,
         convert_to_iter_based=True),
]
auto_scale_lr = dict(base_batch_size=8)   # one process of 8 crops
