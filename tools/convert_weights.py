"""Convert an ImageNet checkpoint (timm or apple/ml-cvnets MobileViT, authors' Mobile-Former) to mvdense.

    python tools/convert_weights.py SRC DST

The layout is detected from the key names. DST holds ``{'state_dict': ..., 'meta': ...}`` and loads with
``init_cfg=dict(type='Pretrained', checkpoint=DST)`` in a backbone config. Apple's MobileViT weights
expect BGR input in [0, 1] with no mean/std (our configs' data preprocessors feed exactly that).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='source checkpoint (.pt/.pth)')
    parser.add_argument('dst', help='where to write the converted checkpoint')
    args = parser.parse_args(argv)

    import io

    import torch

    from mvdense.convert import convert_checkpoint
    from mvdense.engine import AtomicLocalBackend, load_local_checkpoint

    layout, state_dict = convert_checkpoint(load_local_checkpoint(args.src, map_location='cpu'))
    buffer = io.BytesIO()
    torch.save({'state_dict': state_dict, 'meta': {'source': os.path.basename(args.src), 'layout': layout}},
               buffer)
    AtomicLocalBackend().put(buffer.getvalue(), args.dst)
    print(f'{args.src} ({layout}, {len(state_dict)} tensors) -> {args.dst}')


if __name__ == '__main__':
    main()
