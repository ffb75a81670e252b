"""ONNX export of DETR-style detectors (E2E-MF): image -> last-layer logits and boxes plus the head's own
top-k detections in the graph (no NMS). onnxruntime matches torch eager (raw outputs <= 1e-4, the same
detections) at the traced size and at other sizes and batches, the check catches a graph that differs,
and the wrapper's detections are mmdet's ``predict`` (DABDETRHead's sigmoid top-k for ours, DETRHead's
softmax for mmdet's DETR)."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from conftest import ROOT, build_model, load_tool, randomize_batchnorm
from mmdet.structures import DetDataSample

from mvdense.deploy.onnx_export import (
    exceeded_tolerances,
    export_model,
    make_session,
    output_differences,
    run_session,
)
from mvdense.deploy.wrappers import END_TO_END_OUTPUTS, RawDetector, RawEndToEndDetector, raw_network

DEMO = ROOT / 'configs/demo/e2e_mobileformer_151m_synthetic.py'   # 20 queries, 3 classes, top 50
TRACED = (160, 192)


def _image(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    return (torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed)) * 255).round()


@pytest.fixture(scope='module')
def demo_export(tmp_path_factory):
    """(model, path, metadata, session): the demo detector, random weights and BatchNorm statistics,
    exported at 160 x 192 with the defaults (dynamic batch, height and width)."""
    torch.manual_seed(0)
    model = randomize_batchnorm(build_model(DEMO))
    path = str(tmp_path_factory.mktemp('e2e') / 'e2e.onnx')
    metadata = export_model(model, path, TRACED)
    return model, path, metadata, make_session(path)


def _output(outputs, name: str):
    return outputs[END_TO_END_OUTPUTS.index(name)]


@pytest.mark.parametrize('batch, height, width', [(2, *TRACED), (1, 129, 257), (3, 224, 160)])
def test_onnxruntime_matches_eager_at_any_batch_and_size(demo_export, batch, height, width):
    model, _, _, session = demo_export
    image = _image(batch, height, width, seed=height)
    with torch.no_grad():
        expected = raw_network(model)(image)
    got = run_session(session, image)
    assert [g.shape for g in got] == [(batch, 20, 3), (batch, 20, 4), (batch, 50, 4), (batch, 50), (batch, 50)]
    assert _output(got, 'labels').dtype == np.int64
    for name in ('query_logits', 'query_boxes'):
        assert np.abs(_output(got, name) - _output(expected, name).numpy()).max() <= 1e-4, name
    # The same detections: same (query, class) pairs in the same order, boxes in pixels within 1e-3.
    np.testing.assert_array_equal(_output(got, 'labels'), _output(expected, 'labels').numpy())
    assert np.abs(_output(got, 'boxes') - _output(expected, 'boxes').numpy()).max() <= 1e-3
    assert np.abs(_output(got, 'scores') - _output(expected, 'scores').numpy()).max() <= 1e-5
    boxes = _output(got, 'boxes')
    assert boxes.min() >= 0 and boxes[..., 0::2].max() <= width and boxes[..., 1::2].max() <= height
    assert not exceeded_tolerances(output_differences(model, session, image))


def test_graph_has_topk_and_no_nms_and_the_sidecar_describes_it(demo_export):
    import onnx

    _, path, metadata, _ = demo_export
    ops = {node.op_type for node in onnx.load(path).graph.node}
    assert 'TopK' in ops and 'NonMaxSuppression' not in ops
    with open(path + '.json') as file:
        assert json.load(file) == metadata
    assert metadata['outputs'] == END_TO_END_OUTPUTS
    assert metadata['input']['dynamic_size'] and metadata['input']['traced_size'] == list(TRACED)
    assert metadata['input']['in_graph']['swap_channels']                      # the config's bgr_to_rgb
    assert metadata['class_names'] == ['circle', 'rectangle', 'triangle']
    assert 'no NMS' in metadata['outputs_layout']['postprocess']
    assert 'postprocess' not in metadata                                      # nothing left to do outside


def test_check_catches_a_graph_that_differs(demo_export):
    """The ORT-vs-eager comparison fails on a model that moved by 1e-3 after the export."""
    model, _, _, session = demo_export
    moved = copy.deepcopy(model)
    with torch.no_grad():
        moved.bbox_head.fc_cls.bias.add_(1e-3)
    assert 'query_logits' in exceeded_tolerances(output_differences(moved, session, _image(1, *TRACED)))
    assert exceeded_tolerances({'labels': 1.0, 'boxes': 5e-4, 'query_boxes': 5e-5}) == {'labels': 1.0}


def _samples(batch: int, height: int, width: int) -> list[DetDataSample]:
    meta = dict(img_shape=(height, width), ori_shape=(height, width), batch_input_shape=(height, width),
                scale_factor=(1.0, 1.0))
    return [DetDataSample(metainfo=meta) for _ in range(batch)]


def _assert_same_as_mmdet_predict(model, image: torch.Tensor) -> None:
    """The wrapper's detections are mmdet's data preprocessor + ``predict(rescale=False)``."""
    network = raw_network(model)
    assert isinstance(network, RawEndToEndDetector)
    batch, _, height, width = image.shape
    with torch.no_grad():
        *_, boxes, scores, labels = network(image)
        data = model.data_preprocessor({'inputs': list(image.to(torch.uint8)),
                                        'data_samples': _samples(batch, height, width)}, False)
        results = model.predict(data['inputs'], data['data_samples'], rescale=False)
    for index, result in enumerate(results):
        instances = result.pred_instances
        assert torch.equal(labels[index], instances.labels)
        assert (scores[index] - instances.scores).abs().max() <= 1e-6
        assert (boxes[index] - instances.bboxes).abs().max() <= 1e-4


def test_detections_are_mmdets_predict_for_e2e_mobileformer(demo_export):
    model, _, _, _ = demo_export
    _assert_same_as_mmdet_predict(model, _image(2, 128, 160, seed=5))


def test_detections_are_mmdets_predict_for_detr():
    """mmdet's DETR-R50 (softmax head, background last): the same wrapper reproduces its predict."""
    from mmengine.hub import get_config

    torch.manual_seed(0)
    model = build_model(get_config('mmdet::detr/detr_r50_8xb2-150e_coco.py'),
                        cfg_options={'model.bbox_head.num_classes': 5})
    _assert_same_as_mmdet_predict(model, _image(1, 96, 128, seed=6))
    with pytest.raises(TypeError, match='anchor-based'):
        RawDetector(model)


def test_export_tool_checks_the_e2e_export(tmp_path, capsys):
    """tools/export_onnx.py on the demo config: dynamic size by default, checked at the traced and an
    odd size, per output."""
    out = str(tmp_path / 'demo.onnx')
    assert load_tool('export_onnx').main([str(DEMO), '--input-size', *map(str, TRACED), '--out', out]) == out
    printed = capsys.readouterr().out
    assert 'dynamic height/width' in printed and printed.count('onnxruntime vs torch eager') == 2
    assert 'labels 0.00e+00' in printed


def test_export_tool_fails_a_trained_detector_and_only_reports_a_random_one(tmp_path, capsys, monkeypatch):
    """Beyond tolerance, the tool stops when a checkpoint was given; with random weights (nearly tied
    proposal scores, see the tool's docstring) it prints the differences and a note."""
    tool = load_tool('export_onnx')
    monkeypatch.setattr(tool, 'verify', lambda *args: {'boxes': 5.0})
    out = str(tmp_path / 'demo.onnx')
    assert tool.main([str(DEMO), '--input-size', *map(str, TRACED), '--out', out]) == out
    assert 'give a CHECKPOINT' in capsys.readouterr().out
    checkpoint = tmp_path / 'model.pth'
    torch.save({'state_dict': build_model(DEMO).state_dict(), 'meta': {}}, checkpoint)
    with pytest.raises(SystemExit, match='boxes 5.00e'):
        tool.main([str(DEMO), str(checkpoint), '--input-size', *map(str, TRACED), '--out', out])
