"""Relabel COCO instance annotations with the PASCAL VOC classes: the extra training set of DeepLabv3-MobileViT.

    python tools/convert_coco_to_voc.py data/coco/annotations/instances_train2017.json data/coco/train2017 \\
        data/coco_voc [--split train2017] [--copy-images] [--min-side 256]

writes ``data/coco_voc/{JPEGImages,SegmentationClass,ImageSets/Segmentation/train2017.txt}`` (see
``mvdense/datasets/coco_to_voc.py`` for the rules). Other class lists, e.g. the synthetic shapes::

    python tools/convert_coco_to_voc.py data/synthetic/annotations/instances_train.json data/synthetic/train \\
        /tmp/shapes_voc --split train --classes background circle rectangle triangle

(categories map to the class of the same name unless ``--map COCO_NAME=CLASS ...`` says otherwise).
Progress (mmengine's progress bar) goes to stderr, the summary line to stdout.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time

from mmengine.utils import track_iter_progress

from mvdense.datasets.coco_to_voc import COCO_TO_VOC, convert_coco_to_voc
from mvdense.datasets.voc import VOC_CLASSES


def parse_name_map(pairs: list[str]) -> dict[str, str]:
    """``['dining table=diningtable', ...]`` -> ``{'dining table': 'diningtable', ...}``."""
    name_map = {}
    for pair in pairs:
        source, sep, target = pair.partition('=')
        if not sep or not source or not target:
            raise SystemExit(f'error: --map expects COCO_NAME=CLASS, got {pair!r}')
        name_map[source] = target
    return name_map


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Convert COCO instance annotations to VOC-class masks')
    parser.add_argument('ann_file', help='COCO instances JSON, e.g. data/coco/annotations/instances_train2017.json')
    parser.add_argument('img_dir', help='its image folder, e.g. data/coco/train2017')
    parser.add_argument('out_root', help='output root in VOC layout, e.g. data/coco_voc')
    parser.add_argument('--split', default='train2017', help='image set name (default: %(default)s)')
    parser.add_argument('--classes', nargs='+', help="class names in label order, 'background' first "
                        '(default: the 21 VOC classes)')
    parser.add_argument('--map', nargs='+', default=None, metavar='COCO_NAME=CLASS',
                        help='category name -> class name (default: COCO -> VOC for the VOC classes, the '
                        'identity on names for --classes)')
    parser.add_argument('--min-side', type=int, default=256, help='skip images whose shorter side is smaller '
                        '(default: %(default)s)')
    parser.add_argument('--min-pixels', type=int, default=1,
                        help='skip images with fewer labelled pixels (default: %(default)s)')
    parser.add_argument('--copy-images', action='store_true', help='copy the images instead of symlinking')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for path, what in ((args.ann_file, 'annotation file'), (args.img_dir, 'image folder')):
        if not os.path.exists(path):
            raise SystemExit(f'error: {what} not found: {path}')
    classes = tuple(args.classes) if args.classes else VOC_CLASSES
    if args.map is not None:
        name_map = parse_name_map(args.map)
    else:
        name_map = COCO_TO_VOC if classes == VOC_CLASSES else None
    start = time.perf_counter()
    try:
        summary = convert_coco_to_voc(args.ann_file, args.img_dir, args.out_root, split=args.split,
                                      classes=classes, name_map=name_map, min_side=args.min_side,
                                      min_labelled_pixels=args.min_pixels,
                                      image_mode='copy' if args.copy_images else 'symlink',
                                      track=functools.partial(track_iter_progress, file=sys.stderr))
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f'error: {error}') from None
    print(f'{summary.num_kept} images written to {args.out_root} in {time.perf_counter() - start:.1f}s '
          f'(skipped: {summary.skipped_small} smaller than {args.min_side} px, {summary.skipped_unlabelled} '
          f'without a labelled pixel); image set: {summary.image_set}')


if __name__ == '__main__':
    main()
