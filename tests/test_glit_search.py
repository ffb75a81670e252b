"""GLiT's two-stage search: the search space, the SPOS sampler, the genetic operators, BatchNorm
re-estimation, the bad-input errors, and a tiny supernet -> search -> retrain run of the tools."""
from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, run_tool
from mmengine.config import Config
from mmengine.model import BaseModel
from torch import nn

from mvdense.engine import load_local_checkpoint
from mvdense.models.backbones.glit import GLiTBlockSpec, glit_code_flops
from mvdense.nas import (
    GLiTSearchSpace,
    GLiTSupernet,
    SearchSpaceError,
    SPOSSamplerHook,
    SupernetMismatchError,
    calibrate_bn_statistics,
    check_search_space,
    crossover,
    mutate,
    sample_path,
)
from mvdense.nas.evolution import Evolution, select_top_k

pytestmark = pytest.mark.usefixtures('one_thread')

SEARCH_CONFIGS = ROOT / 'configs/demo/glit_search'
# A small space for small inputs: the value sets are configurable (the authors' kernels of 17-45 tokens are
# far longer than the 17-token sequences of a 64x64 image).
TINY_SPACE = dict(
    stage1_fixed=dict(kernel_size=5, expansion=1, qkv_ratio=1, mlp_ratio=2),
    local_blocks=dict(kernel_size=(3, 5), expansion=(1, 2), mlp_ratio=2),
    global_blocks=dict(qkv_ratio=(0.5, 1), mlp_ratio=(1, 2)),
    mixed_blocks=dict(expansion=(1, 2), mlp_ratio=(1, 2), kernel_size=5, qkv_ratio=1))


def tiny_supernet(stage: int = 1, distribution=None, depth: int = 3) -> GLiTSupernet:
    space = dict(TINY_SPACE, stage=stage, depth=depth, distribution=distribution)
    return GLiTSupernet(space, embed_dim=24, num_heads=3, img_size=64)


def write_result(path: Path, blocks: list) -> Path:
    """A stage-1 result file as the search writes it (only what stage 2 reads)."""
    path.write_text(json.dumps(dict(stage=1, arch=dict(embed_dim=96, num_heads=3, blocks=blocks))))
    return path


# ---------------------------------------------------------------------------------------------------------
# The search space
# ---------------------------------------------------------------------------------------------------------

def test_stage1_searches_g_with_the_fixed_low_level_choices():
    space = GLiTSearchSpace(depth=4)
    assert space.num_choices == [4] * 4 and space.size == 4 ** 4
    specs = space.block_candidates()[0]
    assert [s.g for s in specs] == [0, 1, 2, 3]
    assert specs[0] == GLiTBlockSpec(g=0, kernel_size=31, expansion=2, mlp_ratio=4)
    assert specs[1] == GLiTBlockSpec(g=1, kernel_size=31, expansion=2, qkv_ratio=1, mlp_ratio=4)
    assert specs[3] == GLiTBlockSpec(g=3, qkv_ratio=1, mlp_ratio=4)


def test_stage2_grids_follow_the_authors_encoding():
    # Candidate i of a block is (outer[i // 3], inner[i % 3]) of its type's grid, as in the authors' code.
    space = GLiTSearchSpace(depth=4, stage=2, distribution=[0, 3, 1, 2])
    local, global_, mixed, mixed2 = space.block_candidates()
    assert space.num_choices == [9, 9, 9, 9]
    for i in range(9):
        outer, inner = divmod(i, 3)
        assert local[i] == GLiTBlockSpec(g=0, kernel_size=(17, 31, 45)[outer], expansion=(1, 2, 4)[inner], mlp_ratio=4)
        assert global_[i] == GLiTBlockSpec(g=3, qkv_ratio=(0.5, 1, 2)[outer], mlp_ratio=(2, 4, 6)[inner])
        assert mixed[i] == GLiTBlockSpec(g=1, expansion=(1, 2, 4)[outer], mlp_ratio=(2, 4, 6)[inner],
                                         kernel_size=31, qkv_ratio=1)
        assert mixed2[i].g == 2 and mixed2[i].expansion == mixed[i].expansion


def test_encode_inverts_decode():
    space = GLiTSearchSpace(depth=5, stage=2, distribution=[0, 3, 1, 2, 0])
    rng = np.random.default_rng(0)
    for _ in range(20):
        candidate = space.sample(rng)
        blocks = [spec.to_dict() for spec in space.decode(candidate)]
        assert space.encode(blocks) == candidate


def test_stage2_reads_stage1_result(tmp_path):
    # Stage 1's best_arch.json fixes the distribution; the .py form serves as well.
    blocks = [dict(g=g, mlp_ratio=4, qkv_ratio=1, expansion=2, kernel_size=31) for g in (3, 0, 1, 2)]
    for block in blocks:
        if block['g'] == 0:
            del block['qkv_ratio']
        if block['g'] == 3:
            del block['expansion'], block['kernel_size']
    result = write_result(tmp_path / 'best_arch.json', blocks)
    space = GLiTSearchSpace(depth=4, stage=2, distribution=str(result))
    assert space.distribution == [3, 0, 1, 2]
    assert [{s.g for s in specs} for specs in space.block_candidates()] == [{3}, {0}, {1}, {2}]
    py = tmp_path / 'best_arch.py'
    py.write_text(f'glit_arch = dict(embed_dim=96, num_heads=3, blocks={blocks!r})\n')
    assert GLiTSearchSpace(depth=4, stage=2, distribution=str(py)).distribution == [3, 0, 1, 2]
    assert GLiTSearchSpace(depth=4, stage=2, distribution=str(result)).to_dict()['distribution'] == [3, 0, 1, 2]


# ---------------------------------------------------------------------------------------------------------
# Bad input: one line naming the problem
# ---------------------------------------------------------------------------------------------------------

def _one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert '\n' not in message, message
    return message


def test_stage1_result_of_the_wrong_length_is_refused(tmp_path):
    result = write_result(tmp_path / 'best_arch.json', [dict(g=3, qkv_ratio=1, mlp_ratio=4)] * 5)
    with pytest.raises(SearchSpaceError) as excinfo:
        GLiTSearchSpace(depth=6, stage=2, distribution=str(result))
    message = _one_line_error(excinfo)
    assert str(result) in message and '5 blocks, the search space has 6' in message


@pytest.mark.parametrize('bad_g', [4, -1, 1.5])
def test_g_outside_0_to_3_is_refused(tmp_path, bad_g):
    with pytest.raises(SearchSpaceError) as excinfo:
        GLiTSearchSpace(depth=3, stage=2, distribution=[0, bad_g, 3])
    assert 'block 1' in _one_line_error(excinfo) and 'G must be an integer in 0..3' in str(excinfo.value)
    result = write_result(tmp_path / 'bad.json', [dict(g=0, kernel_size=31, expansion=2),
                                                  dict(g=bad_g, qkv_ratio=1), dict(g=3, qkv_ratio=1)])
    with pytest.raises(SearchSpaceError, match=r'block 1: G must be an integer in 0\.\.3'):
        GLiTSearchSpace(depth=3, stage=2, distribution=str(result))


def test_a_kernel_or_expansion_outside_the_space_is_refused():
    space = GLiTSearchSpace(depth=2, stage=2, distribution=[0, 1])
    good = [dict(g=0, kernel_size=31, expansion=2, mlp_ratio=4),
            dict(g=1, expansion=2, mlp_ratio=4, kernel_size=31, qkv_ratio=1)]
    assert space.encode(good) == (4, 4)
    with pytest.raises(SearchSpaceError) as excinfo:
        space.encode([dict(good[0], kernel_size=23), good[1]])
    assert re.search(r'block 0: kernel_size \(K\) 23 is not in the space \[17, 31, 45\]', _one_line_error(excinfo))
    with pytest.raises(SearchSpaceError, match=r'block 1: expansion \(E\) 3 is not in the space \[1, 2, 4\]'):
        space.encode([good[0], dict(good[1], expansion=3)])
    with pytest.raises(SearchSpaceError, match=r'block 1: G=3 is not searchable here'):
        space.encode([good[0], dict(g=3, qkv_ratio=1, mlp_ratio=4)])
    with pytest.raises(SearchSpaceError, match='3 blocks, the search space has 2'):
        space.encode(good + good[:1])


@pytest.mark.parametrize('space, message', [
    (dict(local_blocks=dict(kernel_size=(16, 31), expansion=2, mlp_ratio=4)), 'odd kernel_size, got 16'),
    (dict(local_blocks=dict(kernel_size=31, expansion=(1, 1), mlp_ratio=4)), 'expansion lists a value twice'),
    (dict(global_blocks=dict(qkv_ratio=1, mlp_ratio=4, kernel_size=3)), "unknown ['kernel_size']"),
    (dict(mixed_blocks=dict(expansion=2, mlp_ratio=4)), "missing ['kernel_size', 'qkv_ratio']"),
    (dict(distribution=None), 'stage 2 needs the distribution found by stage 1'),
])
def test_bad_space_configs_are_refused(space, message):
    with pytest.raises(SearchSpaceError) as excinfo:
        GLiTSearchSpace(**{'depth': 2, 'stage': 2, 'distribution': [0, 3], **space})
    assert message in _one_line_error(excinfo)


def test_supernet_checkpoints_of_another_space_are_refused():
    # The sampler hook records the space in every checkpoint's meta; resuming (or searching) with a model
    # of another space stops with the difference named.
    stage1 = tiny_supernet(stage=1)
    checkpoint = dict(meta={}, state_dict=stage1.state_dict())
    SPOSSamplerHook().before_save_checkpoint(FakeRunner(stage1, seed=0), checkpoint)
    stage2 = tiny_supernet(stage=2, distribution=[0, 1, 3])
    with pytest.raises(SupernetMismatchError) as excinfo:
        SPOSSamplerHook().after_load_checkpoint(FakeRunner(stage2, seed=0), checkpoint)
    assert 'another search space' in _one_line_error(excinfo) and 'stage 1 vs 2' in str(excinfo.value)
    SPOSSamplerHook().before_save_checkpoint(FakeRunner(stage2, seed=0), checkpoint)
    with pytest.raises(SupernetMismatchError, match=r'distribution \[0, 1, 3\] vs \[0, 3, 3\]'):
        check_search_space(checkpoint, tiny_supernet(stage=2, distribution=[0, 3, 3]).search_space, 'x.pth')
    check_search_space(checkpoint, tiny_supernet(stage=2, distribution=[0, 1, 3]).search_space, 'x.pth')
    with pytest.raises(SupernetMismatchError, match='x.pth is not a GLiT supernet checkpoint'):
        check_search_space(dict(state_dict={}), stage1.search_space, 'x.pth')


# ---------------------------------------------------------------------------------------------------------
# The sampler
# ---------------------------------------------------------------------------------------------------------

# Chi-square critical values at p = 0.001 for 3 and 8 degrees of freedom.
CHI2_CRITICAL = {4: 16.27, 9: 26.12}


@pytest.mark.parametrize('num_choices', [[4] * 6, [9] * 6])
def test_sampler_draws_every_candidate_uniformly(num_choices):
    draws = np.array([sample_path(num_choices, seed=0, iteration=i) for i in range(4000)])
    for block in range(len(num_choices)):
        counts = np.bincount(draws[:, block], minlength=num_choices[block])
        expected = len(draws) / num_choices[block]
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        assert chi2 < CHI2_CRITICAL[num_choices[block]], (block, counts)
    # Blocks are drawn independently: pairs of blocks spread over all 16 / 81 combinations.
    pairs = draws[:, 0] * num_choices[1] + draws[:, 1]
    assert len(np.unique(pairs)) == num_choices[0] * num_choices[1]


class FakeRunner:
    def __init__(self, model, seed, iteration=0):
        import logging

        self.model, self.seed, self.iter = model, seed, iteration
        self.logger = logging.getLogger('test_glit_search')


def test_sampler_hook_draws_the_same_path_on_every_rank_and_after_resume():
    # Two "ranks" (two models, two hooks) at the same iteration select the same path without talking;
    # a resumed run (a fresh hook) draws the sequence the interrupted one would have.
    models = [tiny_supernet(depth=4), tiny_supernet(depth=4)]
    hooks = [SPOSSamplerHook(), SPOSSamplerHook()]
    sequences = [[], []]
    for iteration in range(30):
        for rank in range(2):
            hooks[rank].before_train_iter(FakeRunner(models[rank], seed=7, iteration=iteration), 0)
            sequences[rank].append(models[rank].current_choices)
    assert sequences[0] == sequences[1]
    assert len(set(sequences[0])) > 20  # a new path (almost) every iteration
    resumed = SPOSSamplerHook()
    resumed.before_train_iter(FakeRunner(models[0], seed=7, iteration=17), 0)
    assert models[0].current_choices == sequences[0][17]
    other_seed = SPOSSamplerHook()
    other = [other_seed.before_train_iter(FakeRunner(models[1], seed=8, iteration=i), 0) or models[1].current_choices
             for i in range(30)]
    assert other != sequences[0]


def test_sampler_hook_refuses_ddp_without_find_unused_parameters():
    from torch.nn.parallel import DistributedDataParallel

    fake_ddp = DistributedDataParallel.__new__(DistributedDataParallel)
    nn.Module.__init__(fake_ddp)
    fake_ddp.module = tiny_supernet()
    fake_ddp.find_unused_parameters = False
    with pytest.raises(RuntimeError, match='find_unused_parameters=True'):
        SPOSSamplerHook().before_train(FakeRunner(fake_ddp, seed=0))


# ---------------------------------------------------------------------------------------------------------
# The genetic operators and the evolution
# ---------------------------------------------------------------------------------------------------------

def test_mutation_and_crossover_mix_their_parents_into_valid_architectures():
    space = GLiTSearchSpace(depth=12, stage=2, distribution=[3, 0, 1, 3, 0, 1, 3, 1, 0, 3, 0, 3])
    rng = np.random.default_rng(0)
    from_second = []
    for _ in range(300):
        first, second = space.sample(rng), space.sample(rng)
        for child, prob in ((mutate(first, second, 0.1, rng), 0.1), (crossover(first, second, 0.5, rng), 0.5)):
            assert all(c in (a, b) for c, a, b in zip(child, first, second))
            space.decode(child)  # a valid architecture of the space
            differing = [c == b for c, a, b in zip(child, first, second) if a != b]
            from_second.append((prob, differing))
    for prob in (0.1, 0.5):
        taken = [x for p, d in from_second if p == prob for x in d]
        assert abs(np.mean(taken) - prob) < 0.05, (prob, np.mean(taken))
    parent = space.sample(rng)
    assert mutate(parent, space.sample(rng), 0.0, rng) == parent
    other = space.sample(rng)
    assert crossover(parent, other, 1.0, rng) == other


def test_every_evolved_candidate_meets_the_constraint():
    # The demo's stage-2 space and budget: 230 M FLOPs (the authors' formula) at 256x256, d = 96.
    space = GLiTSearchSpace(depth=6, stage=2, distribution=[3, 0, 1, 2, 3, 0])

    def flops(candidate):
        return glit_code_flops(space.decode(candidate), 96, (256, 256)) / 1e6

    low, high = (x / 1e6 for x in space.code_flops_range(96, 257, glit_code_flops([], 96, (256, 256))))
    assert low < 230 < high  # the constraint cuts the space
    rng = np.random.default_rng(1)
    evolution = Evolution(space, lambda c: flops(c) <= 230, rng, num_candidates=20, top_k=5, num_mutation=10,
                          num_crossover=10)
    # A score that rewards FLOPs close to the budget and one block's choice: evolution has to find both.
    scores = {}

    def score(c):
        return -abs(230 - flops(c)) + 5 * (c[1] == 8)

    population = evolution.initial_population()
    top_k = []
    random_best = None
    for generation in range(6):
        assert population, generation
        assert len(set(population)) == len(population)
        assert all(flops(c) <= 230 for c in population), generation
        assert not any(key in scores for key in map(str, population))  # only new candidates
        for candidate in population:
            scores[','.join(map(str, candidate))] = score(candidate)
        top_k = select_top_k(population + top_k, scores, 5)
        random_best = score(top_k[0]) if random_best is None else random_best
        population = evolution.next_population(top_k, {tuple(map(int, k.split(','))) for k in scores})
    assert score(top_k[0]) > random_best


def test_top_k_keeps_the_best_distinct_candidates():
    scores = {'0,1': 3.0, '1,1': 5.0, '2,0': 4.0, '0,0': 5.0}
    assert select_top_k([(0, 1), (1, 1), (2, 0), (1, 1), (0, 0)], scores, 3) == [(0, 0), (1, 1), (2, 0)]


# ---------------------------------------------------------------------------------------------------------
# BatchNorm re-estimation
# ---------------------------------------------------------------------------------------------------------

class ToySegmentor(BaseModel):
    """A supernet, then a conv + BatchNorm + dropout head (the neck/head BN the search re-estimates)."""

    def __init__(self):
        super().__init__()
        self.backbone = tiny_supernet(stage=1, depth=3)
        self.head = nn.Sequential(nn.Conv2d(24, 8, 1), nn.BatchNorm2d(8), nn.Dropout(0.5))

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return self.head(self.backbone(inputs)[-1])


def _capture_inputs(module: nn.Module, store: list):
    return module.register_forward_hook(lambda m, args, out: store.append((args[0].detach().clone(), m.training)))


def test_bn_reestimation_replaces_the_path_statistics_with_a_cumulative_average():
    torch.manual_seed(0)
    model = ToySegmentor()
    model.backbone.set_subnet([0, 1, 3])  # local, mixed, global: two local modules with a BatchNorm1d
    on_path = [model.backbone.blocks[0].candidates[0].mixer.conv.bn, model.backbone.blocks[1].candidates[1].mixer.conv.bn,
               model.head[1]]
    off_path = model.backbone.blocks[0].candidates[1].mixer.conv.bn
    for bn in (*on_path, off_path):  # stale statistics, as after single-path training
        bn.running_mean.fill_(3.0)
        bn.running_var.fill_(7.0)
    before = [bn.running_mean.clone() for bn in on_path]
    inputs = {bn: [] for bn in on_path}
    handles = [_capture_inputs(bn, inputs[bn]) for bn in on_path]
    dropout_modes = []
    handles.append(_capture_inputs(model.head[2], dropout_modes))
    batches = [dict(inputs=torch.randn(2, 3, 64, 64) * 2 + 1) for _ in range(3)]
    calibrated = calibrate_bn_statistics(model, batches)
    for handle in handles:
        handle.remove()
    assert set(map(id, calibrated)) == set(map(id, on_path))
    assert not model.training and all(bn.momentum == 0.1 for bn in on_path)
    assert not any(training for _, training in dropout_modes)  # dropout off while re-estimating
    for bn, old in zip(on_path, before):
        assert all(training for _, training in inputs[bn])
        dims = [0, 2, 3] if bn.running_mean.numel() == 8 else [0, 2]
        means = [x.float().mean(dims) for x, _ in inputs[bn]]
        variances = [x.float().var(dims, unbiased=True) for x, _ in inputs[bn]]
        # Cumulative average (momentum=None) of the batch statistics: equal batches, so the plain mean.
        torch.testing.assert_close(bn.running_mean, torch.stack(means).mean(0), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bn.running_var, torch.stack(variances).mean(0), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(bn.running_mean, old)
        assert int(bn.num_batches_tracked) == 3
    assert torch.all(off_path.running_mean == 3.0) and torch.all(off_path.running_var == 7.0)


def test_bn_reestimation_leaves_frozen_batchnorms_alone():
    model = ToySegmentor()
    model.backbone.norm_eval = True
    model.backbone.set_subnet([0, 0, 0])
    bn = model.backbone.blocks[0].candidates[0].mixer.conv.bn
    bn.running_mean.fill_(3.0)
    calibrated = calibrate_bn_statistics(model, [dict(inputs=torch.randn(2, 3, 64, 64))])
    assert calibrated == [model.head[1]] and torch.all(bn.running_mean == 3.0)


# ---------------------------------------------------------------------------------------------------------
# The demo configs
# ---------------------------------------------------------------------------------------------------------

def test_demo_baselines_are_the_largest_uniform_choices_within_the_budget():
    # all_global.py / all_local.py: the uniform block of each grid with the most FLOPs within the search
    # budget, so that they compete on the same budget as the searched architecture.
    stage1 = Config.fromfile(str(SEARCH_CONFIGS / 'stage1_supernet.py'))
    budget = stage1.search_cfg.constraints_range['flops'][1]
    size = tuple(stage1.search_cfg.input_size)
    dim, depth = stage1.model.backbone.embed_dim, stage1.model.backbone.search_space.depth
    for name, g in (('all_global', 3), ('all_local', 0)):
        arch = Config.fromfile(str(SEARCH_CONFIGS / f'{name}.py')).model.backbone.arch
        assert arch.embed_dim == dim and len(arch.blocks) == depth
        grid = GLiTSearchSpace(depth=1, stage=2, distribution=[g]).block_candidates()[0]
        within = [s for s in grid if glit_code_flops([s] * depth, dim, size) / 1e6 <= budget]
        best = max(within, key=lambda s: glit_code_flops([s] * depth, dim, size))
        assert all(GLiTBlockSpec.coerce(b) == best for b in arch.blocks), (name, best)


def test_demo_search_splits_are_disjoint():
    base = Config.fromfile(str(SEARCH_CONFIGS / 'stage1_supernet.py'))
    train = set(base.train_dataloader.dataset.indices)
    search = set(base.search_cfg.dataloader.dataset.indices)
    assert train and search and not train & search


# ---------------------------------------------------------------------------------------------------------
# End to end: tools/train.py (supernet) -> tools/search.py -> stage 2 -> retrain, on generated data
# ---------------------------------------------------------------------------------------------------------

def _tiny_configs(root: Path, out: Path) -> dict[str, Path]:
    """Stage-1/2 supernet configs and the retrain config, on 64x64 images, with the tiny space."""
    voc = str(root / 'VOC2012') + '/'
    stage1 = out / 'stage1.py'
    stage1.write_text(f"""
_base_ = {str(SEARCH_CONFIGS / 'stage1_supernet.py')!r}
data_root = {voc!r}
crop = (64, 64)
train_pipeline = [
    dict(type='CheckedLoadImageFromFile'), dict(type='CheckedLoadAnnotations'),
    dict(type='ValidateSegMap', num_classes=4), dict(type='RandomCrop', crop_size=crop),
    dict(type='RandomFlip', prob=0.5), dict(type='PackSegInputs')]
model = dict(backbone=dict(embed_dim=24, img_size=64,
                           search_space=dict(depth=3, **{TINY_SPACE!r})),
             decode_head=dict(in_channels=24, channels=16))
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, indices=list(range(8)), pipeline=train_pipeline))
search_cfg = dict(
    dataloader=dict(batch_size=2, num_workers=0, dataset=dict(data_root=data_root, indices=[8, 9, 10, 11])),
    input_size=(64, 64), constraints_range=dict(flops=(0, {{{{'$TINY_BUDGET:1000'}}}})), max_epochs=3, num_candidates=4,
    top_k=2, num_mutation=2, num_crossover=2, calibrate_sample_num=4, fp16=False)
max_epochs = 2
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
custom_hooks = [dict(type='SPOSSamplerHook')]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
""")
    stage2 = out / 'stage2.py'
    stage2.write_text(f"""
_base_ = './stage1.py'
model = dict(backbone=dict(search_space=dict(stage=2, distribution={str(out / 'stage1_search/best_arch.json')!r})))
""")
    retrain = out / 'searched.py'
    retrain.write_text(f"""
_base_ = {str(SEARCH_CONFIGS / 'searched.py')!r}
data_root = {voc!r}
model = dict(backbone=dict(img_size=64), decode_head=dict(in_channels=24, channels=16))
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=[
        dict(type='CheckedLoadImageFromFile'), dict(type='CheckedLoadAnnotations'),
        dict(type='ValidateSegMap', num_classes=4), dict(type='RandomCrop', crop_size=(64, 64)),
        dict(type='PackSegInputs')]))
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
max_epochs = 1
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
default_hooks = dict(checkpoint=dict(interval=1))
""")
    return dict(stage1=stage1, stage2=stage2, retrain=retrain)


def _budget() -> float:
    """A FLOPs bound (M) at 64x64 that cuts the tiny stage-1 space roughly in half."""
    space = GLiTSearchSpace(depth=3, **{k: v for k, v in TINY_SPACE.items() if k == 'stage1_fixed'})
    low, high = space.code_flops_range(24, 17, glit_code_flops([], 24, (64, 64)))
    return round((low + high) / 2e6, 3)


@pytest.fixture(scope='module')
def pipeline(synthetic_dataset, tmp_path_factory):
    """The whole search on generated data: stage-1 supernet, stage-1 search, stage-2 supernet and search
    (reading stage 1's result), then the found architecture retrained and tested."""
    root = synthetic_dataset(num_train=12, num_val=4, image_size=(64, 64))
    out = tmp_path_factory.mktemp('glit_search')
    configs = _tiny_configs(root, out)
    env = {'TINY_BUDGET': str(_budget())}
    runs = {}
    runs['train1'] = run_tool('train', configs['stage1'], '--work-dir', out / 'stage1_supernet', env=env)
    ckpt1 = (out / 'stage1_supernet/last_checkpoint').read_text().strip()
    runs['search1'] = run_tool('search', configs['stage1'], ckpt1, '--work-dir', out / 'stage1_search', env=env)
    stage1_result = out / 'stage1_search/best_arch.json'
    runs['train2'] = run_tool('train', configs['stage2'], '--work-dir', out / 'stage2_supernet', '--cfg-options',
                              f'model.backbone.search_space.distribution={stage1_result}', env=env)
    ckpt2 = (out / 'stage2_supernet/last_checkpoint').read_text().strip()
    runs['search2'] = run_tool('search', configs['stage2'], ckpt2, '--work-dir', out / 'stage2_search',
                               '--stage1', stage1_result, env=env)
    arch_env = dict(env, GLIT_ARCH=str(out / 'stage2_search/best_arch.py'))
    runs['retrain'] = run_tool('train', configs['retrain'], '--work-dir', out / 'retrain', env=arch_env)
    ckpt3 = (out / 'retrain/last_checkpoint').read_text().strip()
    runs['test'] = run_tool('test', configs['retrain'], ckpt3, '--work-dir', out / 'retrain/test', env=arch_env)
    return dict(out=out, configs=configs, env=env, runs=runs, ckpt1=ckpt1, ckpt2=ckpt2, budget=float(env['TINY_BUDGET']))


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.slow
def test_search_writes_the_best_architecture_within_the_constraint(pipeline):
    out, budget = pipeline['out'], pipeline['budget']
    for stage in (1, 2):
        result = _load(out / f'stage{stage}_search/best_arch.json')
        state = _load(out / f'stage{stage}_search/search_state.json')
        space = GLiTSearchSpace.build(result['space'])
        assert result['stage'] == stage and result['score_key'] == 'mIoU'
        assert len(state['history']) == 3 and result['generations'] == 3
        # Every candidate of every generation met the constraint, and the best is the top score.
        scored = [tuple(c) for record in state['history'] for c, _ in record['population']]
        assert scored and len(set(scored)) == len(scored)
        assert all(glit_code_flops(space.decode(c), 24, (64, 64)) / 1e6 <= budget for c in scored)
        assert result['score'] == max(state['scores'].values())
        assert result['flops_m'] <= budget
        assert math.isclose(result['flops_m'], glit_code_flops(space.decode(result['choices']), 24, (64, 64)) / 1e6)
        assert result['random_count'] == len(state['history'][0]['population'])
        # The config-ready form: a model config inherits it and gets the same table.
        arch = Config.fromfile(str(out / f'stage{stage}_search/best_arch.py')).glit_arch.to_dict()
        assert arch == result['arch'] and arch['embed_dim'] == 24 and len(arch['blocks']) == 3
        log = pipeline['runs'][f'search{stage}'].stdout + pipeline['runs'][f'search{stage}'].stderr
        for generation in (1, 2, 3):
            assert re.search(rf'generation {generation}/3: \d+ candidates \(\d+ scored\), mIoU best [\d.]+', log)
    stage1 = _load(out / 'stage1_search/best_arch.json')
    stage2 = _load(out / 'stage2_search/best_arch.json')
    assert stage2['distribution'] == stage1['distribution']  # stage 2 kept stage 1's distribution


@pytest.mark.slow
def test_found_architecture_retrains_and_tests(pipeline):
    output = pipeline['runs']['test'].stdout + pipeline['runs']['test'].stderr
    match = re.search(r'mIoU: ([\d.]+)', output)
    assert match and 0 <= float(match.group(1)) <= 100
    dumped = pipeline['out'] / 'retrain' / 'searched.py'  # the config as the run used it
    arch = _load(pipeline['out'] / 'stage2_search/best_arch.json')['arch']
    assert Config.fromfile(str(dumped)).model.backbone.arch.to_dict() == arch


@pytest.mark.slow
def test_interrupted_search_resumes_to_the_same_result(pipeline, tmp_path):
    # Cut the finished stage-1 search back into the middle of its last generation (half the candidates
    # scored); run again: it completes that generation and ends with the same architecture and scores.
    out = pipeline['out']
    work = tmp_path / 'search'
    shutil.copytree(out / 'stage1_search', work)
    state = _load(work / 'search_state.json')
    final = _load(work / 'best_arch.json')
    last = state['history'].pop()
    population = [c for c, _ in last['population']]
    for candidate in population[len(population) // 2:]:
        del state['scores'][','.join(map(str, candidate))]
    state.update(generation=2, population=population, top_k=_top_k_after(state))
    (work / 'search_state.json').write_text(json.dumps(state))
    (work / 'best_arch.json').unlink()
    result = run_tool('search', pipeline['configs']['stage1'], pipeline['ckpt1'], '--work-dir', work,
                      env=pipeline['env'])
    log = result.stdout + result.stderr
    assert 'resuming the search' in log and 'at generation 3' in log
    scored_again = re.findall(r'generation 3/3, candidate \d+/\d+', log)
    assert len(scored_again) == len(population) - len(population) // 2
    resumed = _load(work / 'best_arch.json')
    for key in ('choices', 'score', 'random_mean_score', 'evaluated'):
        assert resumed[key] == final[key], key
    assert _load(work / 'search_state.json')['scores'] == _load(out / 'stage1_search/search_state.json')['scores']
    # A finished search run again scores nothing and writes the same result.
    again = run_tool('search', pipeline['configs']['stage1'], pipeline['ckpt1'], '--work-dir', work, env=pipeline['env'])
    assert not re.search(r'candidate \d+/\d+: mIoU', again.stdout + again.stderr)
    assert _load(work / 'best_arch.json')['choices'] == final['choices']


def _top_k_after(state: dict) -> list:
    """The top-k a state held after its last recorded generation (recomputed from the scores)."""
    scores = state['scores']
    pool = [tuple(c) for record in state['history'] for c, _ in record['population']]
    return [list(c) for c in select_top_k(pool, scores, 2)]


def _search_fails(pipeline, tmp_path, *args, config='stage1', ckpt='ckpt1', env=None) -> str:
    work = tmp_path / 'search'
    result = run_tool('search', pipeline['configs'][config], pipeline[ckpt], '--work-dir', work, *args,
                      env=dict(pipeline['env'], **(env or {})), returncode=1)
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert lines and 'Traceback' not in result.stderr, result.stderr[-3000:]
    assert not (work / 'best_arch.json').exists() and not (work / 'search_state.json').exists()
    return lines[-1]


@pytest.mark.slow
def test_a_constraint_no_candidate_meets_is_refused(pipeline, tmp_path):
    message = _search_fails(pipeline, tmp_path, env={'TINY_BUDGET': '0.001'})
    assert re.fullmatch(r'error: no candidate of the search space meets flops in \[0, 0\.001\] M .*: the space '
                        r'spans [\d.]+-[\d.]+ at 64x64', message), message


@pytest.mark.slow
def test_a_supernet_of_another_space_is_refused(pipeline, tmp_path):
    stage1 = str(pipeline['out'] / 'stage1_search/best_arch.json')
    message = _search_fails(pipeline, tmp_path, '--stage1', stage1, config='stage2', ckpt='ckpt1')
    assert message.startswith('error: ') and 'was trained on another search space' in message
    assert 'stage 1 vs 2' in message


@pytest.mark.slow
def test_a_stage1_result_of_the_wrong_length_is_refused_by_the_tool(pipeline, tmp_path):
    bad = write_result(tmp_path / 'bad.json', [dict(g=3, qkv_ratio=1, mlp_ratio=2)] * 2)
    message = _search_fails(pipeline, tmp_path, '--stage1', bad, config='stage2', ckpt='ckpt2')
    assert message == f'error: stage-1 result {bad}: 2 blocks, the search space has 3'


@pytest.mark.slow
def test_supernet_trains_under_ddp_with_two_processes(pipeline, tmp_path):
    # torchrun + gloo on CPU: DDP with the candidates off the path unused (find_unused_parameters), the
    # search space recorded in the checkpoint (the DDP runner broadcasts the state dict: plain tensors only).
    result = run_tool('dist_train.sh', pipeline['configs']['stage1'], 2, '--work-dir', tmp_path, '--cfg-options',
                      'train_cfg.max_epochs=1', 'train_dataloader.batch_size=2', env=dict(pipeline['env'], PORT='29561'))
    assert re.search(r'Distributed training: True', result.stdout + result.stderr)
    checkpoint = load_local_checkpoint(tmp_path / 'epoch_1.pth')
    assert checkpoint['meta']['glit_search_space']['stage'] == 1
