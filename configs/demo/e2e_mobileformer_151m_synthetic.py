# E2E-MF-151M trained from scratch on the generated synthetic set (3 shape classes, 320 x 320, a few shapes
# an image) in about 20 minutes on 2 CPU cores (`make demo DEMO_CONFIG=<this file>`; measured curve in the
# README): the 151M COCO config with the SSDLite demo's data, and what a DETR needs to learn in 1200
# iterations from scratch: 20 queries (images hold a few shapes), no pretrained backbone (so the backbone
# trains at the full lr, BN statistics updated), a 5x larger lr with a short warm-up and a cosine decay,
# 8 images a batch, bfloat16 autocast and channels-last (as the other demos).
_base_ = ['../e2e_mobileformer_151m_coco.py', '../_base_/datasets/synthetic_coco.py']

model = dict(
    num_queries=20,
    backbone=dict(init_cfg=None, frozen_stages=-1, norm_eval=False),
    bbox_head=dict(num_classes=3),   # synthetic_classes
    # Sigmoid scores: the top (query, class) pairs, several per query.
    test_cfg=dict(max_per_img=50))

train_dataloader = dict(batch_size=8, num_workers=1, persistent_workers=True,
                        dataset={{_base_.synthetic_train_dataset}})
val_dataloader = dict(batch_size=16, num_workers=1, persistent_workers=True,
                      dataset={{_base_.synthetic_val_dataset}})
test_dataloader = val_dataloader
val_evaluator = {{_base_.synthetic_evaluator}}
test_evaluator = val_evaluator

max_epochs = 24
train_cfg = dict(max_epochs=max_epochs, val_interval=2)
optim_wrapper = dict(
    type='CpuBf16OptimWrapper',   # bfloat16 autocast on CPU (the set-prediction losses stay float32)
    optimizer=dict(lr=5e-4, weight_decay=1e-4),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=1.0, decay_mult=1.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', eta_min=1e-5, begin=0, end=max_epochs, T_max=max_epochs, by_epoch=True,
         convert_to_iter_based=True),
]
auto_scale_lr = dict(enable=False)
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=2, max_keep_ckpts=1, save_best=None))
custom_hooks = [dict(type='ChannelsLastHook')]
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=1))
