"""The contract every mvdense backbone keeps, in one place.

A config that swaps one of our backbones for another changes the ``type``/``arch`` and the neck's
``in_channels``, nothing else: every backbone takes the same arguments with the same meaning.

* ``out_indices``: the stages to return, counted from 0 at the first stage after the stem; outputs come
  in stage order whatever the order given.
* ``frozen_stages``: mmdet/mmpretrain's meaning: -1 freezes nothing, 0 the stem only, k the stem and
  the first k stages (parameters stop learning and the modules stay in eval mode).
* ``norm_eval``: BatchNorm layers keep their running statistics while training.
* ``init_cfg``: mmengine's, e.g. ``dict(type='Pretrained', checkpoint=...)``; ``None`` initialises
  from scratch the way the authors' code does (:meth:`BaseBackbone.init_from_scratch`).
* ``pretrained``: deprecated alias of an ``init_cfg`` of type Pretrained, accepted because mmseg's
  ``EncoderDecoder`` hands its ``model.pretrained`` to the backbone (mmdet and mmseg backbones accept it).
* ``drop_rate`` / ``drop_path_rate``: dropout before the ImageNet classifier / stochastic depth.
* ``num_classes``: builds the ImageNet classifier ``head`` used by ``forward_classifier`` (for checkpoints
  and parameter checks).

Attributes every backbone sets: ``out_indices``, ``out_channels`` and ``out_strides`` (one entry per
returned map, in output order).
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

from mmengine.model import BaseModule
from torch import nn

from ..layers import freeze_module, set_norm_eval


def resolve_pretrained(pretrained: str | None, init_cfg: dict | list | None,
                       owner: str) -> dict | list | None:
    """Maps the deprecated ``pretrained=PATH`` onto ``init_cfg=dict(type='Pretrained', checkpoint=PATH)``."""
    if pretrained is None:
        return init_cfg
    if not isinstance(pretrained, str):
        raise TypeError(f'{owner}: pretrained must be a checkpoint path or None, got {pretrained!r}')
    if init_cfg is not None:
        raise ValueError(f'{owner}: pretrained={pretrained!r} and init_cfg={init_cfg!r} are both set; '
                         'keep only init_cfg')
    warnings.warn(f'{owner}: pretrained is deprecated, use init_cfg=dict(type="Pretrained", '
                  f'checkpoint={pretrained!r})', DeprecationWarning, stacklevel=3)
    return dict(type='Pretrained', checkpoint=pretrained)


def check_out_indices(out_indices: Iterable[int], num_stages: int, owner: str) -> tuple[int, ...]:
    """``out_indices`` sorted into stage order; a clear error for an empty or out-of-range choice."""
    indices = tuple(sorted(set(out_indices)))
    if not indices or indices[0] < 0 or indices[-1] >= num_stages:
        raise ValueError(f'{owner}: out_indices must be a non-empty subset of 0..{num_stages - 1}, '
                         f'got {tuple(out_indices)}')
    return indices


def lookup_arch(arch: str | dict, archs: dict[str, dict], owner: str) -> dict:
    """The arch table named ``arch``, or ``arch`` itself when it is a table written in a config."""
    if isinstance(arch, str):
        if arch not in archs:
            raise KeyError(f'{owner} arch {arch!r} is not one of {sorted(archs)}')
        return archs[arch]
    return arch


class BaseBackbone(BaseModule):
    """Shared ``train()``/freeze/init code of the mvdense backbones (see the module docstring).

    Subclasses build their modules, set ``out_indices``/``out_channels``/``out_strides``, implement
    :meth:`stem_modules`, :meth:`stage_modules` and :meth:`init_from_scratch`, and call
    :meth:`freeze_stages` at the end of their ``__init__``.
    """

    def __init__(self, frozen_stages: int = -1, norm_eval: bool = False, pretrained: str | None = None,
                 init_cfg: dict | list | None = None) -> None:
        super().__init__(init_cfg=resolve_pretrained(pretrained, init_cfg, type(self).__name__))
        if frozen_stages < -1:
            raise ValueError(f'{type(self).__name__}: frozen_stages must be >= -1, got {frozen_stages}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.out_indices: tuple[int, ...] = ()
        self.out_channels: list[int] = []
        self.out_strides: list[int] = []

    # -- what each family provides ----------------------------------------------------------------
    def stem_modules(self) -> list[nn.Module | nn.Parameter]:
        """What ``frozen_stages=0`` freezes (modules, or bare parameters such as position embeddings)."""
        raise NotImplementedError

    def stage_modules(self) -> Sequence[Sequence[nn.Module | nn.Parameter]]:
        """Per stage, in order, what freezing that stage freezes."""
        raise NotImplementedError

    def init_from_scratch(self) -> None:
        """The authors' initialisation, used when ``init_cfg`` is None."""
        raise NotImplementedError

    # -- shared behaviour ---------------------------------------------------------------------------
    def frozen_parts(self) -> list[nn.Module | nn.Parameter]:
        """What ``frozen_stages`` freezes: the stem, then the first ``frozen_stages`` stages."""
        if self.frozen_stages < 0:
            return []
        parts = list(self.stem_modules())
        for stage in list(self.stage_modules())[:self.frozen_stages]:
            parts.extend(stage)
        return parts

    def freeze_stages(self) -> None:
        for part in self.frozen_parts():
            if isinstance(part, nn.Parameter):
                part.requires_grad = False
            else:
                freeze_module(part)

    def init_weights(self) -> None:
        if self.init_cfg is not None:
            super().init_weights()
            return
        self.init_from_scratch()
        self._is_init = True

    def train(self, mode: bool = True) -> BaseBackbone:
        super().train(mode)
        self.freeze_stages()
        if mode and self.norm_eval:
            set_norm_eval(self)
        return self
