"""PASCAL VOC's segmentation conventions, shared by every writer of VOC-layout data (the COCO -> VOC
converter, the synthetic generator): the 21 class names, the ignore index, the colour palette and the
palette-PNG mask writer (what mmseg's VOC loader and VOC's own masks use)."""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

__all__ = ['IGNORE_INDEX', 'VOC_CLASSES', 'save_label_png', 'voc_palette']

#: PASCAL VOC's 21 classes, in label order (mmseg's ``PascalVOCDataset`` names).
VOC_CLASSES = ('background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
               'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa',
               'train', 'tvmonitor')
#: The label of pixels that count for no class (VOC's object borders).
IGNORE_INDEX = 255


def voc_palette() -> list[int]:
    """The 256-colour PASCAL VOC palette as a flat ``[r, g, b, ...]`` list (index 255 is cream)."""
    palette = []
    for index in range(256):
        r = g = b = 0
        code = index
        for bit in range(8):  # VOC's colour map spreads the index bits over the three channels' MSBs
            r |= ((code >> 0) & 1) << (7 - bit)
            g |= ((code >> 1) & 1) << (7 - bit)
            b |= ((code >> 2) & 1) << (7 - bit)
            code >>= 3
        palette += [r, g, b]
    return palette


def save_label_png(labels: np.ndarray, path: str | os.PathLike, palette: list[int] | None = None) -> None:
    """Writes a class-index map [H, W] uint8 as a palette PNG (VOC's colours unless ``palette`` is given)."""
    image = Image.fromarray(np.asarray(labels, dtype=np.uint8)).convert('P')
    image.putpalette(voc_palette() if palette is None else palette)
    image.save(path, format='PNG')
