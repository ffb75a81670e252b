"""MobileViT backbone: fidelity to the authors' models, shapes, options, registry, weight conversion."""
from __future__ import annotations

import pytest
import torch
from conftest import load_tool, randomize_batchnorm

from mvdense.models.backbones.mobilevit import MobileViT
from mvdense.models.backbones.mobilevit_convert import convert_cvnets_mobilevit, convert_timm_mobilevit
from mvdense.models.layers import count_parameters

# Parameters of apple/ml-cvnets' ImageNet checkpoints (1000-class head included).
IMAGENET_PARAMS = {'xxs': 1_272_024, 'xs': 2_317_848, 's': 5_578_632}
STAGE_CHANNELS = {'xxs': (16, 24, 48, 64, 80), 'xs': (32, 48, 64, 80, 96), 's': (32, 64, 96, 128, 160)}


@pytest.mark.parametrize('arch', sorted(IMAGENET_PARAMS))
def test_imagenet_parameter_count_matches_authors(arch):
    model = MobileViT(arch, out_indices=(4,), num_classes=1000)
    assert count_parameters(model) == IMAGENET_PARAMS[arch]


@pytest.mark.parametrize('arch', sorted(STAGE_CHANNELS))
def test_all_stages_at_odd_input_size(arch):
    model = MobileViT(arch, out_indices=(0, 1, 2, 3, 4)).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 333, 517))
    assert model.out_channels == list(STAGE_CHANNELS[arch])
    for out, channels, stride in zip(outs, STAGE_CHANNELS[arch], (2, 4, 8, 16, 32)):
        assert out.shape == (1, channels, -(-333 // stride), -(-517 // stride))
        assert torch.isfinite(out).all()


@pytest.mark.parametrize('output_stride, strides', [(16, (8, 16, 16)), (8, (8, 8, 8))])
def test_reduced_output_stride(output_stride, strides):
    model = MobileViT('xxs', out_indices=(2, 3, 4), output_stride=output_stride).eval()
    outs = model(torch.rand(1, 3, 64, 96))
    assert [tuple(o.shape[-2:]) for o in outs] == [(64 // s, 96 // s) for s in strides]
    # Same parameters as the stride-32 model: only strides (and later dilations) change.
    assert count_parameters(model) == count_parameters(MobileViT('xxs', out_indices=(2, 3, 4)))


def test_output_stride_16_keeps_mobilevit_block_undilated():
    model = MobileViT('xxs', out_indices=(4,), output_stride=16)
    layer5 = model.stages[4]
    assert layer5[0].depthwise.conv.stride == (1, 1)
    assert layer5[0].depthwise.conv.dilation == (1, 1)
    assert layer5[1].local_conv.conv.dilation == (1, 1)


def test_minimum_input_size_32():
    outs = MobileViT('xxs', out_indices=(4,)).eval()(torch.rand(2, 3, 32, 32))
    assert outs[0].shape == (2, 80, 1, 1)


def test_final_conv_option():
    model = MobileViT('xs', out_indices=(3, 4), with_final_conv=True).eval()
    outs = model(torch.rand(1, 3, 64, 64))
    assert model.out_channels == [80, 384] and outs[1].shape[1] == 384


def test_frozen_stages_and_norm_eval():
    # frozen_stages=2: the stem and stages 0 and 1 (the contract's meaning, as in mmdet).
    model = MobileViT('xxs', out_indices=(4,), frozen_stages=2, norm_eval=True)
    model.train()
    assert not any(p.requires_grad for p in model.stem.parameters())
    assert not any(p.requires_grad for p in model.stages[1].parameters())
    assert all(p.requires_grad for p in model.stages[2].parameters())
    assert not model.stages[0].training
    batchnorms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert batchnorms and not any(m.training for m in batchnorms)
    # The transformer keeps training (dropout on) even with norm_eval.
    assert model.stages[2][1].transformer.training


def test_bad_arguments_are_named():
    with pytest.raises(KeyError, match='xxxs'):
        MobileViT('xxxs')
    with pytest.raises(ValueError, match='output_stride'):
        MobileViT('xxs', output_stride=4)
    with pytest.raises(ValueError, match='out_indices'):
        MobileViT('xxs', out_indices=(5,))


def test_registered_for_mmdet_and_mmseg():
    from mmdet.registry import MODELS as DET_MODELS
    from mmseg.registry import MODELS as SEG_MODELS

    import mvdense  # noqa: F401

    for registry in (DET_MODELS, SEG_MODELS):
        model = registry.build(dict(type='MobileViT', arch='xxs', out_indices=(3, 4)))
        assert isinstance(model, MobileViT)


@pytest.mark.parametrize('arch', ['xxs', 'xs', 's'])
def test_timm_weights_give_identical_features(arch):
    timm = pytest.importorskip('timm')
    generator = torch.Generator().manual_seed(0)
    reference = timm.create_model(f'mobilevit_{arch}', pretrained=False, num_classes=1000)
    randomize_batchnorm(reference, generator)
    ours = MobileViT(arch, out_indices=(0, 1, 2, 3, 4), num_classes=1000).eval()
    ours.load_state_dict(convert_timm_mobilevit(reference.state_dict()), strict=True)

    image = torch.rand(2, 3, 160, 224, generator=generator)
    with torch.no_grad():
        expected = []
        x = reference.stem(image)
        for stage in reference.stages:
            x = stage(x)
            expected.append(x)
        features = ours(image)
        logits = ours.forward_classifier(image)
    for got, want in zip(features, expected):
        assert got.shape == want.shape
        assert (got - want).abs().max().item() <= 1e-4
    assert (logits - reference(image)).abs().max().item() <= 1e-4


def _to_cvnets_layout(state_dict: dict) -> dict:
    """Writes our state dict in ml-cvnets' key layout (the inverse of the converter, spelled out)."""
    converted = {}
    for key, value in state_dict.items():
        new = key.replace('.bn.', '.norm.')
        parts = new.split('.')
        if parts[0] == 'stem':
            new = 'conv_1.block.' + '.'.join(parts[1:])
        elif parts[0] == 'final_conv':
            new = 'conv_1x1_exp.block.' + '.'.join(parts[1:])
        elif parts[0] == 'head':
            new = 'classifier.fc.' + '.'.join(parts[2:])
        else:
            stage, block, name, rest = int(parts[1]), parts[2], parts[3], parts[4:]
            prefix = f'layer_{stage + 1}.{block}.'
            simple = {'expand': 'block.exp_1x1.block.', 'depthwise': 'block.conv_3x3.block.',
                      'project': 'block.red_1x1.block.', 'local_conv': 'local_rep.conv_3x3.block.',
                      'from_tokens': 'conv_proj.block.', 'fusion': 'fusion.block.',
                      'to_tokens': 'local_rep.conv_1x1.block.conv.'}
            if name in simple:
                new = prefix + simple[name] + '.'.join(rest)
            elif name == 'norm':
                num_layers = len({k.split('.')[4] for k in state_dict
                                  if k.startswith(f'stages.{stage}.{block}.transformer.')})
                new = prefix + f'global_rep.{num_layers}.' + '.'.join(rest)
            else:  # transformer.k.<module>...
                layer, module = rest[0], '.'.join(rest[1:])
                module = (module.replace('norm1.', 'pre_norm_mha.0.').replace('attn.qkv.', 'pre_norm_mha.1.qkv_proj.')
                          .replace('attn.proj.', 'pre_norm_mha.1.out_proj.').replace('norm2.', 'pre_norm_ffn.0.')
                          .replace('ffn.fc1.', 'pre_norm_ffn.1.').replace('ffn.fc2.', 'pre_norm_ffn.4.'))
                new = prefix + f'global_rep.{layer}.' + module
        converted[new] = value
    return converted


def test_cvnets_layout_round_trip():
    source = MobileViT('xxs', out_indices=(4,), num_classes=1000).eval()
    cvnets_state = _to_cvnets_layout(source.state_dict())
    # Spot-check keys as ml-cvnets names them.
    for key in ('conv_1.block.conv.weight', 'layer_1.0.block.exp_1x1.block.norm.running_var',
                'layer_3.1.global_rep.2.weight', 'layer_4.1.global_rep.3.pre_norm_ffn.4.bias',
                'layer_5.1.local_rep.conv_1x1.block.conv.weight', 'classifier.fc.weight'):
        assert key in cvnets_state, key
    target = MobileViT('xxs', out_indices=(4,), num_classes=1000).eval()
    target.load_state_dict(convert_cvnets_mobilevit(cvnets_state), strict=True)
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(target.forward_classifier(image), source.forward_classifier(image))


def test_convert_weights_tool_output_loads_through_init_cfg(tmp_path):
    timm = pytest.importorskip('timm')
    convert_main = load_tool('convert_weights').main

    reference = timm.create_model('mobilevit_xxs', pretrained=False).eval()
    source, converted = tmp_path / 'timm_xxs.pth', tmp_path / 'mobilevit_xxs.pth'
    torch.save(reference.state_dict(), source)
    convert_main([str(source), str(converted)])

    model = MobileViT('xxs', out_indices=(4,), init_cfg=dict(type='Pretrained', checkpoint=str(converted)))
    model.init_weights()
    model.eval()
    image = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        expected = reference.stages(reference.stem(image))
        assert (model(image)[0] - expected).abs().max().item() <= 1e-4


def test_convert_weights_rejects_unknown_layout(tmp_path):
    convert_main = load_tool('convert_weights').main

    source = tmp_path / 'other.pth'
    torch.save({'fc.weight': torch.ones(2, 2)}, source)
    with pytest.raises(ValueError, match='unknown checkpoint layout'):
        convert_main([str(source), str(tmp_path / 'out.pth')])
