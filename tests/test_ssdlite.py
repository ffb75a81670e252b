"""SSDLite-MobileViT: parameter counts against ml-cvnets, prior layout, and prediction (the mmdet 3.3.0
``SSDHead.predict`` crash)."""
from __future__ import annotations

import pytest
import torch
from conftest import build_model

from mvdense.models.layers import count_parameters

# Counted from ml-cvnets' SSD-MobileViT code (80 classes + background).
CVNETS_PARAMS = {'xxs': 1_755_050, 'xs': 2_742_042, 's': 5_738_826}


def build_detector(arch: str):
    return build_model(f'configs/ssdlite_mobilevit_{arch}_coco.py')


@pytest.mark.parametrize('arch', sorted(CVNETS_PARAMS))
def test_parameters_match_cvnets(arch):
    assert count_parameters(build_detector(arch)) == CVNETS_PARAMS[arch]


def test_levels_and_priors_at_320():
    model = build_detector('xxs')
    with torch.no_grad():
        cls_scores, bbox_preds = model._forward(torch.rand(1, 3, 320, 320))
    assert [tuple(c.shape[-2:]) for c in cls_scores] == [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    assert [c.shape[1] for c in cls_scores] == [6 * 81] * 5 + [4 * 81]
    assert [b.shape[1] for b in bbox_preds] == [6 * 4] * 5 + [4 * 4]
    generator = model.bbox_head.prior_generator
    priors = generator.grid_priors([c.shape[-2:] for c in cls_scores], device='cpu')
    # ml-cvnets: level k has boxes of side s_k * 320 and sqrt(s_k * s_k+1) * 320, s = linspace(0.1, 1.05, 7).
    scales = torch.linspace(0.1, 1.05, 7)
    for level, base in enumerate(generator.base_anchors):
        sides = base[:, 2:] - base[:, :2]
        square = sides[(sides[:, 0] - sides[:, 1]).abs() < 1e-3, 0]
        expected = torch.tensor([scales[level] * 320, (scales[level] * scales[level + 1]).sqrt() * 320])
        assert torch.allclose(square.sort().values, expected.sort().values, atol=1e-2)
    # centres at (i + 0.5) * 320 / size on every level, the 3x3 level included.
    centres = (priors[3][:, :2] + priors[3][:, 2:]) / 2
    expected_centres = torch.tensor([0.5, 1.5, 2.5]) * 320 / 3
    assert (centres[:, 0, None] - expected_centres).abs().min(dim=1).values.max() < 1e-3


def cvnets_priors(feature_sizes: list[int], ratios: list[list[int]]) -> torch.Tensor:
    """ml-cvnets' SSD priors (``SSDAnchorGenerator``), relative to the image: per location (y, then x) the
    boxes of side s_k and sqrt(s_k * s_k+1), then a wide and a tall box per aspect ratio, every coordinate
    clamped to [0, 1]. Shape: [N, 4] (cx, cy, w, h)."""
    scales = torch.linspace(0.1, 1.05, len(feature_sizes) + 1, dtype=torch.float64)
    priors = []
    for level, (size, level_ratios) in enumerate(zip(feature_sizes, ratios)):
        small, large = scales[level].item(), (scales[level] * scales[level + 1]).sqrt().item()
        sides = [(small, small), (large, large)]
        for ratio in level_ratios:
            sides += [(small * ratio ** 0.5, small / ratio ** 0.5), (small / ratio ** 0.5, small * ratio ** 0.5)]
        for y in range(size):
            for x in range(size):
                priors += [((x + 0.5) / size, (y + 0.5) / size, w, h) for w, h in sides]
    return torch.tensor(priors).clamp(0, 1)


def test_priors_are_cvnets_priors_at_320():
    generator = build_detector('xxs').bbox_head.prior_generator
    sizes = [20, 10, 5, 3, 2, 1]
    priors = torch.cat(generator.grid_priors([(s, s) for s in sizes], device='cpu')).double()
    ours = torch.cat([(priors[:, :2] + priors[:, 2:]) / 2, priors[:, 2:] - priors[:, :2]], dim=1) / 320
    expected = cvnets_priors(sizes, [[2, 3]] * 5 + [[2]])
    assert ours.shape == expected.shape == (3232, 4)
    assert (ours - expected).abs().max() < 1e-6
    # The clamp bites on 18 priors (2x2 and 1x1 levels), which mmdet's SSDAnchorGenerator alone leaves wider
    # or taller than the image.
    assert int((expected[:, 2:] == 1).any(dim=1).sum()) == 18


def test_predict_returns_boxes():
    from mmdet.structures import DetDataSample

    model = build_detector('xxs')
    sample = DetDataSample(metainfo=dict(img_shape=(320, 320), ori_shape=(480, 640), scale_factor=(0.5, 2 / 3),
                                         batch_input_shape=(320, 320)))
    with torch.no_grad():
        results = model.predict(torch.rand(1, 3, 320, 320), [sample])
    instances = results[0].pred_instances
    assert len(instances) <= 200 and instances.bboxes.shape[-1] == 4
    assert (instances.scores >= 0.01).all()
    assert instances.bboxes[:, 2].max() <= 640 + 1e-3  # rescaled to the original image


def _spread_head_outputs(model, batch: int, seed: int):
    """Head maps for a batch of random images, with noise that spreads the scores as a trained head would
    (untrained heads give near-uniform, often exactly tied scores, whose order is arbitrary)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        cls_maps, box_maps = model.bbox_head(model.extract_feat(torch.rand(batch, 3, 320, 320, generator=generator)))
    cls_maps = [m + torch.randn(m.shape, generator=generator) * 3 for m in cls_maps]
    box_maps = [m + torch.randn(m.shape, generator=generator) * 0.5 for m in box_maps]
    return cls_maps, box_maps


@pytest.mark.parametrize('cvnets_rules', [False, True], ids=['mmdet-rules', 'cvnets-rules'])
def test_fast_predict_gives_mmdet_detections(cvnets_rules):
    """SSDLiteHead.predict_by_feat (top-k, per-class NMS) against mmdet's own path on the same maps: a
    batch of two, rescaled to different original sizes, with mmdet's test settings and with cvnets' (no
    clip before NMS, max_per_class, clip after NMS)."""
    from mmdet.models.dense_heads import SSDHead

    model = build_detector('xxs')
    head = model.bbox_head
    head.test_cfg.score_thr = 0.3
    if cvnets_rules:
        head.bbox_coder.clip_border = False
        head.test_cfg.update(max_per_class=20, clip_after_nms=True)
    cls_maps, box_maps = _spread_head_outputs(model, 2, seed=3)
    metas = [dict(img_shape=(320, 320), ori_shape=(480, 640), scale_factor=(0.5, 2 / 3)),
             dict(img_shape=(320, 320), ori_shape=(320, 160), scale_factor=(2.0, 1.0))]
    ours = head.predict_by_feat(cls_maps, box_maps, batch_img_metas=metas, rescale=True)
    reference = SSDHead.predict_by_feat(head, cls_maps, box_maps, batch_img_metas=metas, rescale=True)
    for fast, slow, meta in zip(ours, reference, metas):
        assert len(fast) == len(slow) > 20
        assert torch.equal(fast.labels, slow.labels)
        assert (fast.scores - slow.scores).abs().max() <= 1e-6
        assert (fast.bboxes - slow.bboxes).abs().max() <= 1e-3
        height, width = meta['ori_shape']
        clipped = bool((fast.bboxes[:, 0::2] <= width).all() and (fast.bboxes[:, 1::2] <= height).all())
        if cvnets_rules:
            assert clipped and int(torch.bincount(fast.labels).max()) <= 20
    if not cvnets_rules:
        assert max(len(r) for r in ours) == head.test_cfg.max_per_img


def test_fast_predict_falls_back_to_mmdet_for_other_nms():
    """Settings the fast path does not reproduce (soft-NMS here) take mmdet's path instead of giving other
    boxes."""
    from mmdet.models.dense_heads import SSDHead

    model = build_detector('xxs')
    head = model.bbox_head
    head.test_cfg.update(score_thr=0.3, nms=dict(type='soft_nms', iou_threshold=0.5, min_score=0.3))
    cls_maps, box_maps = _spread_head_outputs(model, 1, seed=4)
    metas = [dict(img_shape=(320, 320), ori_shape=(320, 320), scale_factor=(1.0, 1.0))]
    ours = head.predict_by_feat(cls_maps, box_maps, batch_img_metas=metas)[0]
    reference = SSDHead.predict_by_feat(head, cls_maps, box_maps, batch_img_metas=metas)[0]
    assert torch.equal(ours.bboxes, reference.bboxes) and torch.equal(ours.scores, reference.scores)
