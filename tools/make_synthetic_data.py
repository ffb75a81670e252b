"""Generate the synthetic shapes dataset (COCO detection + VOC segmentation layouts) if it is missing.

    python tools/make_synthetic_data.py [--root data/synthetic] [--num-train 400] [--num-val 100]
        [--seed 0] [--size 320 320] [--num-classes 3]

A no-op when ``ROOT`` already holds a complete dataset made with the same parameters. Progress (one
mmengine progress bar per split) goes to stderr, the one-line summary to stdout.
"""
from __future__ import annotations

import argparse
import functools
import sys
import time

from mmengine.utils import track_iter_progress

from mvdense.datasets import generate_synthetic_dataset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Generate the synthetic shapes dataset')
    parser.add_argument('--root', default='data/synthetic', help='output directory (default: %(default)s)')
    parser.add_argument('--num-train', type=int, default=400, help='training images (default: %(default)s)')
    parser.add_argument('--num-val', type=int, default=100, help='validation images (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0, help='random seed (default: %(default)s)')
    parser.add_argument('--size', type=int, nargs=2, default=(320, 320), metavar=('H', 'W'),
                        help='image height and width (default: 320 320)')
    parser.add_argument('--num-classes', type=int, default=3,
                        help='number of shape classes, 1-5 (default: %(default)s)')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        summary = generate_synthetic_dataset(
            args.root, num_train=args.num_train, num_val=args.num_val, image_size=tuple(args.size),
            seed=args.seed, num_classes=args.num_classes,
            track=functools.partial(track_iter_progress, file=sys.stderr))  # one bar per split
    except (ValueError, FileExistsError) as error:
        raise SystemExit(f'error: {error}') from None
    action = f'generated in {time.perf_counter() - start:.1f}s' if summary['generated'] else 'up to date'
    height, width = summary['image_size']
    print(f"synthetic dataset {action}: {summary['root']} | train {summary['num_train']} images / "
          f"{summary['num_instances']['train']} objects, val {summary['num_val']} images / "
          f"{summary['num_instances']['val']} objects | {height}x{width} | classes "
          f"{', '.join(summary['classes'])} | seed {summary['seed']}")


if __name__ == '__main__':
    main()
