"""Engine-level fixes for the pinned OpenMMLab stack: safe checkpoint I/O
(:mod:`mvdense.engine.checkpoint`), checkpoints checked against the model they are loaded into
(:mod:`mvdense.engine.checkpoint_fit`), training guards (a non-finite loss stops the run, deterministic runs
resume exactly) and fast CPU training: bfloat16 mixed precision (:mod:`mvdense.engine.optim`) and
channels-last weights (:mod:`mvdense.engine.hooks`)."""
from .checkpoint import (
           AtomicLocalBackend,
           UnsafeCheckpointError,
           load_local_checkpoint,
           register_checkpoint_io,
)
from .checkpoint_fit import (
           CheckpointMismatchError,
           StateDictFit,
           checkpoint_state_dict,
           compare_state_dict,
           fill_from_model,
           load_exact,
           mismatch_message,
           partial_load_summary,
)
from .hooks import ChannelsLastHook, EpochSeedHook, FiniteLossHook, InferenceModelHook, NonFiniteLossError
from .optim import CpuBf16OptimWrapper

__all__ = ['AtomicLocalBackend', 'ChannelsLastHook', 'CheckpointMismatchError', 'CpuBf16OptimWrapper', 'EpochSeedHook',
           'FiniteLossHook', 'InferenceModelHook', 'NonFiniteLossError', 'StateDictFit', 'UnsafeCheckpointError', 'checkpoint_state_dict',
           'compare_state_dict', 'fill_from_model', 'load_exact', 'load_local_checkpoint', 'mismatch_message',
           'partial_load_summary', 'register_checkpoint_io']
