"""Run a detector or segmentor on images and save the predictions drawn over them.

    python tools/infer.py CONFIG CHECKPOINT IMAGE_OR_FOLDER --out DIR [--device cpu] [--score-thr 0.3]
        [--opacity 0.5] [--cfg-options KEY=VALUE ...]

The task follows the config (``default_scope`` mmdet or mmseg). Detection: boxes with class and score
(mmdet's ``DetLocalVisualizer``); segmentation: the colour-coded class mask blended over the image, with
class names (mmseg's ``SegLocalVisualizer``). One PNG per image, ``DIR/<image stem>.png``.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
from collections.abc import Sequence

from mvdense.apis import DETECTION, init_model, model_task

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
# Pipeline steps that read or check ground truth, which inference does not have.
ANNOTATION_STEPS = ('LoadAnnotations', 'CheckedLoadAnnotations', 'ValidateSegMap')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(description='Draw detections / segmentations on images')
    parser.add_argument('config', help='mmdet or mmseg config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('inputs', help='an image file or a folder of images')
    parser.add_argument('--out', required=True, help='output folder for the drawn PNGs')
    parser.add_argument('--device', default=None, help='e.g. cpu or cuda:0 (default: cuda:0 if available)')
    parser.add_argument('--score-thr', type=float, default=0.3, help='detection: lowest score drawn')
    parser.add_argument('--opacity', type=float, default=0.5, help='segmentation: opacity of the mask')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                        help='override config settings')
    return parser.parse_args(argv)


def list_images(path: str) -> list[str]:
    """The image itself, or the images directly inside a folder (sorted)."""
    if osp.isfile(path):
        return [path]
    if not osp.isdir(path):
        raise SystemExit(f'error: no such image or folder: {path}')
    images = sorted(osp.join(path, name) for name in os.listdir(path) if name.lower().endswith(IMAGE_SUFFIXES))
    if not images:
        raise SystemExit(f'error: no images ({", ".join(IMAGE_SUFFIXES)}) in {path}')
    return images


def inference_pipeline(cfg) -> list[dict]:
    """The test pipeline without the steps that need ground truth."""
    dataset = cfg.test_dataloader.dataset
    while 'pipeline' not in dataset and ('dataset' in dataset or 'datasets' in dataset):
        dataset = dataset.get('dataset') or dataset.datasets[0]  # dataset wrappers
    return [step for step in dataset.pipeline if step['type'].split('.')[-1] not in ANNOTATION_STEPS]


def predict(model, image_path: str, pipeline) -> object:
    """One image through the pipeline and the model's test step -> its Det/SegDataSample."""
    import torch

    data = pipeline(dict(img_path=image_path, img_id=0))
    with torch.no_grad():
        return model.test_step(dict(inputs=[data['inputs']], data_samples=[data['data_samples']]))[0]


def build_visualizer(task: str, dataset_meta: dict, opacity: float):
    """A visualizer of our own (not the config's global instance), with the model's classes and palette."""
    name = f'mvdense_infer_{task}'
    if task == DETECTION:
        from mmdet.visualization import DetLocalVisualizer

        visualizer = DetLocalVisualizer.get_instance(name)
    else:
        from mmseg.visualization import SegLocalVisualizer

        visualizer = SegLocalVisualizer.get_instance(name, alpha=opacity)
    visualizer.dataset_meta = dataset_meta
    return visualizer


def run(config: str, checkpoint: str, inputs: str, out_dir: str, device: str | None = None,
        score_thr: float = 0.3, opacity: float = 0.5, cfg_options: dict | None = None) -> list[str]:
    """Draws the predictions for every image under ``inputs`` into ``out_dir``; returns the written paths."""
    import mmcv
    import torch
    from mmengine.dataset import Compose

    images = list_images(inputs)
    if not osp.isfile(config):
        raise SystemExit(f'error: config file not found: {config}')
    if not osp.isfile(checkpoint):
        raise SystemExit(f'error: checkpoint not found: {checkpoint}')
    device = device or ('cuda:0' if torch.cuda.is_available() else 'cpu')
    model = init_model(config, checkpoint, device, cfg_options)       # also sets the config's default scope
    task = model_task(model.cfg)
    pipeline = Compose(inference_pipeline(model.cfg))
    visualizer = build_visualizer(task, model.dataset_meta, opacity)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for image_path in images:
        sample = predict(model, image_path, pipeline)
        out_file = osp.join(out_dir, osp.splitext(osp.basename(image_path))[0] + '.png')
        image = mmcv.imread(image_path, channel_order='rgb')  # visualizers draw on RGB
        draw_kwargs = dict(pred_score_thr=score_thr) if task == DETECTION else dict(with_labels=True)
        visualizer.add_datasample(osp.basename(image_path), image, sample, draw_gt=False, out_file=out_file,
                                  **draw_kwargs)
        written.append(out_file)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    from mvdense.runner import data_errors_as_exit

    args = parse_args(argv)
    with data_errors_as_exit():  # an undecodable image: one line naming it
        written = run(args.config, args.checkpoint, args.inputs, args.out, args.device, args.score_thr,
                      args.opacity, args.cfg_options)
    print(f'{len(written)} image(s) drawn into {args.out}')


if __name__ == '__main__':
    main()
