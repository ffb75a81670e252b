"""A small, deterministic synthetic dataset of filled shapes for detection and semantic segmentation.

Each image shows 1-3 filled shapes on a textured background (smooth noise, a gradient or stripes). The
class of an object is its shape kind; its colour is random, so a model has to learn shape, not colour.
Objects are large (15%-60% of the shorter image side) so that a tiny detector trained from scratch on a
CPU for a few minutes learns something.

The same images are written in two layouts under ``root``::

    meta.json                                  parameters + summary; written last, marks a complete dataset
    annotations/instances_train.json           COCO detection/instance annotations (category ids from 1)
    annotations/instances_val.json
    train/train_000000.jpg ...                 COCO images: data_prefix=dict(img='train/')
    val/val_000000.jpg ...
    VOC2012/JPEGImages/train_000000.jpg ...    the same JPEG bytes, train and val together
    VOC2012/SegmentationClass/train_000000.png palette PNG, one class index per pixel
    VOC2012/ImageSets/Segmentation/train.txt   image stems, one a line
    VOC2012/ImageSets/Segmentation/val.txt

Annotation conventions:

* Objects are drawn in order; a later object occludes an earlier one. Occlusion is limited: every object
  keeps at least ``MIN_VISIBLE_FRACTION`` of its pixels, and its visible part stays one piece without
  holes, so that a single COCO polygon describes it exactly.
* ``segmentation`` is one polygon of the *visible* part, with vertices on pixel corners (pixel ``(x, y)``
  covers ``[x, x+1) x [y, y+1)``, pycocotools' convention), lightly simplified
  (``POLYGON_TOLERANCE_PX``); ``area`` is the visible pixel count; ``bbox`` ``[x, y, w, h]`` is the tight
  box of the visible pixels (as in COCO itself, not the amodal box of the occluded shape) and therefore
  equals the polygon's extent.
* The segmentation PNG holds 0 for background, ``1..num_classes`` for the shapes (category id = class
  index) and 255 ("ignore") on a 2-pixel band straddling every boundary between regions (object /
  background and object / object), like the VOC ignore border: edge pixels are ambiguous after JPEG.

Only numpy and Pillow are needed. Every image has its own random stream derived from ``(seed, split,
index)``, so the first N images of a split do not depend on how many are generated.
"""
from __future__ import annotations

import io
import json
import os
import os.path as osp
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .voc import IGNORE_INDEX, save_label_png, voc_palette

__all__ = ['CLASSES', 'SHAPES', 'generate_synthetic_dataset']

#: Every shape kind the generator can draw; ``num_classes`` takes the first ones.
SHAPES = ('circle', 'rectangle', 'triangle', 'star', 'cross')
#: The class names of the default dataset (``num_classes=3``), in category-id order (id 1 first).
CLASSES = SHAPES[:3]

# Bump when the output for given parameters changes, so that old datasets are regenerated.
GENERATOR_VERSION = 1
SPLITS = ('train', 'val')
OBJECT_SIZE_RANGE = (0.15, 0.60)  # longest bbox side, as a fraction of the shorter image side
MAX_OBJECTS = 3
MIN_VISIBLE_FRACTION = 0.6
MIN_COLOUR_DISTANCE = 90.0  # RGB distance between an object and what lies under it
POLYGON_TOLERANCE_PX = 0.75
PLACEMENT_TRIES = 40
JPEG_QUALITY = 92


# ----------------------------------------------------------------------------------------------------
# Public entry point
# ----------------------------------------------------------------------------------------------------

def generate_synthetic_dataset(root: str | os.PathLike, num_train: int = 400, num_val: int = 100,
                               image_size: tuple[int, int] = (320, 320), seed: int = 0,
                               num_classes: int = 3,
                               track: Callable[[Sequence], Iterable] | None = None) -> dict:
    """Writes the dataset under ``root`` (COCO + VOC layouts, see the module docstring) and summarises it.

    Idempotent: when ``root/meta.json`` records the same parameters and every file is there, nothing is
    written. A ``root`` holding an older dataset of ours is replaced; a non-empty ``root`` that is not one
    of ours is refused, so that a wrong path never deletes anything. The dataset is built in a sibling
    temporary directory and moved into place, so an interrupted run never leaves a half-written ``root``.

    Args:
        root: output directory.
        num_train, num_val: number of images per split.
        image_size: ``(height, width)`` of every image.
        seed: base seed; the same parameters give byte-identical files.
        num_classes: how many shape kinds (the first ``num_classes`` of ``SHAPES``).
        track: wraps each split's sequence of image indices, e.g. ``mmengine.utils.track_iter_progress``
            for a progress bar (the tools' choice).

    Returns:
        The summary stored in ``meta.json`` (parameters, class names, instance counts, paths) plus
        ``generated``: whether this call wrote the dataset.
    """
    params = _dataset_params(num_train, num_val, image_size, seed, num_classes)
    root = osp.abspath(os.fspath(root))
    existing = _read_meta(root)
    if existing is not None and existing.get('params') == params and _is_complete(root, params):
        return {**existing['summary'], 'root': root, 'generated': False}
    if existing is None and osp.isdir(root) and os.listdir(root):
        raise FileExistsError(f'{root} is not empty and holds no synthetic dataset (no meta.json): '
                              'refusing to overwrite it')

    parent = osp.dirname(root)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f'.{osp.basename(root)}.partial-', dir=parent)
    os.chmod(staging, 0o755)  # mkdtemp makes it private; the dataset should be readable like any other
    try:
        summary = _write_dataset(staging, params, track)
        if osp.isdir(root):
            shutil.rmtree(root)
        os.replace(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {**summary, 'root': root, 'generated': True}


def _dataset_params(num_train: int, num_val: int, image_size: tuple[int, int], seed: int,
                    num_classes: int) -> dict:
    """Validates the arguments and returns them as the JSON-able dict stored in ``meta.json``."""
    if num_train < 0 or num_val < 0 or num_train + num_val == 0:
        raise ValueError(f'need a non-negative number of images and at least one: {num_train=}, {num_val=}')
    height, width = (int(side) for side in image_size)
    if min(height, width) < 64:
        raise ValueError(f'image_size must be at least 64x64, got {image_size}')
    if not 1 <= num_classes <= len(SHAPES):
        raise ValueError(f'num_classes must be in 1..{len(SHAPES)}, got {num_classes}')
    return {'generator_version': GENERATOR_VERSION, 'num_train': int(num_train), 'num_val': int(num_val),
            'image_size': [height, width], 'seed': int(seed), 'num_classes': int(num_classes)}


# ----------------------------------------------------------------------------------------------------
# Layout on disk
# ----------------------------------------------------------------------------------------------------

def _image_stem(split: str, index: int) -> str:
    return f'{split}_{index:06d}'


def _split_sizes(params: dict) -> dict[str, int]:
    return {'train': params['num_train'], 'val': params['num_val']}


def _read_meta(root: str) -> dict | None:
    """The parsed ``meta.json`` of a dataset of ours under ``root``, or None."""
    try:
        with open(osp.join(root, 'meta.json')) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and 'params' in meta and 'summary' in meta else None


def _is_complete(root: str, params: dict) -> bool:
    """Whether every file the parameters call for exists (a cheap check: existence, not content)."""
    voc = osp.join(root, 'VOC2012')
    paths = [osp.join(voc, 'ImageSets', 'Segmentation', f'{split}.txt') for split in SPLITS]
    paths += [osp.join(root, 'annotations', f'instances_{split}.json') for split in SPLITS]
    for split, count in _split_sizes(params).items():
        for index in range(count):
            stem = _image_stem(split, index)
            paths += [osp.join(root, split, f'{stem}.jpg'), osp.join(voc, 'JPEGImages', f'{stem}.jpg'),
                      osp.join(voc, 'SegmentationClass', f'{stem}.png')]
    return all(osp.isfile(path) for path in paths)


def _write_dataset(out_dir: str, params: dict, track: Callable[[Sequence], Iterable] | None = None) -> dict:
    """Renders every image of both splits into ``out_dir``; writes ``meta.json`` last."""
    voc = osp.join(out_dir, 'VOC2012')
    for folder in ('annotations', *SPLITS, osp.join(voc, 'JPEGImages'), osp.join(voc, 'SegmentationClass'),
                   osp.join(voc, 'ImageSets', 'Segmentation')):
        os.makedirs(osp.join(out_dir, folder), exist_ok=True)

    class_names = list(SHAPES[:params['num_classes']])
    palette = voc_palette()
    num_instances = {}
    for split, count in _split_sizes(params).items():
        coco = _empty_coco(class_names)
        stems = []
        for index in (track or iter)(range(count)):
            stem = _image_stem(split, index)
            rng = np.random.default_rng([params['seed'], SPLITS.index(split), index])
            scene = render_scene(rng, tuple(params['image_size']), params['num_classes'])
            jpeg = _encode_jpeg(scene.image)
            # Both layouts get the same bytes: encode once, write twice (no links, which some
            # file systems and archive tools mishandle).
            for path in (osp.join(out_dir, split, f'{stem}.jpg'), osp.join(voc, 'JPEGImages', f'{stem}.jpg')):
                with open(path, 'wb') as f:
                    f.write(jpeg)
            save_label_png(voc_label_map(scene), osp.join(voc, 'SegmentationClass', f'{stem}.png'), palette)
            _add_coco_image(coco, scene, image_id=index + 1, file_name=f'{stem}.jpg')
            stems.append(stem)
        _write_json(coco, osp.join(out_dir, 'annotations', f'instances_{split}.json'))
        with open(osp.join(voc, 'ImageSets', 'Segmentation', f'{split}.txt'), 'w') as f:
            f.write(''.join(f'{stem}\n' for stem in stems))
        num_instances[split] = len(coco['annotations'])

    summary = {**params, 'classes': class_names, 'num_instances': num_instances,
               'coco_ann_files': {split: f'annotations/instances_{split}.json' for split in SPLITS},
               'coco_img_prefixes': {split: f'{split}/' for split in SPLITS},
               'voc_root': 'VOC2012'}
    _write_json({'params': params, 'summary': summary}, osp.join(out_dir, 'meta.json'), indent=2)
    return summary


def _write_json(obj: dict, path: str, indent: int | None = None) -> None:
    with open(path, 'w') as f:
        json.dump(obj, f, indent=indent, separators=None if indent else (',', ':'))
        f.write('\n')


def _encode_jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image, 'RGB').save(buffer, format='JPEG', quality=JPEG_QUALITY)
    return buffer.getvalue()


def _empty_coco(class_names: list[str]) -> dict:
    # No dates or other run-dependent fields: identical parameters must give identical bytes.
    return {'info': {'description': 'mvdense synthetic shapes', 'version': str(GENERATOR_VERSION)},
            'licenses': [], 'images': [], 'annotations': [],
            'categories': [{'id': i + 1, 'name': name, 'supercategory': 'shape'}
                           for i, name in enumerate(class_names)]}


def _add_coco_image(coco: dict, scene: Scene, image_id: int, file_name: str) -> None:
    """Appends the image record and one annotation per visible object."""
    height, width = scene.instance_map.shape
    coco['images'].append({'id': image_id, 'file_name': file_name, 'height': height, 'width': width})
    for instance_id, category_id in enumerate(scene.category_ids, start=1):
        mask = scene.instance_map == instance_id
        ys, xs = np.nonzero(mask)
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        polygon = simplify_closed_polygon(trace_region_outline(mask), POLYGON_TOLERANCE_PX)
        coco['annotations'].append({
            'id': len(coco['annotations']) + 1, 'image_id': image_id, 'category_id': category_id,
            'segmentation': [[float(v) for v in polygon.reshape(-1)]], 'area': float(mask.sum()),
            'bbox': [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], 'iscrowd': 0})


# ----------------------------------------------------------------------------------------------------
# Scene synthesis
# ----------------------------------------------------------------------------------------------------

@dataclass
class Scene:
    """One rendered image: RGB pixels, the visible instance per pixel (0 = background, i = i-th object
    drawn) and the category id (1-based class index) of each instance."""

    image: np.ndarray  # uint8 [H, W, 3]
    instance_map: np.ndarray  # uint8 [H, W]
    category_ids: list[int]


def render_scene(rng: np.random.Generator, image_size: tuple[int, int], num_classes: int) -> Scene:
    """Draws 1-``MAX_OBJECTS`` shapes, in order, on a random background.

    A candidate shape is rejected (and another drawn) when it would hide too much of an earlier object or
    cut an earlier object's visible part into pieces or around a hole; an object that finds no place in
    ``PLACEMENT_TRIES`` tries is left out (rare, and never the first).
    """
    height, width = image_size
    canvas = _random_background(rng, height, width)
    instance_map = np.zeros((height, width), np.uint8)
    full_areas: list[int] = []
    category_ids: list[int] = []
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        for _attempt in range(PLACEMENT_TRIES):
            class_index = int(rng.integers(num_classes))
            mask = _random_shape_mask(rng, SHAPES[class_index], height, width)
            if trace_region_outline(mask) is None:  # rasterisation broke a thin tip off: draw another
                continue
            candidate = np.where(mask, len(category_ids) + 1, instance_map).astype(np.uint8)
            if _earlier_objects_stay_valid(candidate, instance_map, mask, full_areas):
                break
        else:
            continue
        _paint_object(rng, canvas, mask)
        instance_map = candidate
        full_areas.append(int(mask.sum()))
        category_ids.append(class_index + 1)

    # Sensor-like noise over everything, so flat colour is no give-away of an object.
    canvas += rng.normal(0.0, 3.0, canvas.shape).astype(np.float32)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return Scene(image=image, instance_map=instance_map, category_ids=category_ids)


def _earlier_objects_stay_valid(candidate: np.ndarray, instance_map: np.ndarray, new_mask: np.ndarray,
                                full_areas: list[int]) -> bool:
    """Whether every earlier object the new one covers keeps enough of itself, in one hole-free piece."""
    for instance_id in np.unique(instance_map[new_mask]):
        if instance_id == 0:
            continue
        visible = candidate == instance_id
        if visible.sum() < MIN_VISIBLE_FRACTION * full_areas[instance_id - 1]:
            return False
        if trace_region_outline(visible) is None:
            return False
    return True


def _random_shape_mask(rng: np.random.Generator, kind: str, height: int, width: int) -> np.ndarray:
    """A filled shape of ``kind`` at a random size, rotation and position, fully inside the image."""
    outline = _unit_outline(rng, kind)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    outline = outline @ rotation.T
    # Scale so that the longer side of the axis-aligned box is the drawn size.
    extent = outline.max(axis=0) - outline.min(axis=0)
    size = rng.uniform(*OBJECT_SIZE_RANGE) * min(height, width)
    outline = (outline - outline.min(axis=0)) * (size / extent.max())
    box_w, box_h = outline.max(axis=0)
    margin = 2.0  # keeps the ignore band inside the image
    offset = np.array([rng.uniform(margin, width - margin - box_w), rng.uniform(margin, height - margin - box_h)])
    return rasterise_polygon(outline + offset, height, width)


def _unit_outline(rng: np.random.Generator, kind: str) -> np.ndarray:
    """Vertices ``[N, 2]`` of a shape of ``kind`` around the origin, about unit radius, unrotated."""
    if kind == 'circle':
        # Slightly elliptic: still a circle to the eye, but not a template to match.
        theta = np.linspace(0.0, 2.0 * np.pi, 96, endpoint=False)
        return np.stack([np.cos(theta), rng.uniform(0.8, 1.0) * np.sin(theta)], axis=1)
    if kind == 'rectangle':
        half_h = rng.uniform(0.45, 1.0)  # from about 2:1 rectangles to squares
        return np.array([[-1.0, -half_h], [1.0, -half_h], [1.0, half_h], [-1.0, half_h]])
    if kind == 'triangle':
        # Corners on the unit circle with every arc >= 80 degrees: all angles >= 40 degrees, no slivers.
        while True:
            arcs = rng.uniform(80.0, 160.0, size=2)
            if 360.0 - arcs.sum() >= 80.0:
                break
        theta = np.deg2rad(np.cumsum([0.0, *arcs]))
        return np.stack([np.cos(theta), np.sin(theta)], axis=1)
    if kind == 'star':
        theta = np.linspace(0.0, 2.0 * np.pi, 10, endpoint=False)
        radius = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.42, 0.55))
        return np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1)
    if kind == 'cross':
        a = rng.uniform(0.3, 0.42)  # half the arm width, arms reach 1
        return np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1], [-a, 1], [-a, a],
                         [-1, a], [-1, -a], [-a, -a]], dtype=np.float64)
    raise ValueError(f'unknown shape kind {kind!r}')


def rasterise_polygon(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boolean ``[H, W]`` mask of the polygon with vertices ``points`` (``[N, 2]`` x, y in pixels)."""
    image = Image.new('L', (width, height), 0)
    ImageDraw.Draw(image).polygon([tuple(p) for p in points.tolist()], fill=1)
    return np.asarray(image, dtype=bool)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.0, 255.0, size=3).astype(np.float32)


def _random_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A float32 ``[H, W, 3]`` texture: smooth noise, a linear gradient or stripes, plus faint blotches.

    Contrast is moderate (tens of grey levels) so that objects, chosen to differ from what lies under
    them, stay the most salient thing in the image.
    """
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40.0, 215.0, size=3).astype(np.float32)
    kind = rng.integers(3)
    if kind == 0:
        canvas = base + _smooth_noise(rng, height, width, cells=int(rng.integers(3, 8)), amplitude=45.0)
    elif kind == 1:
        angle = rng.uniform(0.0, 2.0 * np.pi)
        ramp = xs * np.cos(angle) + ys * np.sin(angle)
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0) - 0.5
        direction = rng.uniform(-70.0, 70.0, size=3).astype(np.float32)
        canvas = base + ramp[..., None] * direction
    else:
        angle = rng.uniform(0.0, np.pi)
        period = rng.uniform(10.0, 40.0)
        phase = rng.uniform(0.0, 2.0 * np.pi)
        wave = np.sin(2.0 * np.pi * (xs * np.cos(angle) + ys * np.sin(angle)) / period + phase)
        direction = rng.uniform(-30.0, 30.0, size=3).astype(np.float32)
        canvas = base + wave[..., None] * direction
    canvas += _smooth_noise(rng, height, width, cells=int(rng.integers(6, 16)), amplitude=12.0)
    return np.clip(canvas, 0.0, 255.0).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int, amplitude: float) -> np.ndarray:
    """Band-limited colour noise ``[H, W, 3]`` in ``[-amplitude, amplitude]``: a coarse random grid,
    bicubically upsampled."""
    coarse = rng.uniform(0.0, 255.0, size=(cells, cells, 3)).astype(np.uint8)
    smooth = Image.fromarray(coarse, 'RGB').resize((width, height), Image.Resampling.BICUBIC)
    return (np.asarray(smooth, np.float32) / 127.5 - 1.0) * amplitude


def _paint_object(rng: np.random.Generator, canvas: np.ndarray, mask: np.ndarray) -> None:
    """Fills ``mask`` on ``canvas`` with a colour far from what is under it, plus gentle shading."""
    under = canvas[mask].mean(axis=0)
    colours = [_random_colour(rng) for _ in range(12)]
    distances = [float(np.linalg.norm(c - under)) for c in colours]
    # The first colour far enough away, else the farthest: colour stays random but never camouflaged.
    far_enough = [i for i, d in enumerate(distances) if d >= MIN_COLOUR_DISTANCE]
    colour = colours[far_enough[0] if far_enough else int(np.argmax(distances))]

    ys, xs = np.nonzero(mask)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    ramp = xs * np.cos(angle) + ys * np.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0) - 0.5
    shade = rng.uniform(0.0, 40.0)  # brightness change across the object, like soft lighting
    canvas[ys, xs] = np.clip(colour + (ramp * shade)[:, None], 0.0, 255.0)


# ----------------------------------------------------------------------------------------------------
# Annotations from masks
# ----------------------------------------------------------------------------------------------------

def voc_label_map(scene: Scene) -> np.ndarray:
    """uint8 ``[H, W]`` class map: 0 background, category ids on objects, 255 on boundary bands.

    A pixel is in the band when it touches (4-neighbourhood) a pixel of another instance or of the
    background; both sides are marked, so the band is 2 pixels wide.
    """
    instances = scene.instance_map
    lookup = np.array([0, *scene.category_ids], np.uint8)
    labels = lookup[instances]
    band = np.zeros(instances.shape, bool)
    horizontal = instances[:, 1:] != instances[:, :-1]
    vertical = instances[1:, :] != instances[:-1, :]
    band[:, 1:] |= horizontal
    band[:, :-1] |= horizontal
    band[1:, :] |= vertical
    band[:-1, :] |= vertical
    labels[band] = IGNORE_INDEX
    return labels


def trace_region_outline(mask: np.ndarray) -> np.ndarray | None:
    """The outline of a region as ``[N, 2]`` (x, y) pixel-corner vertices, corners only, or None.

    The outline follows pixel edges ("crack following"), so rasterising it with pycocotools gives back
    exactly ``mask``. None when ``mask`` is empty or not one 4-connected piece without holes and without
    pixels that touch only diagonally: exactly when its boundary is not a single simple closed curve.
    """
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    y0, x0 = ys.min(), xs.min()
    region = np.pad(mask[y0:ys.max() + 1, x0:xs.max() + 1], 1)
    inner = region[1:-1, 1:-1]
    height, width = inner.shape
    stride = width + 1  # corner (x, y) of the crop has id y * stride + x

    # Directed boundary edges, clockwise on screen (y down): interior on the right of travel.
    starts, ends = [], []
    for outside, start_dxy, end_dxy in (
            (region[:-2, 1:-1], (0, 0), (1, 0)),    # top edge: left to right
            (region[1:-1, 2:], (1, 0), (1, 1)),     # right edge: downwards
            (region[2:, 1:-1], (1, 1), (0, 1)),     # bottom edge: right to left
            (region[1:-1, :-2], (0, 1), (0, 0))):   # left edge: upwards
        rows, cols = np.nonzero(inner & ~outside)
        starts.append((rows + start_dxy[1]) * stride + cols + start_dxy[0])
        ends.append((rows + end_dxy[1]) * stride + cols + end_dxy[0])
    starts, ends = np.concatenate(starts), np.concatenate(ends)
    if len(np.unique(starts)) != len(starts):  # a corner where pixels touch diagonally
        return None

    next_corner = np.full((height + 1) * stride, -1, np.int64)
    next_corner[starts] = ends
    next_corner = next_corner.tolist()
    first = int(starts[0])
    cycle = [first]
    corner = next_corner[first]
    while corner != first:
        cycle.append(corner)
        corner = next_corner[corner]
    if len(cycle) != len(starts):  # more than one boundary curve: pieces or holes
        return None

    ids = np.array(cycle)
    points = np.stack([ids % stride + x0, ids // stride + y0], axis=1)
    # Keep the corners: drop vertices where the incoming and outgoing edges point the same way.
    incoming = points - np.roll(points, 1, axis=0)
    outgoing = np.roll(points, -1, axis=0) - points
    return points[np.any(incoming != outgoing, axis=1)]


def simplify_closed_polygon(points: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker simplification of a closed polygon ``[N, 2]``; keeps a subset of the vertices.

    Pixel staircases along slanted edges become straight segments; no kept vertex moves and no removed
    one lies farther than ``tolerance`` from the result, so the mask and box change by under a pixel.
    """
    if len(points) <= 4:
        return points
    # Split the ring at vertex 0 and the vertex farthest from it, and simplify the two chains.
    far = int(np.argmax(np.linalg.norm(points - points[0], axis=1)))
    keep = np.zeros(len(points), bool)
    keep[[0, far]] = True
    ring = np.concatenate([points, points[:1]])
    for start, end in ((0, far), (far, len(points))):
        _douglas_peucker(ring, start, end, tolerance, keep)
    return points[keep]


def _douglas_peucker(points: np.ndarray, start: int, end: int, tolerance: float, keep: np.ndarray) -> None:
    """Marks in ``keep`` the vertices of the chain ``points[start:end + 1]`` that the simplification keeps
    (iterative, so long chains cannot exhaust the recursion limit; ``keep`` indices wrap modulo its size)."""
    stack = [(start, end)]
    while stack:
        first, last = stack.pop()
        if last - first < 2:
            continue
        chain = points[first + 1:last].astype(np.float64)
        a, b = points[first].astype(np.float64), points[last].astype(np.float64)
        direction = b - a
        length = float(np.hypot(*direction))
        if length == 0.0:
            distances = np.linalg.norm(chain - a, axis=1)
        else:
            distances = np.abs(direction[0] * (chain[:, 1] - a[1]) - direction[1] * (chain[:, 0] - a[0])) / length
        worst = int(np.argmax(distances))
        if distances[worst] > tolerance:
            split = first + 1 + worst
            keep[split % len(keep)] = True
            stack += [(first, split), (split, last)]
