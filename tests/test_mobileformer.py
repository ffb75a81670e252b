"""Mobile-Former backbone: fidelity to the authors' models (parameters, MAdds, checkpoint layout), the
bridges' arithmetic, the inference fast path against the reference formulation, shapes, options,
registry."""
from __future__ import annotations

import copy
import re

import pytest
import torch
import torch.nn.functional as F

from mvdense.convert import convert_checkpoint
from mvdense.deploy.optimize import prepare_for_inference
from mvdense.models.backbones.mobileformer import (
    ARCHS,
    DyReLU,
    Former,
    FormerToMobile,
    MobileFormer,
    MobileToFormer,
    channel_shuffle,
    conv_bn,
    conv_bn_dyrelu,
    conv_bn_scaled,
    run_conv,
)
from mvdense.models.backbones.mobileformer_convert import convert_mobileformer_official
from mvdense.models.layers import count_parameters
from mvdense.registry import MODELS
from mvdense.utils.complexity import count_madds

# The authors' ImageNet models (1000 classes) at 224x224: parameters (M) and MAdds (M) as published,
# and the exact parameter counts and state-dict sizes of AAboys/MobileFormer's ``mobile_former_*``.
PUBLISHED = {  # arch: (params M, MAdds M)
    '508m': (13.98, 510.6), '294m': (11.42, 295.4), '214m': (9.43, 215.3), '151m': (7.60, 152.0),
    '96m': (4.59, 96.3), '52m': (3.47, 51.8), '26m': (3.23, 26.0),
}
AUTHORS_PARAMS = {'508m': 13_976_976, '294m': 11_422_648, '214m': 9_425_920, '151m': 7_595_828,
                  '96m': 4_585_252, '52m': 3_469_092, '26m': 3_232_788}
AUTHORS_STATE_DICT_SIZE = {'508m': 616, '294m': 616, '214m': 616, '151m': 616, '96m': 466, '52m': 460,
                           '26m': 460}
STAGE_CHANNELS = {'508m': [40, 72, 176, 240], '294m': [24, 48, 128, 192], '214m': [20, 40, 112, 160],
                  '151m': [16, 32, 88, 128], '96m': [16, 32, 88, 128], '52m': [12, 24, 64, 96],
                  '26m': [12, 24, 64, 96]}
STRIDES = (4, 8, 16, 32)


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter and BN statistic random (so that a misplaced tensor changes the output)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=generator)
            if name.endswith('running_var'):
                tensor.copy_(noise.abs() + 0.5)
            elif tensor.dim() == 1 and not name.endswith(('bias', 'running_mean')):
                tensor.copy_(1 + 0.2 * noise)   # norm scales
            else:
                tensor.copy_(0.2 * noise)
    return model


# ---------------------------------------------------------------------------------------- fidelity


@pytest.mark.parametrize('arch', sorted(PUBLISHED))
def test_imagenet_parameters_match_authors(arch):
    params = count_parameters(MobileFormer(arch, num_classes=1000))
    assert abs(params / 1e6 - PUBLISHED[arch][0]) <= 0.005 * PUBLISHED[arch][0]
    assert params == AUTHORS_PARAMS[arch]


@pytest.mark.parametrize('arch', sorted(PUBLISHED))
def test_imagenet_madds_match_authors(arch):
    """MAdds by mmengine's FlopAnalyzer (see mvdense.utils.complexity), the classifier included."""
    model = MobileFormer(arch, num_classes=1000).eval()
    madds = count_madds(model.forward_classifier, (1, 3, 224, 224)) / 1e6
    assert abs(madds - PUBLISHED[arch][1]) <= 0.03 * PUBLISHED[arch][1]


def test_26m_is_52m_with_grouped_pointwise_convs():
    small, grouped = MobileFormer('52m', num_classes=10), MobileFormer('26m', num_classes=10)
    assert ARCHS['26m']['blocks'] == ARCHS['52m']['blocks']
    assert grouped.blocks[0].mobile.expand[0].groups == 4 and small.blocks[0].mobile.expand[0].groups == 1
    assert grouped.blocks[1].mobile.depthwise1[0].groups == small.blocks[1].mobile.depthwise1[0].groups
    assert grouped.head.conv[0].groups == 4


def test_channel_shuffle_interleaves_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert channel_shuffle(x, 1) is x


@pytest.mark.parametrize('grad', [False, True])
def test_channel_shuffle_of_a_channels_last_map(grad):
    """The channels-last shuffle (index_select at inference, a transpose under autograd) is the NCHW one and
    stays channels-last."""
    x = torch.randn(2, 12, 3, 5)
    expected = x.view(2, 3, 4, 3, 5).transpose(1, 2).reshape(2, 12, 3, 5)
    with torch.set_grad_enabled(grad):
        out = channel_shuffle(x.contiguous(memory_format=torch.channels_last), 3)
    assert torch.equal(out, expected)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_dyrelu_slopes_span_the_authors_ranges():
    act = DyReLU(channels=3, token_dim=8)
    x = torch.tensor([-1.0, 2.0, 0.5]).view(1, 3, 1, 1)
    final = act.coefficients[2]
    with torch.no_grad():
        final.weight.zero_()
        final.bias.fill_(10.0)      # h_sigmoid -> 1: a1 = 2, a2 = 1, y = max(2x, x)
        assert act(x, torch.zeros(1, 8)).flatten().tolist() == [-1.0, 4.0, 1.0]
        final.bias.fill_(-10.0)     # h_sigmoid -> 0: a1 = 0, a2 = -1, y = max(0, -x)
        assert act(x, torch.zeros(1, 8)).flatten().tolist() == [1.0, 0.0, 0.0]


def attention(query, keys, values):
    """softmax(q k^T / sqrt(dim)) v over the last two axes, the textbook way."""
    weights = torch.einsum('...qc,...kc->...qk', query, keys) / query.shape[-1] ** 0.5
    return torch.einsum('...qk,...kc->...qc', weights.softmax(dim=-1), values)


def split_heads(x, heads):
    """[B, L, C] -> [B, heads, L, C / heads]."""
    return x.view(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)


def merge_heads(x):
    return x.transpose(1, 2).flatten(2)


def test_mobile_to_former_is_gated_cross_attention_to_raw_pixels():
    bridge = MobileToFormer(channels=8, token_dim=12).eval()
    x, tokens = torch.randn(2, 8, 5, 7), torch.randn(2, 3, 12)
    pixels = x.flatten(2).transpose(1, 2)                                   # [B, HW, C]
    attended = merge_heads(attention(split_heads(bridge.q(tokens), 2), split_heads(pixels, 2),
                                     split_heads(pixels, 2)))
    gated = attended * 2 * F.hardsigmoid(bridge.gate(tokens))
    expected = F.layer_norm(tokens + bridge.proj(gated), (12,), bridge.norm.weight, bridge.norm.bias)
    torch.testing.assert_close(bridge(x, tokens), expected)


def test_former_is_query_projected_self_attention_then_ffn():
    former = Former(token_dim=16).eval()
    tokens = torch.randn(2, 6, 16)
    keys = split_heads(tokens, 4)
    out = former.norm1(tokens + former.proj(merge_heads(attention(split_heads(former.q(tokens), 4), keys,
                                                                  keys))))
    torch.testing.assert_close(former(tokens), former.norm2(out + former.ffn(out)))


def test_former_to_mobile_is_pixel_queries_over_projected_tokens():
    bridge = FormerToMobile(channels=8, token_dim=12).eval()
    x, tokens = torch.randn(2, 8, 5, 7), torch.randn(2, 3, 12)
    pixels = x.flatten(2).transpose(1, 2)
    attended = merge_heads(attention(split_heads(pixels, 2), split_heads(bridge.k(tokens), 2),
                                     split_heads(bridge.v(tokens), 2)))
    torch.testing.assert_close(bridge(x, tokens), x + attended.transpose(1, 2).view(2, 8, 5, 7))


# ------------------------------------------------------------------------ inference fast path


def randomize_norms_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random BN statistics, norm affines and biases on top of the default initialisation: every fold
    matters, and activations stay in a range where float rounding is not amplified block after block
    (``randomize_`` makes them reach thousands)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point() or tensor.dim() != 1:
                continue
            noise = torch.randn(tensor.shape, generator=generator)
            if name.endswith('running_var'):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif name.endswith('weight'):
                tensor.copy_(1 + 0.1 * noise)
            else:                                   # biases, running means
                tensor.copy_(0.1 * noise)
    return model


def reference_and_fast(model, x):
    """The model's outputs with autograd on (the reference formulation) and under inference_mode (the
    fast path)."""
    reference = model(x)
    with torch.inference_mode():
        fast = model(x)
    return reference, fast


def assert_outputs_close(reference, fast, tolerance=1e-5):
    for a, b in zip(reference, fast):
        assert a.shape == b.shape
        assert (a.detach() - b).abs().max() <= tolerance * max(1.0, a.abs().max().item())


@pytest.mark.parametrize('arch', ['151m', '26m'])
@pytest.mark.parametrize('batch', [1, 2])
def test_fast_path_matches_the_reference_formulation(arch, batch):
    """Channels-last, BN folding, DyReLU as prelu, plain depthwise convs, in-place residuals: the same
    function (26M: grouped convs and shuffles keep parts of the reference path)."""
    model = randomize_norms_(MobileFormer(arch, num_classes=10, with_tokens=True), seed=1).eval()
    x = torch.rand(batch, 3, 96, 112)
    reference, fast = reference_and_fast(model, x)
    assert_outputs_close(reference, fast)
    assert all(m.is_contiguous(memory_format=torch.channels_last) for m in fast[:-1] if m.shape[-1] > 1)
    logits = model.forward_classifier(x)
    with torch.inference_mode():
        assert_outputs_close([logits], [model.forward_classifier(x)])


def test_deployed_model_matches_and_has_no_batchnorm():
    """prepare_for_inference folds the conv -> BN Sequentials (the checkpoint layout) into the convs."""
    model = randomize_norms_(MobileFormer('96m', out_indices=(0, 1, 2, 3)), seed=2).eval()
    deployed = prepare_for_inference(copy.deepcopy(model))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in deployed.modules())
    x = torch.rand(2, 3, 64, 80)
    with torch.no_grad():
        assert_outputs_close(model(x), deployed(x))
        assert_outputs_close(model(x[:1]), deployed(x[:1]))


@pytest.mark.parametrize('arch', ['151m', '26m'])
@pytest.mark.parametrize('prepared', [False, True])
def test_inference_under_autocast_takes_the_reference_path(arch, prepared):
    """Under autocast (e.g. a test loop with fp16 on) the fast path would mix bfloat16 maps with float32
    in-place updates; the reference path runs instead and matches float32 to bfloat16 precision."""
    model = randomize_norms_(MobileFormer(arch, num_classes=10, with_tokens=True), seed=3).eval()
    if prepared:
        model = prepare_for_inference(model)
    x = torch.rand(2, 3, 64, 80)
    with torch.no_grad():
        reference = model.forward_classifier(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = model.forward_classifier(x)
            maps = model(x)
    assert out.dtype == torch.bfloat16 and len(maps) == 5
    assert (out.float() - reference).abs().max() <= 0.05 * reference.abs().max()


def test_dyrelu_as_scaled_prelu_covers_every_sign_case():
    """max(a1 z, a2 z) = prelu(k z, w), including the hi = max(a1, a2) = 0 channels (a1 = 0, a2 <= 0)."""
    act = DyReLU(channels=4, token_dim=8).eval()
    block = conv_bn(4, 4, 1)
    randomize_(block)
    block.eval()
    final = act.coefficients[2]
    with torch.no_grad():
        final.weight.zero_()
        # h_sigmoid -> a1 = 2h1, a2 = 2h2 - 1; per channel: (0, -1), (0, 0), (2, 1), (0.5, -0.5)
        final.bias.copy_(torch.tensor([-10.0, -10.0, 10.0, -1.5, -10.0, 0.0, 10.0, -1.5]))
        x, token = torch.randn(1, 4, 5, 6), torch.zeros(1, 8)
        expected = act(block(x), token)
        with torch.inference_mode():
            fast = conv_bn_dyrelu(block, act, x, token)
    torch.testing.assert_close(fast, expected)


def test_depthwise_multiplier_conv_runs_as_plain_depthwise():
    conv = torch.nn.Conv2d(6, 24, 3, 1, 1, groups=6, bias=False)
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(2, 6, 9, 7).contiguous(memory_format=layout)
        with torch.inference_mode():
            torch.testing.assert_close(run_conv(conv, x, conv.weight, None), conv(x))


def test_folded_batchnorm_is_recomputed_when_parameters_change():
    block = conv_bn(3, 8, 3)
    randomize_(block)
    block.eval()
    x = torch.randn(1, 3, 32, 32)   # output larger than the weight: folded, and the fold kept
    with torch.inference_mode():
        first = conv_bn_scaled(block, x)
    torch.testing.assert_close(first, block(x))
    with torch.no_grad():
        block[1].running_var.mul_(4)
        block[0].weight.add_(0.5)
    with torch.inference_mode():
        torch.testing.assert_close(conv_bn_scaled(block, x), block(x))


def test_bridges_on_channels_last_maps_match_nchw():
    m2f, f2m = MobileToFormer(channels=8, token_dim=12).eval(), FormerToMobile(channels=8, token_dim=12).eval()
    x, tokens = torch.randn(2, 8, 5, 7), torch.randn(2, 3, 12)
    nhwc = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(m2f(nhwc, tokens), m2f(x, tokens))
    out = f2m(nhwc, tokens)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, f2m(x, tokens))
    with torch.inference_mode():   # written into the handed-over map
        owned = nhwc.clone()
        torch.testing.assert_close(f2m(owned, tokens, overwrite=True), f2m(x, tokens))


# -------------------------------------------------------------------------------- checkpoint layout

# Ours -> the authors' names: the inverse of the converter, written out by hand from their modules.
BRIDGES_AND_FORMER = {
    'mobile_to_former.q': 'local_global.q', 'mobile_to_former.proj': 'local_global.proj',
    'mobile_to_former.norm': 'local_global.layer_norm', 'mobile_to_former.gate': 'local_global.alpha.0',
    'former.q': 'global_block.q', 'former.proj': 'global_block.channel_mlp',
    'former.norm1': 'global_block.layer_norm', 'former.ffn': 'global_block.ffn',
    'former.norm2': 'global_block.ffn_norm',
    'former_to_mobile.k': 'global_local.k', 'former_to_mobile.v': 'global_local.proj',
}
REGULAR_BLOCK = {  # DnaBlock
    'mobile.expand': 'conv1', 'mobile.depthwise': 'conv2', 'mobile.project': 'conv3',
    'mobile.act1.coefficients': 'hyper1.hyper', 'mobile.act2.coefficients': 'hyper2.hyper',
}
DOWNSAMPLING_BLOCK = {  # DnaBlock3
    'mobile.depthwise1': 'conv1', 'mobile.project1': 'conv2', 'mobile.depthwise2': 'conv3',
    'mobile.project2': 'conv4',
    'mobile.act1.coefficients': 'hyper1.hyper', 'mobile.act2.coefficients': 'hyper3.hyper',
}
OUTSIDE_BLOCKS = {
    'tokens': 'tokens', 'stem': 'stem',
    'lite_bottleneck.depthwise': 'features.0.conv',     # conv.0, conv.1
    'lite_bottleneck.project.0': 'features.0.conv.4', 'lite_bottleneck.project.1': 'features.0.conv.5',
    'final_mobile_to_former.q': 'local_global.q', 'final_mobile_to_former.proj': 'local_global.proj',
    'final_mobile_to_former.norm': 'local_global.layer_norm',
    'final_mobile_to_former.gate': 'local_global.alpha.0',
    'head.conv.0': 'classifier.conv.1', 'head.conv.1': 'classifier.conv.2', 'head.fc': 'classifier.fc.0',
    'head.fc_norm': 'classifier.fc.1', 'head.classifier': 'classifier.classifier.1',
}


def rename_prefix(name: str, table: dict) -> str:
    (prefix,) = [p for p in table if name.startswith(p + '.')]
    return table[prefix] + name[len(prefix):]


def to_authors_layout(model: MobileFormer) -> dict:
    converted = {}
    for key, value in model.state_dict().items():
        match = re.match(r'blocks\.(\d+)\.(.+)$', key)
        if match is None:
            converted[rename_prefix(key, OUTSIDE_BLOCKS)] = value
            continue
        index, rest = int(match.group(1)), match.group(2)
        mobile = DOWNSAMPLING_BLOCK if hasattr(model.blocks[index].mobile, 'project2') else REGULAR_BLOCK
        converted[f'features.{index + 1}.' + rename_prefix(rest, {**BRIDGES_AND_FORMER, **mobile})] = value
    return converted


@pytest.mark.parametrize('arch, first_down, first_regular', [('26m', 2, 1), ('96m', 1, 3), ('508m', 1, 2)])
def test_checkpoint_in_authors_layout_round_trips(arch, first_down, first_regular):
    ours = randomize_(MobileFormer(arch, num_classes=1000)).eval()
    theirs = to_authors_layout(ours)
    assert len(theirs) == AUTHORS_STATE_DICT_SIZE[arch]
    assert {'tokens.weight', 'stem.0.weight', 'features.0.conv.4.weight', 'features.1.global_local.proj.weight',
            f'features.{first_down}.conv4.0.weight', f'features.{first_down}.hyper3.hyper.2.bias',
            f'features.{first_regular}.hyper2.hyper.0.weight', 'local_global.alpha.0.weight',
            'classifier.classifier.1.weight'} <= set(theirs)
    checkpoint = {'state_dict': {f'module.{key}': value for key, value in theirs.items()}, 'epoch': 450}

    loaded = MobileFormer(arch, num_classes=1000, out_indices=(0, 1, 2, 3), with_tokens=True).eval()
    loaded.load_state_dict(convert_mobileformer_official(checkpoint), strict=True)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(loaded.forward_classifier(x), ours.forward_classifier(x))
        for a, b in zip(loaded(x), MobileFormer.forward(ours, x)):
            assert torch.equal(a, b)


def test_converter_rejects_unknown_keys():
    with pytest.raises(KeyError, match='features.3.conv9'):
        convert_mobileformer_official({'features.3.conv9.weight': torch.zeros(1)})


def test_pretrained_init_cfg_loads_converted_weights(tmp_path):
    source = randomize_(MobileFormer('52m')).eval()
    path = tmp_path / 'mf52m.pth'
    torch.save({'state_dict': source.state_dict()}, path)
    model = MobileFormer('52m', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    for name, tensor in source.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name


# --------------------------------------------------------------------------------- shapes, options


@pytest.mark.parametrize('arch', sorted(PUBLISHED))
def test_all_stages_at_odd_input_size(arch):
    model = MobileFormer(arch).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 333, 517))
    assert model.out_channels == STAGE_CHANNELS[arch]
    assert [tuple(o.shape) for o in outs] == [(1, c, -(-333 // s), -(-517 // s))
                                              for c, s in zip(STAGE_CHANNELS[arch], STRIDES)]
    assert all(torch.isfinite(o).all() for o in outs)


@pytest.mark.parametrize('arch', ['26m', '508m'])
def test_shapes_at_224(arch):
    with torch.no_grad():
        outs = MobileFormer(arch).eval()(torch.rand(2, 3, 224, 224))
    assert [tuple(o.shape) for o in outs] == [(2, c, 224 // s, 224 // s)
                                              for c, s in zip(STAGE_CHANNELS[arch], STRIDES)]


def test_out_indices_subset_and_minimum_input():
    model = MobileFormer('96m', out_indices=(1, 3)).eval()
    assert model.out_channels == [32, 128]
    with torch.no_grad():
        outs = model(torch.rand(2, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 4, 4), (2, 128, 1, 1)]


def test_output_stride_16():
    model = MobileFormer('151m', output_stride=16).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 96, 128))
    assert [tuple(o.shape[-2:]) for o in outs] == [(24, 32), (12, 16), (6, 8), (6, 8)]
    assert model.blocks[model.stage_ends[2] + 1].mobile.depthwise1[0].stride == (1, 1)
    assert count_parameters(model) == count_parameters(MobileFormer('151m'))


def test_with_tokens_returns_the_global_tokens_last():
    model = MobileFormer('52m', out_indices=(2, 3), with_tokens=True).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        *maps, tokens = model(x)
    assert [m.shape[1] for m in maps] == model.out_channels == [64, 96]
    assert tokens.shape == (2, 3, 128)
    assert not torch.allclose(tokens[0], tokens[1])   # they carry each image's content
    # Without tokens, the last bridge (used by nothing) is not built.
    assert MobileFormer('52m').final_mobile_to_former is None


def test_forward_classifier_needs_num_classes():
    model = MobileFormer('26m', num_classes=7, out_indices=(3,)).eval()
    with torch.no_grad():
        assert model.forward_classifier(torch.rand(2, 3, 64, 64)).shape == (2, 7)
        assert len(model(torch.rand(2, 3, 64, 64))) == 1
    with pytest.raises(RuntimeError, match='num_classes'):
        MobileFormer('26m').forward_classifier(torch.rand(1, 3, 64, 64))


def test_frozen_stages_and_norm_eval():
    model = MobileFormer('96m', frozen_stages=2, norm_eval=True)
    model.train()
    frozen = [model.stem, model.lite_bottleneck, model.tokens]
    frozen += [b for b, s in zip(model.blocks, model.block_stages) if s < 2]
    trainable = [b for b, s in zip(model.blocks, model.block_stages) if s >= 2]
    assert not any(p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for m in trainable for p in m.parameters())
    assert not any(m.training for part in frozen for m in part.modules())
    batchnorms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert batchnorms and not any(m.training for m in batchnorms)
    assert model.blocks[-1].former.training   # only the norms are held in eval


def test_frozen_stages_without_norm_eval_keeps_later_bn_training():
    model = MobileFormer('52m', frozen_stages=1, with_tokens=True).train()
    stage1 = model.blocks[model.block_stages.index(1)]
    assert stage1.mobile.depthwise1[1].training and not model.blocks[0].mobile.expand[1].training
    everything = MobileFormer('52m', frozen_stages=4, with_tokens=True)
    assert not any(p.requires_grad for p in everything.parameters())


def test_init_weights_follows_the_authors():
    model = MobileFormer('52m', num_classes=10)
    model.init_weights()
    linear = model.blocks[4].former.q
    assert abs(linear.weight.std().item() - 0.01) < 0.002 and not linear.bias.any()
    conv = model.blocks[4].mobile.expand[0]
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert abs(conv.weight.std().item() - (2 / fan_out) ** 0.5) < 0.2 * (2 / fan_out) ** 0.5


def test_registry_builds_it():
    model = MODELS.build(dict(type='MobileFormer', arch='26m', out_indices=(3,)))
    assert isinstance(model, MobileFormer) and model.out_channels == [96]


def test_bad_arguments_are_named():
    with pytest.raises(KeyError, match='600m'):
        MobileFormer('600m')
    with pytest.raises(ValueError, match='output_stride'):
        MobileFormer('52m', output_stride=8)
    with pytest.raises(ValueError, match='out_indices'):
        MobileFormer('52m', out_indices=(4,))


def test_convert_weights_detects_the_authors_layout():
    ours = randomize_(MobileFormer('26m', num_classes=1000))
    conversion = convert_checkpoint({'state_dict': to_authors_layout(ours)})
    layout, converted = conversion.layout, conversion.state_dict
    assert layout == 'authors-mobileformer'
    assert converted.keys() == ours.state_dict().keys()
