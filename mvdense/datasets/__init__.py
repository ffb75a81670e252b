"""Datasets: a deterministic synthetic shapes dataset (COCO + VOC layouts), the COCO -> VOC-class mask
converter, PASCAL VOC's conventions (classes, palette, mask PNGs), and data loading that fails loudly on bad
data (checked COCO detection sets, segmentation loading transforms, a checked image reader) with an opt-in
wrapper that skips bad training samples."""
from .checks import DataError, data_error_summary, read_image
from .coco import CheckedCocoDataset, check_coco_annotations, load_coco_annotations
from .synthetic import CLASSES, SHAPES, generate_synthetic_dataset
from .transforms import CheckedLoadAnnotations, CheckedLoadImageFromFile, SegDataError, ValidateSegMap
from .voc import IGNORE_INDEX, VOC_CLASSES, save_label_png, voc_palette
from .wrappers import SkipBadSamples

__all__ = ['CLASSES', 'IGNORE_INDEX', 'SHAPES', 'VOC_CLASSES', 'CheckedCocoDataset', 'CheckedLoadAnnotations',
           'CheckedLoadImageFromFile', 'DataError', 'SegDataError', 'SkipBadSamples', 'ValidateSegMap',
           'check_coco_annotations', 'data_error_summary', 'generate_synthetic_dataset', 'load_coco_annotations',
           'read_image', 'save_label_png', 'voc_palette']
