# Stage 1 of GLiT's hierarchical search on the synthetic shapes (`make demo-search`): a supernet whose 6
# blocks each hold G = 0, 1, 2, 3 global thirds (low-level choices fixed: K = 31, E = 2, e_v = 1, d_z = 4),
# trained one uniformly drawn path per iteration (SPOSSamplerHook), then searched with
#   tools/search.py configs/demo/glit_search/stage1_supernet.py SUPERNET_CKPT
# for the best mIoU on the held-out slice within 230 M FLOPs (the authors' formula, backbone at 256x256).
# stage2_supernet.py repeats these settings but for its search space.
_base_ = './deeplabv3_glit_synthetic.py'

custom_imports = dict(
    imports=['mvdense', 'mvdense.models.deeplabv3', 'mvdense.datasets.transforms', 'mvdense.nas'],
    allow_failed_imports=False)
model = dict(backbone=dict(type='GLiTSupernet', embed_dim={{_base_.embed_dim}}, num_heads=3,
                           search_space=dict(stage=1, depth=6)))

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
