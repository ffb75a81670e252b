# Runtime of the segmentation configs: mmseg's defaults (default_scope 'mmseg', SegLocalVisualizer) plus
# our modules, epoch-based logging and checkpoints that keep the best mIoU.
_base_ = 'mmseg::_base_/default_runtime.py'
# `mvdense` registers the backbone; the two modules below register the head and the checked loaders
# (named explicitly so that this works whatever `mvdense/__init__.py` imports).
custom_imports = dict(
    imports=['mvdense', 'mvdense.models.deeplabv3', 'mvdense.datasets.transforms'], allow_failed_imports=False)
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=3, save_best='mIoU', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
log_processor = dict(by_epoch=True)
# OpenCV's own threads in the data workers only compete with them and with PyTorch for the cores.
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
