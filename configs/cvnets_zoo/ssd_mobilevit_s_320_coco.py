# Apple's trained SSD-MobileViT-S (ml-cvnets model zoo: detection/ssd_mobilevit_s_320.pt, 27.9 mAP on
# COCO 2017 val), converted with tools/convert_weights.py, evaluated as cvnets evaluates it.
_base_ = ['../ssdlite_mobilevit_s_coco.py', './_base_/ssd_eval.py']
model = {{_base_.cvnets_ssd_model}}
