# Stage 2 of GLiT's hierarchical search on the synthetic shapes (`make demo-search`): the distribution of
# global and local blocks is stage 1's result, and each block holds its type's 3x3 grid of low-level
# choices (the authors' grids: all-local K x E, all-global e_v x d_z, mixed E x d_z). Trained and searched
# like stage 1 (the same settings, the same budget), e.g.
#   tools/train.py configs/demo/glit_search/stage2_supernet.py \
#       --cfg-options model.backbone.search_space.distribution=STAGE1/best_arch.json
#   tools/search.py configs/demo/glit_search/stage2_supernet.py SUPERNET_CKPT --stage1 STAGE1/best_arch.json
# (The distribution defaults to where `make demo-search` writes stage 1's result.)
_base_ = './deeplabv3_glit_synthetic.py'

custom_imports = dict(
    imports=['mvdense', 'mvdense.models.deeplabv3', 'mvdense.datasets.transforms', 'mvdense.nas'],
    allow_failed_imports=False)
model = dict(backbone=dict(type='GLiTSupernet', embed_dim={{_base_.embed_dim}}, num_heads=3,
                           search_space=dict(
                               stage=2, depth=6,
                               distribution='work_dirs/demo/glit_search/stage1_search/best_arch.json')))

# The supernet trains on the first 320 training images: 30 epochs x 40 iterations of 8 crops.
train_dataloader = dict(dataset=dict(indices={{_base_.supernet_split}}))
max_epochs = 30
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', eta_min_ratio=1e-2, begin=0, end=max_epochs, T_max=max_epochs, by_epoch=True,
         convert_to_iter_based=True),
]
# A supernet's validation score would be that of whichever path was drawn last: no validation.
val_dataloader = val_cfg = val_evaluator = None
test_dataloader = test_cfg = test_evaluator = None
custom_hooks = [dict(type='SPOSSamplerHook'), dict(type='ChannelsLastHook')]
# One path per iteration: the candidates off the path get no gradient.
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)

# The search (tools/search.py): mmrazor's EvolutionSearchLoop settings, scaled to a CPU demo budget.
search_cfg = dict(
    type='EvolutionSearchLoop',
    dataloader={{_base_.search_dataloader}},
    evaluator=dict(type='IoUMetric', iou_metrics=['mIoU']),
    score_key='mIoU',
    constraints_range=dict(flops=(0, 230)),
    input_size=(256, 256),
    max_epochs=4, num_candidates=10, top_k=4, num_mutation=5, num_crossover=5, mutate_prob=0.1,
    crossover_prob=0.5,
    calibrate_sample_num=32,
    fp16=True)
