# The segmentation demo: DeepLabv3-MobileViT-XXS trained from scratch on the generated synthetic shapes
# (`make demo-seg`; data: tools/make_synthetic_data.py, VOC layout under data/synthetic/VOC2012/): the model
# of deeplabv3_mobilevit_xxs_voc.py without pretrained weights and with 4 classes, the synthetic data and the
# CPU demo schedule over 16 epochs (bfloat16 autocast, channels-last), so that the whole target runs in about
# 10 minutes on 2 CPU cores.
_base_ = [
    '../_base_/models/deeplabv3_mobilevit.py', '../_base_/datasets/synthetic_voc.py',
    '../_base_/schedules/cpu_demo.py', '../_base_/seg_runtime.py',
]
model = dict(
    backbone=dict(arch='xxs', init_cfg=None),
    decode_head=dict(in_channels=80, num_classes={{_base_.num_classes}}))

# The demo schedule over 16 epochs x 50 iterations, decaying to 1% of the lr. One lr for backbone and head (not
# the VOC recipe's 10x head): from scratch there are no pretrained features for a slow backbone lr to protect.
max_epochs = 16
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', eta_min_ratio=1e-2, begin=0, end=max_epochs, T_max=max_epochs, by_epoch=True,
         convert_to_iter_based=True),
]
auto_scale_lr = dict(base_batch_size=8)   # one process of 8 crops
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1, save_best=None))
env_cfg = dict(mp_cfg=dict(opencv_num_threads=1))
# A fixed seed: a 10-minute run from scratch varies from run to run (crops, flips, initialisation).
randomness = dict(seed=0)
