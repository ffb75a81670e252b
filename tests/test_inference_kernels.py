"""Pointwise convs and Linear layers through oneDNN at inference (mvdense.models.layers.conv2d / FastConv2d,
FastLinear): which kernel runs, and that the result is the same."""
from __future__ import annotations

import contextlib
import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mvdense.deploy.optimize import prepare_for_inference
from mvdense.models.layers import (
    ONEDNN_LINEAR_MIN_MADDS,
    ONEDNN_POINTWISE_MIN_MADDS,
    FastConv2d,
    FastLinear,
    conv2d,
)


@pytest.fixture
def one_thread():
    """ATen itself picks oneDNN for 1x1 convs with more threads: test the single-thread case."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


DISPATCHERS = {'aten::conv2d', 'aten::convolution', 'aten::_convolution'}


def conv_kernels(fn) -> set[str]:
    """The ATen convolution kernels (not the dispatching ops above them) that ``fn()`` runs."""
    with torch.profiler.profile() as prof:
        fn()
    return {event.key for event in prof.key_averages()
            if event.key.startswith('aten::') and 'conv' in event.key and event.key not in DISPATCHERS}


def linear_kernels(fn) -> set[str]:
    """The matrix-product kernels that ``fn()`` runs: ATen's ``addmm`` / ``mm`` or oneDNN's Linear."""
    with torch.profiler.profile() as prof:
        fn()
    return {event.key for event in prof.key_averages()
            if event.key in ('aten::addmm', 'aten::mm', 'aten::bmm', 'mkldnn::_linear_pointwise')}


def channels_last_map(channels: int, side: int) -> torch.Tensor:
    return torch.randn(1, channels, side, side).contiguous(memory_format=torch.channels_last)


def test_large_pointwise_conv_runs_through_onednn_with_the_same_result(one_thread):
    x, weight, bias = channels_last_map(128, 40), torch.randn(256, 128, 1, 1), torch.randn(256)
    assert x.numel() * 256 >= ONEDNN_POINTWISE_MIN_MADDS
    with torch.no_grad():
        assert 'aten::mkldnn_convolution' not in conv_kernels(lambda: F.conv2d(x, weight, bias))
        assert conv_kernels(lambda: conv2d(x, weight, bias)) == {'aten::mkldnn_convolution'}
        out, reference = conv2d(x, weight, bias), F.conv2d(x, weight, bias)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-4)


def test_grouped_pointwise_conv_runs_through_onednn_even_when_small(one_thread):
    """Mobile-Former-26M's grouped 1x1 convs: ATen runs one GEMM per group after copying its channels."""
    x, weight, bias = channels_last_map(48, 7), torch.randn(96, 12, 1, 1), torch.randn(96)
    assert x.numel() * 96 // 4 < ONEDNN_POINTWISE_MIN_MADDS
    with torch.no_grad():
        assert 'aten::mkldnn_convolution' not in conv_kernels(lambda: F.conv2d(x, weight, bias, groups=4))
        assert conv_kernels(lambda: conv2d(x, weight, bias, groups=4)) == {'aten::mkldnn_convolution'}
        out, reference = conv2d(x, weight, bias, groups=4), F.conv2d(x, weight, bias, groups=4)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize('case', ['grad', 'nchw', 'small', '3x3', 'stride2', 'grouped-nchw', 'autocast',
                                  'grouped-autocast'])
def test_other_convs_keep_aten_s_kernel(one_thread, case):
    """Autocast included: a direct oneDNN call would bypass its casts and return float32."""
    x, weight, kwargs = channels_last_map(128, 40), torch.randn(256, 128, 1, 1), {}
    if case == 'nchw':
        x = x.contiguous()
    elif case == 'small':
        x = channels_last_map(128, 6)
    elif case == '3x3':
        weight, kwargs = torch.randn(256, 128, 3, 3), dict(padding=1)
    elif case == 'stride2':
        kwargs = dict(stride=2)
    elif case == 'grouped-nchw':
        x, weight, kwargs = x.contiguous(), torch.randn(256, 64, 1, 1), dict(groups=2)
    elif case == 'grouped-autocast':
        weight, kwargs = torch.randn(256, 32, 1, 1), dict(groups=4)
    context = torch.autocast('cpu', dtype=torch.bfloat16) if 'autocast' in case else contextlib.nullcontext()
    with torch.set_grad_enabled(case == 'grad'), context:
        assert conv_kernels(lambda: conv2d(x, weight, **kwargs)) == conv_kernels(lambda: F.conv2d(x, weight, **kwargs))
        torch.testing.assert_close(conv2d(x, weight, **kwargs), F.conv2d(x, weight, **kwargs))


def test_prepare_for_inference_makes_plain_convs_fast_and_keeps_the_state_dict(one_thread):
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.Conv2d(64, 256, 1))
    model.eval()
    reference = copy.deepcopy(model)
    keys = [key for key in model.state_dict() if not key.startswith('1.')]
    prepare_for_inference(model)
    assert [type(module) for module in (model[0], model[3])] == [FastConv2d, FastConv2d]
    assert list(model.state_dict()) == keys
    x = torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        assert 'aten::mkldnn_convolution' in conv_kernels(lambda: model(x))
        torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-4)


def large_linear() -> tuple[FastLinear, torch.Tensor]:
    """A FastLinear and a [2, 100, 256] input: 2 * 100 * 256 * 256 multiply-adds, above the threshold."""
    torch.manual_seed(0)
    layer, x = FastLinear(256, 256), torch.randn(2, 100, 256)
    assert x.numel() * 256 >= ONEDNN_LINEAR_MIN_MADDS
    return layer, x


def test_large_linear_runs_through_onednn_with_the_same_result(one_thread):
    layer, x = large_linear()
    with torch.no_grad():
        assert 'mkldnn::_linear_pointwise' not in linear_kernels(lambda: F.linear(x, layer.weight, layer.bias))
        assert linear_kernels(lambda: layer(x)) == {'mkldnn::_linear_pointwise'}
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)


def test_linear_weight_is_packed_again_when_it_changes():
    layer, x = large_linear()
    with torch.no_grad():
        layer(x)
        layer.weight.mul_(-2)                        # an optimizer step or load_state_dict: in place
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)
        layer.weight = nn.Parameter(torch.randn(256, 256))   # a new tensor
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)


def test_used_linear_copies_pickles_and_keeps_its_state_dict():
    """The packed weight has no storage: deepcopy / pickle must leave it behind (prepare_for_inference is
    often given a deepcopy of a model that has already run)."""
    layer, x = large_linear()
    with torch.no_grad():
        expected = layer(x)
        copied = copy.deepcopy(layer)
        restored = pickle.loads(pickle.dumps(layer))
        for other in (copied, restored):
            torch.testing.assert_close(other(x), expected)
    assert list(layer.state_dict()) == ['weight', 'bias']


@pytest.mark.parametrize('case', ['grad', 'small', 'autocast', 'inference-weights'])
def test_other_linears_keep_aten_s_kernel(one_thread, case):
    layer, x = large_linear()
    if case == 'small':
        x = x[:1, :4]
    if case == 'inference-weights':                  # built under inference_mode: nothing can be cached
        with torch.inference_mode():
            layer = FastLinear(256, 256)
    context = torch.autocast('cpu', dtype=torch.bfloat16) if case == 'autocast' else contextlib.nullcontext()
    with torch.set_grad_enabled(case == 'grad'), context:
        assert 'mkldnn::_linear_pointwise' not in linear_kernels(lambda: layer(x))
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))


def test_prepare_for_inference_makes_plain_linears_fast():
    model = nn.Sequential(nn.Linear(256, 512), nn.GELU(), nn.Linear(512, 256)).eval()
    reference = copy.deepcopy(model)
    prepare_for_inference(model, channels_last=False)
    assert [type(module) for module in (model[0], model[2])] == [FastLinear, FastLinear]
    x = torch.randn(300, 256)
    with torch.no_grad():
        assert 'mkldnn::_linear_pointwise' in linear_kernels(lambda: model(x))
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)
