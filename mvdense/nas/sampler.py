"""Uniform single-path sampling for supernet training (SPOS: Guo et al., 2019).

What mmrazor's ``SPOS`` algorithm does in its ``train_step``, as an mmengine hook: before every training
iteration, one candidate per supernet block is drawn uniformly and the path selected, so each iteration
trains one architecture of the space and, in expectation, every candidate equally often.
"""
from __future__ import annotations

import numpy as np
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from torch.nn.parallel import DistributedDataParallel

from .space import Candidate
from .supernet import check_search_space, find_supernet, record_search_space


def path_rng(seed: int, iteration: int) -> np.random.Generator:
    """The generator of iteration ``iteration``'s path: a function of ``(seed, iteration)`` only."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) % 2 ** 63, int(iteration)]))


def sample_path(num_choices: list[int], seed: int, iteration: int) -> Candidate:
    """Iteration ``iteration``'s path: one uniform draw per block (the same on every process)."""
    rng = path_rng(seed, iteration)
    return tuple(int(rng.integers(n)) for n in num_choices)


@HOOKS.register_module()
class SPOSSamplerHook(Hook):
    """Before each training iteration, selects a uniformly drawn path of the model's GLiT supernet.

    DDP-safe without communication: the path is drawn from a generator seeded with ``(seed,
    iteration)``, so every process selects the same path (DDP needs the same graph on every rank), and a
    resumed run draws the paths the interrupted one would have. Unselected candidates get no gradient:
    the DDP wrapper must be built with ``find_unused_parameters=True`` (checked before training).

    The search space is recorded in every checkpoint's ``meta``; resuming from a checkpoint of another
    space stops with the difference named.

    Args:
        seed: Seed of the path sequence; default the runner's seed (``randomness=dict(seed=...)``, which
            mmengine makes the same on every process).
    """

    priority = 'HIGH'  # before anything that looks at the model in before_train_iter

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._supernet = None

    def before_train(self, runner) -> None:
        model = runner.model
        if isinstance(model, DistributedDataParallel) and not model.find_unused_parameters:
            raise RuntimeError('supernet training under DDP trains one path per iteration: set '
                               "model_wrapper_cfg=dict(type='MMDistributedDataParallel', "
                               'find_unused_parameters=True)')
        supernet = self._supernet = find_supernet(model)
        runner.logger.info(f'{type(self).__name__}: {supernet.search_space.describe()}')

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self._supernet is None:
            self._supernet = find_supernet(runner.model)
        supernet = self._supernet
        seed = self.seed if self.seed is not None else runner.seed
        supernet.set_subnet(sample_path(supernet.search_space.num_choices, seed, runner.iter))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        record_search_space(checkpoint, find_supernet(runner.model).search_space)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        check_search_space(checkpoint, find_supernet(runner.model).search_space, 'the checkpoint resumed from')
