"""Apple's trained SSD-MobileViT / DeepLabv3-MobileViT (ml-cvnets v0.1 model zoo) in mvdense: the whole-model
conversion against a manifest of cvnets' key names and shapes, a round trip, the fused SSD prediction split,
exactness errors, the zoo evaluation configs and their post-processing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import ROOT, build_model, load_tool, randomize_batchnorm
from test_mobilevit import _to_cvnets_layout

from mvdense.convert import convert_checkpoint
from mvdense.models.cvnets_convert import split_fused_prediction
from mvdense.models.layers import count_parameters

MANIFEST = json.loads((Path(__file__).parent / 'data' / 'cvnets_manifest.json').read_text())['models']
#: manifest entry -> (our paper config, the zoo evaluation config, layout name)
MODELS = {
    **{f'ssd_mobilevit_{arch}_320': (f'configs/ssdlite_mobilevit_{arch}_coco.py',
                                     f'configs/cvnets_zoo/ssd_mobilevit_{arch}_320_coco.py', 'cvnets-ssd-mobilevit')
       for arch in ('xxs', 'xs', 's')},
    **{f'deeplabv3_mobilevit_{arch}': (f'configs/deeplabv3_mobilevit_{arch}_voc.py',
                                       f'configs/cvnets_zoo/deeplabv3_mobilevit_{arch}_voc.py',
                                       'cvnets-deeplabv3-mobilevit')
       for arch in ('xxs', 'xs', 's')},
}
COCO_CLASSES_WITH_BACKGROUND = 81


def manifest_checkpoint(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A checkpoint in cvnets' layout with the manifest's keys and shapes (random values)."""
    generator = torch.Generator().manual_seed(seed)
    return {key: torch.randint(0, 100, shape, generator=generator) if key.endswith('num_batches_tracked')
            else torch.randn(shape, generator=generator) for key, shape in MANIFEST[name]['state_dict'].items()}


def shapes(state_dict: dict) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in state_dict.items()}


# Ours -> cvnets' names, written out from cvnets' module tree (the inverse of the converter).
def _conv_layer(rest: str) -> str:
    """Our ``ConvModule`` part -> cvnets' ``ConvLayer`` one: ``conv.X`` -> ``block.conv.X``, ``bn.X`` ->
    ``block.norm.X``."""
    part, tail = rest.split('.', 1)
    return f'block.{"norm" if part == "bn" else part}.{tail}'


def fuse_prediction(boxes: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Our box and class rows -> cvnets' fused rows (background first). [A*4, ...] + [A*81, ...] -> [A*85, ...]."""
    anchors = boxes.shape[0] // 4
    boxes = boxes.reshape(anchors, 4, *boxes.shape[1:])
    logits = logits.reshape(anchors, COCO_CLASSES_WITH_BACKGROUND, *logits.shape[1:])
    logits = torch.cat([logits[:, -1:], logits[:, :-1]], dim=1)
    return torch.cat([boxes, logits], dim=1).reshape(-1, *boxes.shape[2:])


def ssd_to_cvnets(state_dict: dict) -> dict:
    out = {}
    for key, value in state_dict.items():
        module, rest = key.split('.', 1)
        if module == 'backbone' or rest.startswith('cls_convs.'):
            continue
        group, index, tail = rest.split('.', 2)
        if group == 'projections':
            out[f'ssd_heads.{index}.proj_layer.{_conv_layer(tail)}'] = value
        elif group == 'extra_layers' and index == '3':
            out['extra_layers.os_-1.1.block.conv.weight'] = value
        elif group == 'extra_layers':
            half, tail = tail.split('.', 1)
            out[f'extra_layers.os_{64 * 2 ** int(index)}.{"dw_conv" if half == "depthwise" else "pw_conv"}.'
                f'{_conv_layer(tail)}'] = value
        elif group == 'depthwise_convs':
            out[f'ssd_heads.{index}.loc_cls_layer.dw_conv.{_conv_layer(tail)}'] = value
        elif group == 'reg_convs':
            conv = 'block.conv' if index == '5' else 'pw_conv.block.conv'
            fused = fuse_prediction(value, state_dict[f'bbox_head.cls_convs.{index}.{tail}'])
            out[f'ssd_heads.{index}.loc_cls_layer.{conv}.{tail}'] = fused
    return out


def deeplabv3_to_cvnets(state_dict: dict) -> dict:
    out = {}
    aspp = 'seg_head.aspp.aspp_layer.'
    for key, value in state_dict.items():
        if key.startswith('decode_head.aspp_branches.4.conv.'):
            out[aspp + 'convs.4.aspp_pool.conv_1x1.' + _conv_layer(key.split('.', 4)[4])] = value
        elif key.startswith('decode_head.aspp_branches.'):
            branch, tail = key.split('.', 3)[2:]
            out[aspp + f'convs.{branch}.{_conv_layer(tail)}'] = value
        elif key.startswith('decode_head.projection.'):
            out[aspp + 'project.' + _conv_layer(key.split('.', 2)[2])] = value
        elif key.startswith('decode_head.conv_seg.'):
            out['seg_head.classifier.classifier.block.conv.' + key.split('.')[-1]] = value
    return out


def to_cvnets_layout(state_dict: dict) -> dict:
    """Our detector's or segmentor's state dict in cvnets' key layout."""
    backbone = {key.removeprefix('backbone.'): value for key, value in state_dict.items()
                if key.startswith('backbone.')}
    head = ssd_to_cvnets(state_dict) if 'bbox_head.reg_convs.0.weight' in state_dict else deeplabv3_to_cvnets(
        state_dict)
    return {**{'encoder.' + key: value for key, value in _to_cvnets_layout(backbone).items()}, **head}


@pytest.mark.parametrize('name', sorted(MANIFEST))
def test_manifest_converts_onto_every_tensor_of_our_model(name):
    config, _, layout = MODELS[name]
    model = build_model(config)
    conversion = convert_checkpoint(manifest_checkpoint(name))
    assert conversion.layout == layout and conversion.skipped == []
    assert shapes(conversion.state_dict) == shapes(model.state_dict())
    model.load_state_dict(conversion.state_dict, strict=True)
    assert count_parameters(model) == MANIFEST[name]['parameters']


@pytest.mark.parametrize('name', ['ssd_mobilevit_xxs_320', 'deeplabv3_mobilevit_s'])
def test_round_trip_through_cvnets_layout(name):
    config = MODELS[name][0]
    ours = randomize_batchnorm(build_model(config))
    cvnets = to_cvnets_layout(ours.state_dict())
    assert shapes(cvnets) == {key: tuple(shape) for key, shape in MANIFEST[name]['state_dict'].items()}
    back = convert_checkpoint(cvnets).state_dict
    assert back.keys() == ours.state_dict().keys()
    assert all(torch.equal(back[key], value) for key, value in ours.state_dict().items())


def test_fused_rows_split_into_boxes_and_classes_with_background_last():
    # 2 anchors x (4 deltas + 3 classes, background first): row a * 7 + k holds 10 * a + k.
    fused = torch.tensor([10. * a + k for a in range(2) for k in range(7)])
    boxes, logits = split_fused_prediction(fused, num_classes=3)
    assert boxes.tolist() == [0, 1, 2, 3, 10, 11, 12, 13]
    assert logits.tolist() == [5, 6, 4, 15, 16, 14]   # classes 1, 2, then background
    weight = fused[:, None, None, None].expand(14, 5, 1, 1)
    weight_boxes, weight_logits = split_fused_prediction(weight, num_classes=3)
    assert weight_boxes.shape == (8, 5, 1, 1) and torch.equal(weight_logits[:, 0, 0, 0], logits)
    with pytest.raises(ValueError, match='not anchors x'):
        split_fused_prediction(torch.zeros(15), num_classes=3)


def test_inexact_conversion_names_the_keys():
    checkpoint = manifest_checkpoint('ssd_mobilevit_xxs_320')
    missing = dict(checkpoint)
    del missing['extra_layers.os_128.pw_conv.block.norm.running_var']
    with pytest.raises(ValueError, match=r'does not set: neck\.extra_layers\.1\.pointwise\.bn\.running_var'):
        convert_checkpoint(missing)
    with pytest.raises(ValueError, match=r'no place in the model: seg_head\.aux_head\.conv\.weight'):
        convert_checkpoint({**manifest_checkpoint('deeplabv3_mobilevit_xxs'),
                            'seg_head.aux_head.conv.weight': torch.zeros(1)})
    wrong = {**checkpoint, 'ssd_heads.0.proj_layer.block.conv.weight': torch.zeros(256, 64, 1, 1)}
    with pytest.raises(ValueError, match=r'ssd_heads\.0\.proj_layer\.block\.conv\.weight \(256, 64, 1, 1\) -> '
                                         r'neck\.projections\.0\.conv\.weight \(512, 64, 1, 1\)'):
        convert_checkpoint(wrong)


def test_convert_weights_then_the_zoo_config_loads_it(tmp_path, capsys):
    checkpoint = manifest_checkpoint('ssd_mobilevit_xxs_320', seed=1)
    torch.save(checkpoint, tmp_path / 'ssd_mobilevit_xxs_320.pt')
    load_tool('convert_weights').main([str(tmp_path / 'ssd_mobilevit_xxs_320.pt'), str(tmp_path / 'ours.pth')])
    assert 'cvnets-ssd-mobilevit' in capsys.readouterr().out
    from mvdense.apis import init_model

    model = init_model(str(ROOT / MODELS['ssd_mobilevit_xxs_320'][1]), str(tmp_path / 'ours.pth'))
    assert torch.equal(model.state_dict()['bbox_head.reg_convs.5.bias'],
                       checkpoint['ssd_heads.5.loc_cls_layer.block.conv.bias'].reshape(4, 85)[:, :4].reshape(-1))


def test_zoo_ssd_post_processing_is_cvnets():
    """Per class: threshold 0.05, NMS 0.5, at most 200, no cap per image; boxes clipped to the image after NMS
    (the coder does not clip)."""
    from mmdet.structures import DetDataSample

    model = build_model(MODELS['ssd_mobilevit_xxs_320'][1])
    head = model.bbox_head
    logits = torch.zeros(81)
    logits[3], logits[7] = 12., 11.   # classes 3 and 7 everywhere (scores 0.73 and 0.27)
    with torch.no_grad():
        for level, (cls_conv, reg_conv) in enumerate(zip(head.cls_convs, head.reg_convs)):
            cls_conv.weight.zero_()
            cls_conv.bias.copy_(logits.repeat(cls_conv.bias.numel() // 81))
            reg_conv.weight.zero_()
            # small boxes (few overlaps) on the fine levels, boxes larger than the image on the coarse ones
            size = -3. if level < 4 else 3.
            reg_conv.bias.copy_(torch.tensor([0., 0., size, size]).repeat(reg_conv.bias.numel() // 4))
    sample = DetDataSample(metainfo=dict(img_shape=(320, 320), ori_shape=(240, 480),
                                         scale_factor=(320 / 480, 320 / 240), batch_input_shape=(320, 320)))
    with torch.no_grad():
        found = model.predict(torch.rand(1, 3, 320, 320), [sample])[0].pred_instances
    counts = torch.bincount(found.labels, minlength=80)
    assert counts[3] == counts[7] == 200 and counts.sum() == 400
    assert (found.scores > 0.05).all()
    assert found.bboxes[:, 0::2].min() == 0 and found.bboxes[:, 0::2].max() == 480
    assert found.bboxes[:, 1::2].min() == 0 and found.bboxes[:, 1::2].max() == 240


def test_zoo_segmentor_resizes_logits_nearest_to_the_original_size():
    from mmseg.structures import SegDataSample

    model = build_model(MODELS['deeplabv3_mobilevit_xxs'][1])
    assert type(model).__name__ == 'NearestResizeEncoderDecoder'
    logits = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    sample = SegDataSample(metainfo=dict(ori_shape=(8, 6), img_shape=(4, 4), padding_size=[0, 0, 0, 0]))
    out = model.postprocess_result(logits, [sample])[0]
    expected = torch.nn.functional.interpolate(logits, size=(8, 6), mode='nearest')[0]
    assert torch.equal(out.seg_logits.data, expected)
    assert torch.equal(out.pred_sem_seg.data, expected.argmax(0, keepdim=True))
    # padding is removed and a horizontal flip undone before the resize
    padded = torch.nn.functional.pad(logits.flip(3), (0, 2, 0, 1))   # the network saw the flipped image, padded
    flipped = SegDataSample(metainfo=dict(ori_shape=(4, 4), img_shape=(4, 4), padding_size=[0, 2, 0, 1],
                                          flip=True, flip_direction='horizontal'))
    out = model.postprocess_result(padded, [flipped])[0]
    assert torch.equal(out.seg_logits.data, logits[0])


def test_zoo_segmentation_pipeline_scores_at_the_original_size(tmp_path):
    """The image is resized to 512x512 for the network, the label kept as loaded; the prediction is the
    network's 512x512 logits resized nearest to the original size."""
    import cv2
    import numpy as np
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope

    image = np.random.default_rng(0).integers(0, 255, (37, 50, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'a.png'), image)
    cv2.imwrite(str(tmp_path / 'a_label.png'), np.full((37, 50), 255, np.uint8))
    model = randomize_batchnorm(build_model(MODELS['deeplabv3_mobilevit_xxs'][1]))
    init_default_scope('mmseg')
    data = Compose(model.cfg.test_dataloader.dataset.pipeline)(dict(
        img_path=str(tmp_path / 'a.png'), seg_map_path=str(tmp_path / 'a_label.png'), reduce_zero_label=False,
        seg_fields=[]))
    assert data['inputs'].shape == (3, 512, 512) and data['data_samples'].gt_sem_seg.data.shape == (1, 37, 50)
    with torch.no_grad():
        result = model.test_step(dict(inputs=[data['inputs']], data_samples=[data['data_samples']]))[0]
        inputs = torch.from_numpy(cv2.resize(image, (512, 512), interpolation=cv2.INTER_LINEAR))
        logits = model.encode_decode(inputs.permute(2, 0, 1)[None].float() / 255,
                                     [dict(img_shape=(512, 512), pad_shape=(512, 512))])
    expected = torch.nn.functional.interpolate(logits, size=(37, 50), mode='nearest')[0]
    assert torch.allclose(result.seg_logits.data, expected, atol=1e-5)
