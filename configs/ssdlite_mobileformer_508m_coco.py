# SSDLite-Mobile-Former-508M on COCO 2017, 320x320: the SSDLite-MobileViT recipe with a Mobile-Former
# backbone whose stages 2 and 3 (strides 16 and 32) feed the neck. No paper reports this pairing: see
# the README for our parameter and MAdds counts.
_base_ = [
    '_base_/models/ssdlite_mobileformer.py', '_base_/datasets/coco_ssd320.py',
    '_base_/schedules/adamw_cosine.py', '_base_/det_runtime.py',
]
