# ml-cvnets' evaluation of its DeepLabv3-MobileViT model zoo (cvnets v0.1, `main_eval_seg.py` with
# --evaluation.segmentation.resize-input-images): each VOC val image is resized (cv2 bilinear) to 512x512,
# the logits are upsampled bilinearly to 512x512, then resized to the original size by *nearest*
# interpolation and argmaxed; the label stays at its original size. The configs in this folder add this to
# the paper configs; the weights come from the converted checkpoint.
cvnets_deeplabv3_model = dict(type='NearestResizeEncoderDecoder', backbone=dict(init_cfg=None))
cvnets_deeplabv3_test_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='Resize', scale=(512, 512), keep_ratio=False),
    dict(type='CheckedLoadAnnotations'),
    dict(type='ValidateSegMap', num_classes=21),
    dict(type='PackSegInputs'),
]
