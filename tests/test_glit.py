"""GLiT: the released Tiny's size and FLOPs, the global-local split, dense shapes, the converter."""
from __future__ import annotations

import argparse
import math
import pickle

import pytest
import torch
import torch.nn.functional as F
from conftest import load_tool
from mmdet.registry import MODELS as MMDET_MODELS
from mmseg.registry import MODELS as MMSEG_MODELS

from mvdense.models.backbones.glit import (
    ARCHS,
    GLiT,
    GLiTBlock,
    GLiTBlockSpec,
    block_code_flops,
    glit_code_flops,
)
from mvdense.models.layers import count_parameters
from mvdense.utils.complexity import count_madds

TINY = ARCHS['tiny']['blocks']
# Per block of the released GLiT-Tiny at 224x224 (197 tokens): parameters, and the authors' FLOPs
# formula in M, as the authors' code prints them (one decimal).
TINY_BLOCK_PARAMS = [370_848, 531_840, 676_288, 444_864, 777_600, 676_288, 297_024, 380_608, 777_600, 444_864,
                     766_848, 740_736]
TINY_BLOCK_CODE_MFLOPS = [80.1, 89.5, 124.3, 102.0, 123.0, 124.3, 73.0, 66.2, 123.0, 102.0, 120.9, 175.0]


def test_tiny_has_the_released_parameters():
    model = GLiT('tiny', num_classes=1000)
    assert count_parameters(model) == 7_264_456
    assert [count_parameters(block) for block in model.blocks] == TINY_BLOCK_PARAMS


def test_tiny_flops_by_the_authors_formula():
    assert [round(block_code_flops(spec, 192, 197) / 1e6, 1) for spec in TINY] == TINY_BLOCK_CODE_MFLOPS
    assert round(glit_code_flops(TINY, 192, (224, 224), num_classes=1000) / 1e6, 1) == 1332.5
    assert GLiT('tiny', num_classes=1000).code_flops() == glit_code_flops(TINY, 192, num_classes=1000)


def _true_madds(specs, dim=192, tokens=197, classes=1000) -> int:
    """Every multiply-add of GLiT at 224x224 in count_madds' convention: the authors' formula plus the
    half of the GLU pointwise conv it leaves out, LayerNorm at 5 and (eval, affine) BatchNorm at 2 per
    element."""
    glu_half = sum(tokens * (dim - dim // 3 * s.g) * s.expansion * (dim - dim // 3 * s.g) for s in specs if s.g < 3)
    layer_norms = (2 * len(specs) + 1) * tokens * dim * 5
    batch_norms = sum(2 * tokens * s.expansion * (dim - dim // 3 * s.g) for s in specs if s.g < 3)
    return int(glit_code_flops(specs, dim, num_classes=classes)) + glu_half + layer_norms + batch_norms


def test_tiny_true_madds_match_the_counter():
    model = GLiT('tiny', num_classes=1000).eval()
    counted = count_madds(model.forward_classifier, (1, 3, 224, 224))
    assert counted == _true_madds(TINY)
    # Published 1.4 G; the authors' own formula gives 1.33 G, a true count about 1.47 G.
    assert 1.46e9 < counted < 1.49e9


@pytest.mark.parametrize('registry', [MMDET_MODELS, MMSEG_MODELS], ids=['mmdet', 'mmseg'])
@pytest.mark.parametrize('size', [(224, 224), (33, 47), (320, 200)])
def test_dense_shapes_at_odd_sizes(registry, size):
    model = registry.build(dict(type='GLiT', arch='tiny', out_indices=(3, 7, 11))).eval()
    outs = model(torch.rand(2, 3, *size))
    grid = tuple(math.ceil(side / 16) for side in size)
    assert [tuple(out.shape) for out in outs] == [(2, 192, *grid)] * 3
    assert model.out_channels == [192] * 3 and model.out_strides == [16] * 3


def test_position_embedding_is_resized_bicubically_for_other_grids():
    model = GLiT('tiny', out_indices=(0,)).eval()
    torch.nn.init.normal_(model.pos_embed)
    tokens, grid = model.embed(torch.zeros(1, 3, 320, 160))
    assert grid == (20, 10)
    patch_bias = model.patch_embed.bias
    cls_pos = model.pos_embed[0, 0] + model.cls_token[0, 0]
    torch.testing.assert_close(tokens[0, 0], cls_pos)
    grid_pos = model.pos_embed[:, 1:].reshape(1, 14, 14, 192).permute(0, 3, 1, 2)
    want = F.interpolate(grid_pos, size=(20, 10), mode='bicubic', align_corners=False)
    torch.testing.assert_close(tokens[0, 1:] - patch_bias, want.flatten(2)[0].T)


def test_inputs_below_32_pixels_are_refused():
    with pytest.raises(ValueError, match='at least 32x32'):
        GLiT('tiny')(torch.zeros(1, 3, 31, 64))


def _reference_sequence_conv(conv, x):
    """The convolution module written out: pointwise to 2EC, GLU, depthwise K with K // 2 zeros at both
    ends of the sequence, BatchNorm (eval), Swish, pointwise back; [B, N, C] -> [B, N, C]."""
    y = torch.einsum('bnc,oc->bno', x, conv.pw1.weight[:, :, 0]) + conv.pw1.bias
    out, gate = y.chunk(2, dim=-1)
    y = out * torch.sigmoid(gate)                                            # [B, N, EC]
    k = conv.dw.kernel_size[0]
    padded = F.pad(y, (0, 0, k // 2, k // 2))
    windows = padded.unfold(1, k, 1)                                          # [B, N, EC, K]
    y = (windows * conv.dw.weight[:, 0]).sum(-1) + conv.dw.bias
    bn = conv.bn
    y = (y - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    y = y * torch.sigmoid(y)
    return torch.einsum('bnc,oc->bno', y, conv.pw2.weight[:, :, 0]) + conv.pw2.bias


def _reference_attention(attn, x, heads):
    qkv = attn.qkv(x).reshape(*x.shape[:2], 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv
    weights = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(-1)
    return attn.proj((weights @ v).transpose(1, 2).flatten(2))


def _randomized_block(spec: GLiTBlockSpec) -> GLiTBlock:
    block = GLiTBlock(192, 3, spec).eval()
    with torch.no_grad():
        for param in block.parameters():
            param.normal_(0, 0.1)
        conv = block.mixer.conv
        if conv is not None:
            conv.bn.running_mean.normal_()
            conv.bn.running_var.uniform_(0.5, 2)
    return block


@pytest.mark.parametrize('spec', [TINY[2], TINY[1], TINY[0], GLiTBlockSpec(g=2, qkv_ratio=2, mlp_ratio=2,
                                                                            expansion=1, kernel_size=17)],
                         ids=['mixed-g1', 'local', 'global', 'mixed-g2'])
def test_global_local_module_matches_the_reference_formulas(spec):
    block = _randomized_block(spec)
    x = torch.randn(2, 197, 192)
    split = 64 * spec.g
    with torch.no_grad():
        got = block.mixer(x)
        if spec.g:
            torch.testing.assert_close(got[..., :split], _reference_attention(block.mixer.attn, x[..., :split], spec.g))
        if spec.g < 3:
            torch.testing.assert_close(got[..., split:], _reference_sequence_conv(block.mixer.conv, x[..., split:]),
                                       rtol=1e-4, atol=1e-4)


def test_global_heads_see_only_their_channels():
    block = _randomized_block(TINY[2])          # g = 1: 64 global channels, 128 local
    x = torch.randn(1, 50, 192)
    changed = x.clone()
    changed[..., 64:] += 1.0
    with torch.no_grad():
        before, after = block.mixer(x), block.mixer(changed)
    torch.testing.assert_close(before[..., :64], after[..., :64])
    assert not torch.allclose(before[..., 64:], after[..., 64:])


@pytest.mark.parametrize('spec, message', [
    (dict(g=4, qkv_ratio=1), 'must be 0..3'),
    (dict(g=0, mlp_ratio=4, expansion=2), 'odd kernel_size'),
    (dict(g=1, qkv_ratio=1, expansion=2, kernel_size=30), 'odd kernel_size'),
    (dict(g=3), 'needs qkv_ratio'),
    (dict(g=3, qkv_ratio=1, heads=2), 'unknown keys'),
])
def test_bad_block_specs_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        GLiT(dict(embed_dim=192, num_heads=3, blocks=[TINY[0].to_dict(), spec]))


def test_supernet_blocks_run_the_chosen_candidate():
    candidates = [dict(g=3, qkv_ratio=1, mlp_ratio=4), dict(g=0, mlp_ratio=4, expansion=1, kernel_size=17)]
    model = GLiT(dict(embed_dim=48, num_heads=3, blocks=[candidates, candidates[0]]), img_size=64,
                 out_indices=(1,)).eval()
    x = torch.rand(1, 3, 64, 64)
    outs = []
    for choice in (0, 1):
        model.set_subnet([choice])
        assert model.block_specs[0] == GLiTBlockSpec.coerce(candidates[choice])
        outs.append(model(x)[0])
    assert not torch.allclose(*outs)
    with pytest.raises(ValueError, match='1 searchable blocks, got 2'):
        model.set_subnet([0, 1])
    with pytest.raises(ValueError, match='choice 2 is not in 0..1'):
        model.set_subnet([2])


def _to_authors_layout(state_dict: dict) -> dict:
    """Our GLiT state dict in the authors' key layout (the inverse of the converter, spelled out)."""
    block_names = {'mixer.attn.qkv': 'attn.qkv', 'mixer.attn.proj': 'attn.proj', 'mixer.conv.pw1': 'attn.net.1',
                   'mixer.conv.dw': 'attn.net.3.conv', 'mixer.conv.bn': 'attn.net.4', 'mixer.conv.pw2': 'attn.net.6',
                   'ffn.fc1': 'mlp.fc1', 'ffn.fc2': 'mlp.fc2', 'norm1': 'norm1', 'norm2': 'norm2'}
    out = {}
    for key, value in state_dict.items():
        if key.startswith('blocks.'):
            _, index, rest = key.split('.', 2)
            module, leaf = rest.rsplit('.', 1)
            out[f'blocks.{index}.0.{block_names[module]}.{leaf}'] = value
        elif key.startswith('patch_embed.'):
            out['patch_embed.proj.' + key.split('.', 1)[1]] = value
        elif key.startswith('head.1.'):
            out['head.' + key[len('head.1.'):]] = value
        else:
            out[key] = value
    return out


def test_convert_weights_reads_the_authors_training_checkpoint(tmp_path, capsys):
    source = GLiT('tiny', num_classes=1000)
    source.init_weights()
    with torch.no_grad():
        for name, buffer in source.named_buffers():
            if 'running' in name:
                buffer.uniform_(0.5, 1.5)
    authors = _to_authors_layout(source.state_dict())
    # DeiT's training checkpoint, with its argparse.Namespace of arguments.
    checkpoint = {'model': authors, 'model_ema': authors, 'optimizer': {'state': {}, 'param_groups': []},
                  'lr_scheduler': {'base_lr': 1e-3}, 'epoch': 299, 'scaler': {'scale': 65536.0},
                  'args': argparse.Namespace(model='glit_tiny_patch16_224', lr=1e-3, batch_size=256)}
    torch.save(checkpoint, tmp_path / 'glit_tiny.pth')
    load_tool('convert_weights').main([str(tmp_path / 'glit_tiny.pth'), str(tmp_path / 'ours.pth')])
    printed = capsys.readouterr().out
    assert 'authors-glit' in printed
    assert 'skipped (no model weights): model_ema, optimizer, lr_scheduler, epoch, scaler, args' in printed

    target = GLiT('tiny', num_classes=1000, init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'ours.pth')))
    target.init_weights()
    image = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(target.eval().forward_classifier(image), source.eval().forward_classifier(image))


class _Payload:
    def __reduce__(self):
        return (print, ('payload ran',))


def test_the_converter_still_refuses_arbitrary_pickles(tmp_path, capsys):
    torch.save({'model': {}, 'args': _Payload()}, tmp_path / 'evil.pth')
    with pytest.raises(pickle.UnpicklingError, match='evil.pth'):
        load_tool('convert_weights').main([str(tmp_path / 'evil.pth'), str(tmp_path / 'out.pth')])
    assert 'payload ran' not in capsys.readouterr().out
    assert not (tmp_path / 'out.pth').exists()


@pytest.mark.parametrize('config, params, size', [
    ('configs/ssdlite_glit_tiny_coco.py', 8_025_834, (320, 320)),
    ('configs/deeplabv3_glit_tiny_voc.py', 8_833_013, (200, 328)),
])
def test_dense_configs_build_and_run(config, params, size):
    from mvdense.apis import init_model
    model = init_model(config)
    assert count_parameters(model) == params
    with torch.no_grad():
        feats = model.extract_feat(torch.rand(1, 3, *size))
    if hasattr(model, 'bbox_head'):
        # The simple pyramid gives the SSDLite neck strides 16 and 32; SSDLite's 6 levels follow.
        assert [tuple(f.shape[-2:]) for f in feats] == [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    else:
        assert [tuple(f.shape) for f in feats] == [(1, 192, 13, 21)]
