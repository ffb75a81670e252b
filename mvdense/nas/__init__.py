"""GLiT's two-stage hierarchical architecture search on plain mmengine (names after mmrazor's).

* :class:`GLiTSearchSpace` -- the candidate tables of stage 1 (G per block) and stage 2 (the low-level
  choices for a fixed distribution), with validation;
* :class:`GLiTSupernet` -- the backbone whose blocks hold every candidate (registered: ``type='GLiTSupernet'``);
* :class:`SPOSSamplerHook` -- uniform single-path sampling before each training iteration (DDP-safe);
* :class:`EvolutionSearchLoop` -- the evolutionary search, scored by the task's metric after BatchNorm
  re-estimation, resumable, run by ``tools/search.py``.

Configs load it with ``custom_imports=dict(imports=['mvdense', 'mvdense.nas'])``.
"""
from .evolution import EvolutionSearchLoop, SearchError, crossover, mutate
from .sampler import SPOSSamplerHook, sample_path
from .space import GLiTSearchSpace, SearchSpaceError, load_distribution
from .supernet import (
    GLiTSupernet,
    SupernetMismatchError,
    calibrate_bn_statistics,
    check_search_space,
    find_supernet,
)

__all__ = ['EvolutionSearchLoop', 'GLiTSearchSpace', 'GLiTSupernet', 'SPOSSamplerHook', 'SearchError',
           'SearchSpaceError', 'SupernetMismatchError', 'calibrate_bn_statistics', 'check_search_space', 'crossover', 'find_supernet',
           'load_distribution', 'mutate', 'sample_path']
