"""End to end on generated data: tools/train.py learns, tools/test.py prints COCO metrics from the
checkpoint training wrote (weights_only loading), --resume continues an interrupted run, and
tools/dist_train.sh trains with 2 CPU processes (gloo)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_tool

from mvdense.apis import load_config

CONFIG = ROOT / 'configs/demo/ssdlite_mobilevit_xxs_synthetic.py'


def _train_options(data_root: Path, epochs: int) -> list[str]:
    return ['--cfg-options', f'train_dataloader.dataset.data_root={data_root}/',
            f'val_dataloader.dataset.data_root={data_root}/', f'test_dataloader.dataset.data_root={data_root}/',
            f'val_evaluator.ann_file={data_root}/annotations/instances_val.json',
            f'test_evaluator.ann_file={data_root}/annotations/instances_val.json',
            f'train_cfg.max_epochs={epochs}', 'train_cfg.val_interval=100', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
            'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
            'default_hooks.logger.interval=1', 'log_processor.window_size=1', 'default_hooks.checkpoint.interval=1']


def _losses(work_dir: Path) -> list[float]:
    scalars = sorted(work_dir.glob('*/vis_data/scalars.json'))
    records = [json.loads(line) for path in scalars for line in path.read_text().splitlines()]
    return [r['loss'] for r in records if 'loss' in r]


@pytest.fixture(scope='module')
def trained(tiny_synthetic, tmp_path_factory) -> Path:
    work_dir = tmp_path_factory.mktemp('work')
    run_tool('train', CONFIG, '--work-dir', work_dir, *_train_options(tiny_synthetic, epochs=6))
    return work_dir


@pytest.mark.slow
def test_training_loss_falls(trained):
    losses = _losses(trained)
    assert len(losses) == 12  # 6 epochs x 2 iterations
    first, last = sum(losses[:2]) / 2, sum(losses[-2:]) / 2
    assert last < 0.8 * first, losses


@pytest.mark.slow
def test_test_tool_prints_coco_metrics_from_trained_checkpoint(trained, tiny_synthetic):
    checkpoint = (trained / 'last_checkpoint').read_text().strip()
    result = run_tool('test', CONFIG, checkpoint, '--work-dir', trained / 'test',
                      *_train_options(tiny_synthetic, epochs=6))
    output = result.stdout + result.stderr
    assert re.search(r'Average Precision +\(AP\) @\[ IoU=0\.50 +\| area= +all', output)  # pycocotools' table
    match = re.search(r'coco/bbox_mAP_50: (-?[\d.]+)', output)
    assert match and 0.0 <= float(match.group(1)) <= 1.0


@pytest.mark.slow
def test_resume_continues_from_last_epoch(trained, tiny_synthetic):
    result = run_tool('train', CONFIG, '--work-dir', trained, '--resume', *_train_options(tiny_synthetic, epochs=7))
    assert 'resumed epoch: 6' in result.stdout + result.stderr
    checkpoint = torch.load(trained / 'epoch_7.pth', map_location='cpu', weights_only=True)
    assert checkpoint['meta']['epoch'] == 7


@pytest.mark.slow
def test_dist_train_with_two_cpu_processes(tiny_synthetic, tmp_path):
    """Two ranks join (the runtime environment reports 2 processes), the 8 training images are split
    between them (one iteration of 4 per rank and epoch instead of two), and each rank writes its own
    log (``log_level=DEBUG`` makes mmengine keep one file per rank) with its training iteration."""
    options = _train_options(tiny_synthetic, epochs=1) + ['log_level=DEBUG']
    result = run_tool('dist_train.sh', CONFIG, 2, '--work-dir', tmp_path, *options, env={'PORT': '29533'})
    output = result.stdout + result.stderr
    assert re.search(r'Distributed training: True\s+GPU number: 2', output), output[-3000:]
    rank_logs = {rank: list(tmp_path.glob(f'*/*rank{rank}.log')) for rank in (0, 1)}
    for rank, logs in rank_logs.items():
        assert len(logs) == 1, (rank, sorted(p.name for p in tmp_path.rglob('*.log')))
        assert re.search(r'Epoch\(train\) +\[1\]\[1/1\]', logs[0].read_text()), rank
    assert (tmp_path / 'epoch_1.pth').is_file()


def test_demo_config_classes_match_the_generator():
    from mvdense.datasets.synthetic import CLASSES

    cfg = load_config(str(CONFIG))
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        assert tuple(loader.dataset.metainfo.classes) == CLASSES
    assert cfg.model.bbox_head.num_classes == len(CLASSES)
