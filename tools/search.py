"""Evolutionary architecture search over a trained GLiT supernet (one stage of GLiT's hierarchical search).

    python tools/search.py CONFIG SUPERNET_CKPT [--work-dir DIR] [--stage1 RESULT]
        [--cfg-options KEY=VALUE ...] [--launcher none|pytorch|slurm|mpi]

CONFIG is the supernet config the checkpoint was trained with (``tools/train.py CONFIG``); its
``search_cfg`` sets the search (``EvolutionSearchLoop``'s arguments: the held-out ``dataloader``, the
``evaluator``, the constraints...). ``--stage1 RESULT`` (stage 2) fixes the distribution of global and
local blocks to stage 1's ``best_arch.json``. The search writes ``search_state.json`` after every candidate
(an interrupted search resumes from it when run again with the same arguments) and, at the end,
``best_arch.json`` and ``best_arch.py`` (the config-ready ``glit_arch``) into the work dir (default
``work_dirs/<config name>/search``).
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mvdense.runner import add_common_args, build_runner, data_errors_as_exit, load_config  # noqa: E402

#: Hooks of supernet training that have no place in the search.
TRAINING_ONLY_HOOKS = ('SPOSSamplerHook', 'EMAHook')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Evolutionary search over a trained GLiT supernet')
    parser.add_argument('config', help='the supernet config (with a search_cfg)')
    parser.add_argument('checkpoint', help='the trained supernet checkpoint')
    parser.add_argument('--stage1', help="stage 2: stage 1's best_arch.json (fixes the distribution)")
    add_common_args(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def find_supernet_cfg(cfg) -> dict | None:
    """The ``GLiTSupernet`` dict inside a model config (its backbone, wherever the task nests it)."""
    if isinstance(cfg, dict):
        if cfg.get('type') == 'GLiTSupernet':
            return cfg
        children = cfg.values()
    elif isinstance(cfg, (list, tuple)):
        children = cfg
    else:
        return None
    for child in children:
        found = find_supernet_cfg(child)
        if found is not None:
            return found
    return None


def search_config(args: argparse.Namespace):
    """The supernet config turned into a search run: the search loop as the train loop, no validation,
    no schedulers, no checkpoint loading by the runner (the loop loads the supernet itself, strictly)."""
    from mmengine.config import Config

    from mvdense.nas import GLiTSearchSpace  # also registers the supernet, the hook and the loop
    from mvdense.runner import check_data_paths

    work_dir = args.work_dir
    if work_dir is None:
        name = osp.splitext(osp.basename(args.config))[0]
        work_dir = osp.join('work_dirs', name, 'search')
    cfg = load_config(args.config, args.cfg_options, work_dir, args.launcher)
    if 'search_cfg' not in cfg:
        raise SystemExit(f'{args.config}: no search_cfg (the EvolutionSearchLoop settings of a supernet config)')
    supernet = find_supernet_cfg(cfg.model)
    if supernet is None:
        raise SystemExit(f"{args.config}: the model has no backbone of type='GLiTSupernet'")
    if args.stage1 is not None:
        space = supernet.setdefault('search_space', {})
        if space.get('stage', 1) != 2:
            raise SystemExit(f'--stage1 is for stage 2, and {args.config} searches stage {space.get("stage", 1)}')
        space['distribution'] = args.stage1
    # The space is checked (and stage 1's result read) before anything is built or written.
    GLiTSearchSpace.build(supernet.get('search_space', {}))
    search_cfg = dict(cfg.search_cfg)
    search_cfg.setdefault('type', 'EvolutionSearchLoop')
    if 'dataloader' not in search_cfg or 'evaluator' not in search_cfg:
        raise SystemExit(f'{args.config}: search_cfg needs the held-out dataloader and the evaluator')
    check_data_paths(Config(dict(search_dataloader=search_cfg['dataloader'])), args.config, ('search_dataloader',))
    search_cfg['supernet_checkpoint'] = args.checkpoint
    search_cfg.setdefault('calibrate_dataloader', cfg.get('train_dataloader'))
    cfg.train_cfg = search_cfg
    cfg.param_scheduler = None
    cfg.optim_wrapper.pop('paramwise_cfg', None)  # the runner builds an optimizer the search never steps
    for name in ('val', 'test'):
        cfg[f'{name}_dataloader'] = cfg[f'{name}_cfg'] = cfg[f'{name}_evaluator'] = None
    cfg.custom_hooks = [hook for hook in cfg.get('custom_hooks', []) if hook.get('type') not in TRAINING_ONLY_HOOKS]
    cfg.resume, cfg.load_from = False, None
    return cfg


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'supernet checkpoint not found: {args.checkpoint}')
    from mvdense.nas import SearchError, SearchSpaceError

    try:
        cfg = search_config(args)
        with data_errors_as_exit():
            runner = build_runner(cfg, loaders=('train_dataloader',))
            runner.train()
    except (SearchError, SearchSpaceError) as error:
        raise SystemExit(f'error: {error}') from None
    with open(osp.join(cfg.work_dir, 'best_arch.json'), encoding='utf-8') as file:
        result = json.load(file)
    print(f"stage {result['stage']} best: {result['score_key']} {result['score']:.4f}, authors' FLOPs "
          f"{result['flops_m']:.2f} M, params {result['params_m']:.3f} M; random candidates: mean "
          f"{result['random_mean_score']:.4f} over {result['random_count']}; "
          f"{osp.join(cfg.work_dir, 'best_arch.py')}")
    return result


if __name__ == '__main__':
    main()
