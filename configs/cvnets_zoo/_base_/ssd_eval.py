# ml-cvnets' evaluation of its SSD-MobileViT model zoo (cvnets v0.1: engine/eval_detection.py and
# SingleShotDetector.predict): 320x320 input (cv2 bilinear, as the COCO configs' test pipeline), softmax
# scores over 81 classes, per class every score > 0.05, NMS at IoU 0.5, the best 200 of each class, boxes
# clipped to the image after NMS (not before), no cap per image and no size filter. The configs in this
# folder add this to the paper configs; the weights come from the converted checkpoint.
cvnets_ssd_model = dict(
    backbone=dict(init_cfg=None),
    bbox_head=dict(bbox_coder=dict(clip_border=False)),
    test_cfg=dict(
        nms_pre=3232 * 80,  # no cap: every (prior, class) pair of the 3232 priors at 320x320 can pass
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.5),
        min_bbox_size=-1,
        max_per_img=3232 * 80,
        max_per_class=200,
        clip_after_nms=True))
