"""Runner hooks: fast CPU training (:class:`ChannelsLastHook`), fast evaluation (:class:`InferenceModelHook`),
a stop at the first non-finite loss (:class:`FiniteLossHook`) and exactly resumable deterministic runs
(:class:`EpochSeedHook`)."""
from __future__ import annotations

import copy
import hashlib
import logging
import math
import random
from collections.abc import Mapping
from functools import partial

import numpy as np
import torch
from mmengine.dataset.utils import worker_init_fn
from mmengine.dist import all_reduce, get_rank, is_distributed
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop

__all__ = ['ChannelsLastHook', 'EpochSeedHook', 'FiniteLossHook', 'InferenceModelHook', 'NonFiniteLossError',
           'epoch_seed']


@HOOKS.register_module()
class ChannelsLastHook(Hook):
    """Puts the model's 4-d weights in channels-last (NHWC) layout before the run.

    oneDNN's CPU convolutions, depthwise ones above all, run faster in NHWC (training-step times in
    ``benchmarks/results.md``). A convolution whose weight is channels-last returns
    channels-last maps, so the NCHW batches of the data preprocessor need no conversion. The math is
    unchanged. Checkpoints hold the same values (a state dict loads into either layout).
    """

    priority = 'VERY_HIGH'  # before EMAHook copies the model

    def before_run(self, runner) -> None:
        runner.model.to(memory_format=torch.channels_last)


@HOOKS.register_module()
class InferenceModelHook(Hook):
    """Runs the test epoch on a copy of the model prepared for inference: BatchNorm folded into the
    convolutions and channels-last layout (:func:`mvdense.deploy.optimize.prepare_for_inference`), the
    same outputs to float rounding, faster on CPUs (``benchmarks/results.md``).

    The trained model is left as it was (checkpoints, EMA weights) and is put back after the epoch.
    ``tools/test.py`` adds this hook unless ``--no-prepare`` is given.
    """

    priority = 'LOWEST'  # after EMAHook has swapped the averaged weights into the model

    def before_test_epoch(self, runner) -> None:
        from mmengine.model import is_model_wrapper

        from ..deploy.optimize import prepare_for_inference

        self._trained_model = runner.model
        model = copy.deepcopy(runner.model.module if is_model_wrapper(runner.model) else runner.model)
        runner.model = prepare_for_inference(model, entry=getattr(model, 'backbone', None))

    def after_test_epoch(self, runner, metrics=None) -> None:
        runner.model = self._trained_model


class NonFiniteLossError(FloatingPointError):
    """Training met a NaN or infinite loss; the message names the iteration and the loss terms."""


def non_finite_terms(log_vars: Mapping | None) -> dict[str, float]:
    """The entries of a train step's outputs (loss terms) that are NaN or infinite, as floats."""
    bad = {}
    for name, value in (log_vars or {}).items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, int | float) and not math.isfinite(value):
            bad[name] = float(value)
    return bad


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Stops training at the first iteration whose loss is NaN or infinite (a learning rate too high, boxes
    that make the regression target infinite, ...), before any hook saves the diverged weights.

    Raises :class:`NonFiniteLossError` naming the epoch and iteration, the non-finite loss terms and the
    last checkpoint written (which the diverged run leaves as it was: nothing is saved, and so no older
    checkpoint is rotated out). A checkpoint about to be saved with NaN or infinite weights (a non-finite
    gradient under a finite loss) is refused the same way. In a distributed run every process stops at the
    same iteration. ``tools/train.py`` adds this hook to every run.
    """

    priority = 'VERY_HIGH'  # before CheckpointHook (VERY_LOW) can save at this iteration or epoch end

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        bad = non_finite_terms(outputs)
        if is_distributed():
            flag = torch.tensor([1.0 if bad else 0.0])
            all_reduce(flag)
            if flag.item() and not bad:
                raise NonFiniteLossError(self._message(runner, batch_idx, 'the loss of another process'))
        if bad:
            # The total is named only when no term explains it.
            terms = {name: value for name, value in bad.items() if name != 'loss'} or bad
            shown = ', '.join(f'{name} = {value}' for name, value in terms.items())
            raise NonFiniteLossError(self._message(runner, batch_idx, shown))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        for name, value in checkpoint.get('state_dict', {}).items():
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
                raise NonFiniteLossError(f'non-finite weights ({name}) after iteration {runner.iter} of the run: '
                                         f'not saved. {_stopped(runner)}')

    @staticmethod
    def _message(runner, batch_idx: int, what: str) -> str:
        where = f'iteration {runner.iter + 1}'
        if isinstance(runner.train_loop, EpochBasedTrainLoop):
            where = (f'epoch {runner.epoch + 1}, iteration {batch_idx + 1}/{len(runner.train_dataloader)} '
                     f'({where} of the run)')
        return f'non-finite loss at {where}: {what}. {_stopped(runner)}'


def _stopped(runner) -> str:
    """The end of a divergence message: what happened to the checkpoints, and the usual causes."""
    last = runner.message_hub.get_info('last_ckpt')
    kept = f'the last checkpoint, {last}, is kept as it was' if last else 'no checkpoint had been written'
    return f'Training stopped; {kept}. (A learning rate too high for the batch size, or bad boxes in the data?)'


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A seed in [0, 2**31) that depends only on the run's seed, the epoch and the process rank."""
    digest = hashlib.sha256(f'{seed}:{epoch}:{rank}'.encode()).digest()
    return int.from_bytes(digest[:4], 'little') & 0x7FFFFFFF


@HOOKS.register_module()
class EpochSeedHook(Hook):
    """Makes the random state of each epoch a function of (seed, epoch), so that a deterministic run
    resumed from an epoch checkpoint reproduces the uninterrupted run.

    At the start of every training epoch it seeds Python's, numpy's and torch's generators of the main
    process (augmentations run there when ``num_workers=0``; dropout and samplers in the model) and gives
    the training DataLoader a ``worker_init_fn`` with the epoch's seed, which its workers (started anew
    each epoch: ``persistent_workers=False``) run first. The data order is already a function of
    (seed, epoch) (mmengine's ``DefaultSampler``). ``tools/train.py`` adds this hook, and turns persistent
    training workers off, when the config sets ``randomness.deterministic=True``.
    """

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        loader = runner.train_dataloader
        if loader.num_workers > 0 and getattr(loader, 'persistent_workers', False):
            print_log('EpochSeedHook: persistent data workers keep their random state from epoch to epoch, so a '
                      'resumed run will augment differently; set train_dataloader.persistent_workers=False',
                      logger='current', level=logging.WARNING)

    def before_train_epoch(self, runner) -> None:
        diff_rank_seed = runner._randomness_cfg.get('diff_rank_seed', False)
        rank = get_rank()
        seed = epoch_seed(runner.seed, runner.epoch, rank if diff_rank_seed else 0)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)  # and every CUDA device's generator
        loader = runner.train_dataloader
        if loader.num_workers > 0:
            loader.worker_init_fn = partial(worker_init_fn, num_workers=loader.num_workers, rank=rank, seed=seed)
