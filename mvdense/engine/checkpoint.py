"""Safe and atomic checkpoint I/O for mmengine 0.10.7 under torch >= 2.6.

* Loading. torch >= 2.6 defaults ``torch.load`` to ``weights_only=True``, which refuses mmengine's own
  checkpoints (their message hub holds ``HistoryBuffer`` objects and numpy arrays), so test, resume and
  ``load_from`` break. We keep ``weights_only`` on and allow-list exactly those types, then register a
  local-file loader with mmengine that turns torch's refusal of anything else into one clear error
  naming the file and the refused global.
  mmengine's ``HistoryBuffer.__getstate__`` also pickles its class-wide table of statistics *functions*
  (``HistoryBuffer.min`` etc., stored as ``getattr(HistoryBuffer, 'min')``); allowing ``getattr`` would
  open the door to anything, so we make the buffer pickle its data only. The functions are class-level
  and registered by code at import, so nothing is lost (``__setstate__`` tolerates their absence).
* Saving. mmengine writes a checkpoint straight to its final path; a run killed mid-write leaves a
  truncated file that ``--resume`` then trips over. Our local file backend writes to a temporary file
  in the same directory and renames it into place (atomic on POSIX).
"""
from __future__ import annotations

import os
import os.path as osp
import pickle
import re
import tempfile
from pathlib import Path

import numpy as np
import torch
from mmengine.fileio.backends import LocalBackend, register_backend
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds a pickled object outside the allow-list."""


def _numpy_globals() -> list:
    """What a pickled numpy array or scalar refers to (module paths differ between numpy 1 and 2)."""
    multiarray = getattr(np, '_core', np.core).multiarray
    dtype_classes = [type(np.dtype(code)) for code in '?bBhHiIlLqQefdgFDGUSO']
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype, *dtype_classes]


def checkpoint_safe_globals() -> list:
    """The non-tensor types that mmengine checkpoints written by our training hold."""
    return [HistoryBuffer, *_numpy_globals()]


def _history_buffer_state(buffer: HistoryBuffer) -> dict:
    """A HistoryBuffer's pickled state: its data (max length, values, counts), no functions."""
    return {key: value for key, value in buffer.__dict__.items() if key != 'statistics_methods'}


def load_local_checkpoint(filename: str | Path, map_location=None) -> dict:
    """Loads a local checkpoint with ``weights_only=True`` and clear errors naming the file."""
    filename = osp.expanduser(str(filename))
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint not found: {filename}')
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
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
    torch.serialization.add_safe_globals(checkpoint_safe_globals())
    CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint, force=True)
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
