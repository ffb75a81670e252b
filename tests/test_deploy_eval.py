"""Evaluating deployed models: tools/test.py on the torch model prepared for inference, on its exported
ONNX network (``--backend onnxruntime``) and on the int8 network of tools/quantize.py, all with the
config's pipeline and metric."""
from __future__ import annotations

import json
import re
from pathlib import Path

import onnx
import pytest
import torch
from conftest import ROOT, build_model, randomize_batchnorm, run_tool

from mvdense.deploy.onnx_model import unflatten_levels
from mvdense.deploy.postprocess import flatten_levels

DET_CONFIG = ROOT / 'configs/demo/ssdlite_mobilevit_xxs_synthetic.py'
SEG_CONFIG = ROOT / 'configs/demo/deeplabv3_mobilevit_xxs_synthetic.py'


def test_unflatten_levels_inverts_flatten_levels():
    generator = torch.Generator().manual_seed(0)
    maps = [torch.randn(2, a * 5, h, w, generator=generator) for a, (h, w) in zip([6, 6, 4], [(4, 5), (2, 3), (1, 1)])]
    flat = flatten_levels(maps, 5)
    back = unflatten_levels(flat, [(4, 5), (2, 3), (1, 1)], [6, 6, 4])
    assert all(torch.equal(a, b) for a, b in zip(maps, back))
    with pytest.raises(ValueError, match='priors'):
        unflatten_levels(flat, [(4, 4), (2, 3), (1, 1)], [6, 6, 4])


def _det_options(root: Path) -> list[str]:
    return ['--cfg-options', f'test_dataloader.dataset.data_root={root}/',
            f'test_evaluator.ann_file={root}/annotations/instances_val.json',
            'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']


def _seg_options(root: Path) -> list[str]:
    return ['--cfg-options', f'test_dataloader.dataset.data_root={root}/VOC2012/',
            f'train_dataloader.dataset.data_root={root}/VOC2012/',
            'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']


@pytest.fixture(scope='module')
def sharp_detector(tmp_path_factory) -> tuple[Path, Path]:
    """A checkpoint of the demo detector with random BatchNorm statistics and class logits spread as a
    trained head's are (untrained scores are near-uniform, and their ties are broken arbitrarily), and its
    fp32 ONNX export."""
    model = randomize_batchnorm(build_model(DET_CONFIG))
    with torch.no_grad():
        for conv in model.bbox_head.cls_convs:
            conv.weight.mul_(8)
    work = tmp_path_factory.mktemp('sharp_detector')
    checkpoint = work / 'model.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    run_tool('export_onnx', DET_CONFIG, checkpoint, '--out', work / 'model.onnx')
    return checkpoint, work / 'model.onnx'


def _coco_metrics(result) -> list[float]:
    return [float(v) for v in re.search(r'bbox_mAP_copypaste: ([\d. -]+)', result.stdout + result.stderr).group(1).split()]


@pytest.mark.slow
def test_detector_scores_the_same_in_torch_prepared_and_onnxruntime(sharp_detector, tiny_synthetic, tmp_path):
    """tools/test.py gives the same COCO metrics (to 0.001) for the model as built, prepared for inference
    (the default: BN folded, channels-last) and its ONNX network in onnxruntime."""
    checkpoint, onnx_path = sharp_detector
    runs = {'as_built': [checkpoint, '--no-prepare'], 'prepared': [checkpoint],
            'onnxruntime': [onnx_path, '--backend', 'onnxruntime']}
    metrics = {name: _coco_metrics(run_tool('test', DET_CONFIG, args[0], '--work-dir', tmp_path / name, *args[1:],
                                            *_det_options(tiny_synthetic)))
               for name, args in runs.items()}
    for name in ('prepared', 'onnxruntime'):
        assert max(abs(a - b) for a, b in zip(metrics[name], metrics['as_built'])) <= 0.001, metrics


def test_onnxruntime_model_gives_the_torch_detections(sharp_detector):
    """OnnxRuntimeModel.test_step (the network in onnxruntime, the config's pre- and post-processing
    around it) against the torch model's, on a batch of two noise images (textured, so that no two
    candidates tie) of different original sizes."""
    from mmdet.structures import DetDataSample

    from mvdense.apis import init_model
    from mvdense.deploy.onnx_model import onnxruntime_model

    checkpoint, onnx_path = sharp_detector
    model = init_model(str(DET_CONFIG), str(checkpoint))
    generator = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, 320, 320), generator=generator, dtype=torch.uint8) for _ in range(2)]
    metas = [dict(img_shape=(320, 320), ori_shape=(240, 320), scale_factor=(1.0, 4 / 3)),
             dict(img_shape=(320, 320), ori_shape=(640, 480), scale_factor=(2 / 3, 0.5))]

    def batch():
        return {'inputs': images, 'data_samples': [DetDataSample(metainfo=meta) for meta in metas]}

    with torch.no_grad():
        expected = model.test_step(batch())
    got = onnxruntime_model(model, str(onnx_path)).test_step(batch())
    for ours, reference in zip(got, expected):
        ours, reference = ours.pred_instances, reference.pred_instances
        assert len(ours) == len(reference) > 10
        assert (ours.scores - reference.scores).abs().max() < 1e-4      # both best first
        # The same detections; near-equal scores may come in another order.
        same_label = ours.labels[:, None] == reference.labels[None, :]
        distance = (ours.bboxes[:, None] - reference.bboxes[None, :]).abs().amax(-1).masked_fill(~same_label, 1e9)
        assert distance.amin(1).max() < 1e-2 and distance.amin(0).max() < 1e-2


@pytest.mark.slow
def test_onnx_file_of_another_task_is_refused_in_one_line(tiny_synthetic, sharp_detector, tmp_path):
    _, onnx_path = sharp_detector
    result = run_tool('test', SEG_CONFIG, onnx_path, '--backend', 'onnxruntime', '--work-dir', tmp_path,
                      *_seg_options(tiny_synthetic), returncode=None)
    assert result.returncode != 0
    last_line = (result.stdout + result.stderr).strip().splitlines()[-1]
    assert str(onnx_path) in last_line and 'detection' in last_line and 'Traceback' not in result.stderr


@pytest.fixture(scope='module')
def quantized_segmentor(tiny_synthetic, tmp_path_factory) -> tuple[Path, Path, Path]:
    """A random-weight demo segmentor (random BN statistics), exported and quantised with 4 calibration
    images of the tiny synthetic set at 128 x 128."""
    work = tmp_path_factory.mktemp('quantized_segmentor')
    model = randomize_batchnorm(build_model(SEG_CONFIG))
    checkpoint = work / 'model.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    run_tool('quantize', SEG_CONFIG, checkpoint, '--out', work / 'model_int8.onnx', '--calibration-images', 4,
             '--input-size', 128, 128, *_seg_options(tiny_synthetic))
    return checkpoint, work / 'model.onnx', work / 'model_int8.onnx'


@pytest.mark.slow
def test_quantized_graph_keeps_attention_softmax_and_layernorm_in_float(quantized_segmentor):
    _, fp32, int8 = quantized_segmentor
    graph = onnx.load(str(int8)).graph
    weights = {t.name for t in graph.initializer}
    dequantized = {node.output[0] for node in graph.node if node.op_type == 'DequantizeLinear'}
    convs = [node for node in graph.node if node.op_type == 'Conv']
    # int8 weights in every conv but the first (the stem's, on the image), which stays float
    assert len(convs) > 10 and all(node.input[1] in dequantized for node in convs[1:])
    assert convs[0].input[0] not in dequantized and convs[0].input[1] not in dequantized
    for node in graph.node:
        if node.op_type in ('Softmax', 'LayerNormalization'):
            assert not any(name in dequantized for name in node.input), node.name
        if node.op_type == 'MatMul' and not any(name in weights or name in dequantized for name in node.input[1:]):
            assert node.input[0] not in dequantized, node.name               # q kᵀ and attn v stay float
    metadata = json.loads(Path(f'{int8}.json').read_text())
    assert metadata['quantization']['calibration_images'] == 4
    assert int8.stat().st_size < 0.5 * fp32.stat().st_size


@pytest.mark.slow
def test_quantized_segmentor_is_evaluated_like_the_fp32_one(quantized_segmentor, tiny_synthetic, tmp_path):
    checkpoint, fp32, int8 = quantized_segmentor
    scores = {}
    for name, args in (('torch', [checkpoint]), ('fp32', [fp32, '--backend', 'onnxruntime']),
                       ('int8', [int8, '--backend', 'onnxruntime'])):
        result = run_tool('test', SEG_CONFIG, *args[:1], '--work-dir', tmp_path / name, *args[1:],
                          *_seg_options(tiny_synthetic))
        scores[name] = float(re.search(r'mIoU: ([\d.]+)', result.stdout + result.stderr).group(1))
    assert abs(scores['fp32'] - scores['torch']) <= 0.1
    assert 0.0 <= scores['int8'] <= 100.0


@pytest.mark.slow
def test_quantized_logits_follow_the_fp32_logits(quantized_segmentor):
    """The int8 network computes nearly the fp32 function on an image of the calibration size: its
    logits correlate with the fp32 ones and most pixels keep their class."""
    from mvdense.deploy.onnx_export import make_session, run_session

    _, fp32, int8 = quantized_segmentor
    image = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0)) * 255
    reference = torch.from_numpy(run_session(make_session(str(fp32)), image)[0])
    quantized = torch.from_numpy(run_session(make_session(str(int8)), image)[0])
    assert quantized.shape == reference.shape
    correlation = torch.corrcoef(torch.stack([reference.flatten(), quantized.flatten()]))[0, 1]
    assert correlation > 0.95, correlation
    assert (quantized.argmax(1) == reference.argmax(1)).float().mean() > 0.8
