# The embedded default: SSDLite-MobileViT-XXS trained from scratch on the generated synthetic set
# (`make demo`). Inherits the COCO config and changes only the data (root, classes, no pretrained
# weights to load here) and the schedule (about 10 minutes on 2 CPU cores), and trains the CPU-fast way (bfloat16, channels-last).
_base_ = ['../ssdlite_mobilevit_xxs_coco.py', '../_base_/datasets/synthetic_coco.py']

model = dict(backbone=dict(init_cfg=None), bbox_head=dict(num_classes=3))   # synthetic_classes

train_dataloader = dict(batch_size=16, num_workers=1, persistent_workers=True,
                        dataset={{_base_.synthetic_train_dataset}})
val_dataloader = dict(batch_size=16, num_workers=1, persistent_workers=True,
                      dataset={{_base_.synthetic_val_dataset}})
test_dataloader = val_dataloader
val_evaluator = {{_base_.synthetic_evaluator}}
test_evaluator = val_evaluator

max_epochs = 20
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
# CPU speed: bfloat16 autocast (the float32 master weights and optimizer are unchanged) and channels-last
# weights make a step of this model ~1.5x faster on the 2-core demo machine (mvdense.engine).
optim_wrapper = dict(type='CpuBf16OptimWrapper', optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', eta_min=1e-5, begin=0, end=max_epochs, T_max=max_epochs, by_epoch=True,
         convert_to_iter_based=True),
]
# A short run: the EMA of the recipe (momentum 5e-4, ~2000 iterations to settle) would lag far behind.
custom_hooks = [dict(type='ChannelsLastHook')]
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=5, max_keep_ckpts=1, save_best=None))
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=1))
