# The generated synthetic detection set (tools/make_synthetic_data.py: 3 shape classes, 320x320, COCO
# layout) as the demos train and evaluate on it. Its keys carry a `synthetic_` prefix: a demo also inherits
# a COCO config that defines the dataloaders, and mmengine refuses a key defined by two bases, so the demos
# take these values with `{{_base_.synthetic_...}}` and merge them into the COCO config's dataloaders.
synthetic_root = '{{$SYNTHETIC_ROOT:data/synthetic/}}'
synthetic_classes = ('circle', 'rectangle', 'triangle')  # mvdense.datasets.synthetic.CLASSES

# Flips only: the SSD crop and photometric jitter of the COCO recipe slow a demo run from scratch.
synthetic_train_dataset = dict(
    data_root=synthetic_root, metainfo=dict(classes=synthetic_classes),
    ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
    pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='Resize', scale=(320, 320), keep_ratio=False),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackDetInputs'),
    ])
synthetic_val_dataset = dict(
    data_root=synthetic_root, metainfo=dict(classes=synthetic_classes),
    ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'),
    pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(320, 320), keep_ratio=False),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
    ])
synthetic_evaluator = dict(ann_file=synthetic_root + 'annotations/instances_val.json', classwise=True)
