"""Checkpoint I/O under torch >= 2.6: mmengine checkpoints load with weights_only on, anything else is
refused with a clear error, and writes are atomic."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner.checkpoint import _load_checkpoint, save_checkpoint

from mvdense.engine import (
    AtomicLocalBackend,
    UnsafeCheckpointError,
    load_local_checkpoint,
    register_checkpoint_io,
)


class Payload:
    """Stands for an arbitrary pickled object (which could run code when unpickled)."""

    def __init__(self):
        self.command = 'echo pwned'


@pytest.fixture(autouse=True)
def _installed():
    register_checkpoint_io()


def _mmengine_like_checkpoint() -> dict:
    hub = MessageHub.get_instance('test-checkpoint-io')
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/loss', np.float64(1.25))
    return {
        'meta': {'epoch': 3, 'iter': 30, 'cfg': 'model = dict()', 'seed': np.int64(7),
                 'dataset_meta': {'classes': ('a', 'b')}},
        'state_dict': {'w': torch.ones(2)},
        'message_hub': hub.state_dict(),
        'optimizer': {'state': {}, 'param_groups': [{'lr': 0.1, 'params': [0]}]},
        'param_schedulers': [{'last_epoch': 3, 'base_lrs': [0.1]}],
    }


def test_mmengine_checkpoint_loads_with_weights_only(tmp_path):
    path = tmp_path / 'epoch_3.pth'
    save_checkpoint(_mmengine_like_checkpoint(), str(path))
    loaded = _load_checkpoint(str(path), map_location='cpu')  # goes through mmengine's loader registry
    assert loaded['meta']['epoch'] == 3
    assert isinstance(loaded['message_hub']['log_scalars']['train/loss'], HistoryBuffer)
    assert loaded['message_hub']['log_scalars']['train/loss'].current() == 1.25
    assert torch.equal(loaded['state_dict']['w'], torch.ones(2))


def test_arbitrary_object_is_refused_with_file_and_global_named(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'payload': Payload()}, path)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_local_checkpoint(path)
    assert str(path) in str(info.value) and 'Payload' in str(info.value)
    with pytest.raises(UnsafeCheckpointError):
        _load_checkpoint(str(path))  # mmengine's path (test, resume, load_from) refuses it too


def test_truncated_checkpoint_error_names_the_file(tmp_path):
    buffer = io.BytesIO()
    torch.save({'w': torch.ones(1000)}, buffer)
    path = tmp_path / 'cut.pth'
    path.write_bytes(buffer.getvalue()[:500])
    with pytest.raises(RuntimeError, match='cut.pth'):
        load_local_checkpoint(path)


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_local_checkpoint(tmp_path / 'nope.pth')


def test_atomic_put_keeps_old_file_when_write_fails(tmp_path):
    path = tmp_path / 'ckpt.pth'
    backend = AtomicLocalBackend()
    backend.put(b'old', str(path))
    with pytest.raises(TypeError):
        backend.put(None, str(path))  # the write fails half way
    assert path.read_bytes() == b'old'
    assert os.listdir(tmp_path) == ['ckpt.pth']  # no temporary left behind
    backend.put(b'new', str(path))
    assert path.read_bytes() == b'new'
