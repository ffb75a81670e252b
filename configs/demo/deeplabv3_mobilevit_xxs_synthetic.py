# The segmentation demo: DeepLabv3-MobileViT-XXS trained from scratch on the generated synthetic shapes
# (`make demo-seg`; data: tools/make_synthetic_data.py, VOC layout under data/synthetic/VOC2012/).
# Inherits the VOC config and changes only the data (root, 4 classes, smaller crops of the 320x320 images),
# the schedule (short, no EMA), the pretrained weights (none here) and the numerics (CPU-fast: bfloat16
# autocast, channels-last), so that the whole target runs in about 10 minutes on 2 CPU cores.
_base_ = '../deeplabv3_mobilevit_xxs_voc.py'

synthetic_root = '{{$SYNTHETIC_ROOT:data/synthetic/}}'
data_root = synthetic_root + 'VOC2012/'
# mvdense.datasets.synthetic.CLASSES after VOC's background; colours: the first four of VOC's palette.
classes = ('background', 'circle', 'rectangle', 'triangle')
metainfo = dict(classes=classes, palette=[[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]])
num_classes = len(classes)
crop_size = (256, 256)

model = dict(backbone=dict(init_cfg=None), decode_head=dict(num_classes=num_classes))

load_and_check = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='CheckedLoadAnnotations'),
    dict(type='ValidateSegMap', num_classes=num_classes),
]
# The VOC recipe scaled to 320x320 images: short side 240..400 (0.75x-1.25x), 256x256 crops, flips.
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
    `_delete_` replaces the VOC config's dataset (a ConcatDataset) instead of merging into it.
    """
    return dict(_delete_=True, type='BaseSegDataset', data_root=data_root, metainfo=metainfo, img_suffix='.jpg',
                seg_map_suffix='.png', data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
                ann_file=f'ImageSets/Segmentation/{split}.txt', pipeline=pipeline)


train_dataloader = dict(batch_size=8, num_workers=1, persistent_workers=True,
                        dataset=synthetic_split('train', train_pipeline))
val_dataloader = dict(batch_size=4, num_workers=1, persistent_workers=True,
                      dataset=synthetic_split('val', test_pipeline))
test_dataloader = val_dataloader

max_epochs = 16
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
# From scratch there are no pretrained features for a slow backbone lr to protect: one lr for all.
# CPU speed: bfloat16 autocast (float32 master weights and optimizer, mvdense.engine.optim) and channels-last
# weights (mvdense.engine.hooks) together take ~0.78x the CPU time of a float32 NCHW step here (batch 8).
optim_wrapper = dict(type='CpuBf16OptimWrapper', optimizer=dict(lr=2e-3),
                     paramwise_cfg=dict(custom_keys={'decode_head': dict(lr_mult=1.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', eta_min_ratio=1e-2, begin=0, end=max_epochs, T_max=max_epochs, by_epoch=True,
         convert_to_iter_based=True),
]
# A short run: the EMA of the recipe (momentum 5e-4, ~2000 iterations to settle) would lag far behind.
custom_hooks = [dict(type='ChannelsLastHook')]
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1, save_best=None))
env_cfg = dict(mp_cfg=dict(opencv_num_threads=1))
# A fixed seed: a 10-minute run from scratch varies from run to run (crops, flips, initialisation).
randomness = dict(seed=0)
