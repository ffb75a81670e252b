"""Shared test helpers."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_tool(name: str) -> ModuleType:
    """A script of ``tools/`` imported as a module (the tools are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f'mvdense_tool_{name}', ROOT / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def infer_tool() -> ModuleType:
    """``tools/infer.py``."""
    return load_tool('infer')
