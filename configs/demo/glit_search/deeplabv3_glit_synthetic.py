# What every config of the GLiT-search demo (`make demo-search`) shares: DeepLabv3 on a small GLiT
# (d = 96, 3 heads, 6 blocks, from scratch) at output stride 16, on the synthetic VOC-layout shapes, trained
# the CPU demo way. The children set the backbone: a supernet (stage1_supernet.py, stage2_supernet.py) or one
# architecture (searched.py, all_global.py, all_local.py, which retrain it on the whole training split and
# test it on val).
#
# Splits: the supernets train on training images 0-319 and the search scores candidates on 320-399 (a
# held-out slice of the training split), so that the val split, on which the retrained architectures are
# tested, plays no part in the search.
_base_ = [
    '../../_base_/models/deeplabv3.py', '../../_base_/models/imagenet_input.py',
    '../../_base_/datasets/synthetic_voc.py', '../../_base_/schedules/cpu_demo_seg.py',
    '../../_base_/seg_runtime.py',
]
embed_dim = 96
supernet_split = list(range(0, 320))
search_split = list(range(320, 400))

model = dict(
    # GLiT from scratch: the authors' (DeiT's) input, RGB with the ImageNet mean/std.
    data_preprocessor={{_base_.imagenet_normalisation}},
    backbone=dict(type='GLiT', img_size=256, patch_size=16, out_indices=(-1,), drop_path_rate=0.0, init_cfg=None),
    # A narrow ASPP (64 channels): at 256x256 its 3x3 branches on d = 96 would cost more than the backbone.
    decode_head=dict(in_channels=embed_dim, channels=64, num_classes={{_base_.num_classes}}))

# The held-out slice the search scores candidates on (the val pipeline: whole 320x320 images).
search_dataloader = dict(
    batch_size=4, num_workers=1, persistent_workers=False, sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='BaseSegDataset', data_root={{_base_.data_root}}, metainfo={{_base_.metainfo}},
                 img_suffix='.jpg', seg_map_suffix='.png',
                 data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
                 ann_file='ImageSets/Segmentation/train.txt', indices=search_split,
                 pipeline={{_base_.test_pipeline}}))

# Retraining: 20 epochs x 50 iterations of 8 crops. A transformer from scratch: lr 1e-3, weight decay 0.05
# (none on the position embedding and class token).
max_epochs = 20
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.05),
                     paramwise_cfg=dict(custom_keys={'pos_embed': dict(decay_mult=0.0),
                                                     'cls_token': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', eta_min_ratio=1e-2, begin=0, end=max_epochs, T_max=max_epochs, by_epoch=True,
         convert_to_iter_based=True),
]
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=5, max_keep_ckpts=1, save_best=None))
env_cfg = dict(mp_cfg=dict(opencv_num_threads=1))
