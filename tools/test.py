"""Evaluate a checkpoint: prints COCO bbox AP (mmdet configs) or mIoU and per-class IoU (mmseg configs).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options KEY=VALUE ...]
        [--no-prepare] [--launcher none|pytorch|slurm|mpi]
    python tools/test.py CONFIG MODEL.onnx --backend onnxruntime [--threads N]

The checkpoint must fit the config's model exactly: one of another model or config stops with one line
naming both and the first mismatching tensors. Bad data stops with ``bad data: <file>: <problem>``.

The torch model is evaluated prepared for inference (BatchNorm folded into the convolutions,
channels-last: the same outputs to float rounding, faster); ``--no-prepare`` evaluates it as built. The
process keeps the memory it frees for reuse (``mvdense.utils.memory.keep_freed_memory``; glibc only).
``--backend onnxruntime`` evaluates an exported network (``tools/export_onnx.py``, or int8 from
``tools/quantize.py``) with the config's data pipeline, post-processing and metric: what the deployed
model scores.
"""
from __future__ import annotations

import argparse
import os

from mvdense.runner import add_common_args, build_runner, errors_as_exit, load_config, process_group_closed
from mvdense.utils.memory import keep_freed_memory

BACKENDS = ('pytorch', 'onnxruntime')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file (an .onnx file with --backend onnxruntime)')
    parser.add_argument('--backend', choices=BACKENDS, default='pytorch',
                        help='pytorch: the checkpoint in torch; onnxruntime: an exported ONNX network')
    parser.add_argument('--threads', type=int, default=None,
                        help='onnxruntime intra-op threads (default: the number of CPU cores)')
    parser.add_argument('--no-prepare', action='store_true',
                        help='evaluate the torch model as built (no BatchNorm folding, no channels-last)')
    add_common_args(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if not os.path.isfile(args.checkpoint):
        raise SystemExit(f'checkpoint not found: {args.checkpoint}')
    keep_freed_memory()     # this process only evaluates: reuse the maps' memory instead of page-faulting it anew
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    hooks = list(cfg.get('custom_hooks') or [])
    if args.backend == 'onnxruntime':
        # The network's weights are the ONNX file's: no checkpoint, nothing that copies the torch weights.
        cfg.custom_hooks = [hook for hook in hooks if hook.get('type') != 'EMAHook']
    else:
        cfg.load_from = args.checkpoint
        if not args.no_prepare:
            cfg.custom_hooks = hooks + [dict(type='InferenceModelHook')]
    with process_group_closed(), errors_as_exit():
        runner = build_runner(cfg, loaders=('test_dataloader',), exact_checkpoint=True)
        if args.backend == 'pytorch':
            return runner.test()
        return test_onnx_network(runner, args.checkpoint, args.threads or os.cpu_count() or 1)


def test_onnx_network(runner, path: str, threads: int) -> dict:
    """``runner.test()`` with the ONNX network ``path`` in place of the model's network (the config's
    pre- and post-processing around it); a file that does not fit the config stops with one line."""
    from mmengine.model import is_model_wrapper

    from mvdense.deploy.onnx_model import OnnxModelError, onnxruntime_model

    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    try:
        runner.model = onnxruntime_model(model, path, threads)
        return runner.test()
    except OnnxModelError as error:
        raise SystemExit(str(error)) from None


if __name__ == '__main__':
    main()
