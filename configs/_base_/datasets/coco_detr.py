# COCO 2017 as DETR and DAB-DETR train on it (mmdet's detr / dab_detr configs): mmdet's coco_detection data
# set (2 images per GPU, aspect-ratio batches; whole images at 1333 x 800 for evaluation) with DETR's training
# augmentation: flip, then multi-scale (short side 480..800, long side at most 1333) or resize-crop-resize.
# Data root: data/coco/ or the COCO_ROOT environment variable (see data/README.md).
_base_ = 'mmdet::_base_/datasets/coco_detection.py'
data_root = '{{$COCO_ROOT:data/coco/}}'
multi_scale = [(short, 1333) for short in range(480, 801, 32)]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomChoice', transforms=[
        [dict(type='RandomChoiceResize', scales=multi_scale, keep_ratio=True)],
        [dict(type='RandomChoiceResize', scales=[(400, 1333), (500, 1333), (600, 1333)], keep_ratio=True),
         dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600), allow_negative_crop=True),
         dict(type='RandomChoiceResize', scales=multi_scale, keep_ratio=True)]]),
    dict(type='PackDetInputs'),
]
# mvdense.datasets.CheckedCocoDataset: mmdet's CocoDataset that names a bad annotation entry or image file.
dataset_type = 'CheckedCocoDataset'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
