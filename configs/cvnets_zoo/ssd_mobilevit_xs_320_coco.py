# Apple's trained SSD-MobileViT-XS (ml-cvnets model zoo: detection/ssd_mobilevit_xs_320.pt, 24.8 mAP on
# COCO 2017 val), converted with tools/convert_weights.py, evaluated as cvnets evaluates it.
_base_ = ['../ssdlite_mobilevit_xs_coco.py', './_base_/ssd_eval.py']
model = {{_base_.cvnets_ssd_model}}
