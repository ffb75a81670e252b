"""Utilities that are not models: model complexity, process memory settings."""
from .complexity import count_madds, detector_madds
from .memory import keep_freed_memory

__all__ = ['count_madds', 'detector_madds', 'keep_freed_memory']
