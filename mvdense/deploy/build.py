"""Builds the model of any mmdet or mmseg config we ship, for export and benchmarking."""
from __future__ import annotations

from dataclasses import dataclass

from mmengine.config import Config
from mmengine.registry import init_default_scope
from torch import nn

DETECTION, SEGMENTATION = 'detection', 'segmentation'


@dataclass
class BuiltModel:
    """A model built from a config, in eval mode."""

    model: nn.Module
    task: str  # DETECTION or SEGMENTATION
    config: Config


def _drop_pretrained_init(model_cfg) -> None:
    """Removes ``init_cfg`` entries everywhere in a model config: export and timing need no ImageNet file."""
    if isinstance(model_cfg, dict):
        model_cfg.pop('init_cfg', None)
        model_cfg.pop('pretrained', None)
        for value in model_cfg.values():
            _drop_pretrained_init(value)
    elif isinstance(model_cfg, list | tuple):
        for value in model_cfg:
            _drop_pretrained_init(value)


def build_model(config: str | Config, checkpoint: str | None = None,
                cfg_options: dict | None = None) -> BuiltModel:
    """Builds the config's detector or segmentor on the CPU, in eval mode.

    Without a checkpoint the weights are random (PyTorch's default init; no pretrained backbone is
    read). With one, it is loaded through mmengine (and our allow-listed loader).
    """
    import mvdense  # noqa: F401  (registers our modules and the checkpoint loader)

    if isinstance(config, str):
        from ..runner import load_config

        config = load_config(config, cfg_options)
    elif cfg_options:
        config.merge_from_dict(cfg_options)
    scope = config.get('default_scope', 'mmdet')
    init_default_scope(scope)
    model_cfg = config.model.copy()
    _drop_pretrained_init(model_cfg)
    if scope == 'mmseg':
        from mmseg.registry import MODELS
    elif scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        raise ValueError(f'unsupported default_scope {scope!r}: expected an mmdet or mmseg config')
    model = MODELS.build(model_cfg)
    model.dataset_meta = _config_dataset_meta(config)
    if checkpoint:
        from mmengine.runner import load_checkpoint

        loaded = load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
        model.dataset_meta = loaded.get('meta', {}).get('dataset_meta') or model.dataset_meta
    return BuiltModel(model.eval(), task_of(model), config)


def _config_dataset_meta(config: Config) -> dict:
    """The test dataset's ``metainfo`` (class names) when the config spells it out, else {}."""
    loader = config.get('test_dataloader') or config.get('val_dataloader') or {}
    dataset = loader.get('dataset', {}) if isinstance(loader, dict) else {}
    while isinstance(dataset, dict) and 'dataset' in dataset and 'metainfo' not in dataset:
        dataset = dataset['dataset']
    if not isinstance(dataset, dict):
        return {}
    if dataset.get('metainfo'):
        return dict(dataset['metainfo'])
    dataset_class = _dataset_class(config.get('default_scope', 'mmdet'), dataset.get('type'))
    metainfo = getattr(dataset_class, 'METAINFO', None) or {}
    return {'classes': tuple(metainfo['classes'])} if 'classes' in metainfo else {}


def _dataset_class(scope: str, name: str | None):
    """The registered dataset class ``name`` of mmdet or mmseg (None when unknown)."""
    if not isinstance(name, str):
        return name
    if scope == 'mmseg':
        from mmseg.registry import DATASETS
    else:
        from mmdet.registry import DATASETS
    return DATASETS.get(name)


def task_of(model: nn.Module) -> str:
    """DETECTION for an mmdet detector, SEGMENTATION for an mmseg segmentor."""
    from mmdet.models.detectors import BaseDetector
    from mmseg.models.segmentors import BaseSegmentor

    if isinstance(model, BaseDetector):
        return DETECTION
    if isinstance(model, BaseSegmentor):
        return SEGMENTATION
    raise TypeError(f'{type(model).__name__} is neither an mmdet detector nor an mmseg segmentor')
