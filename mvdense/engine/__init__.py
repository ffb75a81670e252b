"""Engine-level fixes for the pinned OpenMMLab stack (see :mod:`mvdense.engine.checkpoint`)."""
from .checkpoint import (
                         AtomicLocalBackend,
                         UnsafeCheckpointError,
                         load_local_checkpoint,
                         register_checkpoint_io,
)

__all__ = ['AtomicLocalBackend', 'UnsafeCheckpointError', 'load_local_checkpoint', 'register_checkpoint_io']
