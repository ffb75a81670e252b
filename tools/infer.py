"""Run a detector or segmentor on images and save the predictions drawn over them.

    python tools/infer.py CONFIG CHECKPOINT IMAGE_OR_FOLDER --out DIR [--device cpu] [--score-thr 0.3]
        [--opacity 0.5] [--cfg-options KEY=VALUE ...]

The task follows the config (``default_scope`` mmdet or mmseg). Detection: boxes with class and score
(mmdet's ``DetLocalVisualizer``); segmentation: the colour-coded class mask blended over the image, with
class names (mmseg's ``SegLocalVisualizer``). One PNG per image, ``DIR/<image stem>.png``; progress (mmengine's
progress bar) on stderr, a summary line at the end.

Every readable image is drawn (grayscale and RGBA images as colour, any size). An image that cannot be
read (missing, empty, not an image) is reported in one line ``bad data: <file>: <problem>`` and skipped;
the tool then exits with a non-zero status after the summary. A checkpoint that does not fit the config's
model stops it before any image, with one line naming both. The process keeps the memory it frees for
reuse (``mvdense.utils.memory.keep_freed_memory``; glibc only).
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

from mvdense.apis import DETECTION, init_model, model_task

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
# Pipeline steps that read or check ground truth, which inference does not have.
ANNOTATION_STEPS = ('LoadAnnotations', 'CheckedLoadAnnotations', 'ValidateSegMap')
# Pipeline steps that read the image file; the tool reads (and checks) the image itself and passes it on.
IMAGE_LOADERS = ('LoadImageFromFile', 'CheckedLoadImageFromFile')
# The arguments of an image loader that say how to decode (read_image's keywords).
DECODE_ARGS = ('color_type', 'imdecode_backend', 'backend_args')


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


def _step_name(step: dict) -> str:
    return step['type'].split('.')[-1]


def inference_pipeline(cfg) -> list[dict]:
    """The test pipeline without the steps that need ground truth, its image loader replaced by
    ``LoadImageFromNDArray`` (same arguments): the image is read and checked before the pipeline."""
    dataset = cfg.test_dataloader.dataset
    while 'pipeline' not in dataset and ('dataset' in dataset or 'datasets' in dataset):
        dataset = dataset.get('dataset') or dataset.datasets[0]  # dataset wrappers
    steps = []
    for step in dataset.pipeline:
        if _step_name(step) in IMAGE_LOADERS:
            step = dict(step, type='LoadImageFromNDArray')
        if _step_name(step) not in ANNOTATION_STEPS:
            steps.append(step)
    return steps


def decode_args(pipeline_steps: list[dict]) -> dict:
    """How the config's image loader decodes (``color_type``, ``imdecode_backend``, ``backend_args``)."""
    loader = next((step for step in pipeline_steps if _step_name(step) == 'LoadImageFromNDArray'), {})
    return {key: loader[key] for key in DECODE_ARGS if key in loader}


def predict(model, image: np.ndarray, pipeline, image_path: str = '') -> object:
    """One decoded image through the pipeline and the model's test step -> its Det/SegDataSample."""
    import torch

    data = pipeline(dict(img=image, img_path=image_path, img_id=0))
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


def to_rgb(image: np.ndarray) -> np.ndarray:
    """A decoded image (BGR, or one channel) as the RGB image the visualizers draw on."""
    import mmcv

    return mmcv.gray2rgb(image) if image.ndim == 2 else mmcv.bgr2rgb(image)


def report_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def report_below_progress(line: str) -> None:
    """A line on stderr that does not run into the progress bar's line."""
    print(f'\n{line}', file=sys.stderr, flush=True)


def draw(model, task: str, visualizer, pipeline, image: np.ndarray, image_path: str, out_dir: str,
         score_thr: float) -> str:
    """Predicts on one decoded image and writes the drawing to ``out_dir/<image stem>.png``."""
    sample = predict(model, image, pipeline, image_path)
    out_file = osp.join(out_dir, osp.splitext(osp.basename(image_path))[0] + '.png')
    draw_kwargs = dict(pred_score_thr=score_thr) if task == DETECTION else dict(with_labels=True)
    visualizer.add_datasample(osp.basename(image_path), to_rgb(image), sample, draw_gt=False, out_file=out_file,
                              **draw_kwargs)
    return out_file


def infer(config: str, checkpoint: str, inputs: str, out_dir: str, device: str | None = None,
          score_thr: float = 0.3, opacity: float = 0.5, cfg_options: dict | None = None,
          report: Callable[[str], None] = report_to_stderr, progress_bar: bool = False
          ) -> tuple[list[str], list[str]]:
    """Draws the predictions for every readable image under ``inputs`` into ``out_dir`` (with
    ``progress_bar``, mmengine's progress bar on stderr).

    Returns the written paths and one ``bad data: <file>: <problem>`` line per image that could not be
    read (each also passed to ``report`` as it is met)."""
    import torch
    from mmengine.dataset import Compose
    from mmengine.utils import ProgressBar

    from mvdense.datasets import DataError, data_error_summary, read_image
    from mvdense.deploy.optimize import prepare_for_inference

    images = list_images(inputs)
    if not osp.isfile(config):
        raise SystemExit(f'error: config file not found: {config}')
    if not osp.isfile(checkpoint):
        raise SystemExit(f'error: checkpoint not found: {checkpoint}')
    device = device or ('cuda:0' if torch.cuda.is_available() else 'cpu')
    model = init_model(config, checkpoint, device, cfg_options)       # also sets the config's default scope
    prepare_for_inference(model, entry=model.backbone)                 # BN folded, channels-last: same outputs
    task = model_task(model.cfg)
    steps = inference_pipeline(model.cfg)
    pipeline, decoding = Compose(steps), decode_args(steps)
    visualizer = build_visualizer(task, model.dataset_meta, opacity)
    os.makedirs(out_dir, exist_ok=True)
    written, failed = [], []
    progress = ProgressBar(len(images), file=sys.stderr) if progress_bar else None
    for image_path in images:
        try:
            image = read_image(image_path, **decoding)
        except DataError as error:
            failed.append(data_error_summary(error))
            report(failed[-1])
        else:
            written.append(draw(model, task, visualizer, pipeline, image, image_path, out_dir, score_thr))
        if progress is not None:
            progress.update()
    if progress is not None:
        print(file=sys.stderr, flush=True)  # end the progress bar's line
    return written, failed


def run(config: str, checkpoint: str, inputs: str, out_dir: str, device: str | None = None,
        score_thr: float = 0.3, opacity: float = 0.5, cfg_options: dict | None = None) -> list[str]:
    """:func:`infer`, returning the written paths only (unreadable images are reported on stderr)."""
    return infer(config, checkpoint, inputs, out_dir, device, score_thr, opacity, cfg_options)[0]


def main(argv: Sequence[str] | None = None) -> None:
    from mvdense.runner import errors_as_exit
    from mvdense.utils.memory import keep_freed_memory

    args = parse_args(argv)
    keep_freed_memory()     # this process only runs models: reuse the maps' memory instead of page-faulting it anew
    start = time.perf_counter()
    with errors_as_exit():  # a checkpoint of another model: one line naming it
        written, failed = infer(args.config, args.checkpoint, args.inputs, args.out, args.device, args.score_thr,
                                args.opacity, args.cfg_options, report=report_below_progress, progress_bar=True)
    seconds = time.perf_counter() - start
    print(f'{len(written)} image(s) drawn into {args.out} in {seconds:.1f} s'
          + (f'; {len(failed)} could not be read (listed above)' if failed else ''))
    if failed:
        raise SystemExit(1)


if __name__ == '__main__':
    main()
