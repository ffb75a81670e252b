"""Does a checkpoint fit a model? Exact loading for evaluation and deployment, summarised partial loading
for fine-tuning.

mmengine loads checkpoints non-strictly and only logs the tensors that did not fit (a message thousands of
lines long for a checkpoint of another model), so a wrong checkpoint evaluates a randomly initialised
model without an error. :func:`load_exact` refuses such a checkpoint with :class:`CheckpointMismatchError`,
one line naming the checkpoint, the config and the first mismatches; :func:`fill_from_model` completes a
checkpoint with the model's own tensors where it does not fit (a partial load, as for fine-tuning) and
:func:`partial_load_summary` says in one line what was not loaded.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ['CheckpointMismatchError', 'StateDictFit', 'checkpoint_state_dict', 'compare_state_dict',
           'fill_from_model', 'load_exact', 'mismatch_message', 'partial_load_summary']

# BatchNorm's step counters are not weights; mmengine ignores them when loading, and so do we.
_IGNORED = 'num_batches_tracked'
#: How many entries of each kind of mismatch a message shows.
SHOWN = 3


class CheckpointMismatchError(RuntimeError):
    """A checkpoint whose tensors do not fit the model: some missing, unexpected or of another shape."""


@dataclass
class StateDictFit:
    """How a checkpoint's state dict fits a model's.

    ``missing``: model tensors the checkpoint lacks; ``unexpected``: checkpoint tensors the model lacks;
    ``misshaped``: ``(name, checkpoint shape, model shape)``; ``total``: the model's tensors.
    """

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    misshaped: list[tuple[str, tuple, tuple]] = field(default_factory=list)
    total: int = 0

    @property
    def exact(self) -> bool:
        return not (self.missing or self.unexpected or self.misshaped)

    @property
    def num_loaded(self) -> int:
        """Model tensors that a partial load sets from the checkpoint."""
        return self.total - len(self.missing) - len(self.misshaped)

    def describe(self) -> str:
        """``'2 model tensors missing from the checkpoint (a, b); 1 of another shape (c: [3] in the
        checkpoint, [4] in the model)'``: the first :data:`SHOWN` of each kind."""
        parts = []
        if self.missing:
            parts.append(f'{len(self.missing)} model tensor(s) missing from the checkpoint ({_first(self.missing)})')
        if self.misshaped:
            shapes = [f'{name}: {_shape(ours)} in the checkpoint, {_shape(model)} in the model'
                      for name, ours, model in self.misshaped]
            parts.append(f'{len(self.misshaped)} of another shape ({_first(shapes, "; ")})')
        if self.unexpected:
            parts.append(f'{len(self.unexpected)} checkpoint tensor(s) the model does not have '
                         f'({_first(self.unexpected)})')
        return '; '.join(parts)


def _first(items: list[str], separator: str = ', ') -> str:
    return separator.join(items[:SHOWN]) + (f'{separator}...' if len(items) > SHOWN else '')


def _shape(shape: Iterable[int]) -> str:
    return '[' + ', '.join(map(str, shape)) + ']'


def checkpoint_state_dict(checkpoint: Mapping, revise_keys: Iterable[tuple[str, str]] = ((r'^module\.', ''),)
                          ) -> OrderedDict:
    """The model weights of a loaded checkpoint (its ``state_dict``, or the mapping itself), with the keys
    revised as mmengine revises them (a DDP wrapper's ``module.`` prefix removed)."""
    state_dict = checkpoint.get('state_dict', checkpoint)
    revised = OrderedDict(state_dict)
    for pattern, replacement in revise_keys:
        revised = OrderedDict((re.sub(pattern, replacement, key), value) for key, value in revised.items())
    metadata = getattr(state_dict, '_metadata', None)
    if metadata is not None:
        revised._metadata = metadata  # versions that modules' _load_from_state_dict read
    return revised


def compare_state_dict(model: nn.Module, state_dict: Mapping) -> StateDictFit:
    """Compares ``state_dict`` with ``model.state_dict()``: names and shapes."""
    expected = {name: value for name, value in model.state_dict().items() if not name.endswith(_IGNORED)}
    given = {name: value for name, value in state_dict.items() if not name.endswith(_IGNORED)}
    fit = StateDictFit(total=len(expected))
    for name, value in expected.items():
        if name not in given:
            fit.missing.append(name)
        elif isinstance(value, torch.Tensor) and isinstance(given[name], torch.Tensor) \
                and given[name].shape != value.shape:
            fit.misshaped.append((name, tuple(given[name].shape), tuple(value.shape)))
    fit.unexpected = [name for name in given if name not in expected]
    return fit


def mismatch_message(fit: StateDictFit, checkpoint: str, config: str) -> str:
    """One line: which checkpoint does not fit which config's model, and how."""
    return (f'checkpoint {checkpoint} does not fit the model of {config} (a checkpoint of another model or '
            f'config?): {fit.describe()}')


def load_exact(model: nn.Module, state_dict: Mapping, checkpoint: str, config: str) -> None:
    """Loads ``state_dict`` into ``model`` if every tensor fits; else raises
    :class:`CheckpointMismatchError` (:func:`mismatch_message`) and leaves the model untouched."""
    fit = compare_state_dict(model, state_dict)
    if not fit.exact:
        raise CheckpointMismatchError(mismatch_message(fit, checkpoint, config))
    model.load_state_dict(state_dict, strict=False)  # strict but for BatchNorm's step counters


def fill_from_model(model: nn.Module, state_dict: Mapping, fit: StateDictFit) -> OrderedDict:
    """``state_dict`` made to fit ``model`` exactly: the model's own tensors where the checkpoint's are
    missing or of another shape, the checkpoint's tensors the model does not have left out."""
    own = model.state_dict()
    filled = OrderedDict((name, value) for name, value in state_dict.items() if name in own)
    for name in fit.missing:
        filled[name] = own[name]
    for name, _, _ in fit.misshaped:
        filled[name] = own[name]
    metadata = getattr(state_dict, '_metadata', None)
    if metadata is not None:
        filled._metadata = metadata
    return filled


def partial_load_summary(fit: StateDictFit, checkpoint: str) -> str:
    """One line: what a partial load of ``checkpoint`` (:func:`fill_from_model`) leaves out."""
    return (f"loaded {fit.num_loaded} of the model's {fit.total} tensors from {checkpoint}; not loaded (kept as "
            f'initialised): {fit.describe()}')
