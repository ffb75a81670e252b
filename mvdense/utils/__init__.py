"""Utilities that are not models: model complexity."""
from .complexity import count_madds, detector_madds

__all__ = ['count_madds', 'detector_madds']
