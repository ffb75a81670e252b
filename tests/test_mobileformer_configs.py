"""The Mobile-Former SSDLite and DeepLabv3 configs: they build through mmdet's / mmseg's registries, feed
the right stages to the neck / head (shapes at 320 and at an odd size), and have the parameter counts
recorded in the README (a changed arch table or channel list shows up here)."""
from __future__ import annotations

import pytest
import torch
from conftest import ROOT, build_model

from mvdense.models.layers import count_parameters

CONFIGS = ROOT / 'configs'
# Whole models, 80 COCO classes / 21 VOC classes (README, "Mobile-Former configs").
PARAMETERS = {
    'ssdlite_mobileformer_508m_coco.py': 9_400_290,
    'ssdlite_mobileformer_294m_coco.py': 7_501_978,
    'ssdlite_mobileformer_151m_coco.py': 5_775_446,
    'deeplabv3_mobileformer_508m_voc.py': 10_546_909,
    'deeplabv3_mobileformer_294m_voc.py': 8_341_925,
    'deeplabv3_mobileformer_151m_voc.py': 6_194_209,
}


@pytest.mark.parametrize('name', sorted(PARAMETERS))
def test_builds_with_recorded_parameters_and_imagenet_input(name):
    model = build_model(CONFIGS / name)
    assert type(model.backbone).__name__ == 'MobileFormer'
    assert count_parameters(model) == PARAMETERS[name]
    # The authors' weights expect RGB normalised with the ImageNet mean/std, not MobileViT's BGR / 255.
    preprocessor = model.cfg.model.data_preprocessor
    assert preprocessor.bgr_to_rgb and preprocessor.mean == [123.675, 116.28, 103.53]


@pytest.mark.parametrize('size', [(320, 320), (333, 517)])
def test_ssdlite_levels(size):
    model = build_model(CONFIGS / 'ssdlite_mobileformer_151m_coco.py')
    with torch.no_grad():
        features = model.neck(model.backbone(torch.rand(1, 3, *size)))
    strides = (16, 32, 64, 128, 256)
    assert [f.shape[-2:] for f in features[:5]] == [
        (-(-size[0] // s), -(-size[1] // s)) for s in strides]
    assert features[-1].shape[-2:] == (1, 1)


def test_deeplabv3_runs_at_output_stride_16():
    model = build_model(CONFIGS / 'deeplabv3_mobileformer_151m_voc.py')
    with torch.no_grad():
        (feature,) = model.extract_feat(torch.rand(1, 3, 333, 517))
        logits = model.decode_head([feature])
    assert feature.shape == (1, 128, 21, 33)
    assert logits.shape == (1, 21, 21, 33)
