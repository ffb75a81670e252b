"""Pointwise (1x1) convs at inference: ATen's default kernel vs oneDNN, one thread, channels-last.

    python benchmarks/pointwise_conv.py [--threads 1] [--repeats 15]

Prints one markdown row per shape: the MAdds, ATen's time (``F.conv2d``) and oneDNN's time as a ratio
(paired, alternating runs; median). With one thread and fewer than 16 images ATen does not use oneDNN for
1x1 convs; :func:`mvdense.models.layers.conv2d` does, for one-group convs above
``ONEDNN_POINTWISE_MIN_MADDS`` and for grouped ones always. The one-group shapes span the pointwise convs
of our models (widths 16-1024, expansions 1/4 and 4, maps 20²-160²); the grouped ones are
Mobile-Former-26M's (4 groups) at 224².
A benchmark, not a test: run it on a quiet machine.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F

from mvdense.benchmark import kernel_benchmark_setup, paired_ratio
from mvdense.models.layers import ONEDNN_POINTWISE_MIN_MADDS


def shapes() -> list[tuple[int, int, int]]:
    """(C_in, C_out, map side) triples."""
    return [(c, c_out, side) for c in (16, 32, 64, 128, 256, 512, 1024)
            for c_out in (max(c // 4, 8), c * 4) for side in (20, 40, 80, 160)]


def grouped_shapes() -> list[tuple[int, int, int]]:
    """(C_in, C_out, map side) of Mobile-Former-26M's grouped 1x1 convs at 224² (4 groups)."""
    return [(24, 12, 56), (12, 36, 56), (36, 12, 56), (72, 24, 28), (24, 72, 28), (144, 48, 14),
            (48, 192, 14), (288, 64, 14), (384, 96, 7), (96, 576, 7), (576, 96, 7)]


def print_rows(rows: list[tuple[int, int, int]], groups: int, repeats: int) -> None:
    """One row per (C_in, C_out, side): MAdds, ATen's median time, oneDNN / ATen (paired median)."""
    print('| C_in -> C_out | groups | map | MAdds (M) | ATen (ms) | oneDNN / ATen |')
    print('|---|---|---|---|---|---|')
    for c_in, c_out, side in rows:
        x = torch.randn(1, c_in, side, side).contiguous(memory_format=torch.channels_last)
        weight, bias = torch.randn(c_out, c_in // groups, 1, 1), torch.randn(c_out)
        ratio, aten = paired_ratio(partial(F.conv2d, x, weight, bias, groups=groups),
                                   partial(torch.ops.aten.mkldnn_convolution, x, weight, bias,
                                           [0, 0], [1, 1], [1, 1], groups), repeats)
        madds = side * side * c_in * c_out / groups
        print(f'| {c_in} -> {c_out} | {groups} | {side}² | {madds / 1e6:.2f} | {aten:.3f} | {ratio:.2f} |',
              flush=True)


def main() -> None:
    repeats = kernel_benchmark_setup(__doc__.splitlines()[0], 15,
                                     f'batch 1, float32, channels-last; mvdense uses oneDNN for one-group convs above '
                                     f'{ONEDNN_POINTWISE_MIN_MADDS / 1e6:.1f} M MAdds, for grouped ones always')
    with torch.no_grad():
        print_rows(shapes(), groups=1, repeats=repeats)
        print()
        print_rows(grouped_shapes(), groups=4, repeats=repeats)


if __name__ == '__main__':
    main()
