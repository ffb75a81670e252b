# DeepLabv3-Mobile-Former-508M on PASCAL VOC 2012: the DeepLabv3-MobileViT recipe with a Mobile-Former
# backbone whose last stage runs at output stride 16 (its down-sampling block at stride 1) and feeds the
# ASPP head. No paper reports this pairing: see the README for our parameter and MAdds counts.
_base_ = ['./deeplabv3_mobilevit_s_voc.py', '_base_/models/mobileformer_backbone.py']
model = dict(
    data_preprocessor={{_base_.imagenet_normalisation}},
    backbone=dict(
        _delete_=True, type='MobileFormer', arch='508m', out_indices=(3,), output_stride=16,
        norm_cfg=dict(type='BN'),  # SyncBatchNorm when distributed, as for MobileViT
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mobileformer_508m.pth')),
    decode_head=dict(in_channels=240))
