"""Shared test helpers: building models from configs, randomised BatchNorm, one-thread runs, the tools (in
this process or as subprocesses) and tiny generated data sets.

Tests that start subprocesses, run mmengine's Runner, train, or export / analyse whole models at full size
carry ``@pytest.mark.slow``; ``make test-fast`` (``pytest -m "not slow"``) leaves them out.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
from mmengine.config import Config
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
#: The tiny generated data set most tests share (8 + 4 images of 128 x 128, 3 shape classes).
TINY_SYNTHETIC = dict(num_train=8, num_val=4, image_size=(128, 128), seed=3)


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` imported as a module (the tools are scripts, not a package): the one way tests
    call a tool's functions in this process."""
    spec = importlib.util.spec_from_file_location(f'mvdense_tool_{name}', ROOT / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(script: str, *args: object, env: dict[str, str] | None = None, timeout: float = 600,
             returncode: int | None = 0) -> subprocess.CompletedProcess:
    """Runs ``tools/<script>`` in a subprocess from the repository root and returns it (``stdout`` and
    ``stderr`` as text).

    ``script`` is a tool name (``'train'``: ``tools/train.py`` with this interpreter) or a shell script
    (``'dist_train.sh'``, run with bash). The child gets one OpenMP thread and no Python warnings, plus
    ``env``. Asserts the exit status is ``returncode`` (None: any), showing the output's tail if not.
    """
    path = f'tools/{script}' if '.' in script else f'tools/{script}.py'
    command = ['bash', path] if script.endswith('.sh') else [sys.executable, path]
    environment = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore', **(env or {}))
    result = subprocess.run([*command, *map(str, args)], cwd=ROOT, env=environment, capture_output=True,
                            text=True, timeout=timeout)
    if returncode is not None:
        assert result.returncode == returncode, (result.stdout + result.stderr)[-4000:]
    return result


def build_model(config: str | Path | Config, init_weights: bool = False,
                cfg_options: dict | None = None) -> nn.Module:
    """The detector or segmentor of ``config`` (a path, relative to the repository root or absolute, or a
    ``Config``), built as the tools build it (:func:`mvdense.apis.init_model`: no pretrained file read,
    eval mode, CPU). ``init_weights`` also runs ``model.init_weights()`` (the initialisation training
    starts from); otherwise the weights are PyTorch's defaults."""
    from mvdense.apis import init_model

    if not isinstance(config, Config):
        config = str(ROOT / config)
    model = init_model(config, cfg_options=cfg_options)
    if init_weights:
        model.init_weights()
    return model


def randomize_batchnorm(model: nn.Module, seed: int | torch.Generator = 0) -> nn.Module:
    """Gives every ``BatchNorm2d`` non-trivial statistics and affine parameters (mean ~ N(0, 0.2²), var
    and scale ~ U(0.5, 1.5), shift ~ N(0, 0.1²)), so that folding or misplacing them shows in the outputs.
    Returns the model in eval mode."""
    generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.2)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
    return model.eval()


@pytest.fixture(scope='session', autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread for every test (autouse; subprocesses get ``OMP_NUM_THREADS=1`` from
    :func:`run_tool`).

    The tests' small models of many small ops gain nothing from a second thread, and on a busy 2-core
    machine OpenMP's barriers make every op wait for a descheduled thread: a training test then takes
    30x longer (``make test-fast`` went from minutes to under one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='session')
def synthetic_dataset(tmp_path_factory) -> Callable[..., Path]:
    """``make(root=None, **params) -> root`` of a generated synthetic data set (COCO + VOC layouts,
    :func:`mvdense.datasets.generate_synthetic_dataset`); ``params`` override :data:`TINY_SYNTHETIC`.

    Without ``root`` the set is generated once per session and parameters, and shared: do not modify it.
    Pass a new ``root`` (e.g. under ``tmp_path``) for a private copy a test may damage."""
    from mvdense.datasets import generate_synthetic_dataset

    shared: dict[str, Path] = {}

    def make(root: str | Path | None = None, **params) -> Path:
        params = {**TINY_SYNTHETIC, **params}
        key = json.dumps(params, sort_keys=True)
        if key not in shared:
            shared[key] = tmp_path_factory.mktemp('synthetic')
            generate_synthetic_dataset(shared[key], **params)
        if root is None:
            return shared[key]
        shutil.copytree(shared[key], root)
        return Path(root)

    return make


@pytest.fixture(scope='session')
def tiny_synthetic(synthetic_dataset) -> Path:
    """The shared :data:`TINY_SYNTHETIC` data set (read only)."""
    return synthetic_dataset()


@pytest.fixture(scope='session')
def infer_tool() -> ModuleType:
    """``tools/infer.py``."""
    return load_tool('infer')
