# SSDLite-Mobile-Former-508M on COCO 2017, 320x320: the SSDLite-MobileViT recipe with a Mobile-Former
# backbone whose stages 2 and 3 (strides 16 and 32) feed the neck. No paper reports this pairing: see
# the README for our parameter and MAdds counts.
_base_ = ['./ssdlite_mobilevit_s_coco.py', '_base_/models/mobileformer_backbone.py']
model = dict(
    data_preprocessor={{_base_.imagenet_normalisation}},
    backbone=dict(
        _delete_=True, type='MobileFormer', arch='508m', out_indices=(2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mobileformer_508m.pth')),
    neck=dict(in_channels=(176, 240)))
