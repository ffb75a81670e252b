"""The synthetic shapes dataset: determinism, valid COCO and VOC layouts that agree with each other,
idempotent regeneration, and the command line."""
from __future__ import annotations

import json
import os
import os.path as osp

import numpy as np
import pytest
from conftest import load_tool
from PIL import Image

from mvdense.datasets import CLASSES, SHAPES, generate_synthetic_dataset

# Small and not square, so that a height/width mix-up shows.
SMALL = dict(num_train=8, num_val=4, image_size=(96, 128), seed=3)

# pycocotools' mask decoding trips a numpy 2 deprecation inside the library; nothing we can act on.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


@pytest.fixture(scope='module')
def dataset(synthetic_dataset) -> str:
    return str(synthetic_dataset(**SMALL))


def _relative_files(root: str) -> list[str]:
    return sorted(osp.relpath(osp.join(folder, name), root)
                  for folder, _, names in os.walk(root) for name in names)


def _pixels(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image).copy()


def _coco(dataset: str, split: str):
    from pycocotools.coco import COCO

    return COCO(osp.join(dataset, 'annotations', f'instances_{split}.json'))


def _voc_labels(dataset: str, file_name: str) -> np.ndarray:
    stem = osp.splitext(file_name)[0]
    return _pixels(osp.join(dataset, 'VOC2012', 'SegmentationClass', f'{stem}.png'))


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path, dataset):
    generate_synthetic_dataset(tmp_path / 'again', **SMALL)
    generate_synthetic_dataset(tmp_path / 'other', **{**SMALL, 'seed': SMALL['seed'] + 1})
    files = _relative_files(dataset)
    assert files == _relative_files(str(tmp_path / 'again')) == _relative_files(str(tmp_path / 'other'))

    for name in files:
        first, again = osp.join(dataset, name), str(tmp_path / 'again' / name)
        if name.endswith(('.json', '.txt')):
            with open(first, 'rb') as a, open(again, 'rb') as b:
                assert a.read() == b.read(), name
        else:
            np.testing.assert_array_equal(_pixels(first), _pixels(again), err_msg=name)

    for name in ('annotations/instances_train.json', 'VOC2012/JPEGImages/val_000000.jpg',
                 'VOC2012/SegmentationClass/train_000000.png'):
        first, other = osp.join(dataset, name), str(tmp_path / 'other' / name)
        if name.endswith('.json'):
            with open(first, 'rb') as a, open(other, 'rb') as b:
                assert a.read() != b.read(), name
        else:
            assert not np.array_equal(_pixels(first), _pixels(other)), name


def test_coco_annotations_are_valid(dataset):
    height, width = SMALL['image_size']
    for split in ('train', 'val'):
        coco = _coco(dataset, split)
        assert [c['id'] for c in coco.loadCats(coco.getCatIds())] == [1, 2, 3]
        assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
        assert len(coco.getImgIds()) == SMALL[f'num_{split}']
        for image in coco.loadImgs(coco.getImgIds()):
            assert (image['height'], image['width']) == (height, width)
            assert _pixels(osp.join(dataset, split, image['file_name'])).shape == (height, width, 3)
            annotations = coco.loadAnns(coco.getAnnIds(imgIds=image['id']))
            assert 1 <= len(annotations) <= 3
            for ann in annotations:
                x, y, w, h = ann['bbox']
                assert w > 0 and h > 0 and ann['area'] > 0 and ann['iscrowd'] == 0
                assert 0 <= x and 0 <= y and x + w <= width and y + h <= height
                # The box is the tight box of the visible part, so it matches the polygon's extent.
                (polygon,) = ann['segmentation']
                xs, ys = np.array(polygon[0::2]), np.array(polygon[1::2])
                np.testing.assert_allclose([xs.min(), ys.min(), xs.max(), ys.max()], [x, y, x + w, y + h],
                                           atol=1.5)
                assert abs(coco.annToMask(ann).sum() - ann['area']) <= 0.1 * ann['area']


def test_polygons_agree_with_voc_masks(dataset):
    for split in ('train', 'val'):
        coco = _coco(dataset, split)
        for image in coco.loadImgs(coco.getImgIds()):
            labels = _voc_labels(dataset, image['file_name'])
            annotated = labels != 255
            annotations = coco.loadAnns(coco.getAnnIds(imgIds=image['id']))
            for category_id in {ann['category_id'] for ann in annotations}:
                # Compare per class: the VOC map does not tell apart two overlapping objects of one class.
                polygons = np.zeros(labels.shape, bool)
                for ann in annotations:
                    if ann['category_id'] == category_id:
                        polygons |= coco.annToMask(ann).astype(bool)
                voc = labels == category_id
                iou = (polygons & voc & annotated).sum() / ((polygons | voc) & annotated).sum()
                assert iou > 0.9, (image['file_name'], category_id, iou)


def test_voc_masks_are_palette_pngs_with_valid_labels(dataset):
    folder = osp.join(dataset, 'VOC2012', 'SegmentationClass')
    for name in os.listdir(folder):
        with Image.open(osp.join(folder, name)) as png:
            assert png.mode == 'P'
            palette = png.getpalette()
            labels = np.asarray(png)
        assert palette[3:6] == [128, 0, 0] and palette[3 * 255:3 * 256] == [224, 224, 192]  # VOC colours
        assert labels.shape == SMALL['image_size']
        assert set(np.unique(labels).tolist()) <= {0, 1, 2, 3, 255}
        assert 255 in labels and 0 in labels


def test_image_sets_list_exactly_the_files_present(dataset):
    voc = osp.join(dataset, 'VOC2012')
    image_sets = {}
    for split in ('train', 'val'):
        with open(osp.join(voc, 'ImageSets', 'Segmentation', f'{split}.txt')) as f:
            image_sets[split] = f.read().split()
        assert len(image_sets[split]) == SMALL[f'num_{split}']
        coco_stems = [osp.splitext(image['file_name'])[0] for image in _coco(dataset, split).dataset['images']]
        assert coco_stems == image_sets[split]
        assert sorted(os.listdir(osp.join(dataset, split))) == sorted(f'{stem}.jpg' for stem in coco_stems)
    listed = sorted(image_sets['train'] + image_sets['val'])
    assert len(set(listed)) == len(listed)
    for folder, suffix in (('JPEGImages', '.jpg'), ('SegmentationClass', '.png')):
        assert sorted(os.listdir(osp.join(voc, folder))) == [stem + suffix for stem in listed]


def test_second_call_writes_nothing_and_new_parameters_regenerate(tmp_path):
    root = tmp_path / 'data'
    first = generate_synthetic_dataset(root, **{**SMALL, 'num_train': 4, 'num_val': 2})
    mtimes = {name: os.stat(root / name).st_mtime_ns for name in _relative_files(str(root))}
    second = generate_synthetic_dataset(root, **{**SMALL, 'num_train': 4, 'num_val': 2})
    assert first['generated'] and not second['generated']
    assert {k: v for k, v in first.items() if k != 'generated'} == {k: v for k, v in second.items()
                                                                    if k != 'generated'}
    assert {name: os.stat(root / name).st_mtime_ns for name in _relative_files(str(root))} == mtimes

    # Other parameters replace the dataset, stale files included.
    third = generate_synthetic_dataset(root, **{**SMALL, 'num_train': 2, 'num_val': 1})
    assert third['generated'] and sorted(os.listdir(root / 'train')) == ['train_000000.jpg', 'train_000001.jpg']
    assert [p for p in os.listdir(tmp_path) if p != 'data'] == []  # no staging directory left behind

    # A missing file makes the dataset incomplete: regenerated.
    os.remove(root / 'VOC2012' / 'SegmentationClass' / 'val_000000.png')
    assert generate_synthetic_dataset(root, **{**SMALL, 'num_train': 2, 'num_val': 1})['generated']


def test_refuses_to_overwrite_a_foreign_directory(tmp_path):
    (tmp_path / 'precious.txt').write_text('not a dataset')
    with pytest.raises(FileExistsError):
        generate_synthetic_dataset(tmp_path, **SMALL)
    assert os.listdir(tmp_path) == ['precious.txt']


def test_num_classes_selects_the_first_shapes(tmp_path):
    summary = generate_synthetic_dataset(tmp_path / 'data', **{**SMALL, 'num_classes': 5})
    assert summary['classes'] == list(SHAPES)
    coco = _coco(str(tmp_path / 'data'), 'train')
    assert [c['name'] for c in coco.dataset['categories']] == list(SHAPES)
    assert {ann['category_id'] for ann in coco.dataset['annotations']} <= {1, 2, 3, 4, 5}
    with pytest.raises(ValueError):
        generate_synthetic_dataset(tmp_path / 'bad', num_classes=len(SHAPES) + 1)


def test_command_line_prints_a_one_line_summary(tmp_path, capsys):
    tool = load_tool('make_synthetic_data')
    root = str(tmp_path / 'data')
    argv = ['--root', root, '--num-train', '3', '--num-val', '2', '--seed', '1', '--size', '80', '96']
    tool.main(argv)
    tool.main(argv)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and 'generated' in lines[0] and 'up to date' in lines[1] and '80x96' in lines[1]
    with open(osp.join(root, 'meta.json')) as f:
        assert json.load(f)['params']['image_size'] == [80, 96]


def test_openmmlab_datasets_load_both_layouts(dataset):
    """The layouts are what mmdet's CocoDataset and mmseg's BaseSegDataset expect.

    mmseg's PascalVOCDataset itself refuses class names outside the 20 VOC classes; BaseSegDataset with
    the VOC suffixes reads the same folders."""
    from mmdet.datasets import CocoDataset
    from mmseg.datasets import BaseSegDataset

    coco = CocoDataset(data_root=dataset, ann_file='annotations/instances_train.json',
                       data_prefix=dict(img='train/'), metainfo=dict(classes=CLASSES), pipeline=[])
    assert len(coco) == SMALL['num_train']
    sample = coco[0]
    assert osp.isfile(sample['img_path']) and sample['instances'][0]['bbox_label'] in range(len(CLASSES))

    seg = BaseSegDataset(data_root=osp.join(dataset, 'VOC2012'), ann_file='ImageSets/Segmentation/val.txt',
                         data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
                         img_suffix='.jpg', seg_map_suffix='.png',
                         metainfo=dict(classes=('background', *CLASSES)), pipeline=[])
    assert len(seg) == SMALL['num_val']
    assert osp.isfile(seg[0]['img_path']) and osp.isfile(seg[0]['seg_map_path'])
