# DeepLabv3-MobileViT-S on PASCAL VOC 2012 (paper: 79.1 mIoU on val, 6.4 M parameters), trained as ml-cvnets
# does: 512x512 crops of VOC train + SBD aug + COCO (VOC classes), 50 epochs, AdamW + cosine, EMA,
# 32 images per GPU x 4 GPUs. `tools/dist_train.sh configs/deeplabv3_mobilevit_s_voc.py 4`.
_base_ = [
    '_base_/models/deeplabv3_mobilevit.py', '_base_/datasets/voc12aug_512.py',
    '_base_/schedules/adamw_cosine.py', '_base_/seg_runtime.py',
]

max_epochs = 50
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
# The head learns 10x faster than the pretrained backbone (cvnets' `lr_multiplier: 10`).
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'decode_head': dict(lr_mult=10.0)}))
# The shared recipe's warm-up (500 iterations from 0.1x) and cosine decay, over 50 epochs. cvnets decays every
# parameter group to its own multiple of min_lr (1e-6 x 10 for the head): a ratio does the same.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', eta_min_ratio=1e-6 / 9e-4, begin=0, end=max_epochs, T_max=max_epochs,
         by_epoch=True, convert_to_iter_based=True),
]
