# The embedded default with a Mobile-Former backbone: SSDLite-Mobile-Former-151M trained from scratch on
# the generated synthetic set (`make demo DEMO_CONFIG=configs/demo/ssdlite_mobileformer_151m_synthetic.py`).
# The data and schedule of the MobileViT demo; the model of the COCO config, without pretrained weights.
_base_ = ['./ssdlite_mobilevit_xxs_synthetic.py', '../_base_/models/mobileformer_backbone.py']
model = dict(
    data_preprocessor={{_base_.imagenet_normalisation}},
    backbone=dict(_delete_=True, type='MobileFormer', arch='151m', out_indices=(2, 3)),
    neck=dict(in_channels=(88, 128)))
