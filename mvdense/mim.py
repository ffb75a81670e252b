"""Our configs as an installed package's, so that another project's config can start from one of them:

    _base_ = 'mvdense::ssdlite_mobilevit_s_coco.py'
    custom_imports = dict(imports=['mvdense'], allow_failed_imports=False)

The configs ship inside the package as ``mvdense/.mim/configs/`` (the layout in which mmengine finds
``mmdet::`` and ``mmseg::`` bases; in the source tree it is a link to ``configs/``). mmengine 0.10
resolves only a fixed list of packages and wants a folder in the path (``mmdet::ssd/...``), so importing
mvdense teaches its ``Config`` the ``mvdense::`` prefix (:func:`register_config_package`). mmengine reads
the bases before ``custom_imports``: the process must have imported mvdense before it parses such a
config (our tools do; in another project's script, one ``import mvdense`` before ``Config.fromfile``).
"""
from __future__ import annotations

import os.path as osp

from mmengine.config import Config

__all__ = ['PREFIX', 'config_path', 'configs_root', 'register_config_package']

PREFIX = 'mvdense::'


def configs_root() -> str:
    """The folder of the shipped configs (``<package>/.mim/configs``)."""
    return osp.join(osp.dirname(osp.abspath(__file__)), '.mim', 'configs')


def config_path(name: str) -> str:
    """The file of a shipped config: ``'ssdlite_mobilevit_s_coco.py'``, ``'demo/...'``, with or without
    the ``mvdense::`` prefix. Raises ``FileNotFoundError`` naming the folder searched."""
    relative = name[len(PREFIX):] if name.startswith(PREFIX) else name
    path = osp.join(configs_root(), relative)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{PREFIX}{relative}: no such config in {configs_root()}')
    return path


def register_config_package() -> None:
    """Makes mmengine's ``Config`` resolve ``_base_ = 'mvdense::<path>'`` to :func:`config_path` (idempotent;
    every other base path goes to mmengine as before)."""
    resolve = Config._get_cfg_path
    if getattr(resolve, 'resolves_mvdense', False):
        return

    def get_cfg_path(cfg_path: str, filename: str) -> tuple[str, str | None]:
        if cfg_path.startswith(PREFIX):
            # No scope: our configs set their own default_scope (mmdet or mmseg).
            return config_path(cfg_path), None
        return resolve(cfg_path, filename)

    get_cfg_path.resolves_mvdense = True
    Config._get_cfg_path = staticmethod(get_cfg_path)
