# DeepLabv3-GLiT-Tiny trained from scratch on the synthetic VOC-layout set: the model of
# deeplabv3_glit_tiny_voc.py without pretrained weights, with the data and schedule of the MobileViT
# segmentation demo (deeplabv3_mobilevit_xxs_synthetic.py).
_base_ = [
    '../_base_/models/deeplabv3_glit.py', '../_base_/datasets/synthetic_voc.py',
    '../_base_/schedules/cpu_demo_seg.py', '../_base_/seg_runtime.py',
]
model = dict(backbone=dict(init_cfg=None), decode_head=dict(num_classes={{_base_.num_classes}}))
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=16, max_keep_ckpts=1, save_best=None))
env_cfg = dict(mp_cfg=dict(opencv_num_threads=1))
