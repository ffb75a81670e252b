"""Linear layers at inference: ATen's ``F.linear`` (addmm) vs oneDNN with a packed weight, float32 CPU.

    python benchmarks/linear.py [--threads 1] [--repeats 100]

Prints one markdown row per shape (rows x in -> out): the multiply-adds, ATen's time and oneDNN's time as
a ratio (paired, alternating runs; median). :class:`mvdense.models.layers.FastLinear` uses oneDNN from
``ONEDNN_LINEAR_MIN_MADDS`` up. The shapes span the Linears of our models: Mobile-Former's 1 and 6 tokens
(widths 48-2880), the E2E head's 106 and 306 tokens (256 wide), MobileViT's patch tokens (64-144 wide,
1,600-6,400 rows). A benchmark, not a test: run it on a quiet machine.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F

from mvdense.benchmark import kernel_benchmark_setup, paired_ratio
from mvdense.models.layers import ONEDNN_LINEAR_MIN_MADDS


def shapes() -> list[tuple[int, int, int]]:
    """(rows, in, out) triples, by multiply-adds."""
    tokens = [(rows, k, n) for rows in (1, 6) for k, n in ((48, 192), (192, 48), (192, 192), (192, 384),
                                                           (192, 768), (48, 2880), (192, 1440), (1440, 192))]
    queries = [(rows, k, n) for rows in (106, 306) for k, n in ((48, 192), (256, 256), (256, 1024), (1024, 256))]
    patches = [(rows, k, n) for rows in (1600, 6400) for k, n in ((64, 192), (64, 128), (144, 432), (144, 288))]
    return sorted(tokens + queries + patches, key=lambda shape: shape[0] * shape[1] * shape[2])


def main() -> None:
    repeats = kernel_benchmark_setup(__doc__.splitlines()[0], 100,
                                     f'float32; mvdense uses oneDNN from {ONEDNN_LINEAR_MIN_MADDS / 1e6:.2f} M MAdds')
    print('| rows x in -> out | MAdds (M) | ATen (us) | oneDNN / ATen |')
    print('|---|---|---|---|')
    with torch.inference_mode():
        for rows, k, n in shapes():
            x, weight, bias = torch.randn(rows, k), torch.randn(n, k), torch.randn(n)
            packed = torch.ops.mkldnn._reorder_linear_weight(weight)
            ratio, aten = paired_ratio(partial(F.linear, x, weight, bias),
                                       partial(torch.ops.mkldnn._linear_pointwise, x, packed, bias, 'none', [], ''),
                                       repeats, warmup=10)
            print(f'| {rows} x {k} -> {n} | {rows * k * n / 1e6:.3f} | {aten * 1e3:.1f} | {ratio:.2f} |', flush=True)


if __name__ == '__main__':
    main()
