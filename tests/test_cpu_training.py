"""CPU training speed-ups (mvdense.engine): bfloat16 autocast through the optim wrapper, channels-last
weights through a hook, float32 attention under autocast; and `tools/train.py --amp` picking the wrapper."""
from __future__ import annotations

from types import SimpleNamespace

import torch
from conftest import load_tool
from mmengine.config import Config
from torch import nn

from mvdense.engine import ChannelsLastHook, CpuBf16OptimWrapper
from mvdense.models.layers import MultiHeadSelfAttention


def test_bf16_wrapper_autocasts_the_step_and_keeps_float32_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(1))
    model(torch.rand(1, 3, 8, 8))
    wrapper = CpuBf16OptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    before = [p.detach().clone() for p in model.parameters()]
    with wrapper.optim_context(model):
        features = model[0](torch.rand(2, 3, 8, 8))
        loss = model[2](model[1](features)).square().mean()
    assert features.dtype == torch.bfloat16
    wrapper.update_params(loss)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_attention_runs_in_float32_under_autocast_and_matches():
    torch.manual_seed(0)
    attention = MultiHeadSelfAttention(32, num_heads=4).eval()
    x = torch.randn(2, 50, 32)
    reference = attention(x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        mixed = attention(x)
    assert mixed.dtype == torch.bfloat16   # the projections stay in bfloat16
    torch.testing.assert_close(mixed.float(), reference, atol=0.05, rtol=0.05)


def test_channels_last_hook_converts_the_model_without_changing_outputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, groups=1), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 3, groups=8)).eval()
    x = torch.rand(1, 3, 17, 23)
    reference = model(x)
    ChannelsLastHook().before_run(SimpleNamespace(model=model))
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    out = model(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, reference)


def test_amp_flag_picks_bf16_on_cpu_machines(monkeypatch):
    enable_mixed_precision = load_tool('train').enable_mixed_precision
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1))))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    enable_mixed_precision(cfg)
    assert cfg.optim_wrapper.type == 'CpuBf16OptimWrapper'
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    enable_mixed_precision(cfg)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper' and cfg.optim_wrapper.loss_scale == 'dynamic'
