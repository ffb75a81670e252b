# Apple's trained DeepLabv3-MobileViT-XXS (ml-cvnets model zoo: segmentation/deeplabv3_mobilevit_xxs.pt,
# 72.8 mIoU on PASCAL VOC 2012 val), converted with tools/convert_weights.py, evaluated as cvnets evaluates it.
_base_ = ['../deeplabv3_mobilevit_xxs_voc.py', './_base_/deeplabv3_eval.py']
model = {{_base_.cvnets_deeplabv3_model}}
val_dataloader = dict(dataset=dict(pipeline={{_base_.cvnets_deeplabv3_test_pipeline}}))
test_dataloader = val_dataloader
