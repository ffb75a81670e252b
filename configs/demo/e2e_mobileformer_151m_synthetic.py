# E2E-MF-151M trained from scratch on the generated synthetic set (3 shape classes, 320 x 320, a few shapes
# an image) in about 16 minutes on 2 CPU cores (`make demo DEMO_CONFIG=<this file>`; measured curves in the
# README): the model of e2e_mobileformer_151m_coco.py with the SSDLite demo's data and the CPU demo schedule,
# and what a DETR needs to learn in 1200 iterations from scratch: 20 queries (images hold a few shapes), no
# pretrained backbone (so the backbone trains at the full lr, BN statistics updated), DAB-DETR's weight decay
# and gradient clipping at a 5x larger lr with a short warm-up and a cosine decay over 24 epochs, 8 images a
# batch, evaluated every 2 epochs; and hybrid matching (H-DETR): the first 4 of the 6 head layers and the
# proposals are matched to each shape 3 times, which makes the run robust to the seed (one-to-one matching
# alone ended between AP50 0.43 and 0.63 over seeds 0-2).
_base_ = [
    '../_base_/models/e2e_mobileformer.py', '../_base_/datasets/synthetic_coco.py',
    '../_base_/schedules/cpu_demo.py', '../_base_/det_runtime.py',
]
model = dict(
    num_queries=20,
    one_to_many=dict(repeats=3, decoder_layers=4, proposals=True),
    backbone=dict(arch='151m', init_cfg=None, frozen_stages=-1, norm_eval=False),
    decoder=dict(token_dim=192, channels=(256, 128, 96), num_blocks=(2, 2, 2), expansion=4),
    bbox_head=dict(num_classes=3, embed_dims=192),   # the synthetic classes
    # Sigmoid scores: the top (query, class) pairs, several per query.
    test_cfg=dict(max_per_img=50))

train_dataloader = dict(batch_size=8)
max_epochs = 24
train_cfg = dict(max_epochs=max_epochs, val_interval=2)
# DAB-DETR's weight decay and clipping at 5x its lr, under the demo schedule's bfloat16 autocast (the
# set-prediction losses stay float32).
optim_wrapper = dict(optimizer=dict(lr=5e-4, weight_decay=1e-4), clip_grad=dict(max_norm=0.1, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', eta_min=1e-5, begin=0, end=max_epochs, T_max=max_epochs, by_epoch=True,
         convert_to_iter_based=True),
]
auto_scale_lr = dict(base_batch_size=8)   # one process of 8 images
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=2, max_keep_ckpts=1, save_best=None))
env_cfg = dict(mp_cfg=dict(opencv_num_threads=1))
