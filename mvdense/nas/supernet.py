"""The GLiT supernet (one-shot, SPOS-style) and what the search does to it: path selection, BatchNorm
re-estimation, the resources of a path.

Every block of :class:`GLiTSupernet` is a :class:`~mvdense.models.backbones.glit.GLiTChoiceBlock` holding
its candidates with *separate* weights (no weight sharing between candidates, as in the authors' code);
a path (one candidate per block) is selected with :meth:`GLiT.set_subnet`. The search space travels in
the checkpoint's ``meta`` (written by :class:`~mvdense.nas.SPOSSamplerHook`), so a checkpoint trained on
another space is refused with the difference named.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from mmengine.model import is_model_wrapper
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..models.backbones.glit import GLiT, GLiTChoiceBlock
from ..registry import MODELS
from .space import GLiTSearchSpace, SearchSpaceError


class SupernetMismatchError(SearchSpaceError):
    """A supernet checkpoint that was trained on another search space."""


def space_difference(trained: Mapping, expected: Mapping) -> str:
    """The fields in which two search spaces (``GLiTSearchSpace.to_dict()``) differ, for a message."""
    keys = sorted(set(trained) | set(expected))
    diffs = [f'{key} {trained.get(key)!r} vs {expected.get(key)!r}' for key in keys
             if trained.get(key) != expected.get(key)]
    return '; '.join(diffs)


@MODELS.register_module()
class GLiTSupernet(GLiT):
    """GLiT with every block holding the candidates of a :class:`GLiTSearchSpace` (stage 1 or 2).

    Args:
        search_space: The space (a dict of :class:`GLiTSearchSpace`'s arguments).
        embed_dim: Token width d (divisible by 3).
        num_heads: Attention heads of an all-global block (divisible by 3).
        **kwargs: :class:`GLiT`'s other arguments (``img_size``, ``patch_size``, ``out_indices``,
            ``drop_path_rate``...).

    Shape: as :class:`GLiT`, for the path selected last.
    """

    def __init__(self, search_space: dict | GLiTSearchSpace, embed_dim: int = 192, num_heads: int = 3,
                 **kwargs) -> None:
        space = GLiTSearchSpace.build(search_space)
        blocks = space.block_candidates()
        super().__init__(arch=dict(embed_dim=embed_dim, num_heads=num_heads, blocks=blocks), **kwargs)
        self.search_space = space

    def arch_table(self, choices: Sequence[int]) -> dict:
        """The plain GLiT ``arch`` of a path: ``dict(embed_dim, num_heads, blocks=[spec dicts])``."""
        return dict(embed_dim=self.embed_dim, num_heads=self.num_heads,
                    blocks=[spec.to_dict() for spec in self.search_space.decode(choices)])

    @property
    def current_choices(self) -> tuple[int, ...]:
        """The selected candidate of every block."""
        return tuple(block.choice for _, block in self.choice_blocks)


#: Where a supernet checkpoint records its search space (``checkpoint['meta'][SPACE_META_KEY]``).
SPACE_META_KEY = 'glit_search_space'


def record_search_space(checkpoint: dict, space: GLiTSearchSpace) -> None:
    """Writes ``space`` (plain data) into a checkpoint's ``meta``."""
    checkpoint.setdefault('meta', {})[SPACE_META_KEY] = space.to_dict()


def check_search_space(checkpoint: Mapping, space: GLiTSearchSpace, source: str) -> None:
    """Refuses a checkpoint whose recorded search space is not ``space``, naming the difference.

    Raises:
        SupernetMismatchError: no space recorded (not a supernet checkpoint), or another space.
    """
    meta = checkpoint.get('meta') if isinstance(checkpoint, Mapping) else None
    trained = meta.get(SPACE_META_KEY) if isinstance(meta, Mapping) else None
    if not isinstance(trained, Mapping):
        raise SupernetMismatchError(f'{source} is not a GLiT supernet checkpoint (its meta records no search '
                                    'space: supernets are trained with SPOSSamplerHook)')
    expected = space.to_dict()
    if dict(trained) != expected:
        raise SupernetMismatchError(f'{source} was trained on another search space: '
                                    f'{space_difference(trained, expected)} (checkpoint vs config)')


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP (or other mmengine) wrapper."""
    return model.module if is_model_wrapper(model) else model


def find_supernet(model: nn.Module) -> GLiTSupernet:
    """The one :class:`GLiTSupernet` inside ``model`` (its backbone, usually)."""
    found = [module for module in unwrap(model).modules() if isinstance(module, GLiTSupernet)]
    if len(found) != 1:
        raise SearchSpaceError(f'expected one GLiTSupernet in the model, found {len(found)} '
                               "(a supernet config sets the backbone's type='GLiTSupernet')")
    return found[0]


def inactive_modules(model: nn.Module) -> set[int]:
    """``id``s of every module inside a candidate that is not selected (not on the current path)."""
    ids: set[int] = set()
    for module in model.modules():
        if isinstance(module, GLiTChoiceBlock):
            for index, candidate in enumerate(module.candidates):
                if index != module.choice:
                    ids.update(id(m) for m in candidate.modules())
    return ids


def path_parameters(model: nn.Module) -> int:
    """Parameters of the network the current path makes (the whole model, unselected candidates left out)."""
    skip = inactive_modules(model)
    return sum(p.numel() for m in model.modules() if id(m) not in skip for p in m.parameters(recurse=False))


def path_batch_norms(model: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers on the current path that track running statistics."""
    skip = inactive_modules(model)
    return [m for m in model.modules()
            if isinstance(m, _BatchNorm) and m.track_running_stats and id(m) not in skip]


@torch.no_grad()
def calibrate_bn_statistics(model: nn.Module, batches: Iterable[dict], autocast=None) -> list[_BatchNorm]:
    """Re-estimates the running statistics of the current path's BatchNorm layers on ``batches``.

    The statistics are reset and the batches forwarded with the BatchNorm layers in training mode and
    ``momentum=None`` (a cumulative average over all batches), everything else in eval mode (no dropout,
    no drop path) and without gradients. BatchNorms frozen by ``norm_eval``/``frozen_stages`` (in eval
    mode after ``model.train()``) keep their statistics. The model is left in eval mode.

    Args:
        model: An mmengine model (``data_preprocessor`` + ``forward(inputs, data_samples, mode)``).
        batches: Data batches as the training dataloader yields them.
        autocast: Optional context manager factory to run the forwards under (e.g. bfloat16 on CPU).

    Returns:
        The layers that were re-estimated.
    """
    model = unwrap(model)
    model.train()
    norms = [bn for bn in path_batch_norms(model) if bn.training]
    model.eval()
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    try:
        for batch in batches:
            data = model.data_preprocessor(batch, True)
            if autocast is None:
                model(**data, mode='tensor')
            else:
                with autocast():
                    model(**data, mode='tensor')
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
        model.eval()
    return norms
