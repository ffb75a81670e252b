# DeepLabv3-GLiT-Tiny trained from scratch on the synthetic VOC-layout set: the model of
# deeplabv3_glit_tiny_voc.py without pretrained weights, with the data and schedule of the MobileViT
# segmentation demo (deeplabv3_mobilevit_xxs_synthetic.py).
_base_ = [
    '../_base_/models/deeplabv3_glit.py', '../_base_/datasets/synthetic_voc.py',
    '../_base_/schedules/cpu_demo.py', '../_base_/seg_runtime.py',
]
model = dict(backbone=dict(init_cfg=None), decode_head=dict(num_classes={{_base_.num_classes}}))

max_epochs = 16
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', eta_min_ratio=1e-2, begin=0, end=max_epochs, T_max=max_epochs, by_epoch=True,
         convert_to_iter_based=True),
]
auto_scale_lr = dict(base_batch_size=8)   # one process of 8 crops
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1, save_best=None))
env_cfg = dict(mp_cfg=dict(opencv_num_threads=1))
randomness = dict(seed=0)
