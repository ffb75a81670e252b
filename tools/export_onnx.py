"""Export a detector or segmentor config to ONNX (raw outputs; post-processing outside the graph).

    python tools/export_onnx.py CONFIG [CHECKPOINT] [--out FILE] [--input-size H W] [--dynamic-size]
        [--static-size] [--opset N] [--portable-attention] [--no-verify] [--cfg-options KEY=VALUE ...]

Writes FILE (default ``work_dirs/onnx/<config name>.onnx``) and FILE.json, which describes the input
(float32 [B, 3, H, W], 0-255, BGR as loaded; channel swap and mean/std are in the graph), the outputs,
which axes are dynamic and, for detectors, the post-processing (priors, box coder, test_cfg) that
``mvdense.deploy.postprocess.DetectionPostProcess.from_json`` reads:

* SSD-style detectors: ``cls_logits`` [B, A, C + 1] and ``box_deltas`` [B, A, 4]; dynamic batch; the input
  size is fixed (default 320 x 320, what SSD's priors are laid out for) unless ``--dynamic-size``;
* DETR-style detectors (``e2e_mobileformer_*``): image -> the last decoder layer's ``query_logits``
  [B, N, C] and ``query_boxes`` [B, N, 4], and the detections of the head's own post-processing in the
  graph (sigmoid, top-k over queries x classes, boxes to x1, y1, x2, y2 input pixels; no NMS):
  ``boxes`` [B, D, 4], ``scores`` [B, D], ``labels`` [B, D]; dynamic batch, height and width (traced at
  800 x 1333 by default) unless ``--static-size``;
* segmentors: ``seg_logits`` [B, K, H, W] at the input size; dynamic batch, height and width (any
  size >= 32; the traced size defaults to 512 x 512) unless ``--static-size``.

Attention is written as onnxruntime's fused ``com.microsoft.MultiHeadAttention`` (a flash-attention kernel
on CPU); ``--portable-attention`` writes plain ONNX ops instead, for runtimes other than onnxruntime.

Without CHECKPOINT the weights are random (for timing and for checking the graph); a CHECKPOINT must fit
the config's model exactly (one of another model or config stops the tool with one line naming both). The export is
checked: onnxruntime and torch eager are run on a batch of 2 at the traced size (and, when the size is
dynamic, at an odd size) and the largest difference per output is printed; the tool exits with an error
when one exceeds its tolerance (1e-4; DETR-style boxes in pixels 1e-3; labels must be equal). A DETR-style
detector with random weights is only reported, not failed: its queries start at the top proposals, whose
untrained scores are nearly tied, so float rounding changes which are picked.
"""
from __future__ import annotations

import argparse
import os

from mmengine.config import DictAction


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Export an mvdense config to ONNX (raw outputs)')
    parser.add_argument('config', help='mmdet or mmseg config file')
    parser.add_argument('checkpoint', nargs='?', help='checkpoint to load (default: random weights)')
    parser.add_argument('--out', help='output file (default: work_dirs/onnx/<config name>.onnx)')
    parser.add_argument('--input-size', nargs=2, type=int, metavar=('H', 'W'),
                        help='traced input size (default: 320 320 for SSD-style detectors, 800 1333 for '
                             'DETR-style ones, 512 512 for segmentors)')
    size = parser.add_mutually_exclusive_group()
    size.add_argument('--dynamic-size', action='store_true', default=None,
                      help='dynamic height and width for a detector too (priors must then match the size)')
    size.add_argument('--static-size', dest='dynamic_size', action='store_false',
                      help='fixed height and width for a segmentor or DETR-style detector')
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--portable-attention', action='store_true',
                        help="plain ONNX attention (MatMul/Softmax) instead of onnxruntime's fused contrib op")
    parser.add_argument('--no-verify', action='store_true', help='skip the onnxruntime check')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config settings, e.g. model.test_cfg.score_thr=0.3')
    return parser.parse_args(argv)


def verify(model, path: str, input_size: tuple[int, int], dynamic_size: bool) -> dict[str, float]:
    """|onnxruntime - eager| per output on a batch of 2 (and an odd size when dynamic); returns the
    outputs above their tolerance (empty when the export is right)."""
    import torch

    from mvdense.deploy.onnx_export import exceeded_tolerances, make_session, output_differences

    session = make_session(path)
    sizes = [input_size] + ([(input_size[0] // 2 + 1, input_size[1] // 3 + 1)] if dynamic_size else [])
    failed = {}
    for height, width in sizes:
        image = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(0)) * 255
        differences = output_differences(model, session, image)
        print(f'onnxruntime vs torch eager at 2x3x{height}x{width}: max abs difference '
              + ', '.join(f'{name} {value:.2e}' for name, value in differences.items()))
        failed.update(exceeded_tolerances(differences))
    return failed


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    if not os.path.isfile(args.config):
        raise SystemExit(f'config file not found: {args.config}')
    if args.checkpoint and not os.path.isfile(args.checkpoint):
        raise SystemExit(f'checkpoint not found: {args.checkpoint}')
    from mvdense.apis import init_model, model_task
    from mvdense.deploy.onnx_export import default_input_size, export_model
    from mvdense.deploy.wrappers import is_end_to_end
    from mvdense.engine import CheckpointMismatchError

    try:
        model = init_model(args.config, args.checkpoint, cfg_options=args.cfg_options)
    except CheckpointMismatchError as error:  # a checkpoint of another model: one line naming both
        raise SystemExit(str(error)) from None
    task = model_task(model.cfg)
    input_size = tuple(args.input_size) if args.input_size else default_input_size(model)
    out = args.out or os.path.join('work_dirs', 'onnx', os.path.splitext(os.path.basename(args.config))[0] + '.onnx')
    metadata = export_model(model, out, input_size, args.dynamic_size, args.opset,
                            fused_attention=not args.portable_attention)
    dynamic = metadata['input']['dynamic_size']
    print(f'wrote {out} and {out}.json: {task}, outputs {metadata["outputs"]}, traced at '
          f'{input_size[0]}x{input_size[1]}, dynamic batch, {"dynamic" if dynamic else "fixed"} height/width, '
          f'attention: {metadata["attention"]}')
    failed = {} if args.no_verify else verify(model, out, input_size, dynamic)
    if not failed:
        return out
    differences = ', '.join(f'{name} {value:.2e}' for name, value in failed.items())
    if is_end_to_end(model) and not args.checkpoint:
        # An untrained DETR's proposal scores are nearly tied, so float rounding (1e-6 in the backbone's
        # maps) changes which proposals start the queries, and with them every output.
        print(f'note: onnxruntime differs from torch eager ({differences}); with random weights a DETR-style '
              'detector picks its queries among nearly tied proposal scores, so its outputs are compared '
              'only with trained weights: give a CHECKPOINT to check the export')
        return out
    raise SystemExit(f'onnxruntime differs from torch eager beyond tolerance: {differences}')


if __name__ == '__main__':
    main()
