"""Latency of exported networks side by side, e.g. an fp32 export and its int8 version:

    python tools/benchmark_onnx.py work_dirs/onnx/model.onnx work_dirs/onnx/model_int8.onnx \
        [--input-size 320 320] [--threads 1] [--repeats 100] [--warmup 10]

Every file runs in one process with onnxruntime's CPU provider (all graph optimisations, ``--threads``
intra-op threads), batch 1, on the same random 0-255 image. The files are timed in turn, one call each,
so that load which comes and goes hits them alike; the table gives each file's median and p10-p90 (ms),
and the median and p10-p90 of the per-round ratio to the first file. A script, not a test: run it on a
quiet machine (``uptime``).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Paired latency of ONNX networks in onnxruntime')
    parser.add_argument('models', nargs='+', help='ONNX files (ratios are to the first)')
    parser.add_argument('--input-size', type=int, nargs=2, default=(320, 320), metavar=('H', 'W'))
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=100)
    parser.add_argument('--warmup', type=int, default=10)
    return parser.parse_args(argv)


def percentiles(values: list[float]) -> tuple[float, float, float]:
    """(median, p10, p90)."""
    ordered = sorted(values)
    deciles = statistics.quantiles(ordered, n=10) if len(ordered) > 1 else ordered * 9
    return statistics.median(ordered), deciles[0], deciles[-1]


def time_in_turn(steps: list, warmup: int, repeats: int) -> list[list[float]]:
    """Milliseconds per call of each step, the steps called in turn ``warmup + repeats`` times."""
    times: list[list[float]] = [[] for _ in steps]
    for index in range(warmup + repeats):
        for step, record in zip(steps, times):
            start = time.perf_counter()
            step()
            if index >= warmup:
                record.append((time.perf_counter() - start) * 1e3)
    return times


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    import onnxruntime

    from mvdense.deploy.onnx_export import make_session, run_session

    for path in args.models:
        if not os.path.isfile(path):
            raise SystemExit(f'ONNX file not found: {path}')
    image = (np.random.default_rng(0).random((1, 3, *args.input_size), dtype=np.float32) * 255).round()
    sessions = [make_session(path, args.threads) for path in args.models]
    times = time_in_turn([lambda s=s: run_session(s, image) for s in sessions], args.warmup, args.repeats)
    load = ', '.join(f'{x:.2f}' for x in os.getloadavg())
    cpu = next((line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo') if line.startswith('model name')),
               'CPU') if os.path.exists('/proc/cpuinfo') else 'CPU'
    print(f'{cpu}, {args.threads} thread(s), load average {load}; onnxruntime {onnxruntime.__version__}; '
          f'input 1x3x{args.input_size[0]}x{args.input_size[1]}; {args.warmup} warm-up + {args.repeats} rounds')
    print('| model | MB | median ms | p10-p90 ms | ratio to first (median, p10-p90) |')
    print('| --- | --- | --- | --- | --- |')
    rows = []
    for path, record in zip(args.models, times):
        median, low, high = percentiles(record)
        ratio, ratio_low, ratio_high = percentiles([a / b for a, b in zip(record, times[0])])
        rows.append(dict(model=path, median_ms=median, p10_ms=low, p90_ms=high, ratio=ratio))
        print(f'| {path} | {os.path.getsize(path) / 1e6:.1f} | {median:.2f} | {low:.2f}-{high:.2f} | '
              f'{ratio:.3f} ({ratio_low:.3f}-{ratio_high:.3f}) |')
    return rows


if __name__ == '__main__':
    main()
