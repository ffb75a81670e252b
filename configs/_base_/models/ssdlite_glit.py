# SSDLite-GLiT (ssdlite.py with a GLiT backbone; arch Tiny): GLiT is isotropic (every block at stride 16),
# so a ViTDet-style simple pyramid makes the two maps the SSDLite neck takes from the last block: stride 16
# as is and stride 32 by a 2x2 max-pool. No paper reports this pairing.
_base_ = ['./ssdlite.py', './imagenet_input.py']
glit_channels = 192   # GLiT-Tiny's width
model = dict(
    # The authors trained GLiT with DeiT's input: RGB normalised with the ImageNet mean/std.
    data_preprocessor={{_base_.imagenet_normalisation}},
    backbone=dict(
        type='GLiT', arch='tiny', out_indices=(-1,),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/glit_tiny.pth')),
    neck=[
        dict(type='SimpleFeaturePyramid', in_channels=glit_channels, out_channels=(glit_channels,) * 2,
             scales=(1, 0.5)),
        dict(type='SSDLiteNeck', in_channels=(glit_channels,) * 2, out_channels={{_base_.head_channels}}),
    ])
