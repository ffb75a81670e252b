# DeepLabv3-GLiT (deeplabv3.py with a GLiT backbone; arch Tiny): the last block's tokens as a stride-16 map
# (GLiT's natural output stride, that of the MobileViT recipe) feed the head. No paper reports this pairing.
_base_ = ['./deeplabv3.py', './imagenet_input.py']
model = dict(
    # The authors trained GLiT with DeiT's input: RGB normalised with the ImageNet mean/std.
    data_preprocessor={{_base_.imagenet_normalisation}},
    backbone=dict(
        type='GLiT', arch='tiny', out_indices=(-1,),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/glit_tiny.pth')),
    decode_head=dict(in_channels=192))  # GLiT-Tiny's width
