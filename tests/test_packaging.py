"""What pyproject.toml declares against what the two stacks pin: the ranges admit the exact versions of
requirements/constraints.txt (make test) and requirements/compat.txt (make compat), the oldest stack sits on
the lower bounds, and this environment satisfies the ranges."""
from __future__ import annotations

import re
import sys
from importlib.metadata import version

import pytest
from conftest import ROOT
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:
    tomllib = pytest.importorskip('tomli')

DEPENDENCIES = [Requirement(text) for text in
                tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']['dependencies']]
# The OpenMMLab stack whose oldest supported versions make compat installs.
OLDEST = ('torch', 'torchvision', 'numpy', 'mmengine', 'mmcv', 'mmdet', 'mmsegmentation')


def pins(name: str) -> dict[str, str]:
    """``package -> version`` of a constraints file (``name==version`` lines)."""
    found = re.findall(r'^([A-Za-z0-9_.-]+)==(\S+)', (ROOT / 'requirements' / name).read_text(), re.MULTILINE)
    return {package.lower().replace('_', '-'): pinned for package, pinned in found}


@pytest.mark.parametrize('lock', ['constraints.txt', 'compat.txt'])
def test_declared_ranges_admit_both_pinned_stacks(lock):
    pinned = pins(lock)
    for requirement in DEPENDENCIES:
        if requirement.name in pinned:
            assert requirement.specifier.contains(pinned[requirement.name]), (lock, str(requirement))
        else:
            assert lock == 'compat.txt', f'{lock} pins no {requirement.name}'


def test_every_declared_dependency_is_unbounded_by_an_exact_pin():
    assert not [str(r) for r in DEPENDENCIES if any(spec.operator == '==' for spec in r.specifier)]


def test_the_oldest_stack_is_the_lower_bounds():
    compat = pins('compat.txt')
    for requirement in DEPENDENCIES:
        if requirement.name in OLDEST:
            lower = [spec.version for spec in requirement.specifier if spec.operator == '>=']
            assert lower, str(requirement)
            assert compat[requirement.name].startswith(lower[0]), (str(requirement), compat[requirement.name])


def test_this_environment_satisfies_the_declared_ranges():
    for requirement in DEPENDENCIES:
        assert requirement.specifier.contains(version(requirement.name), prereleases=True), str(requirement)


def test_configs_ship_in_the_package_layout_mmengine_resolves():
    link = ROOT / 'mvdense' / '.mim' / 'configs'
    assert link.is_symlink() and link.resolve() == (ROOT / 'configs').resolve()
