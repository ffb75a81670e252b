"""GLiT's two-stage hierarchical search space (the candidate tables of the supernet).

Stage 1 searches the *distribution* of global and local sub-modules: per block, G in {0, 1, 2, 3} global
thirds of the channels (the rest local), the low-level choices fixed. Stage 2 fixes the distribution found
by stage 1 and searches, per block type, the authors' 3x3 grid of low-level choices:

==============================  ===================================  ===============================
block type                      outer x inner (the authors' order)   fixed
==============================  ===================================  ===============================
all local (G = 0)               K in {17, 31, 45} x E in {1, 2, 4}    d_z = 4
all global (G = 3)              e_v in {0.5, 1, 2} x d_z in {2, 4, 6}
mixed (G = 1 or 2)              E in {1, 2, 4} x d_z in {2, 4, 6}     K = 31, e_v = 1
==============================  ===================================  ===============================

(K: depthwise kernel over the token sequence, E: convolution-module expansion, e_v: q/k/v width ratio,
d_z: FFN ratio; :class:`~mvdense.models.backbones.glit.GLiTBlockSpec` calls them ``kernel_size``,
``expansion``, ``qkv_ratio``, ``mlp_ratio``.) Candidate ``i`` of a stage-2 block is grid entry
``(i // 3, i % 3)`` as in the authors' code.

The authors do not publish what stage 1 fixes the low-level choices to; our default is K = 31, E = 2,
e_v = 1, d_z = 4 (the defaults their code exposes, with E = 2 as the middle of its grid). Every value set is
configurable: a field given as a list is searched, a scalar is fixed; the first listed field is the outer
loop of the grid.

A *candidate* (an architecture of the space) is a tuple of one choice index per block.
"""
from __future__ import annotations

import itertools
import json
import math
import os.path as osp
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..models.backbones.glit import NUM_GROUPS, GLiTBlockSpec, block_code_flops

Candidate = tuple[int, ...]

#: The low-level fields each block type uses, in the authors' grid order.
TYPE_FIELDS: dict[str, tuple[str, ...]] = {
    'local': ('kernel_size', 'expansion', 'mlp_ratio'),
    'global': ('qkv_ratio', 'mlp_ratio'),
    'mixed': ('expansion', 'mlp_ratio', 'kernel_size', 'qkv_ratio'),
}
#: Stage 2 of the authors' code.
LOCAL_BLOCKS = dict(kernel_size=(17, 31, 45), expansion=(1, 2, 4), mlp_ratio=4)
GLOBAL_BLOCKS = dict(qkv_ratio=(0.5, 1, 2), mlp_ratio=(2, 4, 6))
MIXED_BLOCKS = dict(expansion=(1, 2, 4), mlp_ratio=(2, 4, 6), kernel_size=31, qkv_ratio=1)
#: Stage 1's fixed low-level choices: our choice (the authors do not publish theirs).
STAGE1_FIXED = dict(kernel_size=31, expansion=2, qkv_ratio=1, mlp_ratio=4)
#: Short names for messages (the paper's symbols).
SYMBOLS = dict(g='G', kernel_size='K', expansion='E', qkv_ratio='e_v', mlp_ratio='d_z')


class SearchSpaceError(ValueError):
    """A search space, an architecture or a stage-1 result that does not fit (one-line message)."""


def block_type(g: int) -> str:
    """'local' (G = 0), 'global' (G = 3) or 'mixed'."""
    return 'local' if g == 0 else 'global' if g == NUM_GROUPS else 'mixed'


def _plain(value: Any) -> Any:
    """JSON-friendly copy: tuples -> lists, numpy scalars -> Python, mappings -> dicts."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _values(name: str, field: str, value: Any) -> tuple:
    """The value set of one field: a scalar is fixed (one value), a list is searched."""
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not values:
        raise SearchSpaceError(f'search space, {name}: {field} has no values')
    if len(set(values)) != len(values):
        raise SearchSpaceError(f'search space, {name}: {field} lists a value twice: {list(values)}')
    return values


def _grid(name: str, g: int, table: Mapping) -> list[GLiTBlockSpec]:
    """Every block spec of one block type's table (product of its value sets, first field outermost)."""
    kind = block_type(g)
    required = TYPE_FIELDS[kind]
    if not isinstance(table, Mapping):
        raise SearchSpaceError(f'search space, {name}: expected a dict of {list(required)}, got {table!r}')
    unknown = set(table) - set(required)
    missing = set(required) - set(table)
    if unknown or missing:
        raise SearchSpaceError(f'search space, {name}: {kind} blocks take exactly {list(required)}'
                               + (f'; unknown {sorted(unknown)}' if unknown else '')
                               + (f'; missing {sorted(missing)}' if missing else ''))
    fields = list(table)
    value_sets = [_values(name, field, table[field]) for field in fields]
    specs = []
    for combo in itertools.product(*value_sets):
        try:
            specs.append(GLiTBlockSpec(g=g, **dict(zip(fields, combo))))
        except ValueError as error:
            raise SearchSpaceError(f'search space, {name}: {error}') from None
    return specs


def _fixed_spec(g: int, fixed: Mapping) -> GLiTBlockSpec:
    """Stage 1's candidate with G = ``g``: the fixed low-level values this block type uses."""
    kind = block_type(g)
    for field, value in fixed.items():
        if isinstance(value, (list, tuple)):
            raise SearchSpaceError(f'search space, stage1_fixed: {field} must be one value in stage 1, got {value!r}')
    missing = set(TYPE_FIELDS[kind]) - set(fixed)
    if missing:
        raise SearchSpaceError(f'search space, stage1_fixed: {kind} blocks need {sorted(missing)}')
    try:
        return GLiTBlockSpec(g=g, **{field: fixed[field] for field in TYPE_FIELDS[kind]})
    except ValueError as error:
        raise SearchSpaceError(f'search space, stage1_fixed: {error}') from None


def _check_g(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= NUM_GROUPS:
        raise SearchSpaceError(f'{where}: G must be an integer in 0..{NUM_GROUPS}, got {value!r}')
    return int(value)


def read_arch_file(path: str) -> dict:
    """A search result: ``best_arch.json`` (or the ``glit_arch`` of a ``best_arch.py``), as a dict with at
    least ``arch`` (``dict(embed_dim, num_heads, blocks)``)."""
    if not osp.isfile(path):
        raise SearchSpaceError(f'architecture file not found: {path}')
    if path.endswith('.py'):
        from mmengine.config import Config

        cfg = Config.fromfile(path)
        if 'glit_arch' not in cfg:
            raise SearchSpaceError(f'{path}: no glit_arch = dict(embed_dim=..., num_heads=..., blocks=[...])')
        return dict(arch=cfg.glit_arch.to_dict())
    try:
        with open(path, encoding='utf-8') as file:
            result = json.load(file)
    except (OSError, json.JSONDecodeError) as error:
        raise SearchSpaceError(f'{path}: not a readable JSON search result ({error})') from None
    if not isinstance(result, Mapping) or not isinstance(result.get('arch'), Mapping) \
            or not isinstance(result['arch'].get('blocks'), list):
        raise SearchSpaceError(f'{path}: not a search result (expected {{"arch": {{"blocks": [...]}}}})')
    return dict(result)


def load_distribution(source: str | Sequence[int], depth: int) -> list[int]:
    """Stage 2's fixed distribution (G per block) from a stage-1 result file or a list of G.

    Raises:
        SearchSpaceError: a missing/unreadable file, a wrong number of blocks, or a G outside 0..3.
    """
    where = 'stage-1 distribution'
    if isinstance(source, str):
        where = f'stage-1 result {source}'
        blocks = read_arch_file(source)['arch']['blocks']
        values = []
        for index, block in enumerate(blocks):
            if not isinstance(block, Mapping) or 'g' not in block:
                raise SearchSpaceError(f'{where}: block {index} has no g')
            values.append(block['g'])
    elif isinstance(source, (list, tuple)):
        values = list(source)
    else:
        raise SearchSpaceError(f'{where}: expected a result file or a list of G, got {source!r}')
    if len(values) != depth:
        raise SearchSpaceError(f'{where}: {len(values)} blocks, the search space has {depth}')
    return [_check_g(value, f'{where}, block {index}') for index, value in enumerate(values)]


class GLiTSearchSpace:
    """The candidate blocks of a GLiT supernet, for stage 1 or stage 2 of the hierarchical search.

    Args:
        depth: Number of blocks (all of them are searched).
        stage: 1 (the distribution of global/local sub-modules) or 2 (the low-level choices).
        global_groups: Stage 1: the values of G a block may take (default 0..3).
        stage1_fixed: Stage 1: the fixed ``kernel_size``, ``expansion``, ``qkv_ratio``, ``mlp_ratio``.
        local_blocks / global_blocks / mixed_blocks: Stage 2: each block type's fields, a list of values
            where searched (see the module docstring for the defaults, the authors' grids).
        distribution: Stage 2: G per block, as a list or the path of stage 1's ``best_arch.json``.

    Example (a config's ``search_space``)::

        search_space = dict(stage=2, depth=12, distribution='work_dirs/stage1/best_arch.json')
    """

    def __init__(self, depth: int, stage: int = 1, global_groups: Sequence[int] = (0, 1, 2, 3),
                 stage1_fixed: Mapping | None = None, local_blocks: Mapping | None = None,
                 global_blocks: Mapping | None = None, mixed_blocks: Mapping | None = None,
                 distribution: str | Sequence[int] | None = None) -> None:
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise SearchSpaceError(f'search space: depth must be a positive integer, got {depth!r}')
        if stage not in (1, 2):
            raise SearchSpaceError(f'search space: stage must be 1 or 2, got {stage!r}')
        self.depth, self.stage = depth, stage
        self.global_groups = tuple(_check_g(g, 'search space, global_groups') for g in
                                   _values('global_groups', 'G', list(global_groups)))
        self.stage1_fixed = dict(STAGE1_FIXED if stage1_fixed is None else stage1_fixed)
        self.tables = {'local': dict(LOCAL_BLOCKS if local_blocks is None else local_blocks),
                       'global': dict(GLOBAL_BLOCKS if global_blocks is None else global_blocks),
                       'mixed': dict(MIXED_BLOCKS if mixed_blocks is None else mixed_blocks)}
        self.distribution: list[int] | None = None
        if stage == 1:
            if distribution is not None:
                raise SearchSpaceError('search space: distribution is stage 2\'s (stage 1 searches it)')
            self._options = [_fixed_spec(g, self.stage1_fixed) for g in self.global_groups]
            self._candidates = [list(self._options) for _ in range(depth)]
        else:
            if distribution is None:
                raise SearchSpaceError('search space: stage 2 needs the distribution found by stage 1 '
                                       '(distribution=PATH/best_arch.json or a list of G per block)')
            self.distribution = load_distribution(distribution, depth)
            # Every table is checked, also those of block types the distribution does not use.
            grids = {g: _grid(f'{block_type(g)}_blocks', g, self.tables[block_type(g)])
                     for g in range(NUM_GROUPS + 1)}
            self._candidates = [grids[g] for g in self.distribution]

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def build(cls, cfg: GLiTSearchSpace | Mapping) -> GLiTSearchSpace:
        """A space from a config dict (or the space itself)."""
        if isinstance(cfg, cls):
            return cfg
        if not isinstance(cfg, Mapping):
            raise SearchSpaceError(f'search_space must be a dict, got {cfg!r}')
        cfg = dict(cfg)
        cfg.pop('type', None)
        try:
            return cls(**cfg)
        except TypeError as error:
            raise SearchSpaceError(f'search_space: {error}') from None

    def to_dict(self) -> dict:
        """The space as plain JSON data (stage 2's distribution resolved to G per block)."""
        data = dict(depth=self.depth, stage=self.stage)
        if self.stage == 1:
            data.update(global_groups=list(self.global_groups), stage1_fixed=self.stage1_fixed)
        else:
            used = {block_type(g) for g in self.distribution}
            data.update({f'{kind}_blocks': self.tables[kind] for kind in ('local', 'global', 'mixed') if kind in used})
            data['distribution'] = self.distribution
        return _plain(data)

    # -- the candidates -----------------------------------------------------------------------------
    def block_candidates(self) -> list[list[GLiTBlockSpec]]:
        """Per block, its candidate specs (a GLiT ``arch['blocks']`` in supernet form)."""
        return [list(specs) for specs in self._candidates]

    @property
    def num_choices(self) -> list[int]:
        return [len(specs) for specs in self._candidates]

    @property
    def size(self) -> int:
        """Number of architectures in the space."""
        return math.prod(self.num_choices)

    def sample(self, rng: np.random.Generator) -> Candidate:
        """One candidate, each block's choice drawn uniformly and independently."""
        return tuple(int(rng.integers(n)) for n in self.num_choices)

    def check(self, choices: Sequence[int]) -> Candidate:
        """``choices`` as a candidate; a clear error for a wrong length or an index out of range."""
        choices = tuple(choices)
        if len(choices) != self.depth:
            raise SearchSpaceError(f'candidate {list(choices)}: {len(choices)} choices, the space has '
                                   f'{self.depth} blocks')
        for index, (choice, n) in enumerate(zip(choices, self.num_choices)):
            if isinstance(choice, bool) or not isinstance(choice, (int, np.integer)) or not 0 <= choice < n:
                raise SearchSpaceError(f'candidate {list(choices)}: block {index} choice {choice!r} is not in 0..{n - 1}')
        return tuple(int(c) for c in choices)

    def decode(self, choices: Sequence[int]) -> list[GLiTBlockSpec]:
        """The block specs of a candidate."""
        return [self._candidates[i][c] for i, c in enumerate(self.check(choices))]

    def encode(self, blocks: Sequence[GLiTBlockSpec | Mapping]) -> Candidate:
        """The candidate of an architecture table (block specs or spec dicts).

        Raises:
            SearchSpaceError: a wrong number of blocks, a G outside 0..3 or not searchable in this block,
                or a low-level value (K, E, e_v, d_z) that is not in the space.
        """
        if len(blocks) != self.depth:
            raise SearchSpaceError(f'architecture: {len(blocks)} blocks, the search space has {self.depth}')
        choices = []
        for index, (block, specs) in enumerate(zip(blocks, self._candidates)):
            spec = self._coerce(block, index)
            if spec in specs:
                choices.append(specs.index(spec))
                continue
            allowed_g = sorted({s.g for s in specs})
            if spec.g not in allowed_g:
                raise SearchSpaceError(f'architecture, block {index}: G={spec.g} is not searchable here '
                                       f'(this block allows G in {allowed_g})')
            same_g = [s for s in specs if s.g == spec.g]
            for field in TYPE_FIELDS[block_type(spec.g)]:
                allowed = sorted({getattr(s, field) for s in same_g})
                if getattr(spec, field) not in allowed:
                    raise SearchSpaceError(f'architecture, block {index}: {field} ({SYMBOLS[field]}) '
                                           f'{getattr(spec, field)!r} is not in the space {allowed}')
            raise SearchSpaceError(f'architecture, block {index}: {spec.to_dict()} is not a candidate of the space')
        return tuple(choices)

    @staticmethod
    def _coerce(block: GLiTBlockSpec | Mapping, index: int) -> GLiTBlockSpec:
        if isinstance(block, Mapping) and 'g' in block:
            _check_g(block['g'], f'architecture, block {index}')
        try:
            return GLiTBlockSpec.coerce(block)
        except (TypeError, ValueError) as error:
            raise SearchSpaceError(f'architecture, block {index}: {error}') from None

    # -- resources ----------------------------------------------------------------------------------
    def code_flops_range(self, embed_dim: int, num_tokens: int, base: float = 0.0) -> tuple[float, float]:
        """(min, max) of the authors' FLOPs formula over the space: ``base`` + per-block extremes."""
        per_block = [[block_code_flops(spec, embed_dim, num_tokens) for spec in specs] for specs in self._candidates]
        return base + sum(map(min, per_block)), base + sum(map(max, per_block))

    def describe(self) -> str:
        """One line: stage, depth, what is searched, the number of architectures."""
        if self.stage == 1:
            fixed = ', '.join(f'{SYMBOLS[k]}={v}' for k, v in self.stage1_fixed.items())
            what = f'G in {list(self.global_groups)} per block ({fixed})'
        else:
            what = f'low-level choices for the distribution G={self.distribution}'
        return f'GLiT search space, stage {self.stage}: {self.depth} blocks, {what}: {self.size} architectures'
