"""What ``tools/train.py`` and ``tools/test.py`` share: config loading, data checks, runner building
(with checkpoints checked against the model), the guards added to training runs, and one-line exits for the
errors users meet (bad data, a checkpoint of another model, a diverging loss).

One pair of scripts serves mmdet and mmseg configs: the config's ``default_scope`` picks the registries,
and mmengine's ``Runner`` drives training (PyTorch DDP when launched through torchrun).
"""
from __future__ import annotations

import argparse
import os.path as osp
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

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
    """Turns bad data met while running (:class:`~mvdense.datasets.DataError`, also re-raised from a
    DataLoader worker with the worker's traceback as its message) into ``SystemExit`` with the one line
    ``bad data: <file>: <what is wrong>``, instead of two stacked tracebacks."""
    from mvdense.datasets.checks import DataError, data_error_summary

    try:
        yield
    except DataError as error:
        raise SystemExit(data_error_summary(error)) from None


@contextmanager
def process_group_closed() -> Iterator[None]:
    """Leaves the process group a torchrun launch joined when the run ends. Without it gloo's threads are
    torn down at interpreter exit, in no fixed order across ranks, which can abort a rank that already
    finished ("terminate called without an active exception") and fail the whole launch."""
    import torch.distributed as dist

    yield   # a failed rank raises past this and leaves at once: teardown could wait on ranks still working
    if dist.is_available() and dist.is_initialized():
        # Every rank done with every collective before any tears its connections down, so that none
        # leaves while another still finishes an exchange with it.
        dist.barrier()
        dist.destroy_process_group()


@contextmanager
def errors_as_exit() -> Iterator[None]:
    """:func:`data_errors_as_exit`, and the same one-line exit for a checkpoint that does not fit the
    config's model and for a training loss that became NaN or infinite."""
    from mvdense.engine import CheckpointMismatchError, NonFiniteLossError

    with data_errors_as_exit():
        try:
            yield
        except (CheckpointMismatchError, NonFiniteLossError) as error:
            raise SystemExit(str(error)) from None


class CheckpointFitMixin:
    """Runner mixin whose ``load_checkpoint`` checks the checkpoint against the model before loading it.

    With ``exact_checkpoint`` (evaluation: ``tools/test.py``) and when resuming, a checkpoint with missing,
    unexpected or mis-shaped tensors stops the run with :class:`~mvdense.engine.CheckpointMismatchError`
    (one line naming the checkpoint, the config and the first mismatches). Otherwise (``load_from`` when
    training: fine-tuning from another model's weights) the tensors that fit are loaded, the others keep
    their initialisation, and one warning line says what was not loaded, in place of mmengine's list of
    every mismatch. Hooks (EMA) get the checkpoint's state dict completed with the model's own tensors, so
    they load it without complaint too.
    """

    exact_checkpoint = False

    def load_checkpoint(self, filename: str, map_location: Any = 'cpu', strict: bool = False,
                        revise_keys: Sequence[tuple[str, str]] = ((r'^module\.', ''),)) -> dict:
        from mmengine.model import is_model_wrapper
        from mmengine.runner.checkpoint import _load_checkpoint

        from mvdense.engine.checkpoint_fit import (
            CheckpointMismatchError,
            checkpoint_state_dict,
            compare_state_dict,
            fill_from_model,
            mismatch_message,
            partial_load_summary,
        )

        checkpoint = _load_checkpoint(filename, map_location=map_location)
        if not isinstance(checkpoint, dict):
            raise RuntimeError(f'checkpoint {filename} holds a {type(checkpoint).__name__}, not a state dict')
        model = self.model.module if is_model_wrapper(self.model) else self.model
        state_dict = checkpoint_state_dict(checkpoint, revise_keys)
        fit = compare_state_dict(model, state_dict)
        if not fit.exact:
            if strict or self.exact_checkpoint or self._resume:
                raise CheckpointMismatchError(mismatch_message(fit, filename, self.cfg.filename or 'the config'))
            state_dict = fill_from_model(model, state_dict, fit)
            self.logger.warning(partial_load_summary(fit, filename))
        checkpoint['state_dict'] = state_dict
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)  # EMAHook: before the model, as mmengine
        model.load_state_dict(checkpoint['state_dict'], strict=False)   # fits: strict but for BN step counters
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint


def runner_class(cfg: Config) -> type:
    """mmengine's ``Runner`` (or the config's ``runner_type``) with :class:`CheckpointFitMixin`."""
    base = Runner
    if 'runner_type' in cfg:
        from mmengine.registry import RUNNERS

        base = cfg.runner_type if isinstance(cfg.runner_type, type) else RUNNERS.get(cfg.runner_type)
    return type(f'Checked{base.__name__}', (CheckpointFitMixin, base), {})


def build_runner(cfg: Config, loaders: Sequence[str] = DATALOADERS, exact_checkpoint: bool = False) -> Runner:
    """Checks the data paths of ``loaders`` and builds mmengine's Runner (or the config's ``runner_type``),
    which checks checkpoints against its model (:class:`CheckpointFitMixin`; ``exact_checkpoint``: a
    ``load_from`` checkpoint must fit exactly, as for evaluation)."""
    check_data_paths(cfg, cfg.filename or '', loaders)
    runner = runner_class(cfg).from_cfg(cfg)
    runner.exact_checkpoint = exact_checkpoint
    return runner


def configure_training(cfg: Config, skip_bad_samples: bool = False) -> None:
    """What ``tools/train.py`` adds to every run.

    * :class:`~mvdense.engine.FiniteLossHook`: the first NaN or infinite loss stops the run, naming the
      iteration and the loss term, before the diverged weights are saved.
    * With ``randomness.deterministic=True``: :class:`~mvdense.engine.EpochSeedHook` (each epoch's random
      state follows from the seed and the epoch, so a resumed run reproduces the uninterrupted one), with
      the training workers restarted every epoch (``persistent_workers=False``) to take the epoch's seed.
    * ``skip_bad_samples``: the training set is wrapped in :class:`~mvdense.datasets.SkipBadSamples`
      (a bad sample is logged and replaced instead of stopping the run).
    """
    hooks = list(cfg.get('custom_hooks') or [])
    present = {hook.get('type') for hook in hooks}
    new = ['FiniteLossHook']
    if (cfg.get('randomness') or {}).get('deterministic'):
        new.append('EpochSeedHook')
        if cfg.train_dataloader.get('num_workers', 0) > 0:
            cfg.train_dataloader.persistent_workers = False
    hooks += [dict(type=name) for name in new if name not in present]
    cfg.custom_hooks = hooks
    if skip_bad_samples:
        cfg.train_dataloader.dataset = dict(type='SkipBadSamples', dataset=cfg.train_dataloader.dataset)
