"""Bad segmentation data stops the run with one message naming the file and what is wrong: missing or
corrupt images and masks, masks of the wrong size or kind, labels outside the classes, and configs pointing
at a missing data root or image list."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, load_tool, run_tool
from mmengine.registry import init_default_scope
from PIL import Image

from mvdense.datasets.transforms import SegDataError, ValidateSegMap, data_error_summary

DEMO_CONFIG = ROOT / 'configs/demo/deeplabv3_mobilevit_xxs_synthetic.py'
CLASSES = ('background', 'circle', 'rectangle', 'triangle')
STEM = 'train_000001'


@pytest.fixture
def voc_root(synthetic_dataset, tmp_path) -> Path:
    """A private VOC-layout copy (3 + 1 images of 64 x 80) that each test may damage."""
    root = synthetic_dataset(tmp_path / 'synthetic', num_train=3, num_val=1, image_size=(64, 80), seed=5)
    return root / 'VOC2012'


def load_all(voc_root: Path) -> None:
    """Runs every training sample through the demo config's loading pipeline."""
    from mmseg.datasets import BaseSegDataset

    init_default_scope('mmseg')
    dataset = BaseSegDataset(
        data_root=str(voc_root), metainfo=dict(classes=CLASSES), img_suffix='.jpg', seg_map_suffix='.png',
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
        ann_file='ImageSets/Segmentation/train.txt',
        pipeline=[dict(type='CheckedLoadImageFromFile'), dict(type='CheckedLoadAnnotations'),
                  dict(type='ValidateSegMap', num_classes=len(CLASSES)), dict(type='PackSegInputs')])
    for index in range(len(dataset)):
        dataset[index]


def mask_path(voc_root: Path) -> Path:
    return voc_root / 'SegmentationClass' / f'{STEM}.png'


def image_path(voc_root: Path) -> Path:
    return voc_root / 'JPEGImages' / f'{STEM}.jpg'


def write_mask(path: Path, labels: np.ndarray, mode: str = 'P') -> None:
    Image.fromarray(labels, 'L').convert(mode).save(path)


def expect_error(voc_root: Path, path: Path, problem: str) -> None:
    with pytest.raises(SegDataError) as caught:
        load_all(voc_root)
    message = str(caught.value)
    assert message.startswith(f'bad data: {path}: '), message
    assert problem in message, message


def test_valid_data_loads_including_ignore_label(voc_root):
    labels = np.array(Image.open(mask_path(voc_root)))
    assert (labels == 255).any()  # the generator's ignore band
    load_all(voc_root)


def test_missing_image(voc_root):
    image_path(voc_root).unlink()
    expect_error(voc_root, image_path(voc_root), 'image file not found')


def test_corrupt_image(voc_root):
    image_path(voc_root).write_bytes(b'\xff\xd8 this is not a JPEG')
    expect_error(voc_root, image_path(voc_root), 'cannot decode the image')


def test_missing_mask(voc_root):
    mask_path(voc_root).unlink()
    expect_error(voc_root, mask_path(voc_root), 'segmentation mask not found')


def test_corrupt_mask(voc_root):
    data = mask_path(voc_root).read_bytes()
    mask_path(voc_root).write_bytes(data[:40])  # a truncated PNG
    expect_error(voc_root, mask_path(voc_root), 'cannot decode the segmentation mask')


def test_labels_outside_the_classes(voc_root):
    labels = np.array(Image.open(mask_path(voc_root)))
    labels[:4, :4], labels[-1, -1] = 7, 4
    write_mask(mask_path(voc_root), labels)
    expect_error(voc_root, mask_path(voc_root),
                 'the mask holds labels 4, 7 outside the 4 classes 0..3 (255 = ignore)')


def test_rgb_colour_mask(voc_root):
    labels = np.array(Image.open(mask_path(voc_root)))
    write_mask(mask_path(voc_root), labels, mode='RGB')
    expect_error(voc_root, mask_path(voc_root), 'expected one channel of class indices')


def test_mask_size_differs_from_image(voc_root):
    write_mask(mask_path(voc_root), np.zeros((64, 64), np.uint8))
    expect_error(voc_root, mask_path(voc_root), 'the mask is 64x64 (HxW) but its image')


def test_validate_seg_map_lists_at_most_ten_labels():
    seg_map = np.arange(40, dtype=np.uint8).reshape(5, 8)
    with pytest.raises(SegDataError, match=r'labels 21, 22, .*, 30, \.\.\. outside the 21 classes'):
        ValidateSegMap(num_classes=21)(dict(gt_seg_map=seg_map, img_shape=(5, 8), seg_map_path='m.png'))


def test_summary_of_an_error_raised_in_a_dataloader_worker():
    # What torch re-raises in the main process: the worker's traceback as the message.
    rethrown = SegDataError('Caught SegDataError in DataLoader worker process 0.\nOriginal Traceback (most '
                            'recent call last):\n  File "x.py", line 1\nmvdense.datasets.transforms.SegDataError: '
                            'bad data: /d/m.png: the mask holds labels 9\n')
    assert data_error_summary(rethrown) == 'bad data: /d/m.png: the mask holds labels 9'
    assert data_error_summary(ValueError('other')) is None


@pytest.mark.slow
def test_train_tool_stops_with_the_file_and_problem(voc_root, tmp_path):
    labels = np.array(Image.open(mask_path(voc_root)))
    labels[0, 0] = 9
    write_mask(mask_path(voc_root), labels)
    root = f'{voc_root}/'
    result = run_tool('train', DEMO_CONFIG, '--work-dir', tmp_path / 'work', '--cfg-options',
                      f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
                      f'test_dataloader.dataset.data_root={root}', 'train_dataloader.batch_size=3',
                      'train_dataloader.num_workers=1', 'train_dataloader.persistent_workers=False', returncode=1)
    expected = (f'bad data: {mask_path(voc_root)}: the mask holds labels 9 outside the 4 classes 0..3 '
                '(255 = ignore)')
    # One line, raised in the DataLoader worker and reported by the main process without tracebacks.
    assert result.stderr.rstrip().splitlines()[-1] == expected, result.stderr[-3000:]
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    assert not list((tmp_path / 'work').glob('*.pth'))  # stopped before anything was trained and saved


# ---------------------------------------------------------------------------------------------------------
# A config pointing at a missing data root or image list: stopped before anything is built
# ---------------------------------------------------------------------------------------------------------

VOC_CONFIG = ROOT / 'configs/deeplabv3_mobilevit_xxs_voc.py'


def train_tool_exit_message(argv: list[str], monkeypatch) -> str:
    """Runs tools/train.py in this process; returns the message it exits with."""
    train = load_tool('train')

    # The tool sets LOCAL_RANK when absent: let monkeypatch restore the environment afterwards.
    monkeypatch.setenv('LOCAL_RANK', os.environ.get('LOCAL_RANK', '0'))
    with pytest.raises(SystemExit) as stopped:
        train.main(argv)
    return str(stopped.value.code)


def test_missing_voc_root_is_named(tmp_path, monkeypatch):
    missing = f'{tmp_path}/VOCdevkit/VOC2012/'
    monkeypatch.setenv('VOC_ROOT', missing)
    message = train_tool_exit_message([str(VOC_CONFIG), '--work-dir', str(tmp_path / 'work')], monkeypatch)
    assert message == (f"{VOC_CONFIG}: train_dataloader.dataset.datasets[0].data_root does not exist: "
                       f"'{missing}' (see data/README.md, or override it with --cfg-options)")
    assert not (tmp_path / 'work').exists()


def test_missing_sbd_list_and_coco_root_are_named(tmp_path, monkeypatch):
    """VOC without SBD's converted list, then VOC + SBD without the COCO masks: the first gap is named."""
    from mvdense.runner import check_data_paths, load_config

    voc = tmp_path / 'VOC2012'
    (voc / 'ImageSets/Segmentation').mkdir(parents=True)
    for name in ('train.txt', 'val.txt'):
        (voc / 'ImageSets/Segmentation' / name).write_text('2007_000032\n')
    monkeypatch.setenv('VOC_ROOT', f'{voc}/')
    monkeypatch.setenv('COCO_VOC_ROOT', f'{tmp_path}/coco_voc/')
    message = train_tool_exit_message([str(VOC_CONFIG), '--work-dir', str(tmp_path / 'work')], monkeypatch)
    assert message == (f"{VOC_CONFIG}: train_dataloader.dataset.datasets[1].ann_file does not exist: "
                       f"'{voc}/ImageSets/Segmentation/aug.txt' (see data/README.md)")

    (voc / 'ImageSets/Segmentation/aug.txt').write_text('2008_000002\n')
    message = train_tool_exit_message([str(VOC_CONFIG), '--work-dir', str(tmp_path / 'work')], monkeypatch)
    assert message.startswith(f"{VOC_CONFIG}: train_dataloader.dataset.datasets[2].data_root does not exist: "
                              f"'{tmp_path}/coco_voc/'")
    # Evaluation (tools/test.py) reads VOC val only, so the training sets' gaps do not stop it.
    check_data_paths(load_config(str(VOC_CONFIG)), str(VOC_CONFIG), loaders=('test_dataloader',))


def test_missing_synthetic_root_is_named(tmp_path, monkeypatch):
    missing = f'{tmp_path}/synthetic/'
    monkeypatch.setenv('SYNTHETIC_ROOT', missing)
    message = train_tool_exit_message([str(DEMO_CONFIG), '--work-dir', str(tmp_path / 'work')], monkeypatch)
    assert message.startswith(f"{DEMO_CONFIG}: train_dataloader.dataset.data_root does not exist: "
                              f"'{missing}VOC2012/'")
