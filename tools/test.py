"""Evaluate a checkpoint: prints COCO bbox AP (mmdet configs) or mIoU and per-class IoU (mmseg configs).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options KEY=VALUE ...]
        [--launcher none|pytorch|slurm|mpi]

The checkpoint must fit the config's model exactly: one of another model or config stops with one line
naming both and the first mismatching tensors. Bad data stops with ``bad data: <file>: <problem>``.
"""
from __future__ import annotations

import argparse
import os

from mvdense.runner import add_common_args, build_runner, errors_as_exit, load_config, process_group_closed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    add_common_args(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if not os.path.isfile(args.checkpoint):
        raise SystemExit(f'checkpoint not found: {args.checkpoint}')
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    cfg.load_from = args.checkpoint
    with process_group_closed(), errors_as_exit():
        return build_runner(cfg, loaders=('test_dataloader',), exact_checkpoint=True).test()


if __name__ == '__main__':
    main()
