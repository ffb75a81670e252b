"""Train a detector or segmentor from an mmdet or mmseg config (the mmdet 3.x command line).

    python tools/train.py configs/ssdlite_mobilevit_s_coco.py [--work-dir DIR] [--resume [CKPT]]
        [--amp] [--skip-bad-samples] [--cfg-options KEY=VALUE ...] [--launcher none|pytorch|slurm|mpi]

Multi-GPU / multi-node: ``tools/dist_train.sh CONFIG GPUS`` (torchrun; mmengine drives PyTorch's DDP).

Guards (``mvdense.runner.configure_training``): bad data stops the run with ``bad data: <file>: <problem>``
(``--skip-bad-samples`` logs and skips bad training samples instead); the first NaN or infinite loss stops
it naming the iteration and the loss term, leaving the last checkpoint as it was; ``load_from`` loads what
fits and says in one line what did not; ``--resume`` refuses a checkpoint of another model. With
``--cfg-options randomness.deterministic=True`` a resumed run reproduces the uninterrupted one.
"""
from __future__ import annotations

import argparse
import os

import torch

from mvdense.runner import (
    add_common_args,
    build_runner,
    configure_training,
    errors_as_exit,
    load_config,
    process_group_closed,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a detector or segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--amp', action='store_true', help='enable automatic mixed precision training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the actual total batch size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or from the latest in the work dir if none given')
    parser.add_argument('--skip-bad-samples', action='store_true',
                        help='log and skip training samples whose files are missing or broken instead of stopping')
    add_common_args(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def enable_mixed_precision(cfg) -> None:
    """float16 AMP with loss scaling on GPUs; bfloat16 autocast on CPU-only machines, where mmengine's
    AmpOptimWrapper refuses to run (mvdense.engine.optim)."""
    if torch.cuda.is_available():
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    else:
        cfg.optim_wrapper.type = 'CpuBf16OptimWrapper'


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    if args.amp:
        enable_mixed_precision(cfg)
    if args.auto_scale_lr:
        cfg.setdefault('auto_scale_lr', {})['enable'] = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    configure_training(cfg, skip_bad_samples=args.skip_bad_samples)
    with process_group_closed(), errors_as_exit():
        build_runner(cfg).train()


if __name__ == '__main__':
    main()
