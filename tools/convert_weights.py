"""Convert an ImageNet checkpoint (timm or apple/ml-cvnets MobileViT, authors' Mobile-Former or GLiT) to mvdense.

    python tools/convert_weights.py SRC DST

The layout is detected from the key names. DST holds ``{'state_dict': ..., 'meta': ...}`` and loads with
``init_cfg=dict(type='Pretrained', checkpoint=DST)`` in a backbone config. Apple's MobileViT weights
expect BGR input in [0, 1] with no mean/std (our configs' data preprocessors feed exactly that).
"""
from __future__ import annotations

import argparse
import os


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='source checkpoint (.pt/.pth)')
    parser.add_argument('dst', help='where to write the converted checkpoint')
    args = parser.parse_args(argv)

    import io

    import torch

    from mvdense.convert import convert_checkpoint, load_foreign_checkpoint
    from mvdense.engine import AtomicLocalBackend

    result = convert_checkpoint(load_foreign_checkpoint(args.src))
    buffer = io.BytesIO()
    torch.save({'state_dict': result.state_dict,
                'meta': {'source': os.path.basename(args.src), 'layout': result.layout}}, buffer)
    AtomicLocalBackend().put(buffer.getvalue(), args.dst)
    print(f'{args.src} ({result.layout}, {len(result.state_dict)} tensors) -> {args.dst}')
    if result.skipped:
        print(f'skipped (no model weights): {", ".join(result.skipped)}')


if __name__ == '__main__':
    main()
