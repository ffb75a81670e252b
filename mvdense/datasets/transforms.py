"""Loading transforms that stop on bad segmentation data with one message naming the file and the problem.

mmseg's own loaders fail on a bad file with an error that often names neither the file nor the problem
(a corrupt PNG gives ``cannot identify image file <_io.BytesIO ...>``), and a mask with labels outside the
class range trains silently (or breaks the loss much later with a CUDA assert). The pipeline of our
segmentation configs therefore starts with::

    dict(type='CheckedLoadImageFromFile'),
    dict(type='CheckedLoadAnnotations'),
    dict(type='ValidateSegMap', num_classes=21),

Each raises :class:`SegDataError` ``"bad data: <path>: <what is wrong>"``, a
:class:`~mvdense.datasets.checks.DataError` (see there for how the tools report it in one line).
"""
from __future__ import annotations

import numpy as np
from mmcv.transforms import BaseTransform, LoadImageFromFile
from mmengine import fileio
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.registry import TRANSFORMS

from .checks import DataError, data_error_summary, decoding_problem

__all__ = ['CheckedLoadAnnotations', 'CheckedLoadImageFromFile', 'SegDataError', 'ValidateSegMap',
           'data_error_summary']


class SegDataError(DataError):
    """A segmentation image or mask that cannot be used: missing, undecodable, or with invalid contents."""


def _require_file(path: str, what: str, backend_args: dict | None) -> None:
    if not fileio.exists(path, backend_args=backend_args):
        raise SegDataError.about(path, f'{what} not found')


@TRANSFORMS.register_module()
class CheckedLoadImageFromFile(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` that raises :class:`SegDataError` for a missing or undecodable image.

    ``ignore_empty=True`` keeps mmcv's behaviour of returning None (the dataset then draws another sample).
    """

    def transform(self, results: dict) -> dict | None:
        path = results['img_path']
        if not self.ignore_empty:
            _require_file(path, 'image file', self.backend_args)
        try:
            return super().transform(results)
        except Exception as error:  # cv2, Pillow and turbojpeg raise unrelated types
            raise SegDataError.about(path, f'cannot decode the image (corrupt or not an image file): '
                                           f'{decoding_problem(error)}') from error


@TRANSFORMS.register_module()
class CheckedLoadAnnotations(LoadAnnotations):
    """mmseg's ``LoadAnnotations`` that raises :class:`SegDataError` for a missing or undecodable mask."""

    def _load_seg_map(self, results: dict) -> None:
        path = results['seg_map_path']
        _require_file(path, 'segmentation mask', self.backend_args)
        try:
            super()._load_seg_map(results)
        except Exception as error:  # Pillow and cv2 raise unrelated types
            raise SegDataError.about(path, 'cannot decode the segmentation mask (corrupt or not an image '
                                           f'file): {decoding_problem(error)}') from error


@TRANSFORMS.register_module()
class ValidateSegMap(BaseTransform):
    """Checks a loaded mask against its image and the class range; put it right after the loaders.

    Args:
        num_classes: Valid labels are ``0 .. num_classes - 1`` (after the dataset's label map and
            ``reduce_zero_label``, which the loader applies).
        ignore_index: The one other value allowed (VOC's 255 border).

    Raises :class:`SegDataError` when the mask is not one channel of class indices (e.g. a colour PNG saved
    as RGB), when its size differs from the image's, or when it holds labels outside the range. Keys read:
    ``gt_seg_map`` [H, W] uint8, ``ori_shape`` (else ``img_shape``), ``seg_map_path``; nothing is modified.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if num_classes < 1:
            raise ValueError(f'num_classes must be positive, got {num_classes}')
        super().__init__()
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def transform(self, results: dict) -> dict:
        path = results.get('seg_map_path', '<mask>')
        seg_map = results['gt_seg_map']
        if seg_map.ndim != 2:
            raise SegDataError.about(path, f'the mask has shape {seg_map.shape}, expected one channel of '
                                           'class indices (a palette or grayscale PNG, not RGB colours)')
        # The image as loaded: a test pipeline may already have resized it (the mask is scored at this size).
        image_shape = tuple(results.get('ori_shape', results.get('img_shape', seg_map.shape)))[:2]
        if seg_map.shape != image_shape:
            raise SegDataError.about(path, f'the mask is {seg_map.shape[0]}x{seg_map.shape[1]} (HxW) but its '
                                           f'image {results.get("img_path", "")} is '
                                           f'{image_shape[0]}x{image_shape[1]}')
        invalid = self.invalid_labels(seg_map)
        if invalid:
            shown = ', '.join(map(str, invalid[:10])) + (', ...' if len(invalid) > 10 else '')
            raise SegDataError.about(path, f'the mask holds labels {shown} outside the {self.num_classes} '
                                           f'classes 0..{self.num_classes - 1} ({self.ignore_index} = ignore)')
        return results

    def invalid_labels(self, seg_map: np.ndarray) -> list[int]:
        """The label values of a [H, W] mask that are neither a class index nor ``ignore_index``, sorted."""
        counts = np.bincount(seg_map.ravel(), minlength=self.num_classes)
        present = np.flatnonzero(counts)
        return [int(v) for v in present if v >= self.num_classes and v != self.ignore_index]

    def __repr__(self) -> str:
        return f'{type(self).__name__}(num_classes={self.num_classes}, ignore_index={self.ignore_index})'
