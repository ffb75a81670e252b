"""Datasets: a deterministic synthetic shapes dataset (COCO + VOC layouts), the COCO -> VOC-class mask
converter, PASCAL VOC's conventions (classes, palette, mask PNGs) and segmentation loading transforms that
fail loudly on bad data."""
from .synthetic import CLASSES, SHAPES, generate_synthetic_dataset
from .transforms import CheckedLoadAnnotations, CheckedLoadImageFromFile, SegDataError, ValidateSegMap
from .voc import IGNORE_INDEX, VOC_CLASSES, save_label_png, voc_palette

__all__ = ['CLASSES', 'IGNORE_INDEX', 'SHAPES', 'VOC_CLASSES', 'CheckedLoadAnnotations', 'CheckedLoadImageFromFile',
           'SegDataError', 'ValidateSegMap', 'generate_synthetic_dataset', 'save_label_png', 'voc_palette']
