# DeepLabv3-GLiT-Tiny on PASCAL VOC 2012: the DeepLabv3-MobileViT recipe with a GLiT-Tiny backbone at output
# stride 16 (see _base_/models/deeplabv3_glit.py). Convert the authors' ImageNet checkpoint first:
# tools/convert_weights.py glit_tiny.pth checkpoints/glit_tiny.pth
_base_ = [
    '_base_/models/deeplabv3_glit.py', '_base_/datasets/voc12aug_512.py',
    '_base_/schedules/adamw_cosine_seg.py', '_base_/seg_runtime.py',
]
