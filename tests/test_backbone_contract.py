"""The backbone contract (``mvdense/models/backbones/base.py``), checked on every backbone family."""
from __future__ import annotations

import warnings

import pytest
import torch
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine.config import ConfigDict
from mmseg.registry import MODELS as MMSEG_MODELS
from torch import nn

from mvdense.models.backbones import GLiT, MobileFormer, MobileViT

# (class, arch, number of stages)
FAMILIES = {
    'mobilevit': (MobileViT, 'xxs', 5),
    'mobileformer': (MobileFormer, '26m', 4),
    'glit': (GLiT, 'tiny', 12),
}


def _build(name: str, **kwargs):
    cls, arch, _ = FAMILIES[name]
    return cls(arch=arch, **kwargs)


def _stage_parameters(model) -> list[list[nn.Parameter]]:
    """Parameters of the stem, then of each stage, as the backbone groups them."""
    def params(parts):
        out = []
        for part in parts:
            out.extend([part] if isinstance(part, nn.Parameter) else part.parameters())
        return out
    return [params(model.stem_modules())] + [params(stage) for stage in model.stage_modules()]


@pytest.mark.parametrize('name', FAMILIES)
@pytest.mark.parametrize('frozen', [-1, 0, 1, 2])
def test_frozen_stages_freezes_the_stem_and_the_first_k_stages(name, frozen):
    num_stages = FAMILIES[name][2]
    model = _build(name, out_indices=(num_stages - 1,), frozen_stages=frozen)
    model.train()
    groups = _stage_parameters(model)
    assert len(groups) == 1 + num_stages
    for index, group in enumerate(groups):
        should_freeze = index <= frozen     # group 0 is the stem, group k the (k-1)-th stage
        assert group and all(p.requires_grad != should_freeze for p in group), (name, frozen, index)
    # Frozen modules stay in eval mode through model.train().
    frozen_modules = [m for m in model.frozen_parts() if isinstance(m, nn.Module)]
    assert all(not m.training for part in frozen_modules for m in part.modules())


@pytest.mark.parametrize('name', FAMILIES)
def test_norm_eval_keeps_batchnorm_statistics(name):
    model = _build(name, out_indices=(FAMILIES[name][2] - 1,), norm_eval=True).train()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and all(not m.training for m in norms)
    assert any(m.training for m in model.modules() if not isinstance(m, nn.modules.batchnorm._BatchNorm))


@pytest.mark.parametrize('name', FAMILIES)
def test_out_channels_and_strides_describe_the_outputs(name):
    num_stages = FAMILIES[name][2]
    indices = (num_stages - 1, num_stages - 3)        # given out of order
    model = _build(name, out_indices=indices).eval()
    assert model.out_indices == tuple(sorted(indices))
    outs = model(torch.rand(1, 3, 96, 128))
    assert [o.shape[1] for o in outs] == model.out_channels
    assert [(96 // o.shape[2], 128 // o.shape[3]) for o in outs] == [(s, s) for s in model.out_strides]


@pytest.mark.parametrize('name', FAMILIES)
def test_bad_out_indices_name_the_backbone(name):
    with pytest.raises(ValueError, match=f'out_indices must be a non-empty subset of 0..{FAMILIES[name][2] - 1}'):
        _build(name, out_indices=(FAMILIES[name][2],))


@pytest.mark.parametrize('registry', [MMDET_MODELS, MMSEG_MODELS], ids=['mmdet', 'mmseg'])
@pytest.mark.parametrize('name', FAMILIES)
def test_pretrained_is_a_deprecated_alias_of_init_cfg(registry, name):
    cls, arch, num_stages = FAMILIES[name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        model = registry.build(dict(type=cls.__name__, arch=arch, out_indices=(num_stages - 1,),
                                    pretrained='checkpoints/x.pth'))
    assert model.init_cfg == dict(type='Pretrained', checkpoint='checkpoints/x.pth')
    assert any(issubclass(w.category, DeprecationWarning) and 'init_cfg' in str(w.message) for w in caught)
    with pytest.raises(ValueError, match='keep only init_cfg'):
        registry.build(dict(type=cls.__name__, arch=arch, pretrained='a.pth',
                            init_cfg=dict(type='Pretrained', checkpoint='b.pth')))


def test_an_mmseg_model_base_that_sets_pretrained_builds_our_backbone():
    """mmseg's EncoderDecoder hands ``model.pretrained`` (set by mmseg's own model bases) to the backbone."""
    import mmseg.models  # noqa: F401  (registers EncoderDecoder)
    segmentor = MMSEG_MODELS.build(ConfigDict(
        type='EncoderDecoder', pretrained='checkpoints/x.pth',
        backbone=dict(type='MobileViT', arch='xxs', out_indices=(4,)),
        decode_head=dict(type='FCNHead', in_channels=80, channels=16, num_convs=1, num_classes=3)))
    assert segmentor.backbone.init_cfg == dict(type='Pretrained', checkpoint='checkpoints/x.pth')


# Dropout off, so that stochastic depth is the only randomness of a training forward.
NO_DROPOUT = {'mobilevit': dict(proj_drop_rate=0.0), 'mobileformer': {}, 'glit': {}}


@pytest.mark.parametrize('name', FAMILIES)
def test_drop_path_rate_gives_stochastic_depth_in_training_only(name):
    num_stages = FAMILIES[name][2]
    x = torch.rand(4, 3, 64, 64)
    for rate, deterministic in ((0.0, True), (0.5, False)):
        model = _build(name, out_indices=(num_stages - 1,), drop_path_rate=rate, **NO_DROPOUT[name])
        model.init_weights()
        model.train()
        assert torch.allclose(model(x)[-1], model(x)[-1]) == deterministic, rate
    model.eval()
    torch.testing.assert_close(model(x)[-1], model(x)[-1])


def _linear_weight_std(model) -> float:
    weights = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, nn.Linear)])
    return weights.std().item()


@pytest.mark.parametrize('name, linear_std', [('mobilevit', 0.01), ('mobileformer', 0.01), ('glit', 0.02)])
def test_init_weights_from_scratch_is_the_authors(name, linear_std):
    model = _build(name, out_indices=(FAMILIES[name][2] - 1,), num_classes=10)
    before = _linear_weight_std(model)
    model.init_weights()
    after = _linear_weight_std(model)
    assert after == pytest.approx(linear_std, rel=0.1)
    assert abs(before - linear_std) > 0.1 * linear_std      # PyTorch's default init is something else
    biases = [m.bias for m in model.modules() if isinstance(m, nn.Linear) and m.bias is not None]
    assert all(not b.any() for b in biases)


def test_glit_init_fills_the_embeddings():
    model = GLiT('tiny')
    assert not model.pos_embed.any() and not model.cls_token.any()
    model.init_weights()
    assert model.pos_embed.std().item() == pytest.approx(0.02, rel=0.1)
    assert model.cls_token.any()
