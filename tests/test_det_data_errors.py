"""Bad detection data stops the run with one line ``bad data: <file>: <problem>``: missing, empty or truncated
images (also from inside DataLoader workers), malformed annotation JSON and annotation entries that break
COCO's structure; ``SkipBadSamples`` (``tools/train.py --skip-bad-samples``) logs and skips bad samples
instead."""
from __future__ import annotations

import glob
import json
from pathlib import Path

import pytest
import torch
from conftest import ROOT, build_model, run_tool
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from torch.utils.data import DataLoader

from mvdense.apis import load_config, model_task
from mvdense.datasets import DataError, SkipBadSamples, check_coco_annotations, data_error_summary

DEMO_CONFIG = ROOT / 'configs/demo/ssdlite_mobilevit_xxs_synthetic.py'


@pytest.fixture
def coco_root(synthetic_dataset, tmp_path) -> Path:
    """A private COCO-layout copy (3 + 2 images of 64 x 80) that each test may damage."""
    return synthetic_dataset(tmp_path / 'synthetic', num_train=3, num_val=2, image_size=(64, 80), seed=4)


def build_dataset(root: Path, split: str = 'train'):
    """The demo config's data set of ``split`` on ``root``."""
    from mmdet.registry import DATASETS

    init_default_scope('mmdet')
    loader = load_config(str(DEMO_CONFIG))[f'{split}_dataloader']
    return DATASETS.build(dict(loader.dataset, data_root=f'{root}/'))


def annotation_file(root: Path, split: str = 'train') -> Path:
    return root / 'annotations' / f'instances_{split}.json'


def image_file(root: Path, index: int = 1, split: str = 'train') -> Path:
    return root / split / f'{split}_{index:06d}.jpg'


def expect_error(build, path: Path, problem: str) -> None:
    with pytest.raises(DataError) as caught:
        build()
    message = str(caught.value)
    assert message.startswith(f'bad data: {path}: '), message
    assert problem in message, message
    assert '\n' not in message


def load_every_sample(dataset) -> None:
    for index in range(len(dataset)):
        dataset[index]


# ---------------------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('split', ['train', 'val'])
def test_valid_data_loads(coco_root, split):
    dataset = build_dataset(coco_root, split)
    assert len(dataset) == (3 if split == 'train' else 2)
    load_every_sample(dataset)


@pytest.mark.parametrize('damage, problem', [
    (lambda path: path.unlink(), 'image file not found'),
    (lambda path: path.write_bytes(b''), 'empty file (0 bytes), not an image'),
    (lambda path: path.write_bytes(path.read_bytes()[:300]), 'cannot decode the image'),          # truncated
    (lambda path: path.write_text('not an image\n'), 'cannot decode the image'),
])
def test_bad_image_is_named(coco_root, damage, problem):
    dataset = build_dataset(coco_root, 'val')
    damage(image_file(coco_root, 1, 'val'))
    expect_error(lambda: load_every_sample(dataset), image_file(coco_root, 1, 'val'), problem)


def test_bad_image_named_from_inside_a_dataloader_worker(coco_root):
    dataset = build_dataset(coco_root)
    image_file(coco_root, 2).unlink()
    loader = DataLoader(dataset, batch_size=1, num_workers=1, collate_fn=pseudo_collate)
    with pytest.raises(DataError) as caught:
        list(loader)
    assert 'Traceback' in str(caught.value)        # torch re-raises it with the worker's traceback
    assert data_error_summary(caught.value) == f'bad data: {image_file(coco_root, 2)}: image file not found'


def test_skip_bad_samples_logs_and_replaces_them(coco_root, monkeypatch):
    logged = []
    monkeypatch.setattr('mvdense.datasets.wrappers.print_log', lambda line, **kwargs: logged.append(line))
    dataset = SkipBadSamples(build_dataset(coco_root), max_consecutive=2)
    assert len(dataset) == 3 and dataset.metainfo['classes'] == ('circle', 'rectangle', 'triangle')
    image_file(coco_root, 1).unlink()
    sample = dataset[1]
    assert sample['data_samples'].img_path == str(image_file(coco_root, 2))     # the next sample instead
    assert logged == [f'skipped a bad sample (index 1): bad data: {image_file(coco_root, 1)}: image file not found']

    image_file(coco_root, 2).unlink()
    with pytest.raises(DataError, match=r'^bad data: .*train_000002\.jpg: image file not found '
                                        r'\(2 bad samples in a row: stopped\)$'):
        dataset[1]


# ---------------------------------------------------------------------------------------------------------
# Annotation files
# ---------------------------------------------------------------------------------------------------------

def rewrite(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_malformed_json_is_named_with_its_position(coco_root):
    path = annotation_file(coco_root)
    text = path.read_text()
    path.write_text(text[:200])
    expect_error(lambda: build_dataset(coco_root), path, 'not valid JSON (')
    path.write_text('[' + text + ']')
    expect_error(lambda: build_dataset(coco_root), path, 'the file holds a JSON list, expected an object with '
                                                         'images, annotations, categories')


def first(data: dict, section: str) -> dict:
    return data[section][0]


def _set(section: str, key: str, value):
    return lambda data: first(data, section).__setitem__(key, value)


@pytest.mark.parametrize('change, problem', [
    (lambda data: data.pop('categories'), "no 'categories' list (a COCO detection file has images, "
                                          'annotations, categories)'),
    (lambda data: data.pop('annotations'), "no 'annotations' list"),
    (_set('annotations', 'category_id', 99), "annotations[0] (id 1) has category_id 99, which is not among "
                                             "the 'categories' (ids 1, 2, 3)"),
    (_set('annotations', 'image_id', 1234), "annotations[0] (id 1) refers to image_id 1234, which is not "
                                            "among the 'images'"),
    (_set('annotations', 'bbox', [10.0, 10.0, -4.0, 8.0]), 'annotations[0] (id 1), image_id 1: bbox '
                                                           '[10.0, 10.0, -4.0, 8.0] has a negative width'),
    (_set('annotations', 'bbox', [50.0, 20.0, 60.0, 30.0]), 'annotations[0] (id 1), image_id 1: bbox '
                                                            '[50.0, 20.0, 60.0, 30.0] (x, y, width, height) '
                                                            'reaches outside its 80 x 64 image'),
    (_set('annotations', 'bbox', [1, 2, 'x', 4]), "bbox [1, 2, 'x', 4] is not four finite numbers"),
    (lambda data: first(data, 'annotations').pop('area'), "annotations[0] (id 1) has no 'area'"),
    (lambda data: data['annotations'][1].__setitem__('id', 1), 'annotations[1] (id 1): the id is not unique'),
    (_set('images', 'width', 0), 'images[0] (id 1) (train_000000.jpg) has the size 0 x 64, expected positive'),
    (lambda data: first(data, 'images').pop('file_name'), "images[0] (id 1) has no 'file_name'"),
    (lambda data: data['categories'][2].__setitem__('name', 'Triangle'),
     "the config's classes triangle are not among the file's categories (Triangle, circle, rectangle)"),
])
def test_structure_errors_name_the_first_offending_entry(coco_root, change, problem):
    path = annotation_file(coco_root)
    rewrite(path, change)
    expect_error(lambda: build_dataset(coco_root), path, problem)


def test_zero_size_boxes_are_reported_and_left_out(coco_root):
    """COCO 2017 train holds two boxes of zero height: mmdet leaves them out of training, so they do not
    stop the run, but they are named."""
    path = annotation_file(coco_root)
    data = json.loads(path.read_text())
    data['annotations'][0]['bbox'][3] = 0.0
    problems = check_coco_annotations(data, str(path), classes=('circle',))
    assert problems == [f'annotations[0] (id 1): bbox {data["annotations"][0]["bbox"]} has zero width or height']
    path.write_text(json.dumps(data))
    dataset = build_dataset(coco_root)
    instances = dataset.get_data_info(0)['instances']
    assert len(instances) == sum(a['image_id'] == 1 for a in data['annotations']) - 1


def test_image_info_files_without_annotations_load_for_testing():
    data = dict(images=[dict(id=1, file_name='a.jpg', width=4, height=3)], categories=[dict(id=1, name='a')])
    assert check_coco_annotations(data, 'image_info.json', require_annotations=False) == []
    with pytest.raises(DataError, match="no 'annotations' list"):
        check_coco_annotations(data, 'image_info.json')


def test_every_shipped_detection_config_checks_its_data():
    configs = [path for path in sorted(glob.glob(str(ROOT / 'configs/**/*.py'), recursive=True))
               if '_base_' not in path and 'glit_search' not in path]
    checked = 0
    for path in configs:
        cfg = load_config(path)
        if model_task(cfg) != 'detection':
            continue
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            assert cfg[loader].dataset.type == 'CheckedCocoDataset', (path, loader)
        checked += 1
    assert checked >= 16


# ---------------------------------------------------------------------------------------------------------
# The tools: one line, no tracebacks
# ---------------------------------------------------------------------------------------------------------

def data_options(root: Path) -> list[str]:
    root = f'{root}/'
    return ['--cfg-options', f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
            f'test_dataloader.dataset.data_root={root}', f'val_evaluator.ann_file={root}annotations/instances_val.json',
            f'test_evaluator.ann_file={root}annotations/instances_val.json', 'train_dataloader.batch_size=3',
            'val_dataloader.batch_size=2', 'train_cfg.max_epochs=1', 'default_hooks.logger.interval=1',
            'train_dataloader.num_workers=1', 'train_dataloader.persistent_workers=False',
            'val_dataloader.num_workers=1', 'val_dataloader.persistent_workers=False']


def assert_one_line(result, expected: str) -> None:
    assert result.stderr.rstrip().splitlines()[-1] == expected, result.stderr[-3000:]
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]


@pytest.mark.slow
def test_tools_stop_on_bad_data_with_one_line(coco_root, tmp_path):
    checkpoint = tmp_path / 'model.pth'
    torch.save(dict(state_dict=build_model(DEMO_CONFIG).state_dict()), checkpoint)
    val_image = image_file(coco_root, 1, 'val')
    val_image.write_bytes(val_image.read_bytes()[:300])
    result = run_tool('test', DEMO_CONFIG, checkpoint, '--work-dir', tmp_path / 'test', *data_options(coco_root),
                      returncode=1)
    assert_one_line(result, f'bad data: {val_image}: cannot decode the image (corrupt or not an image file)')

    image_file(coco_root, 2).unlink()          # training reads it in a DataLoader worker
    result = run_tool('train', DEMO_CONFIG, '--work-dir', tmp_path / 'train', *data_options(coco_root),
                      returncode=1)
    assert_one_line(result, f'bad data: {image_file(coco_root, 2)}: image file not found')
    assert not list((tmp_path / 'train').glob('*.pth'))

    rewrite(annotation_file(coco_root), _set('annotations', 'category_id', 7))
    result = run_tool('train', DEMO_CONFIG, '--work-dir', tmp_path / 'train', *data_options(coco_root),
                      returncode=1)
    assert_one_line(result, f"bad data: {annotation_file(coco_root)}: annotations[0] (id 1) has category_id 7, "
                            "which is not among the 'categories' (ids 1, 2, 3)")


@pytest.mark.slow
def test_train_tool_skips_bad_samples_when_asked(coco_root, tmp_path):
    image_file(coco_root, 2).unlink()
    options = data_options(coco_root) + ['train_cfg.val_interval=100']
    result = run_tool('train', DEMO_CONFIG, '--work-dir', tmp_path, '--skip-bad-samples', *options)
    output = result.stdout + result.stderr
    assert f'skipped a bad sample (index 2): bad data: {image_file(coco_root, 2)}: image file not found' in output
    assert (tmp_path / 'epoch_1.pth').is_file()
