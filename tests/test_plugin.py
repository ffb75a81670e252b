"""mvdense as a plug-in of an existing OpenMMLab project: our backbones from mmdet's and mmseg's registries,
configs written against mmdet's / mmseg's own bases with our backbone swapped in, checkpoints (round trip
and refusal, on either loading path), our configs as ``mvdense::`` bases of a config outside the
repository, and mmdet's / mmseg's inferencers on our configs and checkpoints.

``make compat`` also runs this file on the oldest supported stack (torch 2.1, mmcv 2.1.0, mmengine 0.10.0,
mmdet 3.3.0, mmseg 1.2.2), against mvdense installed with a plain ``pip install``.
"""
from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, build_model
from mmengine.config import Config
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import load_checkpoint, save_checkpoint

import mvdense
from mvdense.engine import UnsafeCheckpointError, checkpoint
from mvdense.mim import config_path, configs_root

ODD_SIZE = (97, 131)  # H, W: neither divisible by 2
SEG_CONFIG = ROOT / 'configs/demo/deeplabv3_mobilevit_xxs_synthetic.py'
DET_CONFIG = ROOT / 'configs/demo/ssdlite_mobilevit_xxs_synthetic.py'

BACKBONES = [
    pytest.param(dict(type='MobileViT', arch='xxs', out_indices=(1, 2, 3, 4)), id='mobilevit-xxs'),
    pytest.param(dict(type='MobileFormer', arch='26m', out_indices=(0, 1, 2, 3)), id='mobileformer-26m'),
]


def _registry(scope: str):
    init_default_scope(scope)
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    return MODELS


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
@pytest.mark.parametrize('backbone_cfg', BACKBONES)
def test_backbone_from_the_toolbox_registry_at_an_odd_size(scope, backbone_cfg):
    backbone = _registry(scope).build(backbone_cfg).eval()
    with torch.no_grad():
        outputs = backbone(torch.randn(1, 3, *ODD_SIZE))
    assert [out.shape[1] for out in outputs] == list(backbone.out_channels)
    expected = [tuple(math.ceil(side / stride) for side in ODD_SIZE) for stride in backbone.out_strides]
    assert [tuple(out.shape[-2:]) for out in outputs] == expected


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _image(size=ODD_SIZE, seed=0) -> torch.Tensor:
    return torch.randint(0, 256, (3, *size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


RETINANET = """
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mvdense'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='MobileViT', arch='xxs', out_indices=(1, 2, 3, 4)),
    neck=dict(in_channels=[24, 48, 64, 80]),
    bbox_head=dict(num_classes=3))
"""


def test_retinanet_fpn_from_mmdet_bases_with_our_backbone(tmp_path):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    cfg = Config.fromfile(_write(tmp_path / 'retinanet_mobilevit.py', RETINANET))
    model = revert_sync_batchnorm(_registry('mmdet').build(cfg.model))
    assert type(model.backbone).__name__ == 'MobileViT'
    height, width = ODD_SIZE
    meta = dict(img_shape=ODD_SIZE, ori_shape=ODD_SIZE, scale_factor=(1.0, 1.0))
    sample = DetDataSample(metainfo=meta)
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[10.0, 12.0, 60.0, 70.0]]), labels=torch.tensor([2]))
    data = model.data_preprocessor(dict(inputs=[_image()], data_samples=[sample]), training=True)
    model.train()
    total, _ = model.parse_losses(model(**data, mode='loss'))
    assert torch.isfinite(total) and total > 0
    total.backward()
    assert model.backbone.stem.conv.weight.grad.abs().sum() > 0

    model.eval()
    data = model.data_preprocessor(dict(inputs=[_image()], data_samples=[DetDataSample(metainfo=meta)]))
    with torch.no_grad():
        result = model(**data, mode='predict')[0]
    boxes = result.pred_instances.bboxes
    assert boxes.shape[1] == 4 and len(boxes) > 0
    assert float(boxes[:, 2].max()) <= width and float(boxes[:, 3].max()) <= height


SEMANTIC_FPN = """
_base_ = 'mmseg::_base_/models/fpn_r50.py'
custom_imports = dict(imports=['mvdense'], allow_failed_imports=False)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size_divisor=1),  # batches keep the odd size of the images
    backbone=dict(_delete_=True, type='MobileFormer', arch='26m', out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[12, 24, 64, 96]),
    decode_head=dict(num_classes=4))
"""


def test_semantic_fpn_from_mmseg_bases_with_our_backbone(tmp_path):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    cfg = Config.fromfile(_write(tmp_path / 'fpn_mobileformer.py', SEMANTIC_FPN))
    model = revert_sync_batchnorm(_registry('mmseg').build(cfg.model))
    assert type(model.backbone).__name__ == 'MobileFormer'
    meta = dict(img_shape=ODD_SIZE, ori_shape=ODD_SIZE, pad_shape=ODD_SIZE)
    sample = SegDataSample(metainfo=meta)
    sample.gt_sem_seg = PixelData(data=torch.randint(0, 4, (1, *ODD_SIZE)))
    data = model.data_preprocessor(dict(inputs=[_image()], data_samples=[sample]), training=True)
    model.train()
    total, _ = model.parse_losses(model(**data, mode='loss'))
    assert torch.isfinite(total) and total > 0
    total.backward()

    model.eval()
    data = model.data_preprocessor(dict(inputs=[_image()], data_samples=[SegDataSample(metainfo=meta)]))
    with torch.no_grad():
        result = model(**data, mode='predict')[0]
    labels = result.pred_sem_seg.data
    assert tuple(labels.shape) == (1, *ODD_SIZE)
    assert int(labels.min()) >= 0 and int(labels.max()) < 4


# Checkpoints: both loading paths (torch's allow-list API where torch has it; our restricted unpickler,
# which older torch uses, everywhere).
LOADING_PATHS = [
    pytest.param(True, id='torch-allow-list', marks=pytest.mark.skipif(
        not checkpoint.TORCH_HAS_ALLOWLIST, reason='this torch has no allow-list API')),
    pytest.param(False, id='restricted-unpickler'),
]


class Exploit:
    """Unpickling this runs a shell command (the reason checkpoints are not unpickled freely)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


@pytest.mark.parametrize('torch_allow_list', LOADING_PATHS)
def test_checkpoint_round_trip_through_mmengine(torch_allow_list, tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, 'TORCH_HAS_ALLOWLIST', torch_allow_list)
    model = build_model(DET_CONFIG)
    hub = MessageHub.get_instance('test-plugin-round-trip')
    hub.update_scalar('train/loss', np.float64(0.75))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    state = dict(meta=dict(epoch=2, seed=np.int64(5), dataset_meta=dict(classes=('circle', 'rectangle'))),
                 state_dict=model.state_dict(), message_hub=hub.state_dict(), optimizer=optimizer.state_dict())
    path = tmp_path / 'epoch_2.pth'
    save_checkpoint(state, str(path))

    restored = build_model(DET_CONFIG)
    loaded = load_checkpoint(restored, str(path), map_location='cpu', strict=True)
    for name, tensor in model.state_dict().items():
        assert torch.equal(restored.state_dict()[name], tensor), name
    assert loaded['meta']['dataset_meta']['classes'] == ('circle', 'rectangle')
    assert loaded['meta']['seed'] == 5
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer) and buffer.current() == 0.75


@pytest.mark.parametrize('torch_allow_list', LOADING_PATHS)
def test_checkpoint_with_code_is_refused_and_not_run(torch_allow_list, tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, 'TORCH_HAS_ALLOWLIST', torch_allow_list)
    marker = tmp_path / 'ran'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'meta': Exploit(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match=f'refused to load {path}'):
        load_checkpoint(torch.nn.Module(), str(path), map_location='cpu')
    assert not marker.exists()


def test_restricted_unpickler_admits_extra_globals_only_inside_the_block(tmp_path, monkeypatch):
    import argparse

    monkeypatch.setattr(checkpoint, 'TORCH_HAS_ALLOWLIST', False)
    path = tmp_path / 'foreign.pth'
    torch.save({'model': {'w': torch.ones(1)}, 'args': argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(UnsafeCheckpointError, match='argparse.Namespace'):
        checkpoint.load_local_checkpoint(path)
    with checkpoint.extra_safe_globals([argparse.Namespace]):
        assert checkpoint.load_local_checkpoint(path)['args'].lr == 0.1
    with pytest.raises(UnsafeCheckpointError):
        checkpoint.load_local_checkpoint(path)


def test_restricted_unpickler_imports_nothing_it_refuses():
    payload = pickle.dumps(Exploit(Path('/nonexistent')), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match='Unsupported global'):
        checkpoint._RestrictedPickleModule.load(__import__('io').BytesIO(payload))


# Our configs as `mvdense::` bases.

def test_configs_ship_inside_the_package():
    root = Path(configs_root())
    assert root.parent.parent == Path(mvdense.__file__).parent
    for name in ('ssdlite_mobilevit_s_coco.py', 'deeplabv3_mobilevit_xxs_voc.py', '_base_/models/ssdlite.py',
                 'demo/ssdlite_mobilevit_xxs_synthetic.py'):
        assert (root / name).is_file(), name
    assert config_path('mvdense::ssdlite_mobilevit_s_coco.py') == str(root / 'ssdlite_mobilevit_s_coco.py')
    with pytest.raises(FileNotFoundError, match='mvdense::nope.py'):
        config_path('nope.py')


def test_config_outside_the_repository_starts_from_ours(tmp_path):
    downstream = _write(tmp_path / 'my_ssdlite.py', """
_base_ = 'mvdense::ssdlite_mobilevit_s_coco.py'
custom_imports = dict(imports=['mvdense'], allow_failed_imports=False)
model = dict(bbox_head=dict(num_classes=3))
train_cfg = dict(max_epochs=12)
""")
    cfg = Config.fromfile(downstream)
    assert cfg.default_scope == 'mmdet'
    assert cfg.model.backbone.type == 'MobileViT' and cfg.model.backbone.arch == 's'
    assert cfg.model.bbox_head.num_classes == 3 and cfg.train_cfg.max_epochs == 12
    model = build_model(cfg)
    assert model.bbox_head.num_classes == 3

    seg = _write(tmp_path / 'my_deeplab.py', "_base_ = ['mvdense::demo/deeplabv3_mobilevit_xxs_synthetic.py']\n")
    assert Config.fromfile(seg).model.decode_head.num_classes == 4


# mmdet's and mmseg's inferencers.

@pytest.fixture(scope='module')
def images(synthetic_dataset) -> Path:
    return synthetic_dataset(num_train=2, num_val=0, image_size=(96, 128), seed=4) / 'train'


def _save(model, path: Path, classes, palette=None) -> str:
    meta = dict(classes=classes) if palette is None else dict(classes=classes, palette=palette)
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=meta)), path)
    return str(path)


def test_det_inferencer_on_our_detection_config(images, tmp_path):
    from mmdet.apis import DetInferencer

    checkpoint_file = _save(build_model(DET_CONFIG), tmp_path / 'det.pth', ('circle', 'rectangle', 'triangle'))
    inferencer = DetInferencer(model=str(DET_CONFIG), weights=checkpoint_file, device='cpu', show_progress=False)
    result = inferencer(str(images), out_dir=str(tmp_path / 'out'), no_save_pred=False)
    assert len(result['predictions']) == 2
    assert {'labels', 'scores', 'bboxes'} <= set(result['predictions'][0])
    assert len(list((tmp_path / 'out' / 'vis').glob('*.jpg'))) == 2


def test_mmseg_inferencer_on_our_segmentation_config(images, tmp_path):
    from mmseg.apis import MMSegInferencer

    model = build_model(SEG_CONFIG)
    with torch.no_grad():  # every pixel class 1
        model.decode_head.conv_seg.weight.zero_()
        model.decode_head.conv_seg.bias.copy_(torch.tensor([0.0, 5.0, 0.0, 0.0]))
    metainfo = model.cfg.train_dataloader.dataset.metainfo
    checkpoint_file = _save(model, tmp_path / 'seg.pth', metainfo.classes, metainfo.palette)
    inferencer = MMSegInferencer(model=str(SEG_CONFIG), weights=checkpoint_file, device='cpu')
    steps = [step.__class__.__name__ for step in inferencer.pipeline.transforms]
    assert steps == ['InferencerLoader', 'PackSegInputs']
    result = inferencer(str(images), out_dir=str(tmp_path / 'out'), return_datasamples=True)
    assert len(result) == 2
    for sample in result:
        assert tuple(sample.pred_sem_seg.data.shape) == (1, 96, 128)
        assert bool((sample.pred_sem_seg.data == 1).all())
    assert len(list((tmp_path / 'out' / 'vis').glob('*'))) == 2


@pytest.mark.slow
def test_mmseg_inferencer_is_extended_whichever_is_imported_first():
    import subprocess
    import sys

    check = 'print(MMSegInferencer._init_pipeline.reads_mvdense_steps)'
    for imports in ('from mmseg.apis import MMSegInferencer; import mvdense',
                    'import mvdense; from mmseg.apis import MMSegInferencer'):
        result = subprocess.run([sys.executable, '-c', f'{imports}; {check}'], capture_output=True, text=True,
                                cwd=Path(mvdense.__file__).parents[1], timeout=300)
        assert result.stdout.strip() == 'True', result.stderr[-2000:]


def test_attention_runs_in_float32_under_cpu_bfloat16_autocast():
    """The CPU-autocast check works on every supported torch (torch 2.1 has no device argument)."""
    import torch.nn.functional as F

    from mvdense.models import layers

    query = torch.randn(1, 2, 16, 8, generator=torch.Generator().manual_seed(0))
    assert not layers.cpu_autocast_enabled()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert layers.cpu_autocast_enabled()
        out = layers.attention(query, query, query)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, F.scaled_dot_product_attention(query, query, query))
