# PASCAL VOC 2012 for DeepLabv3-MobileViT, as ml-cvnets trains it: VOC 2012 train + SBD "aug" + COCO 2017
# train images relabelled with the VOC classes (tools/convert_coco_to_voc.py); evaluated on VOC 2012 val.
# Roots: data/VOCdevkit/VOC2012/ (or $VOC_ROOT) and data/coco_voc/ (or $COCO_VOC_ROOT); see data/README.md.
#
# Training augmentation (cvnets' random_resize / random_crop / random_horizontal_flip): the short side is
# resized to a random size in 256..1024 (keeping the aspect ratio, long side not capped), padded to at least
# 512x512 (image 0, label 255 = ignore), randomly cropped to 512x512, flipped with p = 0.5.
# cvnets' configs set `resize_if_needed`, which upscales an image smaller than the crop instead of padding
# it; padding is what mmseg offers and what cvnets does without that flag.
dataset_type = 'PascalVOCDataset'
data_root = '{{$VOC_ROOT:data/VOCdevkit/VOC2012/}}'
coco_voc_root = '{{$COCO_VOC_ROOT:data/coco_voc/}}'
crop_size = (512, 512)
num_classes = 21
backend_args = None

# Missing / undecodable files and labels outside 0..20 (other than 255) stop the run with a message
# naming the file (mvdense/datasets/transforms.py).
load_and_check = [
    dict(type='CheckedLoadImageFromFile', backend_args=backend_args),
    dict(type='CheckedLoadAnnotations', backend_args=backend_args),
    dict(type='ValidateSegMap', num_classes=num_classes),
]
train_pipeline = [
    *load_and_check,
    # A long-edge bound of 8192 never binds, so the short edge is what is drawn (uniformly from 256..1024).
    dict(type='RandomResize', scale=[(8192, 256), (8192, 1024)], keep_ratio=True),
    dict(type='Pad', size=crop_size, pad_val=dict(img=0, seg=255)),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
# Whole images at their original size, one per batch (they differ in size).
test_pipeline = [*load_and_check, dict(type='PackSegInputs')]


def voc_layout(root, ann_file, seg_map_dir='SegmentationClass', pipeline=train_pipeline):
    """A dataset in VOC's layout: JPEGImages/, <seg_map_dir>/ and an image set list."""
    return dict(type=dataset_type, data_root=root, ann_file=ann_file,
                data_prefix=dict(img_path='JPEGImages', seg_map_path=seg_map_dir), pipeline=pipeline,
                backend_args=backend_args)


voc_train = voc_layout(data_root, 'ImageSets/Segmentation/train.txt')
# SBD's extra images (mmseg's tools/dataset_converters/voc_aug.py writes SegmentationClassAug/ and aug.txt).
voc_aug = voc_layout(data_root, 'ImageSets/Segmentation/aug.txt', seg_map_dir='SegmentationClassAug')
coco_voc_train = voc_layout(coco_voc_root, 'ImageSets/Segmentation/train2017.txt')
train_datasets = [voc_train, voc_aug, coco_voc_train]

train_dataloader = dict(
    batch_size=32,  # per GPU; cvnets trains on 4 GPUs
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='ConcatDataset', datasets=train_datasets))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=voc_layout(data_root, 'ImageSets/Segmentation/val.txt', pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
