"""int8 deployment: export a trained model to ONNX and quantise it with onnxruntime (static, QDQ,
per-channel int8 weights), calibrated on training images.

    python tools/quantize.py CONFIG CHECKPOINT [--out MODEL_INT8.onnx] [--calibration-images 64]
        [--input-size H W] [--per-tensor] [--reduce-range] [--calibration {percentile,minmax}]
        [--cfg-options KEY=VALUE ...]

Writes the fp32 export (``<out without _int8>.onnx``, as ``tools/export_onnx.py`` does, attention in plain
ONNX ops) and the int8 model next to it, each with its ``.json`` (what the post-processing needs). Then
evaluate either with the config's pipeline and metric:

    python tools/test.py CONFIG MODEL_INT8.onnx --backend onnxruntime

Calibration images: the first N images of the config's training set, through the config's *test*
pipeline (resize, no augmentation) and data preprocessor, as the deployed model will see images.
What is quantised and what stays float: ``mvdense.deploy.quantize``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil

from mmengine.config import DictAction

DATASET_WRAPPERS = ('RepeatDataset', 'ClassBalancedDataset', 'ConcatDataset', 'MultiImageMixDataset')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Export and quantise a model to int8 ONNX')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out', help='int8 model path (default work_dirs/onnx/<config>_int8.onnx)')
    parser.add_argument('--calibration-images', type=int, default=64,
                        help='training images whose activation ranges set the scales')
    parser.add_argument('--input-size', type=int, nargs=2, metavar=('H', 'W'),
                        help='export size (default as tools/export_onnx.py: 320 320 SSD-style, 800 1333 DETR-style, 512 512 segmentors)')
    parser.add_argument('--per-tensor', action='store_true', help='one weight scale per tensor, not per channel')
    parser.add_argument('--calibration', choices=('percentile', 'minmax'), default='percentile',
                        help='activation ranges: 0.001-99.999 percentiles (default) or min-max')
    parser.add_argument('--reduce-range', action='store_true', help='7-bit weights (see mvdense.deploy.quantize)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    return parser.parse_args(argv)


def calibration_dataset(cfg):
    """The config's training set (wrappers removed) with the test pipeline."""
    from mmengine.registry import DATASETS

    dataset_cfg = cfg.train_dataloader.dataset
    while dataset_cfg.get('type') in DATASET_WRAPPERS and 'dataset' in dataset_cfg:
        dataset_cfg = dataset_cfg.dataset
    dataset_cfg = dataset_cfg.copy()
    dataset_cfg.pipeline = cfg.test_dataloader.dataset.pipeline
    dataset_cfg.pop('filter_cfg', None)
    dataset_cfg['test_mode'] = True
    return DATASETS.build(dataset_cfg)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    for path, what in ((args.config, 'config file'), (args.checkpoint, 'checkpoint')):
        if not os.path.isfile(path):
            raise SystemExit(f'{what} not found: {path}')
    from mvdense.apis import init_model
    from mvdense.deploy.onnx_export import default_input_size, export_model
    from mvdense.deploy.quantize import calibration_batches, quantize_network
    from mvdense.deploy.wrappers import ImageNormalizer
    from mvdense.runner import check_data_paths, errors_as_exit

    with errors_as_exit():
        model = init_model(args.config, args.checkpoint, cfg_options=args.cfg_options)
        cfg = model.cfg
        check_data_paths(cfg, args.config, loaders=('train_dataloader',))
        input_size = tuple(args.input_size) if args.input_size else default_input_size(model)
        name = os.path.splitext(os.path.basename(args.config))[0]
        out = args.out or os.path.join('work_dirs', 'onnx', f'{name}_int8.onnx')
        fp32 = out[:-len('_int8.onnx')] + '.onnx' if out.endswith('_int8.onnx') else out + '.fp32.onnx'
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        # Plain ONNX attention: the quantiser and every runtime read it (the fused contrib op is float anyway).
        metadata = export_model(model, fp32, input_size, fused_attention=False)
        batches = calibration_batches(calibration_dataset(cfg), model.data_preprocessor,
                                      ImageNormalizer(model.data_preprocessor), args.calibration_images)
        report = quantize_network(fp32, out, batches, per_channel=not args.per_tensor,
                                  reduce_range=args.reduce_range, method=args.calibration)
    metadata['quantization'] = {'format': 'QDQ', 'weights': 'int8 ' + ('per tensor' if args.per_tensor else
                                                                    'per output channel'),
                                'activations': f'uint8 ({args.calibration} calibration)', 'reduce_range': args.reduce_range,
                                'calibration_images': report.calibration_images,
                                'quantized_nodes': report.quantized_nodes, 'float_nodes': report.float_nodes}
    with open(out + '.json', 'w') as file:
        json.dump(metadata, file)
    shutil.copymode(fp32, out)
    float_ops = ', '.join(f'{op} {count}' for op, count in sorted(report.float_nodes.items()))
    print(f'wrote {fp32} ({report.fp32_bytes / 1e6:.1f} MB) and {out} ({report.int8_bytes / 1e6:.1f} MB): '
          f'{report.quantized_nodes} Conv/Gemm/MatMul nodes int8, calibrated on {report.calibration_images} '
          f'training images; float: {float_ops}')
    print(f'evaluate: python tools/test.py {args.config} {out} --backend onnxruntime')
    return out


if __name__ == '__main__':
    main()
