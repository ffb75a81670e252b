# DeepLabv3-Mobile-Former-508M on PASCAL VOC 2012: the DeepLabv3-MobileViT recipe with a Mobile-Former
# backbone whose last stage runs at output stride 16 (its down-sampling block at stride 1) and feeds the
# ASPP head. No paper reports this pairing: see the README for our parameter and MAdds counts.
_base_ = [
    '_base_/models/deeplabv3_mobileformer.py', '_base_/datasets/voc12aug_512.py',
    '_base_/schedules/adamw_cosine_seg.py', '_base_/seg_runtime.py',
]
