"""ONNX export and deployment: onnxruntime matches torch eager on the raw outputs (<= 1e-4), our
post-processing reproduces mmdet's boxes and mmseg's masks, dynamic batch and sizes (odd ones too) work,
and the inference rewrites (conv-BN folding, channels-last) keep the outputs."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, build_model, randomize_batchnorm
from mmengine.config import Config
from torch import nn

from mvdense.apis import DETECTION, task_of
from mvdense.deploy.onnx_export import export_model, export_module, make_session, run_session
from mvdense.deploy.optimize import prepare_for_inference
from mvdense.deploy.postprocess import DetectionPostProcess, segmentation_mask
from mvdense.deploy.wrappers import RawDetector, raw_network
from mvdense.models.backbones.mobilevit import MobileViT

DETECTOR_CONFIG = ROOT / 'configs/ssdlite_mobilevit_xxs_coco.py'
TOLERANCE = 1e-4
# A small mmseg segmentor on our backbone (stands in for every segmentation config: the export only
# relies on EncoderDecoder's extract_feat + decode_head).
SEGMENTOR_CONFIG = dict(default_scope='mmseg', model=dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[0., 0., 0.], std=[255., 255., 255.],
                           bgr_to_rgb=False),
    backbone=dict(type='MobileViT', arch='xxs', out_indices=(4,), output_stride=16),
    decode_head=dict(type='ASPPHead', in_channels=80, channels=32, dilations=(1, 6, 12, 18), num_classes=5,
                     in_index=0, norm_cfg=dict(type='BN'), align_corners=False,
                     loss_decode=dict(type='CrossEntropyLoss')),
    test_cfg=dict(mode='whole')))


def _image(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 3, height, width, generator=generator) * 255).round()


def _max_diffs(got: list[np.ndarray], expected) -> list[float]:
    expected = expected if isinstance(expected, tuple) else (expected,)
    return [float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected)]


def _exported(model: nn.Module, directory: Path, input_size: tuple[int, int]):
    """(model, path, metadata, onnxruntime session) of ``model`` exported at ``input_size``."""
    path = str(directory / 'model.onnx')
    metadata = export_model(model, path, input_size)
    return model, path, metadata, make_session(path)


@pytest.fixture(scope='module')
def detector_export(tmp_path_factory):
    model = randomize_batchnorm(build_model(DETECTOR_CONFIG))
    return _exported(model, tmp_path_factory.mktemp('detector'), (320, 320))


@pytest.fixture(scope='module')
def segmentor_export(tmp_path_factory):
    model = randomize_batchnorm(build_model(Config(SEGMENTOR_CONFIG)))
    return _exported(model, tmp_path_factory.mktemp('segmentor'), (96, 128))


def test_detector_raw_outputs_match_eager_with_dynamic_batch(detector_export):
    model, path, metadata, session = detector_export
    image = _image(2, 320, 320)
    with torch.no_grad():
        expected = raw_network(model)(image)
    got = run_session(session, image)
    assert [g.shape for g in got] == [(2, 3232, 81), (2, 3232, 4)]
    assert max(_max_diffs(got, expected)) <= TOLERANCE
    assert metadata['input']['dynamic_batch'] and not metadata['input']['dynamic_size']
    with open(path + '.json') as file:
        assert json.load(file)['postprocess']['level_sizes'] == [2400, 600, 150, 54, 24, 4]


def _mmdet_detections(model: nn.Module, cls_flat: torch.Tensor, box_flat: torch.Tensor):
    """mmdet's own post-processing (``SSDHead.predict_by_feat``) on flattened raw outputs [1, A, K]."""
    head = model.bbox_head
    with torch.no_grad():
        cls_maps, _ = head(model.extract_feat(torch.zeros(1, 3, 320, 320)))
    cls_levels, box_levels, start = [], [], 0
    for level_map, anchors in zip(cls_maps, head.num_base_priors):
        height, width = level_map.shape[-2:]
        count = height * width * anchors
        cls_levels.append(cls_flat[:, start:start + count].reshape(1, height, width, -1).permute(0, 3, 1, 2))
        box_levels.append(box_flat[:, start:start + count].reshape(1, height, width, -1).permute(0, 3, 1, 2))
        start += count
    meta = dict(img_shape=(320, 320), ori_shape=(320, 320), scale_factor=(1.0, 1.0))
    return head.predict_by_feat(cls_levels, box_levels, batch_img_metas=[meta], rescale=False)[0]


def test_detection_postprocess_reproduces_mmdet(detector_export):
    model, path, _, session = detector_export
    post = DetectionPostProcess.from_json(path + '.json')
    image = _image(1, 320, 320, seed=1)
    with torch.no_grad():
        cls_logits, box_deltas = raw_network(model)(image)
    # Untrained heads give near-uniform, often exactly tied scores (whose order is arbitrary); spread
    # them as a trained head would, identically for both sides.
    generator = torch.Generator().manual_seed(1)
    cls_noise = torch.randn(cls_logits.shape, generator=generator) * 3
    box_noise = torch.randn(box_deltas.shape, generator=generator) * 0.5
    post.score_thr = model.bbox_head.test_cfg.score_thr = 0.3
    expected = _mmdet_detections(model, cls_logits + cls_noise, box_deltas + box_noise)
    boxes, scores, labels = post((cls_logits + cls_noise)[0], (box_deltas + box_noise)[0])
    assert len(expected) == len(boxes) == post.max_per_img
    assert torch.equal(labels, expected.labels)
    assert (boxes - expected.bboxes).abs().max() <= 1e-3
    assert (scores - expected.scores).abs().max() <= 1e-6

    # onnxruntime's raw outputs give the same detections.
    ort_cls, ort_box = (torch.from_numpy(a) for a in run_session(session, image))
    ort_boxes, ort_scores, ort_labels = post((ort_cls + cls_noise)[0], (ort_box + box_noise)[0])
    assert torch.equal(ort_labels, labels)
    assert (ort_boxes - boxes).abs().max() <= 1e-3


def test_detection_postprocess_rescales_and_checks_prior_count(detector_export):
    _, path, _, _ = detector_export
    post = DetectionPostProcess.from_json(path + '.json')
    cls_logits = torch.randn(3232, 81, generator=torch.Generator().manual_seed(2)) * 3
    box_deltas = torch.zeros(3232, 4)
    boxes, _, _ = post(cls_logits, box_deltas)
    halved, _, _ = post(cls_logits, box_deltas, scale_factor=(2.0, 2.0))
    assert torch.allclose(halved, boxes / 2)
    with pytest.raises(ValueError, match='priors'):
        post(cls_logits[:100], box_deltas[:100])


@pytest.mark.parametrize('batch, height, width', [(1, 96, 128), (2, 97, 133), (1, 65, 33)])
def test_segmentor_dynamic_sizes_match_eager_and_mmseg(segmentor_export, batch, height, width):
    model, _, metadata, session = segmentor_export
    assert metadata['input']['dynamic_size']
    image = _image(batch, height, width)
    with torch.no_grad():
        expected = raw_network(model)(image)
    (got,) = run_session(session, image)
    assert got.shape == (batch, 5, height, width)
    assert max(_max_diffs([got], expected)) <= TOLERANCE

    # Masks: ours from onnxruntime's logits vs mmseg's predict on the same image.
    from mmseg.structures import SegDataSample

    meta = dict(img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width))
    with torch.no_grad():
        data = model.data_preprocessor({'inputs': [image[0].to(torch.uint8)],
                                        'data_samples': [SegDataSample(metainfo=meta)]}, False)
        reference = model.predict(data['inputs'], data['data_samples'])[0].pred_sem_seg.data[0]
    mask = segmentation_mask(torch.from_numpy(got[:1]))[0]
    # Pixels where the two best logits are closer than the numerical noise may go either way.
    top2 = expected[0].topk(2, dim=0).values
    decided = (top2[0] - top2[1]) > 1e-4
    assert torch.equal(mask[decided], reference[decided])


def test_mobilevit_unfold_fold_and_resize_export_at_odd_sizes(tmp_path):
    backbone = randomize_batchnorm(MobileViT('xxs', out_indices=(2, 3, 4)))
    path = str(tmp_path / 'backbone.onnx')
    axes = {'image': {0: 'batch', 2: 'height', 3: 'width'}}
    axes.update({name: {0: 'batch', 2: 'h', 3: 'w'} for name in ('s8', 's16', 's32')})
    export_module(backbone, torch.rand(1, 3, 64, 64), path, ['s8', 's16', 's32'], axes)
    session = make_session(path)
    # 97 x 161: every MobileViT block resizes (odd maps); 64 x 96: none does; 32 x 32: the minimum.
    for batch, height, width in [(3, 32, 32), (1, 97, 161), (2, 64, 96)]:
        image = torch.rand(batch, 3, height, width)
        with torch.no_grad():
            expected = backbone(image)
        got = run_session(session, image)
        assert [g.shape for g in got] == [tuple(e.shape) for e in expected]
        assert max(_max_diffs(got, tuple(expected))) <= TOLERANCE


def test_attention_exports_fused_for_onnxruntime_or_portable(tmp_path):
    """Long attentions become onnxruntime's fused MultiHeadAttention (no [N, N] Softmax in the graph),
    short ones stay plain; ``fused_attention=False`` writes plain ONNX. All match eager at odd sizes."""
    import onnx

    backbone = randomize_batchnorm(MobileViT('xxs', out_indices=(4,)))
    axes = {'image': {0: 'batch', 2: 'height', 3: 'width'}, 's32': {0: 'batch', 2: 'h', 3: 'w'}}
    layers = sum(isinstance(m, nn.Linear) and m.out_features == 3 * m.in_features for m in backbone.modules())
    assert layers == 9                                        # transformer layers of MobileViT-XXS: 2 + 4 + 3
    image = torch.rand(2, 3, 97, 133)
    with torch.no_grad():
        expected = backbone(image)
    ops = {}
    # Traced at 128 x 128: 64, 16 and 4 tokens in the three MobileViT blocks (2 + 4 + 3 layers).
    for name, kwargs in {'all': dict(fused_min_tokens=0), 'long': dict(fused_min_tokens=64),
                         'none': dict(fused_attention=False)}.items():
        path = str(tmp_path / f'{name}.onnx')
        export_module(backbone, torch.rand(1, 3, 128, 128), path, ['s32'], axes, **kwargs)
        ops[name] = [(node.domain, node.op_type) for node in onnx.load(path).graph.node]
        assert max(_max_diffs(run_session(make_session(path), image), tuple(expected))) <= TOLERANCE
    fused, softmax = ('com.microsoft', 'MultiHeadAttention'), ('', 'Softmax')
    assert ops['all'].count(fused) == layers and softmax not in ops['all']
    assert ops['long'].count(fused) == 2 and ops['long'].count(softmax) == layers - 2
    assert ops['none'].count(softmax) == layers and not any(domain for domain, _ in ops['none'])


# The smallest detector and segmentor of each backbone family (the larger archs differ only in widths and
# depths; ``tools/export_onnx.py`` was run on every shipped config, see benchmarks/results.md).
FAMILY_CONFIGS = ['configs/ssdlite_mobilevit_xxs_coco.py', 'configs/deeplabv3_mobilevit_xxs_voc.py',
                  'configs/ssdlite_mobileformer_151m_coco.py', 'configs/deeplabv3_mobileformer_151m_voc.py']


@pytest.mark.slow
@pytest.mark.parametrize('config', FAMILY_CONFIGS)
def test_each_family_config_exports(config, tmp_path):
    """A detector and a segmentor config of each family export; onnxruntime matches eager on a batch
    of 2 (segmentors: traced at 64 x 64, checked at an odd 65 x 97)."""
    model = randomize_batchnorm(build_model(config))
    traced, checked = ((320, 320), (320, 320)) if task_of(model) == DETECTION else ((64, 64), (65, 97))
    path = str(tmp_path / 'model.onnx')
    export_model(model, path, traced)
    image = _image(2, *checked)
    with torch.no_grad():
        expected = raw_network(model)(image)
    assert max(_max_diffs(run_session(make_session(path), image), expected)) <= TOLERANCE


def test_detectors_without_priors_are_refused_clearly():
    """DETR-style heads (e.g. E2E-Mobile-Former) have no priors for DetectionPostProcess to decode against."""
    detector = nn.Module()
    detector.bbox_head = nn.Linear(1, 1)
    with pytest.raises(TypeError, match='anchor-based'):
        RawDetector(detector)


def test_fixed_size_export_has_no_identity_resizes(tmp_path):
    import onnx

    backbone = MobileViT('xxs', out_indices=(4,)).eval()
    # 64 x 64: every MobileViT block's map is a multiple of the patch size, so nothing to resize.
    export_module(backbone, torch.rand(1, 3, 64, 64), str(tmp_path / 'fixed.onnx'), ['s32'])
    export_module(backbone, torch.rand(1, 3, 64, 64), str(tmp_path / 'any.onnx'), ['s32'],
                  {'image': {0: 'batch', 2: 'height', 3: 'width'}})
    resizes = {name: sum(node.op_type == 'Resize' for node in onnx.load(str(tmp_path / name)).graph.node)
               for name in ('fixed.onnx', 'any.onnx')}
    assert resizes == {'fixed.onnx': 0, 'any.onnx': 6}  # two per MobileViT block
    assert all(block.trace_any_size for block in backbone.modules() if hasattr(block, 'trace_any_size'))


def test_prepare_for_inference_keeps_outputs_and_removes_batchnorm(detector_export):
    model, _, _, _ = detector_export
    image = _image(1, 320, 320, seed=3)
    with torch.no_grad():
        expected = raw_network(model)(image)
        prepared = copy.deepcopy(model)
        prepare_for_inference(prepared, entry=prepared.backbone)
        got = raw_network(prepared)(image)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in prepared.modules())
    for g, e in zip(got, expected):
        assert (g - e).abs().max() <= TOLERANCE


def test_channels_last_backbone_matches_and_stays_channels_last():
    backbone = randomize_batchnorm(MobileViT('xxs', out_indices=(2, 3, 4)))
    image = torch.rand(1, 3, 65, 98)
    with torch.no_grad():
        expected = backbone(image)
        prepared = prepare_for_inference(copy.deepcopy(backbone))
        got = prepared(image)
    for g, e in zip(got, expected):
        assert g.is_contiguous(memory_format=torch.channels_last)
        assert (g - e).abs().max() <= TOLERANCE
