"""COCO instance annotations -> VOC-style semantic masks (the extra training set of DeepLabv3-MobileViT).

ml-cvnets trains its PASCAL VOC models on VOC 2012 train + SBD + COCO 2017 train relabelled with the 20 VOC
classes, preprocessed as in Sachin Mehta's EdgeNets (``data_loader/segmentation/coco.py``), which this
follows:

* a COCO category whose name maps to a VOC class (:data:`COCO_TO_VOC`) paints its instances with that
  class index; every other category (and unannotated pixels) is background (0);
* where instances overlap, the one listed first in the annotation file keeps the pixel;
* crowd regions are painted like any other instance;
* images whose shorter side is below ``min_side`` (256) or that hold no pixel of a mapped class are
  skipped.

Output, a VOC-layout root that mmseg's ``PascalVOCDataset`` reads like VOC itself::

    <out_root>/JPEGImages/<stem>.jpg                 links to (or copies of) the COCO images
    <out_root>/SegmentationClass/<stem>.png          palette PNG of class indices (VOC colours)
    <out_root>/ImageSets/Segmentation/<split>.txt    the kept stems, one a line

The class list and the name mapping are arguments, so any COCO-format dataset (e.g. the synthetic shapes)
can be converted with its own classes.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from pycocotools import mask as mask_utils

from .voc import VOC_CLASSES, save_label_png, voc_palette

__all__ = ['COCO_TO_VOC', 'ConversionSummary', 'category_labels', 'convert_coco_to_voc', 'decode_segmentation',
           'render_label_map']

#: COCO category name -> VOC class name, for the 20 COCO categories that are VOC classes.
COCO_TO_VOC: dict[str, str] = {
    'airplane': 'aeroplane', 'bicycle': 'bicycle', 'bird': 'bird', 'boat': 'boat', 'bottle': 'bottle',
    'bus': 'bus', 'car': 'car', 'cat': 'cat', 'chair': 'chair', 'cow': 'cow', 'dining table': 'diningtable',
    'dog': 'dog', 'horse': 'horse', 'motorcycle': 'motorbike', 'person': 'person',
    'potted plant': 'pottedplant', 'sheep': 'sheep', 'couch': 'sofa', 'train': 'train', 'tv': 'tvmonitor',
}

IMAGE_MODES = ('symlink', 'copy')


@dataclass
class ConversionSummary:
    """What :func:`convert_coco_to_voc` did."""

    kept: list[str] = field(default_factory=list)  # stems written, in annotation-file order
    skipped_small: int = 0  # shorter side below min_side
    skipped_unlabelled: int = 0  # fewer than min_labelled_pixels of a mapped class
    image_set: str = ''  # path of the written image set list

    @property
    def num_kept(self) -> int:
        return len(self.kept)


def category_labels(categories: Sequence[Mapping], classes: Sequence[str],
                    name_map: Mapping[str, str] | None = None) -> dict[int, int]:
    """COCO category id -> label index in ``classes`` for the categories that map to a class.

    ``name_map`` maps COCO names to class names; None maps each category to the class of the same name.
    A mapping onto a name that is not in ``classes`` is an error (a typo would silently drop a class).
    """
    class_index = {name: index for index, name in enumerate(classes)}
    if name_map is not None:
        unknown = sorted(set(name_map.values()) - set(class_index))
        if unknown:
            raise ValueError(f'the name mapping targets {unknown}, which are not among the classes {list(classes)}')
    labels = {}
    for category in categories:
        name = category['name']
        target = name_map.get(name) if name_map is not None else (name if name in class_index else None)
        if target is not None:
            labels[int(category['id'])] = class_index[target]
    return labels


def render_label_map(annotations: Sequence[Mapping], height: int, width: int,
                     labels: Mapping[int, int]) -> np.ndarray:
    """Paints the instances of mapped categories into a uint8 [height, width] label map (0 = background).

    Annotations are painted in order and never overwrite a labelled pixel, so the first one listed wins.
    Segmentations may be polygons, uncompressed or compressed RLE (pycocotools decodes all three).
    """
    label_map = np.zeros((height, width), np.uint8)
    for annotation in annotations:
        label = labels.get(int(annotation['category_id']))
        if label is None or not annotation.get('segmentation'):
            continue
        instance = decode_segmentation(annotation['segmentation'], height, width)
        label_map[instance & (label_map == 0)] = label
    return label_map


def decode_segmentation(segmentation: list | dict, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` (polygons, uncompressed or compressed RLE) -> bool mask [height, width]."""
    if isinstance(segmentation, list):  # polygons: one RLE per part, merged
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation['counts'], list):  # uncompressed RLE (crowd regions)
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:  # compressed RLE
        rle = segmentation
    return mask_utils.decode(rle).astype(bool)


def _annotations_by_image(coco: Mapping) -> dict[int, list[Mapping]]:
    by_image: dict[int, list[Mapping]] = {}
    for annotation in coco.get('annotations', []):
        by_image.setdefault(int(annotation['image_id']), []).append(annotation)
    return by_image


def _place_image(source: str, target: str, image_mode: str) -> None:
    """Links (absolute symlink) or copies ``source`` to ``target``, replacing what was there."""
    if osp.lexists(target):
        os.remove(target)
    if image_mode == 'symlink':
        os.symlink(osp.abspath(source), target)
    else:
        shutil.copyfile(source, target)


def convert_coco_to_voc(ann_file: str, img_dir: str, out_root: str, split: str = 'train2017',
                        classes: Sequence[str] = VOC_CLASSES, name_map: Mapping[str, str] | None = COCO_TO_VOC,
                        min_side: int = 256, min_labelled_pixels: int = 1,
                        image_mode: str = 'symlink',
                        track: Callable[[Sequence], Iterable] | None = None) -> ConversionSummary:
    """Converts one COCO annotation file into VOC-layout masks under ``out_root`` (see the module docstring).

    Args:
        ann_file: COCO instances JSON (``annotations/instances_train2017.json``).
        img_dir: Folder of its images (``train2017/``); ``file_name`` is relative to it.
        out_root: Output root; created if missing. Existing files of the same stems are replaced.
        split: Name of the image set list (``ImageSets/Segmentation/<split>.txt``).
        classes: Label names in index order; index 0 is the background.
        name_map: COCO category name -> class name; None maps categories to classes of the same name.
        min_side: Skip images whose shorter side is smaller (EdgeNets: 256).
        min_labelled_pixels: Skip images with fewer pixels of a mapped class.
        image_mode: ``'symlink'`` (absolute links to ``img_dir``) or ``'copy'``.
        track: wraps the sequence of images, e.g. ``mmengine.utils.track_iter_progress`` for a progress bar.
    """
    if image_mode not in IMAGE_MODES:
        raise ValueError(f'image_mode must be one of {IMAGE_MODES}, got {image_mode!r}')
    if len(classes) > 256:
        raise ValueError(f'{len(classes)} classes do not fit in 8-bit masks')
    with open(ann_file) as f:
        coco = json.load(f)
    labels = category_labels(coco.get('categories', []), classes, name_map)
    if not labels:
        raise ValueError(f'{ann_file}: no category maps to any of the classes {list(classes)}')

    mask_dir = osp.join(out_root, 'SegmentationClass')
    jpeg_dir = osp.join(out_root, 'JPEGImages')
    set_dir = osp.join(out_root, 'ImageSets', 'Segmentation')
    for folder in (mask_dir, jpeg_dir, set_dir):
        os.makedirs(folder, exist_ok=True)

    palette = voc_palette()
    by_image = _annotations_by_image(coco)
    summary = ConversionSummary(image_set=osp.join(set_dir, f'{split}.txt'))
    for image in (track or iter)(coco.get('images', [])):
        height, width = int(image['height']), int(image['width'])
        if min(height, width) < min_side:
            summary.skipped_small += 1
            continue
        label_map = render_label_map(by_image.get(int(image['id']), []), height, width, labels)
        if np.count_nonzero(label_map) < max(min_labelled_pixels, 1):
            summary.skipped_unlabelled += 1
            continue
        source = osp.join(img_dir, image['file_name'])
        if not osp.isfile(source):
            raise FileNotFoundError(f'{ann_file}: image {image["file_name"]!r} is not in {img_dir}')
        stem = osp.splitext(osp.basename(image['file_name']))[0]
        # mmseg's VOC dataset looks for <stem>.jpg; decoders read the content, whatever the suffix says.
        _place_image(source, osp.join(jpeg_dir, f'{stem}.jpg'), image_mode)
        save_label_png(label_map, osp.join(mask_dir, f'{stem}.png'), palette)
        summary.kept.append(stem)

    with open(summary.image_set, 'w') as f:
        f.write(''.join(f'{stem}\n' for stem in summary.kept))
    return summary
