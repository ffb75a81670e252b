# The segmentation demo: DeepLabv3-MobileViT-XXS trained from scratch on the generated synthetic shapes
# (`make demo-seg`; data: tools/make_synthetic_data.py, VOC layout under data/synthetic/VOC2012/): the model
# of deeplabv3_mobilevit_xxs_voc.py without pretrained weights and with 4 classes, the synthetic data and the
# CPU demo schedule over 16 epochs (bfloat16 autocast, channels-last), so that the whole target runs in about
# 10 minutes on 2 CPU cores.
_base_ = [
    '../_base_/models/deeplabv3_mobilevit.py', '../_base_/datasets/synthetic_voc.py',
    '../_base_/schedules/cpu_demo_seg.py', '../_base_/seg_runtime.py',
]
model = dict(
    backbone=dict(arch='xxs', init_cfg=None),
    decode_head=dict(in_channels=80, num_classes={{_base_.num_classes}}))

default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=16, max_keep_ckpts=1, save_best=None))
env_cfg = dict(mp_cfg=dict(opencv_num_threads=1))
