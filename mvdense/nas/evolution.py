"""The evolutionary search over a GLiT supernet, as an mmengine loop (names and defaults: mmrazor's
``EvolutionSearchLoop``; the code is ours).

Generation 0 is a random population within the constraints. Each later generation is made of children
of the current top-k: ``num_mutation`` mutations (a top-k parent crossed with a fresh random candidate,
each block taking the random one's choice with probability ``mutate_prob``) and ``num_crossover``
crossovers (two top-k parents, each block taken from the second with probability ``crossover_prob``),
topped up with random candidates. A child outside the constraints, already in the population or already
scored is rejected; mutation and crossover stop after 10x their number of tries, so a generation can come
out smaller. Every candidate is scored on held-out data with the supernet's weights after re-estimating
the BatchNorm statistics of its path (:func:`~mvdense.nas.supernet.calibrate_bn_statistics`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os.path as osp
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from mmengine.dist import broadcast_object_list, is_main_process
from mmengine.registry import LOOPS
from mmengine.runner import BaseLoop
from mmengine.runner.amp import autocast

from ..engine.checkpoint import AtomicLocalBackend, load_local_checkpoint
from ..models.backbones.glit import glit_code_flops
from .space import Candidate, GLiTSearchSpace, _plain, read_arch_file
from .supernet import calibrate_bn_statistics, check_search_space, find_supernet, unwrap

#: Resources a constraint may bound, with their units.
CONSTRAINT_UNITS = {'flops': 'M (the authors\' formula)', 'params': 'M', 'latency': 'ms'}
#: The metric each task's evaluator reports, tried in order when ``score_key`` is not set.
KNOWN_SCORE_KEYS = ('mIoU', 'coco/bbox_mAP', 'accuracy/top1')
STATE_FILE = 'search_state.json'
STATE_VERSION = 1


class SearchError(ValueError):
    """A search that cannot run as configured (one-line message)."""


def key_of(candidate: Sequence[int]) -> str:
    """A candidate as a JSON object key: ``'0,3,1'``."""
    return ','.join(str(c) for c in candidate)


def candidate_of(key: str) -> Candidate:
    return tuple(int(c) for c in key.split(',')) if key else ()


# -- the genetic operators ---------------------------------------------------------------------------
def mutate(parent: Candidate, fresh: Candidate, prob: float, rng: np.random.Generator) -> Candidate:
    """``parent`` with each block replaced by ``fresh``'s choice with probability ``prob``."""
    return tuple(f if rng.random() < prob else p for p, f in zip(parent, fresh))


def crossover(first: Candidate, second: Candidate, prob: float, rng: np.random.Generator) -> Candidate:
    """``first`` with each block taken from ``second`` with probability ``prob``."""
    return tuple(s if rng.random() < prob else f for f, s in zip(first, second))


class Evolution:
    """The population bookkeeping of the search, independent of models: candidates in, candidates out.

    Args:
        space: The search space (only its ``sample`` and ``num_choices`` are used).
        is_valid: Whether a candidate meets the constraints.
        rng: The search's random generator.
        num_candidates, top_k, num_mutation, num_crossover, mutate_prob, crossover_prob: as
            :class:`EvolutionSearchLoop`.
        init_tries: Random draws allowed per member of the initial population.
    """

    def __init__(self, space: GLiTSearchSpace, is_valid: Callable[[Candidate], bool], rng: np.random.Generator,
                 num_candidates: int = 50, top_k: int = 10, num_mutation: int = 25, num_crossover: int = 25,
                 mutate_prob: float = 0.1, crossover_prob: float = 0.5, init_tries: int = 100) -> None:
        self.space, self.is_valid, self.rng = space, is_valid, rng
        self.num_candidates, self.top_k = num_candidates, top_k
        self.num_mutation, self.num_crossover = num_mutation, num_crossover
        self.mutate_prob, self.crossover_prob = mutate_prob, crossover_prob
        self.init_tries = init_tries

    def _fill(self, population: list[Candidate], make: Callable[[], Candidate], count: int, tries: int,
              seen: set[Candidate]) -> None:
        """Appends up to ``count`` new valid candidates from ``make``, at most ``tries`` attempts."""
        wanted = len(population) + count
        for _ in range(tries):
            if len(population) >= wanted:
                return
            candidate = make()
            if candidate in seen or not self.is_valid(candidate):
                continue
            population.append(candidate)
            seen.add(candidate)

    def initial_population(self, seeds: Sequence[Candidate] = ()) -> list[Candidate]:
        """``seeds`` (valid ones, in order), then random candidates up to ``num_candidates``."""
        population: list[Candidate] = []
        seen: set[Candidate] = set()
        for seed in seeds:
            if seed not in seen and self.is_valid(seed):
                population.append(seed)
                seen.add(seed)
        missing = self.num_candidates - len(population)
        self._fill(population, lambda: self.space.sample(self.rng), missing, missing * self.init_tries, seen)
        return population

    def next_population(self, parents: Sequence[Candidate], scored: set[Candidate]) -> list[Candidate]:
        """Children of ``parents`` (the top-k) that are new (not in ``scored``), topped up at random."""
        population: list[Candidate] = []
        seen = set(scored)
        if parents:
            def mutation() -> Candidate:
                parent = parents[int(self.rng.integers(len(parents)))]
                return mutate(parent, self.space.sample(self.rng), self.mutate_prob, self.rng)

            def cross() -> Candidate:
                first, second = (parents[int(i)] for i in self.rng.integers(len(parents), size=2))
                return crossover(first, second, self.crossover_prob, self.rng)

            self._fill(population, mutation, self.num_mutation, 10 * self.num_mutation, seen)
            self._fill(population, cross, self.num_crossover, 10 * self.num_crossover, seen)
        missing = self.num_candidates - len(population)
        if missing > 0:
            self._fill(population, lambda: self.space.sample(self.rng), missing, 10 * missing, seen)
        return population


def select_top_k(pool: Sequence[Candidate], scores: Mapping[str, float], k: int) -> list[Candidate]:
    """The ``k`` best distinct candidates of ``pool`` (ties broken by the candidate, for determinism)."""
    unique = sorted(set(pool), key=lambda c: (-scores[key_of(c)], c))
    return unique[:k]


# -- writing results ---------------------------------------------------------------------------------
def write_json(path: str, data: Any) -> None:
    """Writes ``data`` as JSON atomically (temporary file + rename)."""
    AtomicLocalBackend().put((json.dumps(_plain(data), indent=1) + '\n').encode(), path)


def arch_py(result: Mapping) -> str:
    """``best_arch.py``: the architecture as a config a model config can inherit (``glit_arch``)."""
    arch = result['arch']
    lines = [f"# GLiT architecture found by tools/search.py (stage {result['stage']} of the hierarchical search).",
             f"# {result['score_key']} {result['score']:.4f} on the search split; authors' FLOPs "
             f"{result['flops_m']:.2f} M at {result['input_size'][0]}x{result['input_size'][1]}; "
             f"{result['params_m']:.3f} M parameters (whole model).",
             "# Use: _base_ = [..., 'best_arch.py'], then "
             'model = dict(backbone=dict(type=\'GLiT\', arch={{_base_.glit_arch}})).',
             'glit_arch = dict(',
             f"    embed_dim={arch['embed_dim']},",
             f"    num_heads={arch['num_heads']},",
             '    blocks=[']
    for block in arch['blocks']:
        fields = ', '.join(f'{key}={value!r}' for key, value in block.items())
        lines.append(f'        dict({fields}),')
    lines += ['    ])', '']
    return '\n'.join(lines)


# -- the loop ----------------------------------------------------------------------------------------
@LOOPS.register_module()
class EvolutionSearchLoop(BaseLoop):
    """Evolutionary search of a GLiT supernet's paths, scored by the task's own metric.

    Built by ``tools/search.py`` from a supernet config's ``search_cfg`` (as the runner's train loop).

    Args:
        runner: The mmengine runner (its model holds a :class:`~mvdense.nas.GLiTSupernet`).
        dataloader: The data candidates are scored on: a held-out split, not the final test set.
        evaluator: The task's evaluator (e.g. ``dict(type='IoUMetric', iou_metrics=['mIoU'])``).
        supernet_checkpoint: The trained supernet's checkpoint (``tools/search.py``'s argument).
        max_epochs: Generations, the random one included (mmrazor: 20).
        num_candidates: Population size (50).
        top_k: Parents kept from generation to generation (10).
        num_mutation / mutate_prob: Mutations per generation and the per-block probability (25, 0.1).
        num_crossover / crossover_prob: Crossovers per generation and the per-block probability (25, 0.5).
        constraints_range: Bounds on ``flops`` (M, the authors' formula for the backbone at
            ``input_size``), ``params`` (M, the whole model on the candidate's path) and ``latency`` (ms,
            median of ``latency_runs`` forwards of one ``input_size`` image): ``dict(flops=(0, 330))``;
            a single number is an upper bound. None or empty: unconstrained.
        input_size: (H, W) at which FLOPs and latency are counted.
        score_key: The metric to maximise; None picks the first of ``mIoU``, ``coco/bbox_mAP``,
            ``accuracy/top1`` that the evaluator reports.
        calibrate_sample_num: Training images (from ``calibrate_dataloader``) forwarded to re-estimate
            the path's BatchNorm statistics before scoring; 0 leaves the statistics as trained.
        calibrate_dataloader: Where those images come from (default: the config's train dataloader).
        init_candidates: Architectures to put in the first population: a result file or a list of
            architectures (each a list of block spec dicts, or of choice indices).
        fp16: Mixed precision for scoring (bfloat16 on CPU), as mmengine's ValLoop.
        latency_runs: Timed forwards per latency measurement.
    """

    def __init__(self, runner, dataloader, evaluator, supernet_checkpoint: str | None = None, max_epochs: int = 20,
                 num_candidates: int = 50, top_k: int = 10, num_mutation: int = 25, num_crossover: int = 25,
                 mutate_prob: float = 0.1, crossover_prob: float = 0.5, constraints_range: Mapping | None = None,
                 input_size: Sequence[int] = (224, 224), score_key: str | None = None,
                 calibrate_sample_num: int = 512, calibrate_dataloader=None,
                 init_candidates: str | Sequence | None = None, fp16: bool = False, latency_runs: int = 10) -> None:
        self._check_settings(max_epochs, num_candidates, top_k, num_mutation, num_crossover, mutate_prob,
                             crossover_prob, calibrate_sample_num)
        super().__init__(runner, dataloader)
        self.evaluator = runner.build_evaluator(evaluator) if isinstance(evaluator, (dict, list)) else evaluator
        if hasattr(self.dataloader.dataset, 'metainfo'):
            self.evaluator.dataset_meta = self.dataloader.dataset.metainfo
        self.supernet_checkpoint = supernet_checkpoint
        self._max_epochs = max_epochs
        self.num_candidates, self.top_k = num_candidates, top_k
        self.num_mutation, self.num_crossover = num_mutation, num_crossover
        self.mutate_prob, self.crossover_prob = mutate_prob, crossover_prob
        self.constraints = self._parse_constraints(constraints_range)
        self.input_size = self._parse_input_size(input_size)
        self.score_key = score_key
        self.calibrate_sample_num = calibrate_sample_num
        self.calibrate_dataloader = calibrate_dataloader
        self.init_candidates = init_candidates
        self.fp16 = fp16
        self.latency_runs = latency_runs
        self._epoch = 0
        self.state: dict = {}

    # -- what the runner reads ----------------------------------------------------------------------
    @property
    def max_epochs(self) -> int:
        return self._max_epochs

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def iter(self) -> int:
        return self._epoch

    @property
    def max_iters(self) -> int:
        return self._max_epochs

    # -- settings -----------------------------------------------------------------------------------
    @staticmethod
    def _check_settings(max_epochs, num_candidates, top_k, num_mutation, num_crossover, mutate_prob,
                        crossover_prob, calibrate_sample_num) -> None:
        for name, value, low in (('max_epochs', max_epochs, 1), ('num_candidates', num_candidates, 1),
                                 ('top_k', top_k, 1), ('num_mutation', num_mutation, 0),
                                 ('num_crossover', num_crossover, 0), ('calibrate_sample_num', calibrate_sample_num, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SearchError(f'search_cfg.{name} must be an integer >= {low}, got {value!r}')
        for name, value in (('mutate_prob', mutate_prob), ('crossover_prob', crossover_prob)):
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise SearchError(f'search_cfg.{name} must be a probability in [0, 1], got {value!r}')

    @staticmethod
    def _parse_constraints(constraints: Mapping | None) -> dict[str, tuple[float, float]]:
        parsed = {}
        for name, bounds in (constraints or {}).items():
            if name not in CONSTRAINT_UNITS:
                raise SearchError(f'constraints_range: unknown resource {name!r} (one of {sorted(CONSTRAINT_UNITS)})')
            if isinstance(bounds, (int, float)) and not isinstance(bounds, bool):
                bounds = (0, bounds)
            if not isinstance(bounds, (list, tuple)) or len(bounds) != 2 \
                    or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds) \
                    or bounds[0] > bounds[1]:
                raise SearchError(f'constraints_range.{name}: expected (low, high) with low <= high, got {bounds!r}')
            parsed[name] = (float(bounds[0]), float(bounds[1]))
        return parsed

    @staticmethod
    def _parse_input_size(size: Sequence[int]) -> tuple[int, int]:
        size = (size, size) if isinstance(size, int) else tuple(size)
        if len(size) != 2 or not all(isinstance(s, int) and s >= 32 for s in size):
            raise SearchError(f'search_cfg.input_size must be (H, W) of at least 32, got {size!r}')
        return size

    def describe_constraints(self) -> str:
        if not self.constraints:
            return 'no constraint'
        return ', '.join(f'{name} in [{low:g}, {high:g}] {CONSTRAINT_UNITS[name]}'
                         for name, (low, high) in self.constraints.items())

    # -- the supernet -------------------------------------------------------------------------------
    @property
    def model(self) -> torch.nn.Module:
        return unwrap(self.runner.model)

    def load_supernet(self) -> None:
        """Loads the supernet checkpoint strictly; refuses one trained on another search space."""
        path = self.supernet_checkpoint
        if not path:
            raise SearchError('no supernet checkpoint given (tools/search.py CONFIG SUPERNET_CKPT)')
        try:
            checkpoint = load_local_checkpoint(path, map_location='cpu')
        except (FileNotFoundError, RuntimeError) as error:
            raise SearchError(str(error)) from None
        state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, Mapping) else None
        if not isinstance(state, Mapping):
            raise SearchError(f'{path}: not a model checkpoint')
        check_search_space(checkpoint, self.space, path)
        state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
        try:
            missing, unexpected = self.model.load_state_dict(state, strict=False)
        except RuntimeError as error:
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            raise SearchError(f'{path} does not fit the model: {len(lines) - 1} mismatches, first: '
                              f'{lines[1] if len(lines) > 1 else lines[0]}') from None
        if missing or unexpected:
            raise SearchError(f'{path} does not fit the model: {len(missing)} missing keys (e.g. '
                              f'{missing[:1]}), {len(unexpected)} unexpected (e.g. {unexpected[:1]})')

    @staticmethod
    def file_digest(path: str) -> str:
        digest = hashlib.sha256()
        with open(path, 'rb') as file:
            for chunk in iter(lambda: file.read(1 << 20), b''):
                digest.update(chunk)
        return digest.hexdigest()

    # -- resources and constraints ------------------------------------------------------------------
    def _prepare_resources(self) -> None:
        """Per-block FLOPs and parameters of every candidate, for exact sums and feasibility bounds."""
        supernet = self.supernet
        self._num_classes = supernet.head[-1].out_features if supernet.head is not None else 0
        self._flops_base = glit_code_flops([], supernet.embed_dim, self.input_size, supernet.patch_size,
                                           self._num_classes)
        blocks = [block for _, block in supernet.choice_blocks]
        self._block_params = [[sum(p.numel() for p in cand.parameters()) for cand in block.candidates]
                              for block in blocks]
        total = sum(p.numel() for p in self.model.parameters())
        self._params_base = total - sum(map(sum, self._block_params))

    def flops(self, candidate: Candidate) -> float:
        """The authors' FLOPs (M) of the backbone on this path at ``input_size``."""
        supernet = self.supernet
        specs = self.space.decode(candidate)
        return glit_code_flops(specs, supernet.embed_dim, self.input_size, supernet.patch_size,
                               self._num_classes) / 1e6

    def params(self, candidate: Candidate) -> float:
        """Parameters (M) of the whole model on this path."""
        return (self._params_base + sum(p[c] for p, c in zip(self._block_params, candidate))) / 1e6

    @torch.no_grad()
    def latency(self, candidate: Candidate) -> float:
        """Median wall time (ms) of a forward of one zero image on this path (the same on every process)."""
        key = key_of(candidate)
        cached = self.state.setdefault('latency_ms', {})
        if key not in cached:
            model = self.model
            self.supernet.set_subnet(candidate)
            model.eval()
            device = next(model.parameters()).device
            inputs = torch.zeros(1, 3, *self.input_size, device=device)
            times = []
            for run in range(self.latency_runs + 2):
                start = time.perf_counter()
                model(inputs, mode='tensor')
                if device.type == 'cuda':
                    torch.cuda.synchronize()
                if run >= 2:  # two warm-up runs
                    times.append((time.perf_counter() - start) * 1e3)
            value = [statistics.median(times)]
            broadcast_object_list(value)
            cached[key] = value[0]
        return cached[key]

    def resources(self, candidate: Candidate) -> dict[str, float]:
        values = dict(flops=self.flops(candidate), params=self.params(candidate))
        if 'latency' in self.constraints:
            values['latency'] = self.latency(candidate)
        return values

    def is_valid(self, candidate: Candidate) -> bool:
        """Whether ``candidate`` meets every constraint."""
        for name, (low, high) in self.constraints.items():
            value = getattr(self, name)(candidate)
            if not low <= value <= high:
                return False
        return True

    def check_feasible(self) -> None:
        """Refuses constraints that no candidate of the space can meet (FLOPs and parameters are sums over
        the blocks, so their range over the space is exact)."""
        per_block = {
            'flops': [[glit_code_flops([spec], self.supernet.embed_dim, self.input_size, self.supernet.patch_size)
                       - glit_code_flops([], self.supernet.embed_dim, self.input_size, self.supernet.patch_size)
                       for spec in specs] for specs in self.space.block_candidates()],
            'params': self._block_params,
        }
        bases = {'flops': self._flops_base, 'params': self._params_base}
        for name in ('flops', 'params'):
            if name not in self.constraints:
                continue
            low, high = self.constraints[name]
            smallest = (bases[name] + sum(map(min, per_block[name]))) / 1e6
            largest = (bases[name] + sum(map(max, per_block[name]))) / 1e6
            if smallest > high or largest < low:
                raise SearchError(f'no candidate of the search space meets {name} in [{low:g}, {high:g}] '
                                  f'{CONSTRAINT_UNITS[name]}: the space spans {smallest:.2f}-{largest:.2f}'
                                  + (f' at {self.input_size[0]}x{self.input_size[1]}' if name == 'flops' else ''))

    # -- scoring ------------------------------------------------------------------------------------
    def _collect_calibration_batches(self) -> list:
        """The training batches every candidate's BatchNorm statistics are re-estimated on (the same ones
        for every candidate, so that scores are comparable and a resumed search reproduces them)."""
        if self.calibrate_sample_num == 0:
            return []
        loader = self.calibrate_dataloader
        if loader is None:
            loader = self.runner._train_dataloader  # the config's train_dataloader (a dict until built)
        if isinstance(loader, Mapping):
            loader = self.runner.build_dataloader(dict(loader), seed=self.runner.seed)
        batches, images = [], 0
        while images < self.calibrate_sample_num:
            start = images
            for batch in loader:
                batches.append(batch)
                images += len(batch['inputs'])
                if images >= self.calibrate_sample_num:
                    break
            if images == start:
                raise SearchError('the calibration dataloader yields no data')
        return batches

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        """Silences the evaluator's per-candidate tables (the search logs one line per candidate)."""
        logger = self.runner.logger
        level = logger.level
        logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            logger.setLevel(level)

    @torch.no_grad()
    def evaluate_candidate(self, candidate: Candidate) -> dict[str, float]:
        """The task's metrics for ``candidate`` on the search split (BatchNorm re-estimated first)."""
        self.supernet.set_subnet(candidate)
        if self._calibration_batches:
            calibrate_bn_statistics(self.model, self._calibration_batches,
                                    (lambda: autocast(enabled=True)) if self.fp16 else None)
        self.runner.model.eval()
        for batch in self.dataloader:
            with autocast(enabled=self.fp16):
                outputs = self.runner.model.val_step(batch)
            self.evaluator.process(data_samples=outputs, data_batch=batch)
        with self._quiet():
            metrics = self.evaluator.evaluate(len(self.dataloader.dataset))
        return metrics

    def _score_from(self, metrics: Mapping[str, float]) -> float:
        if self.score_key is None:
            found = [key for key in KNOWN_SCORE_KEYS if key in metrics]
            if not found:
                raise SearchError(f'set search_cfg.score_key: the evaluator reports {sorted(metrics)}')
            self.score_key = found[0]
        if self.score_key not in metrics:
            raise SearchError(f'score_key {self.score_key!r} is not among the metrics {sorted(metrics)}')
        return float(metrics[self.score_key])

    def score(self, candidate: Candidate, label: str) -> float:
        """The cached score of ``candidate``, evaluating (and saving the state) if new."""
        key = key_of(candidate)
        scores = self.state['scores']
        if key not in scores:
            start = time.perf_counter()
            scores[key] = self._score_from(self.evaluate_candidate(candidate))
            self.state['score_key'] = self.score_key
            res = self.resources(candidate)
            self.runner.logger.info(
                f'{label} {list(candidate)}: {self.score_key} {scores[key]:.4f}, flops {res["flops"]:.2f} M, '
                f'params {res["params"]:.3f} M' + (f', latency {res["latency"]:.1f} ms' if 'latency' in res else '')
                + f' ({time.perf_counter() - start:.1f} s)')
            self.save_state()
        return scores[key]

    # -- state --------------------------------------------------------------------------------------
    @property
    def state_path(self) -> str:
        return osp.join(self.runner.work_dir, STATE_FILE)

    def fingerprint(self) -> dict:
        """What a resumed search must share with the interrupted one (``max_epochs`` may grow)."""
        return _plain(dict(
            space=self.space.to_dict(), checkpoint_sha256=self.file_digest(self.supernet_checkpoint),
            constraints=self.constraints, input_size=self.input_size, score_key=self.score_key,
            calibrate_sample_num=self.calibrate_sample_num, num_candidates=self.num_candidates, top_k=self.top_k,
            num_mutation=self.num_mutation, num_crossover=self.num_crossover, mutate_prob=self.mutate_prob,
            crossover_prob=self.crossover_prob, init_candidates=[list(c) for c in self._init_candidates]))

    def save_state(self) -> None:
        """Writes the search state (JSON, atomically): enough to resume exactly where it stopped."""
        if is_main_process():
            write_json(self.state_path, self.state)

    def load_or_start_state(self) -> None:
        fingerprint = self.fingerprint()
        if osp.isfile(self.state_path):
            try:
                with open(self.state_path, encoding='utf-8') as file:
                    state = json.load(file)
            except (OSError, json.JSONDecodeError) as error:
                raise SearchError(f'{self.state_path}: unreadable search state ({error}); '
                                  'remove it to start the search again') from None
            if state.get('version') != STATE_VERSION or state.get('fingerprint') != fingerprint:
                old = state.get('fingerprint') or {}
                diff = [key for key in sorted(set(old) | set(fingerprint)) if old.get(key) != fingerprint.get(key)]
                raise SearchError(f'{self.state_path} belongs to another search (differs in {", ".join(diff)}): '
                                  'use another --work-dir, or remove it to start again')
            self.state = state
            self.score_key = state.get('score_key') or self.score_key
            self.rng.bit_generator.state = state['rng']
            self.runner.logger.info(f'resuming the search from {self.state_path} at generation '
                                    f"{state['generation'] + 1}, {len(state['scores'])} candidates scored")
        else:
            self.state = dict(version=STATE_VERSION, fingerprint=fingerprint, generation=0, population=None,
                              top_k=[], scores={}, history=[], score_key=self.score_key,
                              rng=self.rng.bit_generator.state)
        self._epoch = self.state['generation']

    # -- the search ---------------------------------------------------------------------------------
    def _resolve_init_candidates(self) -> list[Candidate]:
        source = self.init_candidates
        if source is None:
            return []
        if isinstance(source, str):
            source = [read_arch_file(source)['arch']['blocks']]
        candidates = []
        for arch in source:
            if isinstance(arch, Mapping):
                arch = arch.get('blocks', arch)
            if all(isinstance(item, int) for item in arch):
                candidates.append(self.space.check(arch))
            else:
                candidates.append(self.space.encode(arch))
        return candidates

    def prepare(self) -> None:
        """Everything that can refuse the search, before anything is written; then the state."""
        self.supernet = find_supernet(self.runner.model)
        self.space = self.supernet.search_space
        self._init_candidates = self._resolve_init_candidates()
        self.load_supernet()
        self._prepare_resources()
        self.check_feasible()
        self.rng = np.random.default_rng(np.random.SeedSequence([int(self.runner.seed) % 2 ** 63, 0x6c17]))
        self.evolution = Evolution(self.space, self.is_valid, self.rng, self.num_candidates, self.top_k,
                                   self.num_mutation, self.num_crossover, self.mutate_prob, self.crossover_prob)
        self.load_or_start_state()
        self._calibration_batches = self._collect_calibration_batches()
        self.runner.logger.info(
            f'{self.space.describe()}; {self.describe_constraints()}; scoring {len(self.dataloader.dataset)} '
            f'images, BatchNorm re-estimated on {self.calibrate_sample_num} training images; '
            f'{self.max_epochs} generations of {self.num_candidates}, top-{self.top_k}')

    def run(self) -> torch.nn.Module:
        self.prepare()
        while self._epoch < self._max_epochs:
            self.run_epoch()
        result = self.write_result()
        self.runner.logger.info(
            f"best architecture: {result['arch']['blocks']}\n{self.score_key} {result['score']:.4f}, "
            f"flops {result['flops_m']:.2f} M, params {result['params_m']:.3f} M; random candidates within "
            f"the constraints: mean {result['random_mean_score']:.4f} over {result['random_count']} "
            f"(best {result['random_best_score']:.4f}); written to {osp.join(self.runner.work_dir, 'best_arch.json')}")
        return self.runner.model

    def run_epoch(self) -> None:
        """One generation: make (or, resuming, reload) the population, score it, update the top-k."""
        generation = self._epoch
        start = time.perf_counter()
        if self.state.get('population') is None:
            if generation == 0:
                population = self.evolution.initial_population(self._init_candidates)
                if not population:
                    raise SearchError(f'no candidate meeting {self.describe_constraints()} was found in '
                                      f'{self.num_candidates * self.evolution.init_tries} random draws')
            else:
                parents = [candidate_of(key_of(c)) for c in self.state['top_k']]
                scored = {candidate_of(k) for k in self.state['scores']}
                population = self.evolution.next_population(parents, scored)
            self.state['rng'] = self.rng.bit_generator.state
            self.state['population'] = [list(c) for c in population]
            self.save_state()
        population = [tuple(c) for c in self.state['population']]
        new = sum(key_of(c) not in self.state['scores'] for c in population)
        label = f'generation {generation + 1}/{self.max_epochs}'
        for index, candidate in enumerate(population):
            self.score(candidate, f'{label}, candidate {index + 1}/{len(population)}')
        scores = self.state['scores']
        values = [scores[key_of(c)] for c in population]
        pool = population + [tuple(c) for c in self.state['top_k']]
        top_k = select_top_k(pool, scores, self.top_k)
        best = top_k[0]
        record = dict(generation=generation + 1, size=len(population), scored=new,
                      best=scores[key_of(best)], best_candidate=list(best),
                      mean=statistics.fmean(values) if values else math.nan,
                      population_best=max(values) if values else math.nan,
                      top_k_mean=statistics.fmean(scores[key_of(c)] for c in top_k),
                      population=[[list(c), scores[key_of(c)]] for c in population],
                      seconds=round(time.perf_counter() - start, 1))
        flops = [self.flops(c) for c in population]
        self.runner.logger.info(
            f'{label}: {len(population)} candidates ({new} scored), {self.score_key} best {record["best"]:.4f} '
            f'{list(best)}, population mean {record["mean"]:.4f} (best {record["population_best"]:.4f}), '
            f'top-{len(top_k)} mean {record["top_k_mean"]:.4f}; flops {min(flops, default=0):.1f}-'
            f'{max(flops, default=0):.1f} M; {self.describe_constraints()}')
        self.runner.visualizer.add_scalars(
            {'search/best': record['best'], 'search/mean': record['mean'], 'search/top_k_mean': record['top_k_mean']},
            step=generation + 1)
        self.state.update(generation=generation + 1, population=None, top_k=[list(c) for c in top_k])
        self.state['history'].append(record)
        self._epoch = generation + 1
        self.save_state()

    def write_result(self) -> dict:
        """``best_arch.json`` (the architecture with its score, resources and the search's record) and
        ``best_arch.py`` (the config-ready ``glit_arch``)."""
        scores = self.state['scores']
        best = tuple(self.state['top_k'][0])
        first = self.state['history'][0]
        seeds = {tuple(c) for c in self._init_candidates}
        random_scores = [score for cand, score in first['population'] if tuple(cand) not in seeds]
        resources = self.resources(best)
        result = dict(
            stage=self.space.stage, arch=self.supernet.arch_table(best), choices=list(best),
            distribution=[spec.g for spec in self.space.decode(best)],
            score_key=self.score_key, score=scores[key_of(best)],
            flops_m=resources['flops'], params_m=resources['params'], latency_ms=resources.get('latency'),
            input_size=list(self.input_size), constraints={k: list(v) for k, v in self.constraints.items()},
            random_mean_score=statistics.fmean(random_scores) if random_scores else math.nan,
            random_best_score=max(random_scores) if random_scores else math.nan,
            random_count=len(random_scores), evaluated=len(scores), generations=len(self.state['history']),
            top_k=[dict(choices=list(c), score=scores[key_of(c)], flops_m=self.flops(tuple(c)))
                   for c in self.state['top_k']],
            space=self.space.to_dict(), supernet_checkpoint=self.supernet_checkpoint)
        if is_main_process():
            write_json(osp.join(self.runner.work_dir, 'best_arch.json'), result)
            AtomicLocalBackend().put(arch_py(result).encode(), osp.join(self.runner.work_dir, 'best_arch.py'))
        return result
