# E2E-MF-508M on COCO 2017 (paper: 43.1 AP, 41.4 G MAdds, 26.6 M parameters; DETR-R50 42.0 AP).
# Mobile-Former is backbone and head of a DETR whose queries are anchored to reference boxes refined block by
# block, as in DAB-DETR (_base_/models/e2e_mobileformer.py), so the recipe is DAB-DETR's (mmdet's
# dab-detr_r50_8xb2-50e_coco.py): DETR's data pipeline (flip, multi-scale 480-800 x 1333, random crop),
# AdamW lr 1e-4 (backbone 1e-5), weight decay 1e-4, gradient clipping 0.1, 8 x 2 images, 50 epochs with the
# lr dropped 10x after epoch 40, evaluated after every epoch.
_base_ = [
    '_base_/models/e2e_mobileformer.py', '_base_/datasets/coco_detr.py',
    '_base_/schedules/dab_detr_50e.py', '_base_/det_runtime.py',
]
# mmdet's DETR checkpointing: every epoch, the last two kept (our detection runtime saves every 5 epochs).
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2))
