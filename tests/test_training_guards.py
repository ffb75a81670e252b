"""What tools/train.py adds to every run: a stop at the first non-finite loss (naming the iteration and the
loss term, leaving the last checkpoint as it was) and, for deterministic runs, per-epoch random state so
that a run killed and resumed reproduces the uninterrupted one."""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.runner import EpochBasedTrainLoop
from torch.utils.data import DataLoader

from mvdense.engine import EpochSeedHook, FiniteLossHook, NonFiniteLossError
from mvdense.engine.hooks import epoch_seed
from mvdense.runner import configure_training

DEMO_CONFIG = ROOT / 'configs/demo/ssdlite_mobilevit_xxs_synthetic.py'


class FakeRunner:
    """What the hooks read of mmengine's Runner."""

    def __init__(self, epoch: int = 2, iteration: int = 17, seed: int = 0, num_workers: int = 0):
        self.epoch, self.iter, self.seed = epoch, iteration, seed
        self.train_loop = object.__new__(EpochBasedTrainLoop)
        self.train_dataloader = DataLoader(list(range(12)), batch_size=2, num_workers=num_workers)
        self.message_hub = MessageHub.get_instance(f'fake-runner-{id(self)}')
        self._randomness_cfg = dict(seed=seed, deterministic=True)


def test_non_finite_loss_stops_naming_iteration_term_and_last_checkpoint():
    runner = FakeRunner()
    runner.message_hub.update_info('last_ckpt', 'work_dirs/x/epoch_2.pth')
    hook = FiniteLossHook()
    hook.after_train_iter(runner, 4, outputs=dict(loss=torch.tensor(3.0), loss_cls=torch.tensor(2.0)))
    outputs = dict(loss=torch.tensor(float('nan')), loss_cls=torch.tensor(2.0), loss_bbox=torch.tensor(float('inf')))
    with pytest.raises(NonFiniteLossError) as stopped:
        hook.after_train_iter(runner, 4, outputs=outputs)
    assert str(stopped.value) == (
        'non-finite loss at epoch 3, iteration 5/6 (iteration 18 of the run): loss_bbox = inf. Training '
        'stopped; the last checkpoint, work_dirs/x/epoch_2.pth, is kept as it was. (A learning rate too high '
        'for the batch size, or bad boxes in the data?)')
    with pytest.raises(NonFiniteLossError, match=r'^non-finite loss at .*: loss = nan\. Training stopped; no '
                                                 'checkpoint had been written'):
        FiniteLossHook().after_train_iter(FakeRunner(), 0, outputs=dict(loss=torch.tensor(float('nan'))))


def test_checkpoint_with_non_finite_weights_is_not_saved():
    hook = FiniteLossHook()
    hook.before_save_checkpoint(FakeRunner(), dict(state_dict=dict(w=torch.ones(3), n=torch.tensor(5))))
    with pytest.raises(NonFiniteLossError, match=r'^non-finite weights \(head\.w\) after iteration 17 .*not saved'):
        hook.before_save_checkpoint(FakeRunner(), dict(state_dict={'head.w': torch.tensor([1.0, float('nan')])}))


def draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_epoch_seed_hook_makes_each_epochs_random_state_a_function_of_seed_and_epoch():
    hook = EpochSeedHook()
    runner = FakeRunner(epoch=3, num_workers=2)
    hook.before_train_epoch(runner)
    first = draws()
    draws()                                           # an uninterrupted run has moved its generators on...
    hook.before_train_epoch(FakeRunner(epoch=3))      # ...a resumed one starts afresh: the same epoch 3
    assert draws() == first
    hook.before_train_epoch(FakeRunner(epoch=4))
    assert draws() != first
    hook.before_train_epoch(FakeRunner(epoch=3, seed=1))
    assert draws() != first
    init = runner.train_dataloader.worker_init_fn     # the workers get the epoch's seed too
    assert init.keywords == dict(num_workers=2, rank=0, seed=epoch_seed(0, 3))


def test_configure_training_adds_the_guards():
    cfg = Config(dict(custom_hooks=[dict(type='ChannelsLastHook')],
                      train_dataloader=dict(num_workers=2, persistent_workers=True, dataset=dict(type='X'))))
    configure_training(cfg)
    assert [hook['type'] for hook in cfg.custom_hooks] == ['ChannelsLastHook', 'FiniteLossHook']
    assert cfg.train_dataloader.persistent_workers

    cfg.randomness = dict(seed=0, deterministic=True)
    configure_training(cfg, skip_bad_samples=True)
    assert [hook['type'] for hook in cfg.custom_hooks] == ['ChannelsLastHook', 'FiniteLossHook', 'EpochSeedHook']
    assert not cfg.train_dataloader.persistent_workers    # workers restart each epoch with its seed
    assert cfg.train_dataloader.dataset == dict(type='SkipBadSamples', dataset=dict(type='X'))


# ---------------------------------------------------------------------------------------------------------
# Whole runs (tools/train.py in a subprocess)
# ---------------------------------------------------------------------------------------------------------

def train_command(data_root: Path, work_dir: Path, config: Path = DEMO_CONFIG, *options: str) -> list[str]:
    root = f'{data_root}/'
    return [sys.executable, 'tools/train.py', str(config), '--work-dir', str(work_dir), '--cfg-options',
            f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
            f'test_dataloader.dataset.data_root={root}', f'val_evaluator.ann_file={root}annotations/instances_val.json',
            'train_cfg.val_interval=100', 'train_dataloader.batch_size=4', 'default_hooks.logger.interval=1',
            'log_processor.window_size=1', 'default_hooks.checkpoint.interval=1', 'optim_wrapper.type=OptimWrapper',
            *options]


def run(command: list[str], returncode: int = 0) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == returncode, (result.stdout + result.stderr)[-4000:]
    return result


@pytest.mark.slow
def test_diverging_run_stops_and_keeps_the_last_checkpoint(tiny_synthetic, tmp_path):
    """The learning rate jumps 1e12-fold after epoch 1: the weights blow up in epoch 2 and the loss soon
    becomes NaN. The run stops there, and the last epoch's checkpoint (the only one kept) stays as it was."""
    config = tmp_path / 'diverging.py'
    config.write_text(f"_base_ = '{DEMO_CONFIG}'\n"
                      "param_scheduler = [dict(type='MultiStepLR', milestones=[1], gamma=1e12, by_epoch=True)]\n")
    work_dir = tmp_path / 'work'
    command = train_command(tiny_synthetic, work_dir, config, 'train_cfg.max_epochs=6', 'train_dataloader.num_workers=0',
                            'train_dataloader.persistent_workers=False', 'default_hooks.checkpoint.max_keep_ckpts=1')
    result = run(command, returncode=1)
    last_line = result.stderr.rstrip().splitlines()[-1]
    stop = re.fullmatch(r'non-finite loss at epoch (\d), iteration (\d)/2 \(iteration (\d) of the run\): '
                        r'(loss_cls|loss_bbox) = (nan|inf|-inf).*\. Training stopped; the last checkpoint, (.*), is '
                        r'kept as it was\. \(A learning rate too high .*\)', last_line)
    assert stop, last_line
    epoch, iteration, overall = map(int, stop.groups()[:3])
    assert epoch >= 2 and overall == 2 * (epoch - 1) + iteration
    kept = work_dir / f'epoch_{epoch - 1}.pth'
    assert stop.group(6) == str(kept) and 'Traceback' not in result.stderr
    assert sorted(work_dir.glob('*.pth')) == [kept]             # nothing saved after the NaN, nothing rotated out
    assert (work_dir / 'last_checkpoint').read_text().strip() == str(kept)
    assert torch.load(kept, weights_only=True)['meta']['epoch'] == epoch - 1


def losses(work_dir: Path) -> list[float]:
    records = [json.loads(line) for path in sorted(work_dir.glob('*/vis_data/scalars.json'))
               for line in path.read_text().splitlines()]
    return [record['loss'] for record in records if 'loss' in record]


@pytest.mark.slow
def test_deterministic_run_killed_and_resumed_reproduces_the_uninterrupted_run(tiny_synthetic, tmp_path):
    """float32, one data worker (random flips in it), 3 epochs of 2 iterations. The second run is killed
    (SIGKILL) during epoch 3 and resumed from epoch 2's checkpoint: its epoch 3 losses and final weights are
    the uninterrupted run's, exactly."""
    options = ('train_cfg.max_epochs=3', 'train_dataloader.num_workers=1', 'randomness.deterministic=True')
    run(train_command(tiny_synthetic, tmp_path / 'whole', DEMO_CONFIG, *options))

    killed = tmp_path / 'killed'
    command = train_command(tiny_synthetic, killed, DEMO_CONFIG, *options)
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        if 'Epoch(train) [3][1/2]' in line:
            process.send_signal(signal.SIGKILL)
            break
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL and not (killed / 'epoch_3.pth').exists()

    result = run(command + ['--resume'])
    assert 'resumed epoch: 2, iter: 4' in result.stdout + result.stderr
    whole, resumed = losses(tmp_path / 'whole'), losses(killed)
    assert len(whole) == 6 and resumed[-2:] == whole[-2:], (whole, resumed)
    final = [torch.load(path / 'epoch_3.pth', weights_only=True)['state_dict'] for path in (tmp_path / 'whole', killed)]
    assert all(torch.equal(final[0][name], final[1][name]) for name in final[0])
