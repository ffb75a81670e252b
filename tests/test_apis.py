"""mvdense.apis: a config's task, and config (+ checkpoint) -> model as every tool builds it."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import ROOT
from mmengine.config import Config

from mvdense.apis import DETECTION, SEGMENTATION, init_model, load_config, model_task, task_of
from mvdense.datasets import CLASSES

DET_CONFIG = str(ROOT / 'configs/demo/ssdlite_mobilevit_xxs_synthetic.py')
SEG_CONFIG = str(ROOT / 'configs/demo/deeplabv3_mobilevit_xxs_synthetic.py')


def test_task_follows_the_default_scope_or_else_the_heads():
    assert model_task(load_config(DET_CONFIG)) == DETECTION
    assert model_task(load_config(SEG_CONFIG)) == SEGMENTATION
    assert model_task(Config(dict(model=dict(decode_head=dict())))) == SEGMENTATION
    assert model_task(Config(dict(model=dict(bbox_head=dict())))) == DETECTION
    with pytest.raises(ValueError, match='neither an mmdet nor an mmseg config'):
        model_task(Config(dict(default_scope='mmpretrain', model=dict(head=dict()))))


def test_load_config_merges_options_without_touching_the_given_config():
    cfg = load_config(DET_CONFIG)
    changed = load_config(cfg, {'model.bbox_head.num_classes': 7})
    assert changed.model.bbox_head.num_classes == 7 and cfg.model.bbox_head.num_classes == len(CLASSES)
    with pytest.raises(FileNotFoundError, match='nope.py'):
        load_config(str(ROOT / 'configs/nope.py'))


def test_init_model_reads_no_pretrained_file_and_names_the_config_classes():
    """The COCO config's backbone points at an ImageNet file that is not here: the model still builds and
    initialises, in eval mode, with the config attached and the test set's classes."""
    model = init_model(str(ROOT / 'configs/ssdlite_mobilevit_xxs_coco.py'))
    assert model.backbone.init_cfg is None
    model.init_weights()
    assert not model.training and task_of(model) == model_task(model.cfg) == DETECTION
    assert len(model.dataset_meta['classes']) == 80 and len(model.dataset_meta['palette']) == 80


def test_init_model_loads_a_checkpoint_and_its_dataset_meta(tmp_path):
    source = init_model(SEG_CONFIG)
    with torch.no_grad():
        source.decode_head.conv_seg.bias.fill_(0.5)
    classes = ('background', 'a', 'b', 'c')
    path = tmp_path / 'seg.pth'
    torch.save(dict(state_dict=source.state_dict(), meta=dict(dataset_meta=dict(CLASSES=classes))), path)
    model = init_model(SEG_CONFIG, str(path))
    assert torch.equal(model.decode_head.conv_seg.bias, torch.full((4,), 0.5))
    assert model.dataset_meta['classes'] == classes                   # the checkpoint's, keys lower-cased
    assert model.dataset_meta['palette'] == source.dataset_meta['palette']      # the config's
    assert task_of(model) == SEGMENTATION

    torch.save(dict(state_dict={k: v for k, v in source.state_dict().items() if 'conv_seg' not in k}),
               tmp_path / 'partial.pth')
    with pytest.raises(RuntimeError, match='conv_seg'):
        init_model(SEG_CONFIG, str(tmp_path / 'partial.pth'))          # loaded strictly


@pytest.mark.slow
def test_library_does_not_import_the_command_line_helpers():
    """``mvdense.runner`` is what tools/train.py and tools/test.py share; the library never needs it."""
    code = ('import sys, mvdense.apis, mvdense.benchmark, mvdense.deploy.onnx_export; '
            "print('mvdense.runner' in sys.modules)")
    result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == 'False'
