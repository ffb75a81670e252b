# E2E-MF-151M on COCO 2017: the 508M recipe (e2e_mobileformer_508m_coco.py) with the 151M backbone and a
# narrower head, for quick runs (no paper number; our parameter and MAdds counts are in the README).
_base_ = [
    '_base_/models/e2e_mobileformer.py', '_base_/datasets/coco_detr.py',
    '_base_/schedules/dab_detr_50e.py', '_base_/det_runtime.py',
]
model = dict(
    backbone=dict(arch='151m', init_cfg=dict(checkpoint='checkpoints/mobileformer_151m.pth')),
    decoder=dict(token_dim=192, channels=(256, 128, 96), num_blocks=(2, 2, 2), expansion=4),
    bbox_head=dict(embed_dims=192))
# mmdet's DETR checkpointing: every epoch, the last two kept (our detection runtime saves every 5 epochs).
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2))
