"""mmseg's ``MMSegInferencer`` on our segmentation configs, and both OpenMMLab inferencers (mmdet's
``DetInferencer``, mmseg's ``MMSegInferencer``) fast on models built from our modules.

The inferencer builds its pipeline from the config's test pipeline by name: it drops ``LoadAnnotations``
and replaces ``LoadImageFromFile`` with its own loader (which also takes arrays), and refuses a pipeline
without that step. Our segmentation configs load through the checked steps of
:mod:`mvdense.datasets.transforms` (``CheckedLoadImageFromFile``, ``CheckedLoadAnnotations``,
``ValidateSegMap``), so importing mvdense extends the inferencer's pipeline set-up to read those the same
way: the checked image loader counts as ``LoadImageFromFile``, the annotation loader and the mask check
are dropped. Other configs are untouched. mmdet's ``DetInferencer`` needs nothing: our detection configs
load with mmdet's own steps.

A model whose modules include ours (an mvdense backbone, neck or head) is prepared for inference when an
inferencer builds it: BatchNorm folded into the convolutions and channels-last
(:func:`mvdense.deploy.optimize.prepare_for_inference`, the same outputs to float rounding, faster on
CPUs). Models without our modules are left as the inferencer builds them.

The inferencer modules are not imported for this (they cost seconds): the extensions are applied when a
module is imported, or at once if it already is (:func:`when_imported`).
"""
from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Callable

__all__ = ['inferencer_pipeline', 'register_inferencer_support', 'when_imported']

# Test-pipeline steps that need ground truth, which the inferencer does not have.
GROUND_TRUTH_STEPS = ('CheckedLoadAnnotations', 'ValidateSegMap')
# Our image loader and the step the inferencer looks for in its place.
IMAGE_LOADERS = {'CheckedLoadImageFromFile': 'LoadImageFromFile'}
MMSEG_INFERENCER = 'mmseg.apis.mmseg_inferencer'
MMDET_INFERENCER = 'mmdet.apis.det_inferencer'


def inferencer_pipeline(pipeline: list) -> list:
    """``pipeline`` with our checked loading steps as MMSegInferencer expects a test pipeline: the image
    loader renamed to ``LoadImageFromFile`` (the inferencer swaps in its own), the ground-truth steps
    left out. A pipeline without our steps comes back unchanged."""
    steps = []
    for step in pipeline:
        name = step['type'] if isinstance(step['type'], str) else getattr(step['type'], '__name__', '')
        name = name.split('.')[-1]
        if name in GROUND_TRUTH_STEPS:
            continue
        if name in IMAGE_LOADERS:
            step = {**step, 'type': IMAGE_LOADERS[name]}
        steps.append(step)
    return steps


def _extend_mmseg_inferencer(module) -> None:
    inferencer = module.MMSegInferencer
    init_pipeline = inferencer._init_pipeline
    if getattr(init_pipeline, 'reads_mvdense_steps', False):
        return

    def _init_pipeline(self, cfg):
        dataset = cfg.test_dataloader.dataset
        dataset.pipeline = inferencer_pipeline(dataset.pipeline)
        return init_pipeline(self, cfg)

    _init_pipeline.reads_mvdense_steps = True
    _init_pipeline.__doc__ = init_pipeline.__doc__
    inferencer._init_pipeline = _init_pipeline


def uses_our_modules(model) -> bool:
    """Whether any module of ``model`` is one of mvdense's."""
    return any(type(module).__module__.startswith('mvdense.') for module in model.modules())


def _prepare_built_models(inferencer) -> None:
    """Wraps ``inferencer._init_model`` so that models with our modules come back prepared for inference."""
    init_model = inferencer._init_model
    if getattr(init_model, 'prepares_mvdense_models', False):
        return

    def _init_model(self, *args, **kwargs):
        model = init_model(self, *args, **kwargs)
        if uses_our_modules(model):
            from mvdense.deploy.optimize import prepare_for_inference

            prepare_for_inference(model, entry=getattr(model, 'backbone', None))
        return model

    _init_model.prepares_mvdense_models = True
    _init_model.__doc__ = init_model.__doc__
    inferencer._init_model = _init_model


def register_inferencer_support() -> None:
    """Extends ``MMSegInferencer`` to our segmentation configs and both inferencers to prepare our models
    for inference (idempotent; see the module docstring)."""
    when_imported(MMSEG_INFERENCER, _extend_mmseg_inferencer)
    when_imported(MMSEG_INFERENCER, lambda module: _prepare_built_models(module.MMSegInferencer))
    when_imported(MMDET_INFERENCER, lambda module: _prepare_built_models(module.DetInferencer))


_PENDING: dict[str, list[Callable]] = {}


def when_imported(name: str, callback: Callable) -> None:
    """Calls ``callback(module)`` once module ``name`` is imported: now if it already is, else right after
    it is first executed (through a finder at the front of ``sys.meta_path``)."""
    module = sys.modules.get(name)
    if module is not None:
        callback(module)
        return
    _PENDING.setdefault(name, []).append(callback)
    if not any(isinstance(finder, _PostImportFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PostImportFinder())


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself; for a module with pending callbacks it wraps the real finder's loader."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in _PENDING:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _CallbackLoader(spec.loader, _PENDING.pop(fullname))
                return spec
        return None


class _CallbackLoader(importlib.abc.Loader):
    """A module's own loader, then the callbacks on the executed module."""

    def __init__(self, loader, callbacks: list[Callable]) -> None:
        self.loader = loader
        self.callbacks = callbacks

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        for callback in self.callbacks:
            callback(module)

    def __getattr__(self, name):  # get_source, get_filename, ... of the wrapped loader
        return getattr(self.loader, name)
