"""Datasets for the demos and tests: a deterministic synthetic shapes dataset (COCO + VOC layouts)."""
from .synthetic import CLASSES, SHAPES, generate_synthetic_dataset

__all__ = ['CLASSES', 'SHAPES', 'generate_synthetic_dataset']
