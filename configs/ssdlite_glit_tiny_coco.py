# SSDLite-GLiT-Tiny on COCO 2017, 320x320: the SSDLite-MobileViT recipe with a GLiT-Tiny backbone (see
# _base_/models/ssdlite_glit.py). Convert the authors' ImageNet checkpoint first:
# tools/convert_weights.py glit_tiny.pth checkpoints/glit_tiny.pth
_base_ = [
    '_base_/models/ssdlite_glit.py', '_base_/datasets/coco_ssd320.py',
    '_base_/schedules/adamw_cosine.py', '_base_/det_runtime.py',
]
