# SSDLite-GLiT-Tiny trained from scratch on the generated synthetic set: the model of ssdlite_glit_tiny_coco.py
# without pretrained weights, with the data and CPU schedule of the MobileViT demo.
_base_ = [
    '../_base_/models/ssdlite_glit.py', '../_base_/datasets/synthetic_coco.py',
    '../_base_/schedules/cpu_demo.py', '../_base_/det_runtime.py',
]
model = dict(
    backbone=dict(init_cfg=None),
    bbox_head=dict(num_classes=3))   # the synthetic classes
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=5, max_keep_ckpts=1, save_best=None))
env_cfg = dict(mp_cfg=dict(opencv_num_threads=1))
