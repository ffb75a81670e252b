_base_ = 'mmdet::_base_/default_runtime.py'
custom_imports = dict(imports=['mvdense'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=3, save_best='auto'))
