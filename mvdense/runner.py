"""What ``tools/train.py`` and ``tools/test.py`` share: config loading, data checks, runner building.

One pair of scripts serves mmdet and mmseg configs: the config's ``default_scope`` picks the registries,
and mmengine's ``Runner`` drives training (PyTorch DDP when launched through torchrun).
"""
from __future__ import annotations

import argparse
import os.path as osp
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.runner import Runner


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Adds ``--work-dir``, ``--cfg-options``, ``--launcher`` and ``--local_rank``."""
    parser.add_argument('--work-dir', help='the directory for logs, checkpoints and metrics')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config settings, e.g. train_dataloader.batch_size=8')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config(path: str, cfg_options: dict | None = None, work_dir: str | None = None,
                launcher: str = 'none') -> Config:
    """Reads ``path``, applies ``--cfg-options`` and sets the work dir (default ``work_dirs/<name>``)."""
    if not osp.isfile(path):
        raise SystemExit(f'config file not found: {path}')
    import mvdense  # noqa: F401  (registers our modules and the checkpoint loader)
    from mvdense.apis import load_config as load_config_file

    cfg = load_config_file(path, cfg_options)
    cfg.launcher = launcher
    if launcher == 'pytorch' and not torch.cuda.is_available():
        setup_cpu_distributed(cfg)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


def setup_cpu_distributed(cfg: Config) -> None:
    """Lets a torchrun launch train on CPU-only machines (smoke tests, CI).

    mmengine 0.10.7 assumes GPUs when distributed: ``init_dist`` calls ``torch.cuda.set_device`` and the
    DDP wrapper gets ``device_ids=[LOCAL_RANK]``. We join the process group ourselves with gloo (mmengine
    then skips ``init_dist``) and wrap the model with ``device_ids=None``, as DDP wants for CPU modules.
    SyncBatchNorm only runs on GPUs, so ``sync_bn`` is dropped (each process normalises its own batch).
    """
    import torch.distributed as dist

    backend = 'gloo'
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = backend
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    wrapper = cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel', broadcast_buffers=False)
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    cfg.pop('sync_bn', None)


def _datasets(cfg: ConfigDict, where: str) -> Iterator[tuple[str, ConfigDict]]:
    """Yields ``(where, config)`` for the leaf datasets under a (possibly wrapped) dataset config, ``where``
    naming it in the config, e.g. ``train_dataloader.dataset.datasets[2]``."""
    if 'datasets' in cfg:
        for index, child in enumerate(cfg.datasets):
            yield from _datasets(child, f'{where}.datasets[{index}]')
    elif 'dataset' in cfg:
        yield from _datasets(cfg.dataset, f'{where}.dataset')
    else:
        yield where, cfg


DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def check_data_paths(cfg: Config, config_path: str = '', loaders: Sequence[str] = DATALOADERS) -> None:
    """Stops with one clear message when a data root or annotation file of ``loaders`` is missing.

    Only the loaders the run uses are checked: evaluating on VOC val does not need the training sets.
    """
    for loader_name in loaders:
        loader = cfg.get(loader_name)
        if not loader:
            continue
        for where, dataset in _datasets(loader.dataset, f'{loader_name}.dataset'):
            root = dataset.get('data_root') or ''
            if root and not osp.isdir(root):
                raise SystemExit(f'{config_path}: {where}.data_root does not exist: {root!r} '
                                 '(see data/README.md, or override it with --cfg-options)')
            ann_file = dataset.get('ann_file')
            if ann_file:
                full = ann_file if osp.isabs(ann_file) else osp.join(root, ann_file)
                if not osp.isfile(full):
                    raise SystemExit(f'{config_path}: {where}.ann_file does not exist: {full!r} '
                                     '(see data/README.md)')


@contextmanager
def data_errors_as_exit() -> Iterator[None]:
    """Turns bad segmentation data met while running (``SegDataError``, also re-raised from a DataLoader
    worker with the worker's traceback as its message) into ``SystemExit`` with the one line
    ``bad data: <file>: <what is wrong>``, instead of two stacked tracebacks."""
    from mvdense.datasets.transforms import SegDataError, data_error_summary

    try:
        yield
    except SegDataError as error:
        raise SystemExit(data_error_summary(error)) from None


def build_runner(cfg: Config, loaders: Sequence[str] = DATALOADERS) -> Runner:
    """Checks the data paths of ``loaders`` and builds mmengine's Runner (or the config's ``runner_type``)."""
    check_data_paths(cfg, cfg.filename or '', loaders)
    if 'runner_type' in cfg:
        from mmengine.registry import RUNNERS

        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
