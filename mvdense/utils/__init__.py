"""Utilities that are not models: model complexity."""
from .complexity import count_madds

__all__ = ['count_madds']
