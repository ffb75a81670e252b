"""Safe and atomic checkpoint I/O for mmengine 0.10 under torch 2.1 to 2.14.

* Loading. torch >= 2.6 defaults ``torch.load`` to ``weights_only=True``, which refuses mmengine's own
  checkpoints (their message hub holds ``HistoryBuffer`` objects and numpy arrays), so test, resume and
  ``load_from`` break. We keep ``weights_only`` on and allow-list exactly those types, then register a
  local-file loader with mmengine that turns torch's refusal of anything else into one clear error
  naming the file and the refused global.
  torch before 2.5 lacks that allow-list API (and its ``weights_only`` unpickler cannot rebuild those
  types), so there the loader unpickles through :class:`RestrictedUnpickler`: the same allow-list (torch's
  own weights-only globals plus ours), the same refusal of every other global, the same error.
  mmengine's ``HistoryBuffer.__getstate__`` also pickles its class-wide table of statistics *functions*
  (``HistoryBuffer.min`` etc., stored as ``getattr(HistoryBuffer, 'min')``); allowing ``getattr`` would
  open the door to anything, so we make the buffer pickle its data only. The functions are class-level
  and registered by code at import, so nothing is lost (``__setstate__`` tolerates their absence).
* Saving. mmengine writes a checkpoint straight to its final path; a run killed mid-write leaves a
  truncated file that ``--resume`` then trips over. Our local file backend writes to a temporary file
  in the same directory and renames it into place (atomic on POSIX).
"""
from __future__ import annotations

import _codecs
import contextvars
import functools
import os
import os.path as osp
import pickle
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from mmengine.fileio.backends import LocalBackend, register_backend
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

# torch >= 2.5: weights_only loading with an allow-list (add_safe_globals) and its context manager.
TORCH_HAS_ALLOWLIST = (hasattr(torch.serialization, 'add_safe_globals')
                       and hasattr(torch.serialization, 'safe_globals'))


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds a pickled object outside the allow-list."""


def _numpy_globals() -> list:
    """What a pickled numpy array or scalar refers to (module paths differ between numpy 1 and 2)."""
    from numpy._core import multiarray  # numpy 2; numpy 1.26 forwards it to numpy.core.multiarray
    dtype_classes = [type(np.dtype(code)) for code in '?bBhHiIlLqQefdgFDGUSO']
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype, *dtype_classes]


def checkpoint_safe_globals() -> list:
    """The non-tensor types that mmengine checkpoints written by our training hold."""
    return [HistoryBuffer, *_numpy_globals()]


def _history_buffer_state(buffer: HistoryBuffer) -> dict:
    """A HistoryBuffer's pickled state: its data (max length, values, counts), no functions."""
    return {key: value for key, value in buffer.__dict__.items() if key != 'statistics_methods'}


def _qualified_name(obj) -> str:
    return f'{obj.__module__}.{obj.__qualname__}'


# Globals admitted on top of the allow-list for the duration of `extra_safe_globals` (old torch only).
_EXTRA_GLOBALS: contextvars.ContextVar[tuple] = contextvars.ContextVar('mvdense_extra_globals', default=())


@functools.cache
def _restricted_allow_list() -> dict:
    """What :class:`RestrictedUnpickler` admits, by pickled name: torch's weights-only globals (tensors,
    storages, dtypes, rebuild functions), ``_codecs.encode`` (bytes in pickle protocol 2, e.g. the data of a
    numpy array) and :func:`checkpoint_safe_globals`."""
    from torch import _weights_only_unpickler

    allowed = dict(_weights_only_unpickler._get_allowed_globals())
    allowed.update({f'torch.{name}': value for name, value in vars(torch).items() if isinstance(value, torch.dtype)})
    allowed['_codecs.encode'] = _codecs.encode
    allowed.update({_qualified_name(obj): obj for obj in checkpoint_safe_globals()})
    for name, obj in list(allowed.items()):  # numpy 1 pickles numpy.core.*, numpy 2 numpy._core.*
        for old, new in (('numpy.core.', 'numpy._core.'), ('numpy._core.', 'numpy.core.')):
            if name.startswith(old):
                allowed.setdefault(new + name[len(old):], obj)
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only allow-listed globals (by name: nothing is imported) and refuses
    every other one with torch's weights-only message (``Unsupported global: GLOBAL module.name``)."""

    def find_class(self, module: str, name: str):
        key = f'{module}.{name}'
        allowed = {**_restricted_allow_list(), **{_qualified_name(obj): obj for obj in _EXTRA_GLOBALS.get()}}
        if key not in allowed:
            raise pickle.UnpicklingError(f'Unsupported global: GLOBAL {key}')
        return allowed[key]


class _RestrictedPickleModule:
    """The ``pickle_module`` torch.load unpickles with on torch without an allow-list API."""

    Unpickler = RestrictedUnpickler

    @staticmethod
    def load(file, **kwargs):
        return RestrictedUnpickler(file, **kwargs).load()


@contextmanager
def extra_safe_globals(globals_: Iterable) -> Iterator[None]:
    """Admits ``globals_`` (classes or functions) too while loading inside the block:
    ``torch.serialization.safe_globals`` where torch has it, our restricted unpickler otherwise."""
    globals_ = list(globals_)
    if TORCH_HAS_ALLOWLIST:
        with torch.serialization.safe_globals(globals_):
            yield
        return
    token = _EXTRA_GLOBALS.set((*_EXTRA_GLOBALS.get(), *globals_))
    try:
        yield
    finally:
        _EXTRA_GLOBALS.reset(token)


def _safe_torch_load(filename: str, map_location=None):
    if TORCH_HAS_ALLOWLIST:
        return torch.load(filename, map_location=map_location, weights_only=True)
    return torch.load(filename, map_location=map_location, weights_only=False, pickle_module=_RestrictedPickleModule)


def load_local_checkpoint(filename: str | Path, map_location=None) -> dict:
    """Loads a local checkpoint admitting only allow-listed types, with clear errors naming the file."""
    filename = osp.expanduser(str(filename))
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint not found: {filename}')
    try:
        return _safe_torch_load(filename, map_location=map_location)
    except pickle.UnpicklingError as error:
        refused = re.search(r'Unsupported global: GLOBAL ([\w.]+)', str(error))
        what = f'the global {refused.group(1)!r}' if refused else 'an object'
        raise UnsafeCheckpointError(
            f'refused to load {filename}: it holds {what}, which is not among the types our checkpoints '
            'contain (tensors, containers, numpy arrays, mmengine HistoryBuffer). Loading it would run '
            'arbitrary code; only convert it (outside mvdense) if you trust its source.') from None
    except RuntimeError as error:
        raise RuntimeError(f'cannot read checkpoint {filename} (truncated or not a torch checkpoint): '
                           f'{error}') from None


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend, but ``put`` writes to a temporary file and renames it into place."""

    def put(self, obj: bytes, filepath: str | Path) -> None:
        directory = osp.dirname(osp.abspath(filepath))
        os.makedirs(directory, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=directory, prefix='.tmp-', suffix=osp.basename(filepath))
        try:
            with os.fdopen(handle, 'wb') as file:
                file.write(obj)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, filepath)
        except BaseException:
            if osp.exists(temporary):
                os.remove(temporary)
            raise


def register_checkpoint_io() -> None:
    """Installs the allow-list, the safe local loader and the atomic local backend (idempotent)."""
    HistoryBuffer.__getstate__ = _history_buffer_state
    if TORCH_HAS_ALLOWLIST:
        torch.serialization.add_safe_globals(checkpoint_safe_globals())
    CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint, force=True)
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
