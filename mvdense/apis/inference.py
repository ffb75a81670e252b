"""Config (+ checkpoint) -> model, and the task a config or model solves: the one place the tools
(``tools/infer.py``, ``tools/export_onnx.py``, ``tools/benchmark.py``), :mod:`mvdense.deploy` and the
tests get their models from, as mmdet's ``init_detector`` and mmseg's ``init_model`` do for theirs.

    model = init_model('configs/ssdlite_mobilevit_xxs_coco.py', 'epoch_200.pth')   # eval mode, on the CPU
    model_task(model.cfg)   # 'detection'
"""
from __future__ import annotations

import copy
import os.path as osp
from typing import Any

from mmengine.config import Config
from mmengine.model.utils import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import _load_checkpoint
from torch import nn

__all__ = ['DETECTION', 'SEGMENTATION', 'init_model', 'load_config', 'model_task', 'task_of']

DETECTION, SEGMENTATION = 'detection', 'segmentation'
SCOPES = {DETECTION: 'mmdet', SEGMENTATION: 'mmseg'}


def load_config(config: str | Config, cfg_options: dict | None = None) -> Config:
    """The config of a file (or a copy of a ``Config``), with ``cfg_options`` merged in."""
    if isinstance(config, str):
        if not osp.isfile(config):
            raise FileNotFoundError(f'config file not found: {config}')
        config = Config.fromfile(config)
    else:
        config = copy.deepcopy(config)
    if cfg_options:
        config.merge_from_dict(cfg_options)
    return config


def model_task(cfg: Config) -> str:
    """:data:`DETECTION` or :data:`SEGMENTATION`: from the config's ``default_scope`` (mmdet / mmseg) or,
    without one, from its model's heads."""
    scope = cfg.get('default_scope')
    for task, task_scope in SCOPES.items():
        if scope == task_scope:
            return task
    model = cfg.get('model') or {}
    if 'decode_head' in model:
        return SEGMENTATION
    if 'bbox_head' in model or 'roi_head' in model:
        return DETECTION
    raise ValueError(f'{cfg.filename or "config"}: neither an mmdet nor an mmseg config '
                     f'(default_scope={scope!r}, no bbox_head / roi_head / decode_head)')


def task_of(model: nn.Module) -> str:
    """:data:`DETECTION` for an mmdet detector, :data:`SEGMENTATION` for an mmseg segmentor."""
    from mmdet.models.detectors import BaseDetector
    from mmseg.models.segmentors import BaseSegmentor

    if isinstance(model, BaseDetector):
        return DETECTION
    if isinstance(model, BaseSegmentor):
        return SEGMENTATION
    raise TypeError(f'{type(model).__name__} is neither an mmdet detector nor an mmseg segmentor')


def init_model(config: str | Config, checkpoint: str | None = None, device: str = 'cpu',
               cfg_options: dict | None = None) -> nn.Module:
    """Builds the config's detector or segmentor in eval mode on ``device``.

    No pretrained (ImageNet) file is read: ``init_cfg`` entries of type ``Pretrained`` are dropped, and
    weights are PyTorch's initialisation unless ``checkpoint`` is given, which is loaded through our
    allow-listed loader and must fit the model exactly: a checkpoint with missing, unexpected or
    mis-shaped tensors (of another model or config) raises
    :class:`~mvdense.engine.CheckpointMismatchError`, one line naming the checkpoint, the config and the
    first mismatches. ``model.cfg`` is the config; ``model.dataset_meta`` the checkpoint's ``dataset_meta``
    (class names, palette) over the config's test data set's.
    """
    import mvdense  # noqa: F401  (registers our modules and the checkpoint loader)

    cfg = load_config(config, cfg_options)
    task = model_task(cfg)
    init_default_scope(cfg.get('default_scope', SCOPES[task]))
    model = revert_sync_batchnorm(_registry(task, 'MODELS').build(_without_pretrained(cfg.model)))
    meta = config_dataset_meta(cfg, task)
    if checkpoint:
        loaded = load_checkpoint_exact(model, checkpoint, cfg.filename or 'the given config')
        meta.update({k.lower(): v for k, v in (loaded.get('meta', {}).get('dataset_meta') or {}).items()})
    model.dataset_meta = meta
    model.cfg = cfg
    return model.to(device).eval()


def load_checkpoint_exact(model: nn.Module, checkpoint: str, config: str) -> dict:
    """Loads the file ``checkpoint`` into ``model``, refusing one that does not fit it
    (:class:`~mvdense.engine.CheckpointMismatchError` naming ``config``); returns the loaded checkpoint."""
    from mvdense.engine import checkpoint_state_dict, load_exact

    loaded = _load_checkpoint(checkpoint, map_location='cpu')
    if not isinstance(loaded, dict):
        raise RuntimeError(f'checkpoint {checkpoint} holds a {type(loaded).__name__}, not a state dict')
    load_exact(model, checkpoint_state_dict(loaded), checkpoint, config)
    return loaded


def config_dataset_meta(cfg: Config, task: str) -> dict:
    """``classes`` and ``palette`` of the config's test (else val) data set: its ``metainfo`` over its
    data set class's ``METAINFO`` ({} when the config names no data set)."""
    loader = cfg.get('test_dataloader') or cfg.get('val_dataloader') or {}
    dataset = loader.get('dataset') or {}
    while 'metainfo' not in dataset and ('dataset' in dataset or 'datasets' in dataset):
        dataset = dataset.get('dataset') or dataset['datasets'][0]          # unwrap dataset wrappers
    dataset_type = dataset.get('type')
    dataset_class = _registry(task, 'DATASETS').get(dataset_type) if isinstance(dataset_type, str) else dataset_type
    meta: dict[str, Any] = dict(getattr(dataset_class, 'METAINFO', None) or {})
    meta.update(dataset.get('metainfo') or {})
    if 'palette' in meta and len(meta['palette']) != len(meta.get('classes', ())):
        del meta['palette']                 # a class's palette for other classes than the config's
    return {key: meta[key] for key in ('classes', 'palette') if key in meta}


def _registry(task: str, name: str):
    """mmdet's or mmseg's registry ``name`` (``MODELS``, ``DATASETS``) for ``task``."""
    if task == DETECTION:
        import mmdet.registry as registries
    else:
        import mmseg.registry as registries
    return getattr(registries, name)


def _without_pretrained(model_cfg: Any) -> Any:
    """A copy of a model config without ``pretrained`` keys and ``init_cfg`` entries of type
    ``Pretrained`` (building a model for inference or export reads no ImageNet file)."""
    if isinstance(model_cfg, dict):
        cleaned = type(model_cfg)()
        for key, value in model_cfg.items():
            if key == 'init_cfg':
                value = _drop_pretrained_entries(value)
            if key != 'pretrained' and not (key == 'init_cfg' and value is None):
                cleaned[key] = _without_pretrained(value)
        return cleaned
    if isinstance(model_cfg, list | tuple):
        return type(model_cfg)(_without_pretrained(value) for value in model_cfg)
    return model_cfg


def _drop_pretrained_entries(init_cfg: Any) -> Any:
    """``init_cfg`` without its ``Pretrained`` entries (None when nothing is left)."""
    entries = init_cfg if isinstance(init_cfg, list | tuple) else [init_cfg]
    kept = [entry for entry in entries if not (isinstance(entry, dict) and entry.get('type') == 'Pretrained')]
    if not kept:
        return None
    return kept if isinstance(init_cfg, list | tuple) else kept[0]
