"""DeepLabv3-MobileViT: fidelity to ml-cvnets (layout, parameter counts), the VOC recipe in the configs, and a
short train -> test run of tools/train.py and tools/test.py on generated data."""
from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, build_model, run_tool
from mmengine.registry import init_default_scope
from PIL import Image
from pycocotools import mask as mask_utils
from torch import nn

from mvdense.apis import load_config
from mvdense.datasets.voc import VOC_CLASSES
from mvdense.models.deeplabv3 import LightASPPHead
from mvdense.models.layers import count_parameters

VOC_CONFIGS = {arch: ROOT / f'configs/deeplabv3_mobilevit_{arch}_voc.py' for arch in ('xxs', 'xs', 's')}
DEMO_CONFIG = ROOT / 'configs/demo/deeplabv3_mobilevit_xxs_synthetic.py'
# Whole segmentor, 21 classes, counted from ml-cvnets' code (cvnets-v0.1); the paper rounds to 1.9/2.9/6.4 M.
CVNETS_PARAMS_M = {'xxs': 1.855, 'xs': 2.944, 's': 6.358}


@pytest.mark.parametrize('arch', sorted(CVNETS_PARAMS_M))
def test_parameter_count_matches_cvnets(arch):
    params_m = count_parameters(build_model(VOC_CONFIGS[arch])) / 1e6
    assert abs(params_m - CVNETS_PARAMS_M[arch]) / CVNETS_PARAMS_M[arch] < 0.01, params_m


def test_aspp_layout_is_cvnets():
    head = LightASPPHead(in_channels=80, channels=256, num_classes=21, in_index=0, norm_cfg=dict(type='BN'))
    convs = [branch.conv for branch in head.aspp_branches[:4]]
    # 1x1, then plain (not depthwise-separable) 3x3 convs at rates 6/12/18; all conv + BN + ReLU, no bias.
    assert [c.kernel_size for c in convs] == [(1, 1)] + [(3, 3)] * 3
    assert [c.dilation[0] for c in convs[1:]] == [6, 12, 18]
    assert all(c.groups == 1 and c.bias is None and c.in_channels == 80 for c in convs)
    assert all(isinstance(b.bn, nn.BatchNorm2d) and isinstance(b.activate, nn.ReLU) for b in head.aspp_branches[:4])
    pooling = head.aspp_branches[4]
    assert isinstance(pooling.pool, nn.AdaptiveAvgPool2d) and pooling.conv.conv.kernel_size == (1, 1)
    # 1x1 projection of the 5 concatenated branches (mmseg's ASPPHead uses a 3x3 bottleneck), then dropout.
    assert head.projection.conv.kernel_size == (1, 1) and head.projection.conv.in_channels == 5 * 256
    assert isinstance(head.aspp_dropout, nn.Dropout) and head.aspp_dropout.p == 0.1
    # Classifier: Dropout2d(0.1) + 1x1 conv with bias.
    assert isinstance(head.dropout, nn.Dropout2d) and head.dropout.p == 0.1
    assert head.conv_seg.kernel_size == (1, 1) and head.conv_seg.bias is not None
    assert head.conv_seg.out_channels == 21


def test_logits_at_stride_16_and_predictions_at_input_size():
    model = build_model(VOC_CONFIGS['xxs'])
    image = torch.rand(1, 3, 72, 104)
    with torch.no_grad():
        features = model.backbone(image)
        logits = model(image, mode='tensor')
        samples = model.predict(image)
    assert [tuple(f.shape) for f in features] == [(1, 80, 5, 7)]  # layer 5 at stride 16
    assert logits.shape == (1, 21, 5, 7)
    assert samples[0].pred_sem_seg.data.shape == (1, 72, 104)
    assert samples[0].seg_logits.data.shape == (21, 72, 104)


def test_image_pooling_branch_sees_the_whole_map():
    head = LightASPPHead(in_channels=8, channels=4, num_classes=3, in_index=0, aspp_dropout=0.0,
                         dropout_ratio=0.0).eval()
    pooling = head.aspp_branches[4]
    x = torch.rand(2, 8, 5, 7)
    out = pooling(x)
    assert out.shape == (2, 4, 5, 7)
    # Constant over space: the pooled vector broadcast to every position.
    assert torch.allclose(out, out[..., :1, :1].expand_as(out))


def test_voc_recipe_in_config():
    cfg = load_config(str(VOC_CONFIGS['s']))
    preprocessor = cfg.model.data_preprocessor
    # Apple's weights: BGR in [0, 1], no mean/std.
    assert preprocessor.mean == [0, 0, 0] and preprocessor.std == [255, 255, 255]
    assert preprocessor.bgr_to_rgb is False and preprocessor.seg_pad_val == 255
    assert cfg.model.backbone.output_stride == 16 and cfg.model.backbone.out_indices == (4,)
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    assert cfg.model.decode_head.loss_decode.avg_non_ignore is True
    assert cfg.train_cfg.max_epochs == 50
    assert cfg.optim_wrapper.optimizer.type == 'AdamW' and cfg.optim_wrapper.optimizer.weight_decay == 0.01
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys['decode_head'].lr_mult == 10
    assert cfg.train_dataloader.batch_size == 32 and cfg.auto_scale_lr.base_batch_size == 128
    assert [h.type for h in cfg.custom_hooks] == ['EMAHook'] and cfg.sync_bn == 'torch'
    assert 'mvdense' in cfg.custom_imports.imports
    train_sets = cfg.train_dataloader.dataset.datasets
    assert cfg.train_dataloader.dataset.type == 'ConcatDataset'
    assert [(d.ann_file, d.data_prefix.seg_map_path) for d in train_sets] == [
        ('ImageSets/Segmentation/train.txt', 'SegmentationClass'),
        ('ImageSets/Segmentation/aug.txt', 'SegmentationClassAug'),
        ('ImageSets/Segmentation/train2017.txt', 'SegmentationClass')]
    assert cfg.val_dataloader.dataset.ann_file == 'ImageSets/Segmentation/val.txt'
    assert cfg.val_evaluator.type == 'IoUMetric'


def test_head_learns_ten_times_faster_and_cosine_reaches_min_lr():
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import PARAM_SCHEDULERS

    cfg = load_config(str(VOC_CONFIGS['xxs']))
    model = build_model(cfg)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    head_params = {id(p) for p in model.decode_head.parameters()}
    lrs = {('head' if id(group['params'][0]) in head_params else 'backbone'): group['lr']
           for group in optim_wrapper.optimizer.param_groups}
    assert lrs == pytest.approx({'backbone': 9e-4, 'head': 9e-3})

    iters_per_epoch = 10
    schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=optim_wrapper), default_args=dict(
        epoch_length=iters_per_epoch)) if s.get('convert_to_iter_based') else
        PARAM_SCHEDULERS.build(dict(s, optimizer=optim_wrapper)) for s in cfg.param_scheduler]
    for _ in range(cfg.train_cfg.max_epochs * iters_per_epoch):
        optim_wrapper.optimizer.step()
        for scheduler in schedulers:
            scheduler.step()
    final = sorted(group['lr'] for group in optim_wrapper.optimizer.param_groups)
    assert final[0] == pytest.approx(1e-6, rel=0.05) and final[-1] == pytest.approx(1e-5, rel=0.05)


def test_train_pipeline_resizes_short_side_256_to_1024_and_crops_512():
    from mmengine.dataset import Compose

    cfg = load_config(str(VOC_CONFIGS['s']))
    init_default_scope('mmseg')
    augment = Compose([step for step in cfg.train_pipeline
                       if step['type'] in ('RandomResize', 'Pad', 'RandomCrop', 'RandomFlip')])
    np.random.seed(0)
    short_sides = []
    for _ in range(40):
        results = augment(dict(img=np.zeros((300, 400, 3), np.uint8), gt_seg_map=np.zeros((300, 400), np.uint8),
                               seg_fields=['gt_seg_map'], img_shape=(300, 400)))
        short_sides.append(results['scale'][1])
        assert results['img'].shape == (512, 512, 3) and results['gt_seg_map'].shape == (512, 512)
        if results['scale'][1] < 512:  # padding is labelled "ignore"
            assert (results['gt_seg_map'] == 255).any()
    assert 256 <= min(short_sides) and max(short_sides) <= 1024 and max(short_sides) - min(short_sides) > 300


def test_demo_config_classes_match_the_generator():
    from mvdense.datasets.synthetic import CLASSES

    cfg = load_config(str(DEMO_CONFIG))
    assert cfg.classes == ('background', *CLASSES) and cfg.model.decode_head.num_classes == len(cfg.classes)
    assert 'synthetic_split' not in cfg  # the helper function is dropped from the loaded config
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        assert loader.dataset.type == 'BaseSegDataset' and loader.dataset.metainfo.classes == cfg.classes


# ---------------------------------------------------------------------------------------------------------
# tools/train.py -> tools/test.py on a tiny generated set
# ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def tiny_config(synthetic_dataset, tmp_path_factory) -> Path:
    """The demo config on 8 + 4 generated 64x64 images, 64x64 crops, 4 epochs of 2 iterations."""
    root = synthetic_dataset(image_size=(64, 64))
    config = tmp_path_factory.mktemp('config') / 'tiny_seg.py'
    config.write_text(f"""
_base_ = {str(DEMO_CONFIG)!r}
crop_size = (64, 64)
train_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='CheckedLoadAnnotations'),
    dict(type='ValidateSegMap', num_classes=4),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root={str(root / 'VOC2012')!r}, pipeline=train_pipeline))
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root={str(root / 'VOC2012')!r}))
test_dataloader = val_dataloader
max_epochs = 4
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
optim_wrapper = dict(optimizer=dict(lr=2e-3))
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=max_epochs))
log_processor = dict(window_size=1)
""")
    return config


@pytest.fixture(scope='module')
def trained(tiny_config, tmp_path_factory) -> Path:
    work_dir = tmp_path_factory.mktemp('work')
    run_tool('train', tiny_config, '--work-dir', work_dir)
    return work_dir


def _losses(work_dir: Path) -> list[float]:
    records = [json.loads(line) for path in sorted(work_dir.glob('*/vis_data/scalars.json'))
               for line in path.read_text().splitlines()]
    return [r['loss'] for r in records if 'loss' in r]


@pytest.mark.slow
def test_training_loss_falls(trained):
    losses = _losses(trained)
    assert len(losses) == 8, losses  # 4 epochs x 2 iterations
    assert sum(losses[-2:]) / 2 < 0.8 * sum(losses[:2]) / 2, losses


@pytest.mark.slow
def test_test_tool_prints_miou_and_per_class_iou(trained, tiny_config):
    checkpoint = (trained / 'last_checkpoint').read_text().strip()
    result = run_tool('test', tiny_config, checkpoint, '--work-dir', trained / 'test')
    output = result.stdout + result.stderr
    assert 'per class results' in output
    for name in ('background', 'circle', 'rectangle', 'triangle'):
        assert re.search(rf'\|\s*{name}\s*\|\s*[\d.]+\s*\|', output), name
    match = re.search(r'mIoU: ([\d.]+)', output)
    assert match and 0.0 <= float(match.group(1)) <= 100.0


@pytest.mark.slow
def test_dist_train_with_two_cpu_processes(tiny_config, tmp_path):
    # torchrun + gloo on CPU (mvdense.runner.setup_cpu_distributed): the segmentor's SyncBN setting is
    # dropped, DDP wraps it without device ids, and IoUMetric gathers the two ranks' results.
    result = run_tool('dist_train.sh', tiny_config, 2, '--work-dir', tmp_path, '--cfg-options',
                      'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', env={'PORT': '29547'})
    output = result.stdout + result.stderr
    assert re.search(r'Distributed training: True\s+GPU number: 2', output), output[-3000:]
    assert re.search(r'Epoch\(val\) \[1\]\[\d+/\d+\]\s+aAcc: [\d.]+\s+mIoU: [\d.]+', output), output[-3000:]
    assert (tmp_path / 'epoch_1.pth').is_file()


# ---------------------------------------------------------------------------------------------------------
# COCO -> VOC classes: the paper's extra training set (tools/convert_coco_to_voc.py)
# ---------------------------------------------------------------------------------------------------------

def _write_coco(path: Path, images: list[dict], annotations: list[dict], categories: list[dict]) -> Path:
    path.write_text(json.dumps(dict(images=images, annotations=annotations, categories=categories)))
    return path


def _box_polygon(x0: int, y0: int, x1: int, y1: int) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def test_coco_categories_become_voc_classes(tmp_path):
    from mvdense.datasets.coco_to_voc import convert_coco_to_voc

    img_dir = tmp_path / 'train2017'
    img_dir.mkdir()
    for name, size in (('big.jpg', (300, 400)), ('small.jpg', (200, 400)), ('giraffes.jpg', (300, 300))):
        Image.fromarray(np.zeros((*size, 3), np.uint8)).save(img_dir / name)
    crowd = np.zeros((300, 400), np.uint8, order='F')
    crowd[200:300, 0:50] = 1
    crowd_rle = mask_utils.encode(crowd)
    # Uncompressed RLE as COCO stores crowds: run lengths in column-major order, starting with zeros.
    crowd_counts = [len(list(run)) for _, run in itertools.groupby(crowd.ravel(order='F'))]
    categories = [dict(id=5, name='airplane'), dict(id=63, name='couch'), dict(id=25, name='giraffe'),
                  dict(id=1, name='person')]
    annotations = [
        dict(id=1, image_id=1, category_id=5, segmentation=_box_polygon(10, 10, 110, 60), iscrowd=0),
        dict(id=2, image_id=1, category_id=63, segmentation=_box_polygon(60, 30, 160, 90), iscrowd=0),  # under 1
        dict(id=3, image_id=1, category_id=25, segmentation=_box_polygon(200, 100, 300, 200), iscrowd=0),
        dict(id=4, image_id=1, category_id=1, iscrowd=1,
             segmentation=dict(counts=crowd_counts, size=[300, 400])),  # uncompressed RLE
        dict(id=5, image_id=2, category_id=5, segmentation=_box_polygon(0, 0, 50, 50), iscrowd=0),
        dict(id=6, image_id=3, category_id=25, segmentation=_box_polygon(0, 0, 50, 50), iscrowd=0),
    ]
    images = [dict(id=1, file_name='big.jpg', height=300, width=400),
              dict(id=2, file_name='small.jpg', height=200, width=400),
              dict(id=3, file_name='giraffes.jpg', height=300, width=300)]
    ann_file = _write_coco(tmp_path / 'instances.json', images, annotations, categories)
    summary = convert_coco_to_voc(str(ann_file), str(img_dir), str(tmp_path / 'out'))

    assert summary.kept == ['big'] and summary.skipped_small == 1 and summary.skipped_unlabelled == 1
    assert (tmp_path / 'out/ImageSets/Segmentation/train2017.txt').read_text() == 'big\n'
    link = tmp_path / 'out/JPEGImages/big.jpg'
    assert link.is_symlink() and link.resolve() == (img_dir / 'big.jpg').resolve()
    png = Image.open(tmp_path / 'out/SegmentationClass/big.png')
    assert png.mode == 'P' and png.getpalette()[3:6] == [128, 0, 0]  # VOC colours
    labels = np.array(png)
    aeroplane, sofa, person = (VOC_CLASSES.index(c) for c in ('aeroplane', 'sofa', 'person'))
    assert labels[30, 80] == aeroplane  # overlap: the first annotation keeps the pixel
    assert labels[80, 140] == sofa
    assert labels[150, 250] == 0  # giraffe: background
    assert labels[250, 20] == person  # crowd region, painted like any instance
    assert mask_utils.decode(crowd_rle).sum() == (labels == person).sum()
    assert set(np.unique(labels)) == {0, aeroplane, sofa, person}


@pytest.mark.slow
def test_converter_on_generated_coco_matches_the_generated_masks(synthetic_dataset, tmp_path):
    root = synthetic_dataset(num_train=4, num_val=0, image_size=(64, 96), seed=4)
    out = tmp_path / 'shapes_voc'
    result = run_tool('convert_coco_to_voc', root / 'annotations/instances_train.json', root / 'train', out,
                      '--split', 'train', '--min-side', '0', '--copy-images',
                      '--classes', 'background', 'circle', 'rectangle', 'triangle',
                      '--map', 'circle=circle', 'rectangle=rectangle', 'triangle=triangle', timeout=300)
    assert '4 images written' in result.stdout
    stems = (out / 'ImageSets/Segmentation/train.txt').read_text().split()
    assert stems == [f'train_{i:06d}' for i in range(4)]
    for stem in stems:
        converted = np.array(Image.open(out / 'SegmentationClass' / f'{stem}.png'))
        generated = np.array(Image.open(root / 'VOC2012/SegmentationClass' / f'{stem}.png'))
        known = generated != 255  # the generator's ignore band is the only difference
        assert np.array_equal(converted[known], generated[known])
        assert not (out / 'JPEGImages' / f'{stem}.jpg').is_symlink()


def test_converter_rejects_a_mapping_onto_an_unknown_class():
    from mvdense.datasets.coco_to_voc import category_labels

    with pytest.raises(ValueError, match="'sofaa'"):
        category_labels([dict(id=63, name='couch')], VOC_CLASSES, {'couch': 'sofaa'})
    assert category_labels([dict(id=63, name='couch'), dict(id=9, name='boat')], VOC_CLASSES,
                           {'couch': 'sofa'}) == {63: 18}
