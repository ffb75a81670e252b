"""A checkpoint that does not fit the config's model is refused (evaluation, inference, export, resume) with
one line naming the checkpoint, the config and the first mismatches; training's ``load_from`` loads what
fits and says in one line what it did not load."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from conftest import ROOT, build_model, load_tool, run_tool
from PIL import Image
from torch import nn

from mvdense.apis import init_model
from mvdense.engine import CheckpointMismatchError, compare_state_dict
from mvdense.runner import CheckpointFitMixin

MOBILEVIT_DEMO = ROOT / 'configs/demo/ssdlite_mobilevit_xxs_synthetic.py'
MOBILEFORMER_DEMO = ROOT / 'configs/demo/ssdlite_mobileformer_151m_synthetic.py'


@pytest.fixture(scope='module')
def mobilevit_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint of the MobileViT demo detector, as training writes it."""
    path = tmp_path_factory.mktemp('ckpt') / 'ssdlite_mobilevit_xxs.pth'
    torch.save(dict(state_dict=build_model(MOBILEVIT_DEMO).state_dict(), meta=dict(epoch=20)), path)
    return path


def expect_refusal(message: str, checkpoint: Path, config: Path) -> None:
    assert '\n' not in message and len(message) < 1500, message
    assert message.startswith(f'checkpoint {checkpoint} does not fit the model of {config}'), message
    assert 'model tensor(s) missing from the checkpoint (backbone.tokens.weight, ' in message, message
    assert ('8 of another shape (neck.projections.0.conv.weight: [512, 64, 1, 1] in the checkpoint, '
            '[512, 88, 1, 1] in the model; ') in message, message
    assert "checkpoint tensor(s) the model does not have (backbone.stem.conv.weight, " in message, message


def test_init_model_refuses_a_checkpoint_of_another_model(mobilevit_checkpoint):
    with pytest.raises(CheckpointMismatchError) as refused:
        init_model(str(MOBILEFORMER_DEMO), str(mobilevit_checkpoint))
    expect_refusal(str(refused.value), mobilevit_checkpoint, MOBILEFORMER_DEMO)
    model = init_model(str(MOBILEVIT_DEMO), str(mobilevit_checkpoint))  # its own model: loads
    assert not model.training


def test_export_and_infer_tools_refuse_it_in_one_line(mobilevit_checkpoint, tmp_path, infer_tool):
    with pytest.raises(SystemExit) as stopped:
        load_tool('export_onnx').main([str(MOBILEFORMER_DEMO), str(mobilevit_checkpoint),
                                       '--out', str(tmp_path / 'model.onnx')])
    expect_refusal(str(stopped.value.code), mobilevit_checkpoint, MOBILEFORMER_DEMO)
    assert not (tmp_path / 'model.onnx').exists()

    (tmp_path / 'images').mkdir()
    Image.new('RGB', (64, 48)).save(tmp_path / 'images' / 'a.png')
    with pytest.raises(SystemExit) as stopped:
        infer_tool.main([str(MOBILEFORMER_DEMO), str(mobilevit_checkpoint), str(tmp_path / 'images'),
                         '--out', str(tmp_path / 'drawn'), '--device', 'cpu'])
    expect_refusal(str(stopped.value.code), mobilevit_checkpoint, MOBILEFORMER_DEMO)
    assert not (tmp_path / 'drawn').exists()


class Tiny(nn.Module):
    def __init__(self, width: int = 4, extra: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 1)
        self.bn = nn.BatchNorm2d(width)
        if extra:
            self.head = nn.Linear(width, 2)


def test_comparison_names_missing_unexpected_and_misshaped_tensors_and_ignores_bn_counters():
    model = Tiny(width=4, extra=True)
    state = Tiny(width=5).state_dict()
    state['stray.weight'] = torch.zeros(1)
    del state['bn.num_batches_tracked']           # BatchNorm's step counter is not a weight
    fit = compare_state_dict(model, state)
    assert fit.missing == ['head.weight', 'head.bias']
    assert fit.unexpected == ['stray.weight']
    assert [name for name, _, _ in fit.misshaped] == ['conv.weight', 'conv.bias', 'bn.weight', 'bn.bias',
                                                      'bn.running_mean', 'bn.running_var']
    assert 'bn.weight: [5] in the checkpoint, [4] in the model; ...)' in fit.describe()   # the first 3 of 6
    assert 'conv.weight: [5, 3, 1, 1] in the checkpoint, [4, 3, 1, 1] in the model' in fit.describe()
    assert fit.describe().endswith('1 checkpoint tensor(s) the model does not have (stray.weight)')
    assert compare_state_dict(model, model.state_dict()).exact


class FakeRunner(CheckpointFitMixin):
    """What CheckpointFitMixin.load_checkpoint uses of mmengine's Runner."""

    def __init__(self, model: nn.Module, resume: bool = False, exact: bool = False):
        self.model, self._resume, self.exact_checkpoint = model, resume, exact
        self.cfg = type('Cfg', (), {'filename': 'configs/demo/x.py'})()
        self.logger = logging.getLogger('fake-runner')
        self.hook_saw = None

    def call_hook(self, name: str, checkpoint: dict) -> None:
        assert name == 'after_load_checkpoint'
        self.hook_saw = dict(checkpoint['state_dict'])


def test_runner_load_from_loads_what_fits_and_says_what_it_did_not(tmp_path, caplog):
    source = Tiny(width=4)
    with torch.no_grad():
        source.conv.weight.fill_(0.25)
    path = tmp_path / 'pretrained.pth'
    torch.save(dict(state_dict=source.state_dict()), path)
    model = Tiny(width=4, extra=True)
    head_before = model.head.weight.clone()
    runner = FakeRunner(model)
    with caplog.at_level(logging.WARNING, logger='fake-runner'):
        runner.load_checkpoint(str(path))
    assert torch.equal(model.conv.weight, source.conv.weight)       # what fits is loaded
    assert torch.equal(model.head.weight, head_before)              # the rest keeps its initialisation
    assert [r.getMessage() for r in caplog.records] == [
        f"loaded 6 of the model's 8 tensors from {path}; not loaded (kept as initialised): 2 model tensor(s) "
        'missing from the checkpoint (head.weight, head.bias)']
    assert set(runner.hook_saw) == set(model.state_dict())          # hooks (EMA) get a state dict that fits


def test_runner_refuses_a_misfit_checkpoint_for_evaluation_and_resume(tmp_path):
    path = tmp_path / 'other.pth'
    torch.save(dict(state_dict=Tiny(width=5).state_dict()), path)
    for runner in (FakeRunner(Tiny(), exact=True), FakeRunner(Tiny(), resume=True)):
        before = runner.model.conv.weight.clone()
        with pytest.raises(CheckpointMismatchError, match=rf'^checkpoint {path} does not fit the model of '
                                                          r'configs/demo/x\.py .*6 of another shape'):
            runner.load_checkpoint(str(path))
        assert torch.equal(runner.model.conv.weight, before) and runner.hook_saw is None


@pytest.mark.slow
def test_test_tool_refuses_it_in_one_line(mobilevit_checkpoint, tiny_synthetic, tmp_path):
    root = f'{tiny_synthetic}/'
    result = run_tool('test', MOBILEFORMER_DEMO, mobilevit_checkpoint, '--work-dir', tmp_path, '--cfg-options',
                      f'test_dataloader.dataset.data_root={root}',
                      f'test_evaluator.ann_file={root}annotations/instances_val.json', returncode=1)
    expect_refusal(result.stderr.rstrip().splitlines()[-1], mobilevit_checkpoint, MOBILEFORMER_DEMO)
    assert 'Traceback' not in result.stderr and 'bbox_mAP' not in result.stdout + result.stderr
