"""E2E-MF (Mobile-Former as DETR backbone and head): shapes, parameter and MAdds budgets, the matcher
wiring (a perfect prediction costs ~nothing, permuting queries changes nothing), reference boxes (grid,
block-by-block refinement, spatial prior), padding masks, row-banded Mobile sub-blocks, and a short train -> test
run on generated data."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import ROOT, build_model
from mmdet.structures import DetDataSample
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData
from PIL import Image

from mvdense.apis import load_config
from mvdense.models.backbones.mobileformer import RegularMobile
from mvdense.models.e2e_mobileformer_layers import (
    PositionalMobileToFormer,
    box_prior,
    pixel_anchors,
    run_in_row_bands,
)
from mvdense.models.layers import count_parameters
from mvdense.utils.complexity import detector_madds

DEMO = str(ROOT / 'configs/demo/e2e_mobileformer_151m_synthetic.py')
PAPER_508M = dict(params=26.6e6, madds=41.4e9)
# Our counts (README), kept exact so that an accidental change of the head shows.
PARAMS = {'508m': 27_290_448, '151m': 10_081_844}


def build(config: str):
    """The detector of ``config`` with the initialisation training starts from."""
    return build_model(config, init_weights=True)


def sample(height: int, width: int, boxes=None, labels=None, batch_shape=None) -> DetDataSample:
    data = DetDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                       batch_input_shape=batch_shape or (height, width), scale_factor=(1.0, 1.0)))
    if boxes is not None:
        data.gt_instances = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32),
                                         labels=torch.tensor(labels))
    return data


@pytest.fixture(scope='module')
def model_508m():
    return build('configs/e2e_mobileformer_508m_coco.py')


def test_508m_parameters_within_5_percent_of_paper(model_508m):
    assert count_parameters(model_508m) == PARAMS['508m']
    assert abs(PARAMS['508m'] / PAPER_508M['params'] - 1) < 0.05


@pytest.mark.slow
def test_508m_madds_within_5_percent_of_paper_at_800x1333(model_508m):
    assert abs(detector_madds(model_508m, (1, 3, 800, 1333)) / PAPER_508M['madds'] - 1) < 0.05


class CallCounter(torch.nn.Module):
    """Counts the calls of the wrapped block (what ``run_in_row_bands`` inspects: its convs and mode)."""

    def __init__(self, block: torch.nn.Module) -> None:
        super().__init__()
        self.block, self.calls = block, 0

    def forward(self, x, token):
        self.calls += 1
        return self.block(x, token)


@pytest.mark.parametrize('batch', [1, 2])
def test_row_bands_give_the_result_of_one_pass(batch):
    """Each band of rows is computed with the rows its 3x3 depthwise conv reads beyond it, then cropped:
    the same map as one pass over the whole input, for any band height (the last band a short one)."""
    torch.manual_seed(0)
    block = CallCounter(RegularMobile(16, 16, 1, 4, token_dim=8))
    for module in block.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    block.eval()
    x = torch.randn(batch, 16, 23, 9).contiguous(memory_format=torch.channels_last)
    token = torch.randn(batch, 8)
    row_bytes = batch * 64 * 9 * 4                         # the widest map (the 64 expanded channels), one row
    with torch.inference_mode():
        whole = block(x, token)
        for rows in (2, 4, 7):                            # + 2 halo rows: the band's bytes
            block.calls = 0
            banded = run_in_row_bands(block, x, token, band_bytes=(rows + 2) * row_bytes)
            assert block.calls == -(-23 // rows)
            assert banded.shape == whole.shape
            torch.testing.assert_close(banded, whole, rtol=1e-6, atol=1e-6)
    block.calls = 0
    with torch.enable_grad():                             # training / autograd: one pass
        run_in_row_bands(block, x, token, band_bytes=4 * row_bytes)
    assert block.calls == 1
    block.calls = 0
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16):   # the reference path: one pass
        run_in_row_bands(block, x, token, band_bytes=4 * row_bytes)
    assert block.calls == 1


def test_output_shapes_and_predictions():
    model = build('configs/e2e_mobileformer_151m_coco.py').eval()
    assert count_parameters(model) == PARAMS['151m']
    samples = [sample(160, 224), sample(160, 224)]     # a 10 x 14 proposal map (stride 16): >= 100 queries
    with torch.no_grad():
        cls_scores, bbox_preds = model._forward(torch.rand(2, 3, 160, 224), samples)
        results = model.predict(torch.rand(2, 3, 160, 224), samples)
    layers = sum(model.cfg.model.decoder.num_blocks)
    assert cls_scores.shape == (layers, 2, 100, 80)       # sigmoid (focal) classes, no no-object column
    assert bbox_preds.shape == (layers, 2, 100, 4)
    assert bbox_preds.min() >= 0 and bbox_preds.max() <= 1   # sigmoid cx, cy, w, h
    instances = results[0].pred_instances
    assert instances.bboxes.shape == (100, 4) and instances.scores.shape == (100,)


def test_padding_mask_hides_padded_pixels_from_the_queries():
    bridge = PositionalMobileToFormer(16, 32).eval()
    x, tokens, pos = torch.randn(1, 16, 6, 5), torch.randn(1, 4, 32), torch.randn(1, 16, 6, 5)
    mask = torch.zeros(1, 6, 5, dtype=torch.bool)
    mask[:, 4:] = True
    changed = x.clone()
    changed[:, :, 4:] = 100.0
    out = bridge(x, tokens, pos, mask.flatten(1))
    assert torch.allclose(out, bridge(changed, tokens, pos, mask.flatten(1)), atol=1e-6)
    assert not torch.allclose(out, bridge(changed, tokens, pos, None), atol=1e-3)


def test_pixel_anchors_are_centred_on_pixels_of_the_valid_region():
    anchors = pixel_anchors(1, (2, 4), None, 0.1, torch.device('cpu'))
    assert anchors.shape == (1, 8, 4)
    assert anchors[0, :4, 0].tolist() == pytest.approx([0.125, 0.375, 0.625, 0.875])    # first row, x
    assert anchors[0, ::4, 1].tolist() == pytest.approx([0.25, 0.75])                  # first column, y
    assert (anchors[..., 2:] == 0.1).all()
    mask = torch.zeros(1, 2, 4, dtype=torch.bool)
    mask[:, :, 2:] = True                                    # right half padded: x relative to 2 columns
    assert pixel_anchors(1, (2, 4), mask, 0.1, torch.device('cpu'))[0, :2, 0].tolist() == pytest.approx([0.25, 0.75])


def test_box_prior_peaks_at_the_box_centre_of_the_valid_region():
    boxes = torch.tensor([[[0.25, 0.75, 0.2, 0.4]]])                               # [B=1, N=1, 4]
    prior = box_prior(boxes, (8, 8), None, tau=0.5).view(8, 8)
    # Pixel centres at (i + 0.5) / 8: x = 0.25 lies between columns 1 and 2, y = 0.75 between rows 5 and 6.
    peak = divmod(int(prior.argmax()), 8)
    assert peak in {(5, 1), (5, 2), (6, 1), (6, 2)}
    assert prior[5, 1] == pytest.approx(-0.5 * ((0.0625 / 0.1) ** 2 + (0.0625 / 0.2) ** 2))
    assert (prior <= 0).all() and prior[0, 7] < prior[5, 1] - 10     # far pixels: strongly down-weighted
    # With the right half padded, coordinates are relative to the 4 valid columns: x = 0.25 is column 0/1.
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[:, :, 4:] = True
    padded = box_prior(boxes, (8, 8), mask, tau=0.5).view(8, 8)
    assert padded[5, 0] == pytest.approx(padded[5, 1]) and padded[5, 0] > padded[5, 2]


def test_spatial_prior_keeps_a_query_on_its_box():
    """With a sharp prior, what lies far outside a query's reference box barely moves it; inside it does."""
    torch.manual_seed(0)
    bridge = PositionalMobileToFormer(16, 32).eval()
    x, tokens = torch.randn(1, 16, 16, 16), torch.randn(1, 1, 32)
    bias = box_prior(torch.tensor([[[0.2, 0.2, 0.15, 0.15]]]), (16, 16), None, tau=0.5)
    far, near = x.clone(), x.clone()
    far[:, :, 10:, 10:] += 5.0
    near[:, :, 2:5, 2:5] += 5.0
    with torch.no_grad():
        out = bridge(x, tokens, attn_bias=bias)
        moved_far = (bridge(far, tokens, attn_bias=bias) - out).abs().max()
        moved_near = (bridge(near, tokens, attn_bias=bias) - out).abs().max()
        moved_far_without_prior = (bridge(far, tokens) - bridge(x, tokens)).abs().max()
    assert moved_far < 1e-3 < moved_near
    assert moved_far_without_prior > 100 * moved_far


def test_queries_start_at_the_top_proposals_and_each_block_refines_the_boxes():
    """The first references are the proposals with the highest class logits; block l + 1 starts from block
    l's predicted boxes (the head's box outputs of layer l are the references of layer l + 1)."""
    model = build(DEMO).eval()
    images, samples = torch.rand(2, 3, 128, 128), [sample(128, 128), sample(128, 128)]
    with torch.no_grad():
        maps = model.extract_feat(images)[:-1]
        logits, boxes = model.decoder.propose(maps)
        head_inputs = model.forward_transformer(model.extract_feat(images), samples)
        _, bbox_preds = model.bbox_head(**head_inputs)
    assert logits.shape == (2, 64, 3) and boxes.shape == (2, 64, 4)      # 8 x 8 pixels at stride 16
    references = head_inputs['references']
    assert references.shape == bbox_preds.shape == (6, 2, 20, 4)
    top = logits.max(-1).values.topk(20, dim=1).indices
    assert torch.allclose(references[0], torch.stack([b[i] for b, i in zip(boxes, top)]))
    assert torch.allclose(bbox_preds[:-1], references[1:], atol=1e-6)
    # Training moves the boxes away from the references (the regression branch starts at zero).
    model.bbox_head.fc_reg.layers[-1].bias.data.fill_(0.3)
    with torch.no_grad():
        refined = model.forward_transformer(model.extract_feat(images), samples)['references']
    assert not torch.allclose(refined[1], references[1])


def test_training_loss_includes_the_proposals_and_too_small_inputs_are_refused():
    model = build(DEMO).train()
    samples = [sample(128, 128, [[10.0, 20.0, 70.0, 90.0]], [0]), sample(128, 128, [[5.0, 5.0, 35.0, 40.0]], [2])]
    losses = model.loss(torch.rand(2, 3, 128, 128), samples)
    assert {'enc_loss_cls', 'enc_loss_bbox', 'enc_loss_iou', 'loss_cls', 'd0.loss_bbox'} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    with pytest.raises(ValueError, match='fewer than the 20 queries'):
        model.loss(torch.rand(2, 3, 64, 64), [sample(64, 64, [[1.0, 1.0, 9.0, 9.0]], [0])] * 2)


def test_padded_batch_builds_masks_and_runs():
    model = build(DEMO).eval()
    samples = [sample(96, 128, batch_shape=(128, 128)), sample(128, 128)]
    with torch.no_grad():
        cls_scores, _ = model._forward(torch.rand(2, 3, 128, 128), samples)
    assert torch.isfinite(cls_scores).all()


def _matched_outputs(head, gt_boxes, gt_labels, size, num_queries, slots, layers=2):
    """Per-layer outputs [L, 1, N, C] / [L, 1, N, 4] where query ``slots[i]`` predicts ground truth i
    exactly and with a confident correct class, and every other query confidently predicts nothing."""
    num_classes = head.num_classes
    sigmoid = head.loss_cls.use_sigmoid
    logits = torch.full((num_queries, head.cls_out_channels), -20.0)
    if not sigmoid:
        logits[:, num_classes] = 20.0                       # no-object
    boxes = torch.rand(num_queries, 4) * 0.3 + 0.2
    height, width = size
    for slot, box, label in zip(slots, gt_boxes, gt_labels):
        logits[slot] = -20.0
        logits[slot, label] = 20.0
        x1, y1, x2, y2 = box
        boxes[slot] = torch.tensor([(x1 + x2) / 2 / width, (y1 + y2) / 2 / height,
                                    (x2 - x1) / width, (y2 - y1) / height])
    return logits.expand(layers, 1, -1, -1).clone(), boxes.expand(layers, 1, -1, -1).clone()


def _total_loss(head, cls_scores, bbox_preds, gt, metas):
    losses = head.loss_by_feat(cls_scores, bbox_preds, [gt], metas)
    return sum(v for v in losses.values()).item()


@pytest.mark.parametrize('config', [str(ROOT / 'configs/e2e_mobileformer_151m_coco.py'), DEMO], ids=['coco', 'demo'])
def test_matcher_wiring(config):
    from mmdet.registry import MODELS

    init_default_scope('mmdet')
    cfg = load_config(config)
    head_cfg = dict(cfg.model.bbox_head, train_cfg=cfg.model.train_cfg, test_cfg=cfg.model.test_cfg)
    head = MODELS.build(head_cfg)
    size, num_queries = (320, 320), 12
    boxes, labels = [[20.0, 30.0, 120.0, 90.0], [150.0, 160.0, 300.0, 310.0], [60, 200, 100, 260]], [1, 0, 2]
    gt = InstanceData(bboxes=torch.tensor(boxes), labels=torch.tensor(labels))
    metas = [dict(img_shape=size)]

    cls_scores, bbox_preds = _matched_outputs(head, boxes, labels, size, num_queries, slots=[7, 2, 10])
    perfect = _total_loss(head, cls_scores, bbox_preds, gt, metas)
    assert perfect < 1e-3

    # Any order of the queries is the same set of predictions: the Hungarian matching finds it.
    order = torch.randperm(num_queries, generator=torch.Generator().manual_seed(0))
    assert _total_loss(head, cls_scores[:, :, order], bbox_preds[:, :, order], gt, metas) == pytest.approx(
        perfect, abs=1e-5)
    # Also for an arbitrary (imperfect) prediction.
    torch.manual_seed(0)
    noisy_cls, noisy_box = torch.randn_like(cls_scores), torch.rand_like(bbox_preds) * 0.5 + 0.1
    noisy = _total_loss(head, noisy_cls, noisy_box, gt, metas)
    assert _total_loss(head, noisy_cls[:, :, order], noisy_box[:, :, order], gt, metas) == pytest.approx(
        noisy, rel=1e-5)
    # And the loss is not blind: a wrong class or a shifted box costs.
    wrong = cls_scores.clone()
    wrong[:, :, [7, 2]] = wrong[:, :, [2, 7]]
    assert _total_loss(head, wrong, bbox_preds, gt, metas) > 1.0
    assert noisy > 1.0


def test_padded_batches_train_with_finite_losses_and_never_select_padding():
    """COCO batches are padded: the proposal loss must stay finite there, and no query may start on a pixel
    that holds no image, however high its score."""
    model = build(DEMO).train()
    samples = [sample(96, 128, [[10.0, 10.0, 60.0, 70.0]], [0], batch_shape=(128, 160)),
               sample(128, 160, [[5.0, 5.0, 40.0, 50.0]], [1], batch_shape=(128, 160))]
    losses = model.loss(torch.rand(2, 3, 128, 160), samples)
    assert all(torch.isfinite(v) for v in losses.values()), losses

    masks = [torch.zeros(1, 8, 10, dtype=torch.bool)] * 2      # the decoder reads masks[proposal_map] = [-2]
    masks[0][:, 6:, :] = True                                  # bottom two rows padded
    logits = torch.zeros(1, 80, 3)
    logits[0, 60:] = 100.0                                     # the padded pixels score highest
    boxes = torch.arange(80.0)[None, :, None].expand(1, 80, 4)
    chosen = model.decoder.select(logits, boxes, masks)[0, :, 0]
    assert chosen.max() < 60 and len(set(chosen.tolist())) == 20


TWO_IMAGES = [sample(128, 128, [[10.0, 20.0, 70.0, 90.0]], [0]),
              sample(128, 128, [[40.0, 30.0, 120.0, 110.0], [5.0, 5.0, 35.0, 40.0]], [2, 1])]


def test_one_to_many_matches_repeated_boxes_in_the_early_layers_and_proposals_only(monkeypatch):
    model = build(DEMO).train()
    assert model.one_to_many == dict(repeats=3, decoder_layers=4, proposals=True)   # the demo's setting
    matched = []   # per loss call: how many boxes each image's queries were matched to
    single = model.bbox_head.loss_by_feat_single

    def spy(cls_scores, bbox_preds, batch_gt_instances, batch_img_metas):
        matched.append([len(gt) for gt in batch_gt_instances])
        return single(cls_scores, bbox_preds, batch_gt_instances, batch_img_metas)

    monkeypatch.setattr(model.bbox_head, 'loss_by_feat_single', spy)
    torch.manual_seed(0)
    losses = model.loss(torch.rand(2, 3, 128, 128), TWO_IMAGES)
    # 6 head blocks: 4 one-to-many, the last 2 one-to-one; then the proposals, one-to-many.
    assert matched == [[3, 6]] * 4 + [[1, 2]] * 2 + [[3, 6]]
    model.one_to_many = {}
    one_to_one = model.loss(torch.rand(2, 3, 128, 128), TWO_IMAGES)
    assert set(losses) == set(one_to_one) and all(torch.isfinite(v) for v in losses.values())


def test_hybrid_losses_are_detr_s_when_nothing_is_repeated():
    model = build(DEMO).train()
    model.one_to_many = {}
    images = torch.rand(2, 3, 128, 128)
    torch.manual_seed(0)
    detr = model.loss(images, TWO_IMAGES)
    model.one_to_many = dict(repeats=1, decoder_layers=5, proposals=True)
    torch.manual_seed(0)
    hybrid = model.loss(images, TWO_IMAGES)
    assert set(hybrid) == set(detr)
    for name in detr:
        torch.testing.assert_close(hybrid[name], detr[name], msg=name)


@pytest.mark.parametrize('setting, message', [
    (dict(repeats=0), 'repeats must be an integer >= 1'),
    (dict(repeats=2, decoder_layers=6), r'decoder_layers must be in \[0, 5\]'),
    (dict(repeats=2, decoder_layers='4'), r'decoder_layers must be in \[0, 5\].*got \'4\''),
    (dict(repeat=2), r"unknown key\(s\) \['repeat'\]"),
])
def test_bad_one_to_many_settings_are_named(setting, message):
    with pytest.raises(ValueError, match=message):
        build_model(DEMO, cfg_options={'model.one_to_many': setting})


@pytest.mark.slow
def test_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    model = build(DEMO).train()
    images = torch.rand(2, 3, 128, 128)
    samples = TWO_IMAGES
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(12):
        loss = sum(v for v in model.loss(images, samples).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3, losses


@pytest.mark.slow
def test_train_then_test_and_infer(tmp_path, tiny_synthetic, infer_tool):
    """The demo config through mmengine's Runner (what tools/train.py and tools/test.py build): two epochs
    on 8 generated images, a checkpoint, then the test loop's COCO metrics from that checkpoint, and
    tools/infer.py drawing its boxes."""
    from mvdense.runner import build_runner

    data_root = tiny_synthetic
    cfg = load_config(DEMO)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.launcher = 'none'
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.update(batch_size=4, num_workers=0, persistent_workers=False)
        loader.dataset.data_root = f'{data_root}/'
        for step in loader.dataset.pipeline:
            if step.type == 'Resize':
                step.scale = (128, 128)
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        evaluator.ann_file = f'{data_root}/annotations/instances_val.json'
    cfg.train_cfg.update(max_epochs=2, val_interval=100)
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
    cfg.default_hooks.logger.interval = 1
    cfg.log_processor = dict(window_size=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=2)
    build_runner(cfg).train()
    checkpoint = tmp_path / 'work' / 'epoch_2.pth'
    assert checkpoint.is_file()

    cfg.load_from = str(checkpoint)
    metrics = build_runner(cfg).test()
    assert 0.0 <= metrics['coco/bbox_mAP_50'] <= 1.0
    records = [json.loads(line) for path in (tmp_path / 'work').glob('*/vis_data/scalars.json')
               for line in path.read_text().splitlines()]
    losses = [r['loss'] for r in records if 'loss' in r]
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))

    source = sorted((data_root / 'val').glob('*.jpg'))[0]
    drawn = infer_tool.run(DEMO, str(checkpoint), str(source), str(tmp_path / 'drawn'), device='cpu',
                           score_thr=0.0)
    assert drawn == [str(tmp_path / 'drawn' / f'{source.stem}.png')]
    assert not np.array_equal(np.asarray(Image.open(drawn[0]).convert('RGB')),
                              np.asarray(Image.open(source).convert('RGB')))       # every query's box drawn
