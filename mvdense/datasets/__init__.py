"""Datasets: a deterministic synthetic shapes dataset (COCO + VOC layouts), the COCO -> VOC-class mask
converter, and segmentation loading transforms that fail loudly on bad data."""
from .synthetic import CLASSES, SHAPES, generate_synthetic_dataset
from .transforms import CheckedLoadAnnotations, CheckedLoadImageFromFile, SegDataError, ValidateSegMap

__all__ = ['CLASSES', 'SHAPES', 'CheckedLoadAnnotations', 'CheckedLoadImageFromFile', 'SegDataError',
           'ValidateSegMap', 'generate_synthetic_dataset']
