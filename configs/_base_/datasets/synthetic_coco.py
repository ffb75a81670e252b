# The generated synthetic detection set (tools/make_synthetic_data.py: 3 shape classes, 320x320 images, COCO
# layout under data/synthetic/ or $SYNTHETIC_ROOT) as the detection demos train and evaluate on it.
# mvdense.datasets.CheckedCocoDataset: mmdet's CocoDataset that names a bad annotation entry or image file.
dataset_type = 'CheckedCocoDataset'
data_root = '{{$SYNTHETIC_ROOT:data/synthetic/}}'
classes = ('circle', 'rectangle', 'triangle')  # mvdense.datasets.synthetic.CLASSES
metainfo = dict(classes=classes)
backend_args = None

# Flips only: the SSD crop and photometric jitter of the COCO recipe slow a demo run from scratch.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(320, 320), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(320, 320), keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=0),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=16,
    num_workers=1,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='CocoMetric', ann_file=data_root + 'annotations/instances_val.json', metric='bbox', classwise=True,
    format_only=False, backend_args=backend_args)
test_evaluator = val_evaluator
