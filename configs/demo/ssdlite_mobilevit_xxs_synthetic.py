# The embedded default: SSDLite-MobileViT-XXS trained from scratch on the generated synthetic set
# (`make demo`). Inherits the COCO config and changes only the data (root, classes, no pretrained
# weights to load here) and the schedule (about 10 minutes on 2 CPU cores), and trains the CPU-fast way (bfloat16, channels-last).
_base_ = '../ssdlite_mobilevit_xxs_coco.py'

data_root = '{{$SYNTHETIC_ROOT:data/synthetic/}}'
classes = ('circle', 'rectangle', 'triangle')  # mvdense.datasets.synthetic.CLASSES
metainfo = dict(classes=classes)

model = dict(backbone=dict(init_cfg=None), bbox_head=dict(num_classes=len(classes)))

# Flips only: the SSD crop and photometric jitter of the COCO recipe slow a 10-minute run from scratch.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(320, 320), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(
    batch_size=16, num_workers=1, persistent_workers=True,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16, num_workers=1, persistent_workers=True,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json', classwise=True)
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
