# The generated synthetic segmentation set (tools/make_synthetic_data.py: VOC layout under
# data/synthetic/VOC2012/ or $SYNTHETIC_ROOT/VOC2012/; 320x320 images) as the segmentation demo trains and
# evaluates on it: the VOC recipe (voc12aug_512.py) scaled to these images.
synthetic_root = '{{$SYNTHETIC_ROOT:data/synthetic/}}'
data_root = synthetic_root + 'VOC2012/'
# mvdense.datasets.synthetic.CLASSES after VOC's background; colours: the first four of VOC's palette.
classes = ('background', 'circle', 'rectangle', 'triangle')
metainfo = dict(classes=classes, palette=[[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]])
num_classes = len(classes)
crop_size = (256, 256)

load_and_check = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='CheckedLoadAnnotations'),
    dict(type='ValidateSegMap', num_classes=num_classes),
]
# Short side 240..400 (0.75x-1.25x), 256x256 crops, flips.
train_pipeline = [
    *load_and_check,
    dict(type='RandomResize', scale=[(8192, 240), (8192, 400)], keep_ratio=True),
    dict(type='Pad', size=crop_size, pad_val=dict(img=0, seg=255)),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [*load_and_check, dict(type='PackSegInputs')]


def synthetic_split(split, pipeline):
    """One split of the synthetic VOC layout (mmengine drops functions from the loaded config).

    PascalVOCDataset only accepts VOC's class names, so mmseg's generic dataset reads the same layout.
    """
    return dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo, img_suffix='.jpg',
                seg_map_suffix='.png', data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
                ann_file=f'ImageSets/Segmentation/{split}.txt', pipeline=pipeline)


train_dataloader = dict(batch_size=8, num_workers=1, persistent_workers=True,
                        sampler=dict(type='DefaultSampler', shuffle=True),
                        dataset=synthetic_split('train', train_pipeline))
val_dataloader = dict(batch_size=4, num_workers=1, persistent_workers=True,
                      sampler=dict(type='DefaultSampler', shuffle=False),
                      dataset=synthetic_split('val', test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
