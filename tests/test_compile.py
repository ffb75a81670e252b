"""``torch.compile`` and ``torch.export`` of our backbones at inference: both trace the reference
formulation (the inference fast paths' cached folded weights, packed oneDNN weights and direct oneDNN
calls are not traceable, nor portable), and the result computes what the eager model does."""
from __future__ import annotations

import pytest
import torch

from mvdense.models.backbones.glit import GLiT
from mvdense.models.backbones.mobileformer import MobileFormer
from mvdense.models.backbones.mobilevit import MobileViT
from mvdense.models.layers import fast_inference

BACKBONES = {
    # 26M: grouped convs and channel shuffles; its classifier's Linear is large enough for oneDNN.
    'mobileformer-26m': lambda: (MobileFormer('26m', num_classes=10).eval(), 'forward_classifier'),
    'mobilevit-xxs': lambda: (MobileViT('xxs').eval(), 'forward'),
    'glit': lambda: (GLiT().eval(), 'forward'),
}


def last(output) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output[-1]


def test_fast_paths_are_off_while_compiling():
    with torch.no_grad():
        assert fast_inference()
        assert not torch.compile(fast_inference, backend='eager', fullgraph=True)()


@pytest.mark.parametrize('name', sorted(BACKBONES))
def test_backbone_compiles_whole_and_matches_eager(name):
    """One graph (``fullgraph``: nothing of the fast path breaks it), same result; at 128 x 160 the
    MobileViT / GLiT attention Linears are above the oneDNN threshold."""
    torch.manual_seed(0)
    model, method = BACKBONES[name]()
    forward = getattr(model, method)
    x = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        expected = last(forward(x))
        compiled = last(torch.compile(forward, backend='aot_eager', fullgraph=True)(x))
    torch.testing.assert_close(compiled, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


class Classifier(torch.nn.Module):
    """A backbone's ``forward_classifier`` as ``forward`` (what torch.export exports)."""

    def __init__(self, backbone: torch.nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_classifier(x)


@pytest.mark.parametrize('name', sorted(BACKBONES))
def test_backbone_exports_its_reference_graph(name):
    """torch.export (e.g. on the way to a phone runtime): the graph holds BatchNorms, not the fast path's
    oneDNN calls, and computes what eager does."""
    torch.manual_seed(0)
    model, method = BACKBONES[name]()
    module = Classifier(model) if method == 'forward_classifier' else model
    x = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        program = torch.export.export(module, (x,))
        expected, exported = last(module(x)), last(program.module()(x))
    targets = [str(node.target) for node in program.graph.nodes if node.op == 'call_function']
    assert any('batch_norm' in target for target in targets)
    assert not any('mkldnn' in target for target in targets)
    torch.testing.assert_close(exported, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


@pytest.mark.slow
def test_inductor_compiles_the_backbones():
    """The compiler users get by default (C++ code generation; it refused our packed oneDNN weights)."""
    torch.manual_seed(0)
    for name in ('mobileformer-26m', 'mobilevit-xxs'):
        model, method = BACKBONES[name]()
        forward = getattr(model, method)
        x = torch.rand(1, 3, 128, 160)
        with torch.no_grad():
            expected = last(forward(x))
            compiled = last(torch.compile(forward)(x))
        torch.testing.assert_close(compiled, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
