"""CPU benchmark of mvdense configs against timm / torchvision peers (params, MAdds, latency, memory).

    python tools/benchmark.py CONFIG [CONFIG ...] [--input-size H W] [--repeats N] [--threads T]
        [--parts backbone network end-to-end] [--runtimes eager default deploy onnxruntime compiled] [--no-peers]
        [--keep-freed-memory]
        [--paired] [--onnx-dir DIR] [--json FILE]

Prints one markdown table (one row per model part and runtime) and the speed-up ratios. Every
measurement runs in a fresh process; see ``mvdense/benchmark.py`` for what is measured and how, and
``benchmarks/results.md`` for results. A benchmark, not a test: run it on a quiet machine.
"""
from __future__ import annotations

from mvdense.benchmark import main

if __name__ == '__main__':
    main()
