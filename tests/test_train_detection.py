"""End to end on generated data: tools/train.py learns, tools/test.py prints COCO metrics from the
checkpoint training wrote (weights_only loading), --resume continues an interrupted run, and
tools/dist_train.sh trains with 2 CPU processes (gloo)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mvdense.datasets import generate_synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / 'configs/demo/ssdlite_mobilevit_xxs_synthetic.py'


def _run(args: list[str], env_extra: dict | None = None, timeout: int = 600) -> str:
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore', **(env_extra or {}))
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


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
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('synthetic')
    generate_synthetic_dataset(root, num_train=8, num_val=4, seed=1)
    return root


@pytest.fixture(scope='module')
def trained(data_root, tmp_path_factory) -> Path:
    work_dir = tmp_path_factory.mktemp('work')
    _run([sys.executable, 'tools/train.py', str(CONFIG), '--work-dir', str(work_dir),
          *_train_options(data_root, epochs=6)])
    return work_dir


def test_training_loss_falls(trained):
    losses = _losses(trained)
    assert len(losses) == 12  # 6 epochs x 2 iterations
    first, last = sum(losses[:2]) / 2, sum(losses[-2:]) / 2
    assert last < 0.8 * first, losses


def test_test_tool_prints_coco_metrics_from_trained_checkpoint(trained, data_root):
    checkpoint = (trained / 'last_checkpoint').read_text().strip()
    output = _run([sys.executable, 'tools/test.py', str(CONFIG), checkpoint, '--work-dir', str(trained / 'test'),
                   *_train_options(data_root, epochs=6)])
    assert re.search(r'Average Precision +\(AP\) @\[ IoU=0\.50 +\| area= +all', output)  # pycocotools' table
    match = re.search(r'coco/bbox_mAP_50: (-?[\d.]+)', output)
    assert match and 0.0 <= float(match.group(1)) <= 1.0


def test_resume_continues_from_last_epoch(trained, data_root):
    output = _run([sys.executable, 'tools/train.py', str(CONFIG), '--work-dir', str(trained), '--resume',
                   *_train_options(data_root, epochs=7)])
    assert 'resumed epoch: 6' in output
    checkpoint = torch.load(trained / 'epoch_7.pth', map_location='cpu', weights_only=True)
    assert checkpoint['meta']['epoch'] == 7


def test_dist_train_with_two_cpu_processes(data_root, tmp_path):
    output = _run(['bash', 'tools/dist_train.sh', str(CONFIG), '2', '--work-dir', str(tmp_path),
                   *_train_options(data_root, epochs=1)], env_extra={'PORT': '29533'})
    assert 'Distributed launcher: pytorch' in output or "'world_size': 2" in output or 'World size: 2' in output
    assert (tmp_path / 'epoch_1.pth').is_file()


def test_demo_config_classes_match_the_generator():
    from mmengine.config import Config

    from mvdense.datasets.synthetic import CLASSES

    cfg = Config.fromfile(str(CONFIG))
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        assert tuple(loader.dataset.metainfo.classes) == CLASSES
    assert cfg.model.bbox_head.num_classes == len(CLASSES)
