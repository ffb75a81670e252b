"""SSDLite-MobileViT: parameter counts against ml-cvnets, prior layout, and prediction (the mmdet 3.3.0
``SSDHead.predict`` crash)."""
from __future__ import annotations

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mvdense  # noqa: F401
from mvdense.models.layers import count_parameters

# Recounted from ml-cvnets' SSD-MobileViT code (80 classes + background).
CVNETS_PARAMS = {'xxs': 1.755e6, 'xs': 2.742e6, 's': 5.739e6}


def build_detector(arch: str, **overrides):
    from mmdet.registry import MODELS

    init_default_scope('mmdet')
    cfg = Config.fromfile(f'configs/ssdlite_mobilevit_{arch}_coco.py')
    cfg.model.backbone.init_cfg = None
    cfg.model.merge(overrides) if overrides else None
    return MODELS.build(cfg.model)


@pytest.mark.parametrize('arch', sorted(CVNETS_PARAMS))
def test_parameters_match_cvnets_recount(arch):
    params = count_parameters(build_detector(arch))
    assert abs(params - CVNETS_PARAMS[arch]) / CVNETS_PARAMS[arch] < 0.01


def test_levels_and_priors_at_320():
    model = build_detector('xxs').eval()
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


def test_predict_returns_boxes():
    from mmdet.structures import DetDataSample

    model = build_detector('xxs').eval()
    sample = DetDataSample(metainfo=dict(img_shape=(320, 320), ori_shape=(480, 640), scale_factor=(0.5, 2 / 3),
                                         batch_input_shape=(320, 320)))
    with torch.no_grad():
        results = model.predict(torch.rand(1, 3, 320, 320), [sample])
    instances = results[0].pred_instances
    assert len(instances) <= 200 and instances.bboxes.shape[-1] == 4
    assert (instances.scores >= 0.01).all()
    assert instances.bboxes[:, 2].max() <= 640 + 1e-3  # rescaled to the original image
