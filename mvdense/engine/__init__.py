"""Engine-level fixes for the pinned OpenMMLab stack: safe checkpoint I/O
(:mod:`mvdense.engine.checkpoint`), and fast CPU training: bfloat16 mixed precision
(:mod:`mvdense.engine.optim`) and channels-last weights (:mod:`mvdense.engine.hooks`)."""
from .checkpoint import (
           AtomicLocalBackend,
           UnsafeCheckpointError,
           load_local_checkpoint,
           register_checkpoint_io,
)
from .hooks import ChannelsLastHook
from .optim import CpuBf16OptimWrapper

__all__ = ['AtomicLocalBackend', 'ChannelsLastHook', 'CpuBf16OptimWrapper', 'UnsafeCheckpointError',
           'load_local_checkpoint', 'register_checkpoint_io']
