"""tools/infer.py draws detections (boxes) and segmentations (colour masks) for a file or a folder.

The models are constructed, not trained: their classifiers are set so that they predict something known
(every pixel class 1; every prior 'circle'), which keeps the test fast and the expected drawing certain.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, build_model, run_tool
from PIL import Image

from mvdense.apis import load_config
from mvdense.datasets import CLASSES

SEG_CONFIG = ROOT / 'configs/demo/deeplabv3_mobilevit_xxs_synthetic.py'
DET_CONFIG = ROOT / 'configs/demo/ssdlite_mobilevit_xxs_synthetic.py'


@pytest.fixture(scope='module')
def images(synthetic_dataset) -> Path:
    """A folder of three generated 96x128 images."""
    return synthetic_dataset(num_train=3, num_val=0, image_size=(96, 128), seed=2) / 'train'


def save_checkpoint(model: torch.nn.Module, path: Path, classes: tuple, palette: list | None = None) -> Path:
    meta = dict(classes=classes) if palette is None else dict(classes=classes, palette=palette)
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=meta)), path)
    return path


@pytest.fixture(scope='module')
def seg_checkpoint(tmp_path_factory) -> Path:
    """The demo segmentor, made to predict class 1 ('circle') at every pixel."""
    model = build_model(SEG_CONFIG)
    with torch.no_grad():
        model.decode_head.conv_seg.weight.zero_()
        model.decode_head.conv_seg.bias.copy_(torch.tensor([0.0, 5.0, 0.0, 0.0]))
    metainfo = model.cfg.train_dataloader.dataset.metainfo
    return save_checkpoint(model, tmp_path_factory.mktemp('seg') / 'seg.pth', metainfo.classes, metainfo.palette)


@pytest.fixture(scope='module')
def det_checkpoint(tmp_path_factory) -> Path:
    """The demo detector, made to score every prior as 'circle' (its box is the prior itself)."""
    model = build_model(DET_CONFIG)
    head = model.bbox_head
    with torch.no_grad():
        for cls_conv, reg_conv, priors in zip(head.cls_convs, head.reg_convs, head.num_base_priors):
            cls_conv.weight.zero_()
            reg_conv.weight.zero_()
            reg_conv.bias.zero_()
            scores = torch.zeros(priors, head.cls_out_channels)
            scores[:, 0] = 8.0  # class 0 = circle; the last channel is the background
            cls_conv.bias.copy_(scores.flatten())
    return save_checkpoint(model, tmp_path_factory.mktemp('det') / 'det.pth', CLASSES)


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert('RGB'), dtype=np.int16)


def test_segmentation_mask_is_drawn_over_each_image_of_a_folder(images, seg_checkpoint, tmp_path, infer_tool):
    written = infer_tool.run(str(SEG_CONFIG), str(seg_checkpoint), str(images), str(tmp_path), device='cpu')
    inputs = sorted(images.glob('*.jpg'))
    assert sorted(Path(p).name for p in written) == [p.stem + '.png' for p in inputs]
    for source in inputs:
        drawn, original = pixels(tmp_path / f'{source.stem}.png'), pixels(source)
        assert drawn.shape == original.shape
        # Class 1 everywhere: the whole image is blended with its colour (128, 0, 0) at opacity 0.5; only the
        # class-name label drawn on top differs more.
        blended = 0.5 * original + 0.5 * np.array([128, 0, 0])
        close = np.all(np.abs(drawn - blended) <= 2, axis=-1)
        assert 0.8 < close.mean() < 1.0, close.mean()


def test_detections_are_drawn_and_nothing_is_drawn_below_the_threshold(images, det_checkpoint, tmp_path, infer_tool):
    source = sorted(images.glob('*.jpg'))[0]
    drawn = infer_tool.run(str(DET_CONFIG), str(det_checkpoint), str(source), str(tmp_path / 'boxes'), device='cpu')
    assert drawn == [str(tmp_path / 'boxes' / f'{source.stem}.png')]
    changed = np.any(pixels(Path(drawn[0])) != pixels(source), axis=-1)
    assert changed.mean() > 0.05  # box outlines and their "circle: 1.00" labels

    # The same model with a threshold above every score draws nothing: the output is the image itself.
    blank = infer_tool.run(str(DET_CONFIG), str(det_checkpoint), str(source), str(tmp_path / 'none'), device='cpu',
                      score_thr=1.01)
    assert np.array_equal(pixels(Path(blank[0])), pixels(source))


def test_inference_pipeline_drops_ground_truth_steps_and_takes_the_decoded_image(infer_tool):
    steps = [s['type'] for s in infer_tool.inference_pipeline(load_config(str(SEG_CONFIG)))]
    assert steps == ['LoadImageFromNDArray', 'PackSegInputs']
    steps = [s['type'] for s in infer_tool.inference_pipeline(load_config(str(DET_CONFIG)))]
    assert steps == ['LoadImageFromNDArray', 'Resize', 'PackDetInputs']


@pytest.fixture
def messy_folder(tmp_path) -> Path:
    """What a user's folder holds: odd but readable images and files that are no images at all."""
    folder = tmp_path / 'messy'
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (60, 80), dtype=np.uint8), 'L').save(folder / 'gray.png')
    Image.fromarray(rng.integers(0, 255, (60, 80, 4), dtype=np.uint8), 'RGBA').save(folder / 'rgba.png')
    Image.fromarray(rng.integers(0, 255, (17, 900, 3), dtype=np.uint8), 'RGB').save(folder / 'sliver.jpg')
    (folder / 'empty.jpg').write_bytes(b'')
    (folder / 'notes.jpg').write_text('not an image\n')
    (folder / 'readme.txt').write_text('not listed: not an image suffix\n')
    return folder


@pytest.mark.parametrize('task', ['detection', 'segmentation'])
def test_folder_with_bad_files_draws_every_readable_image_and_names_the_others(
        task, messy_folder, det_checkpoint, seg_checkpoint, tmp_path, infer_tool):
    config, checkpoint = (DET_CONFIG, det_checkpoint) if task == 'detection' else (SEG_CONFIG, seg_checkpoint)
    reported = []
    written, failed = infer_tool.infer(str(config), str(checkpoint), str(messy_folder), str(tmp_path / 'out'),
                                       device='cpu', report=reported.append)
    assert sorted(Path(p).name for p in written) == ['gray.png', 'rgba.png', 'sliver.png']
    for name, size in (('gray.png', (80, 60)), ('rgba.png', (80, 60)), ('sliver.png', (900, 17))):
        drawn = Image.open(tmp_path / 'out' / name)
        assert drawn.mode == 'RGB' and drawn.size == size
    assert failed == reported == [
        f'bad data: {messy_folder}/empty.jpg: empty file (0 bytes), not an image',
        f'bad data: {messy_folder}/notes.jpg: cannot decode the image (corrupt or not an image file)']


def test_command_line_summarises_and_fails_when_an_image_could_not_be_read(messy_folder, seg_checkpoint, tmp_path,
                                                                           infer_tool, capsys):
    with pytest.raises(SystemExit) as stopped:
        infer_tool.main([str(SEG_CONFIG), str(seg_checkpoint), str(messy_folder), '--out', str(tmp_path),
                         '--device', 'cpu'])
    assert stopped.value.code == 1
    out, err = capsys.readouterr()
    assert re.search(rf'^3 image\(s\) drawn into {tmp_path} in [\d.]+ s; 2 could not be read \(listed above\)$',
                     out, re.M), out
    assert f'bad data: {messy_folder}/empty.jpg: empty file (0 bytes), not an image' in err.splitlines()
    assert 'Traceback' not in err


@pytest.mark.slow
def test_command_line(images, seg_checkpoint, tmp_path):
    result = run_tool('infer', SEG_CONFIG, seg_checkpoint, images, '--out', tmp_path, '--device', 'cpu')
    assert '3 image(s) drawn' in result.stdout
    assert len(list(tmp_path.glob('*.png'))) == 3


def test_missing_input_is_reported(seg_checkpoint, tmp_path, infer_tool):
    with pytest.raises(SystemExit, match='no such image or folder'):
        infer_tool.run(str(SEG_CONFIG), str(seg_checkpoint), str(tmp_path / 'nope.jpg'), str(tmp_path))
