"""COCO-format detection data that fails loudly: the annotation file is checked for structure when the
data set is built, and an image that cannot be read stops the run naming it.

mmdet's ``CocoDataset`` fails on a malformed annotation file with a ``JSONDecodeError`` or ``KeyError`` that
names neither the file nor the entry, drops boxes that lie outside their image without a word, and on a
missing or corrupt image ends in ``FileNotFoundError`` / ``AssertionError: failed to load image``.
:class:`CheckedCocoDataset` (the type of our detection configs' data sets) raises
:class:`~mvdense.datasets.checks.DataError` ``"bad data: <file>: <problem>"`` instead, naming the first
offending entry of the annotation file or the image file.
"""
from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

from mmdet.datasets import CocoDataset
from mmdet.datasets.api_wrappers import COCO
from mmdet.registry import DATASETS
from mmengine.fileio import get_local_path
from mmengine.logging import print_log

from .checks import DataError, read_image

__all__ = ['CheckedCocoDataset', 'check_coco_annotations', 'load_coco_annotations']

#: How far (pixels) a box may reach past its image's border (rounding in the annotation tools).
BORDER_TOLERANCE = 1.0
SECTIONS = ('images', 'annotations', 'categories')


def load_coco_annotations(path: str, backend_args: dict | None = None) -> dict:
    """The parsed JSON of a COCO annotation file; :class:`DataError` if it is not JSON or not an object."""
    try:
        with get_local_path(path, backend_args=backend_args) as local_path, open(local_path, 'rb') as file:
            data = json.load(file)
    except FileNotFoundError:
        raise DataError.about(path, 'annotation file not found') from None
    except json.JSONDecodeError as error:
        raise DataError.about(path, f'not valid JSON ({error.msg}: line {error.lineno}, column '
                                    f'{error.colno})') from None
    except UnicodeDecodeError:
        raise DataError.about(path, 'not a text (JSON) file') from None
    if not isinstance(data, dict):
        raise DataError.about(path, f'the file holds a JSON {type(data).__name__}, expected an object with '
                                    f'{", ".join(SECTIONS)}')
    return data


def check_coco_annotations(data: dict, path: str, classes: Sequence[str] = (),
                           require_annotations: bool = True) -> list[str]:
    """Checks a parsed COCO detection file; raises :class:`DataError` naming ``path`` and the first
    offending entry.

    Checked: the ``images``, ``annotations`` and ``categories`` lists are present (``annotations`` may be
    absent when not ``require_annotations``: image-info files for test-server submissions); images have a
    unique id, a file name and a positive width and height; categories a unique id and a name; each
    annotation a unique id, a known ``image_id`` and ``category_id``, an ``area`` and a ``bbox``
    ``[x, y, width, height]`` of four finite numbers with no negative size, inside its image (up to
    :data:`BORDER_TOLERANCE` pixels); every name in ``classes`` is a category's name.

    Returns one line per box of zero width or height (COCO 2017 train has two): mmdet leaves such boxes
    out of training, so they are reported rather than refused.
    """
    for section in SECTIONS:
        if section not in data and (section != 'annotations' or require_annotations):
            raise DataError.about(path, f"no '{section}' list (a COCO detection file has "
                                        f'{", ".join(SECTIONS)})')
        if not isinstance(data.get(section, []), list):
            raise DataError.about(path, f"'{section}' is a JSON {type(data[section]).__name__}, expected a list")
    images = _check_images(data['images'], path)
    categories = _check_categories(data['categories'], path)
    zero_sized = _check_annotations(data.get('annotations', []), images, categories, path)
    _check_classes(classes, categories.values(), path)
    return zero_sized


def _entry(section: str, index: int, entry: Any) -> str:
    """How a message names an entry: ``annotations[12] (id 918)``."""
    identifier = entry.get('id') if isinstance(entry, dict) else None
    return f'{section}[{index}]' + (f' (id {identifier})' if identifier is not None else '')


def _require_keys(entry: Any, keys: Iterable[str], section: str, index: int, path: str) -> None:
    if not isinstance(entry, dict):
        raise DataError.about(path, f'{section}[{index}] is a JSON {type(entry).__name__}, expected an object')
    missing = [key for key in keys if key not in entry]
    if missing:
        raise DataError.about(path, f'{_entry(section, index, entry)} has no {", ".join(map(repr, missing))}')


def _unique_id(entry: dict, seen: set, section: str, index: int, path: str) -> None:
    identifier = entry['id']
    if not isinstance(identifier, int | str) or isinstance(identifier, bool):
        raise DataError.about(path, f'{section}[{index}] has the id {identifier!r}, expected an integer or a string')
    if identifier in seen:
        raise DataError.about(path, f'{_entry(section, index, entry)}: the id is not unique')
    seen.add(identifier)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_images(images: list, path: str) -> dict:
    """``{id: (width, height)}`` of the images."""
    sizes: dict = {}
    seen: set = set()
    for index, image in enumerate(images):
        _require_keys(image, ('id', 'file_name', 'width', 'height'), 'images', index, path)
        _unique_id(image, seen, 'images', index, path)
        if not isinstance(image['file_name'], str) or not image['file_name']:
            raise DataError.about(path, f'{_entry("images", index, image)} has the file_name '
                                        f'{image["file_name"]!r}')
        width, height = image['width'], image['height']
        if not (_is_number(width) and _is_number(height) and width > 0 and height > 0):
            raise DataError.about(path, f'{_entry("images", index, image)} ({image["file_name"]}) has the size '
                                        f'{width!r} x {height!r}, expected positive numbers')
        sizes[image['id']] = (width, height)
    return sizes


def _check_categories(categories: list, path: str) -> dict:
    """``{id: name}`` of the categories."""
    names: dict = {}
    seen: set = set()
    for index, category in enumerate(categories):
        _require_keys(category, ('id', 'name'), 'categories', index, path)
        _unique_id(category, seen, 'categories', index, path)
        names[category['id']] = category['name']
    return names


def _check_annotations(annotations: list, images: dict, categories: dict, path: str) -> list[str]:
    zero_sized, seen = [], set()
    for index, annotation in enumerate(annotations):
        _require_keys(annotation, ('id', 'image_id', 'category_id', 'bbox', 'area'), 'annotations', index, path)
        _unique_id(annotation, seen, 'annotations', index, path)
        where = _entry('annotations', index, annotation)
        if annotation['image_id'] not in images:
            raise DataError.about(path, f'{where} refers to image_id {annotation["image_id"]!r}, which is not '
                                        "among the 'images'")
        if annotation['category_id'] not in categories:
            raise DataError.about(path, f'{where} has category_id {annotation["category_id"]!r}, which is not '
                                        f"among the 'categories' (ids {_shown(sorted(categories, key=str))})")
        if not _is_number(annotation['area']):
            raise DataError.about(path, f'{where} has the area {annotation["area"]!r}, expected a number')
        problem = _box_problem(annotation['bbox'], images[annotation['image_id']])
        if problem == 'zero size':
            zero_sized.append(f'{where}: bbox {annotation["bbox"]} has zero width or height')
        elif problem:
            raise DataError.about(path, f'{where}, image_id {annotation["image_id"]}: {problem}')
    return zero_sized


def _box_problem(box: Any, image_size: tuple) -> str | None:
    """What is wrong with a COCO box ``[x, y, width, height]`` of an image ``(width, height)``: None,
    ``'zero size'`` or a description."""
    if not (isinstance(box, list) and len(box) == 4 and all(map(_is_number, box))):
        return f'bbox {box!r} is not four finite numbers [x, y, width, height]'
    x, y, width, height = box
    if width < 0 or height < 0:
        return f'bbox {box} has a negative {"width" if width < 0 else "height"} (COCO boxes are [x, y, width, ' \
               'height], not corners)'
    if width == 0 or height == 0:
        return 'zero size'
    image_width, image_height = image_size
    if (x < -BORDER_TOLERANCE or y < -BORDER_TOLERANCE or x + width > image_width + BORDER_TOLERANCE
            or y + height > image_height + BORDER_TOLERANCE):
        return (f'bbox {box} (x, y, width, height) reaches outside its {image_width} x {image_height} image '
                '(wrong image size, or corners written as width and height?)')
    return None


def _check_classes(classes: Sequence[str], names: Iterable[str], path: str) -> None:
    known = set(names)
    missing = [name for name in classes if name not in known]
    if missing:
        raise DataError.about(path, f"the config's classes {_shown(missing)} are not among the file's "
                                    f'categories ({_shown(sorted(known, key=str))})')


def _shown(values: Sequence, limit: int = 10) -> str:
    text = ', '.join(map(str, values[:limit]))
    return text + (f', ... ({len(values)} in all)' if len(values) > limit else '')


def checked_coco_api(path: str, classes: Sequence[str] = (), require_annotations: bool = True,
                     backend_args: dict | None = None) -> COCO:
    """mmdet's COCO API over the annotation file ``path``, parsed and checked
    (:func:`check_coco_annotations`); boxes of zero size are logged in one warning line."""
    data = load_coco_annotations(path, backend_args)
    zero_sized = check_coco_annotations(data, path, classes, require_annotations)
    if zero_sized:
        print_log(f'{path}: {len(zero_sized)} box(es) of zero width or height are left out of training, the '
                  f'first: {zero_sized[0]}', logger='current', level=logging.WARNING)
    api = COCO()
    api.dataset = data
    api.createIndex()
    api.img_ann_map, api.cat_img_map = api.imgToAnns, api.catToImgs
    return api


@DATASETS.register_module()
class CheckedCocoDataset(CocoDataset):
    """mmdet's ``CocoDataset`` that stops on bad data with :class:`~mvdense.datasets.checks.DataError`
    ``"bad data: <file>: <problem>"``.

    * The annotation file is checked when the data set is built (:func:`check_coco_annotations`): invalid
      JSON, missing sections, broken entries, boxes outside their image or of negative size, unknown
      image or category ids, and config classes that the file does not have are named with the first
      offending entry. (Image-info files without annotations, for test-server submissions, are refused:
      read them with mmdet's ``CocoDataset``.)
    * A sample whose pipeline fails because its image is missing, empty or undecodable names the image.
      Any other failure is raised as it is.
    """

    def load_data_list(self) -> list[dict]:
        api = checked_coco_api(self.ann_file, self.metainfo['classes'], backend_args=self.backend_args)
        self.COCOAPI = lambda _path: api  # mmdet's loader would parse the file again, unchecked
        try:
            return super().load_data_list()
        finally:
            del self.COCOAPI

    def prepare_data(self, idx: int) -> Any:
        try:
            return super().prepare_data(idx)
        except DataError:
            raise
        except Exception:
            read_image(self.get_data_info(idx)['img_path'], backend_args=self.backend_args)  # names a bad image
            raise
