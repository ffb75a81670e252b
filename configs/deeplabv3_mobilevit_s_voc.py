# DeepLabv3-MobileViT-S on PASCAL VOC 2012 (paper: 79.1 mIoU on val, 6.4 M parameters), trained as ml-cvnets
# does: 512x512 crops of VOC train + SBD aug + COCO (VOC classes), 50 epochs, AdamW + cosine, EMA,
# 32 images per GPU x 4 GPUs. `tools/dist_train.sh configs/deeplabv3_mobilevit_s_voc.py 4`.
_base_ = [
    '_base_/models/deeplabv3_mobilevit.py', '_base_/datasets/voc12aug_512.py',
    '_base_/schedules/adamw_cosine_seg.py', '_base_/seg_runtime.py',
]
