# The embedded default: SSDLite-MobileViT-XXS trained from scratch on the generated synthetic set
# (`make demo`): the model of ssdlite_mobilevit_xxs_coco.py without pretrained weights, the synthetic data and
# the CPU demo schedule (20 epochs, bfloat16 autocast, channels-last: about 10 minutes on 2 CPU cores).
_base_ = [
    '../_base_/models/ssdlite_mobilevit.py', '../_base_/datasets/synthetic_coco.py',
    '../_base_/schedules/cpu_demo.py', '../_base_/det_runtime.py',
]
model = dict(
    backbone=dict(arch='xxs', init_cfg=None),
    neck=dict(in_channels=(64, 80)),
    bbox_head=dict(num_classes=3))   # the synthetic classes
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=5, max_keep_ckpts=1, save_best=None))
env_cfg = dict(mp_cfg=dict(opencv_num_threads=1))
