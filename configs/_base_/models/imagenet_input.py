# The ImageNet input convention of the Mobile-Former and GLiT weights, for the model bases that use them: the
# authors trained on RGB images normalised with the ImageNet mean/std (timm's and DeiT's defaults), unlike
# Apple's MobileViT (BGR in [0, 1], no mean/std).
imagenet_normalisation = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True)
