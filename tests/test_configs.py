"""Every config under configs/ (found by glob, so a new one is checked too): no more than 3 `_base_` levels
deep (mmdet's and mmseg's own files counted), no Mobile-Former config built on a MobileViT one, and every
runnable one loads with every data root and annotation file of its dataloaders and evaluators under the
data-set environment variables of data/README.md."""
from __future__ import annotations

import ast
import functools
import importlib.util
import os
import re
from pathlib import Path

import pytest
from mmengine.config import Config

CONFIGS = Path(__file__).resolve().parents[1] / 'configs'
ALL = sorted(CONFIGS.rglob('*.py'))
# The runnable configs; configs/_base_/ holds the pieces they are composed of.
SHIPPED = [path for path in ALL if '_base_' not in path.relative_to(CONFIGS).parts]
# The roots of data/README.md; the demos' synthetic set has its own (SYNTHETIC_ROOT).
ROOT_VARIABLES = ('COCO_ROOT', 'VOC_ROOT', 'COCO_VOC_ROOT', 'SYNTHETIC_ROOT')
MAX_DEPTH = 3
# mmengine's `{{$NAME:default}}` (Config._substitute_env_variables).
ENV_VARIABLE = re.compile(r'\{\{[\'"]?\s*\$(\w+)\s*:\s*(.*?)\s*[\'"]?\}\}')


def name(path: Path) -> str:
    return str(path.relative_to(CONFIGS))


# ---------------------------------------------------------------------------------------------------------
# `_base_` chains
# ---------------------------------------------------------------------------------------------------------

def resolve(base: str, config: Path) -> Path:
    """The file a `_base_` entry names: relative to ``config``, or ``package::path`` in the package's configs."""
    if '::' in base:
        package, relative = base.split('::')
        return Path(importlib.util.find_spec(package).origin).parent / '.mim' / 'configs' / relative
    return Path(os.path.normpath(config.parent / base))


@functools.cache
def bases(config: Path) -> tuple[Path, ...]:
    """The files ``config``'s `_base_` names, read as mmengine reads them (environment variables first). A
    file that is not there yet (one a tool writes, e.g. a search result) counts as a file without bases."""
    if not config.is_file():
        return ()
    text = ENV_VARIABLE.sub(lambda match: os.environ.get(match[1], match[2]), config.read_text())
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and any(getattr(target, 'id', None) == '_base_' for target in node.targets):
            value = ast.literal_eval(node.value)
            return tuple(resolve(base, config) for base in ([value] if isinstance(value, str) else value))
    return ()


@functools.cache
def deepest_chain(config: Path) -> tuple[Path, ...]:
    """``config`` and its longest line of bases (mmdet's / mmseg's own files included)."""
    chains = [deepest_chain(base) for base in bases(config)]
    return (config, *max(chains, key=len, default=()))


def ancestors(config: Path) -> set[Path]:
    """Every file ``config`` inherits from, directly or not."""
    seen, todo = set(), list(bases(config))
    while todo:
        base = todo.pop()
        if base not in seen:
            seen.add(base)
            todo.extend(bases(base))
    return seen


def show(chain) -> str:
    def one(path: Path) -> str:
        if path.is_relative_to(CONFIGS):
            return name(path)
        package = path.parts.index('.mim') - 1   # <package>/.mim/configs/<path>
        return f"{path.parts[package]}::{'/'.join(path.parts[package + 3:])}"
    return ' -> '.join(one(path) for path in chain)


def test_depth_counts_every_base_file():
    assert show(deepest_chain(CONFIGS / '_base_/det_runtime.py')) == (
        '_base_/det_runtime.py -> mmdet::_base_/default_runtime.py')
    # mmdet's own bases count too: -> detr_r50_8xb2-150e_coco.py -> ../_base_/datasets/coco_detection.py
    detr = resolve('mmdet::detr/detr_r50_8xb2-500e_coco.py', CONFIGS / 'x.py')
    assert len(deepest_chain(detr)) - 1 == 2


@pytest.mark.parametrize('path', ALL, ids=name)
def test_at_most_3_base_levels(path):
    chain = deepest_chain(path)
    assert len(chain) - 1 <= MAX_DEPTH, f'{len(chain) - 1} levels: {show(chain)}'


@pytest.mark.parametrize('path', [p for p in ALL if 'mobileformer' in p.name], ids=name)
def test_mobileformer_configs_do_not_inherit_mobilevit_ones(path):
    assert not [base.name for base in ancestors(path) if 'mobilevit' in base.name]


# ---------------------------------------------------------------------------------------------------------
# Data roots
# ---------------------------------------------------------------------------------------------------------

def dataset_paths(dataset: dict, where: str):
    """(where, path) for the root, annotation file and prefixes of a dataset (wrappers: of each inner one),
    joined as mmengine's BaseDataset joins them (a relative path is taken under `data_root`)."""
    if 'datasets' in dataset:
        for i, inner in enumerate(dataset['datasets']):
            yield from dataset_paths(inner, f'{where}.datasets[{i}]')
        return
    if 'dataset' in dataset:
        yield from dataset_paths(dataset['dataset'], f'{where}.dataset')
        return
    root = dataset.get('data_root') or ''
    yield f'{where}.data_root', root
    if dataset.get('ann_file'):
        yield f'{where}.ann_file', os.path.join(root, dataset['ann_file'])
    for key, prefix in (dataset.get('data_prefix') or {}).items():
        yield f'{where}.data_prefix.{key}', os.path.join(root, prefix)


def data_paths(cfg: Config):
    """(where, path) for every dataloader (`*_dataloader`) and evaluator (`*_evaluator`) of ``cfg``."""
    for key in sorted(cfg.keys()):
        if key.endswith('_dataloader') and cfg[key]:
            yield from dataset_paths(cfg[key]['dataset'], f'{key}.dataset')
        elif key.endswith('_evaluator') and cfg[key]:
            metrics = cfg[key] if isinstance(cfg[key], (list, tuple)) else [cfg[key]]
            for i, metric in enumerate(metrics):
                if metric.get('ann_file'):
                    yield f'{key}[{i}].ann_file', metric['ann_file']


@pytest.mark.parametrize('path', SHIPPED, ids=name)
def test_data_paths_follow_the_root_variables(path, tmp_path, monkeypatch):
    absent = sorted(str(base) for base in ancestors(path) if not base.is_file())
    if absent:
        pytest.skip(f'inherits {", ".join(absent)}, which a tool writes (not in the tree)')
    roots = []
    for variable in ROOT_VARIABLES:
        roots.append(f'{tmp_path / variable.lower()}/')
        monkeypatch.setenv(variable, roots[-1])
    cfg = Config.fromfile(str(path))
    paths = list(data_paths(cfg))
    assert any(where.startswith('train_dataloader') for where, _ in paths), 'no training set found'
    elsewhere = [f'{where} = {value!r}' for where, value in paths if not value.startswith(tuple(roots))]
    assert not elsewhere, f'not under {", ".join(ROOT_VARIABLES)}: ' + '; '.join(elsewhere)


# ---------------------------------------------------------------------------------------------------------
# The E2E recipe
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('path', sorted(CONFIGS.glob('e2e_mobileformer_*_coco.py')), ids=name)
def test_e2e_configs_state_the_dab_detr_recipe(path):
    """mmdet's dab-detr_r50_8xb2-50e_coco.py: 8 x 2 images, AdamW 1e-4 (backbone 1e-5), wd 1e-4, clip 0.1,
    50 epochs, lr / 10 after 40, evaluated after every epoch."""
    cfg = Config.fromfile(str(path))
    assert cfg.train_dataloader.batch_size == 2 and cfg.auto_scale_lr.base_batch_size == 16
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == ('AdamW', 1e-4, 1e-4)
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys['backbone'].lr_mult == 0.1
    assert cfg.optim_wrapper.clip_grad.max_norm == 0.1
    assert (cfg.train_cfg.max_epochs, cfg.train_cfg.val_interval) == (50, 1)
    assert [(s.type, s.milestones) for s in cfg.param_scheduler] == [('MultiStepLR', [40])]
