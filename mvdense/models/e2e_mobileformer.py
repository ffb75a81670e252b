"""E2E-MF: an end-to-end (set-prediction) detector whose backbone, encoder and decoder are Mobile-Former,
built in mmdet's DETR machinery (Chen et al., "Mobile-Former: Bridging MobileNet and Transformer", CVPR 2022).

How an image [B, 3, H, W] becomes boxes::

    backbone  MobileFormer(with_tokens=True): maps fine to coarse [B, C_i, H_i, W_i] + global tokens [B, G, d_b]
    encoder   none (the backbone's tokens already mix global information); the dense proposals of one map:
              logits [B, P, K], boxes [B, P, 4]
    decoder   MobileFormerDecoder: N query tokens and their reference boxes (the top-N proposals), refined
              block by block -> hidden states [L, B, N, d], references [L, B, N, 4]
    head      mmdet's DABDETRHead: class logits [L, B, N, K] and boxes [L, B, N, 4] (offsets from the
              references), Hungarian matching, focal + L1 + GIoU losses on every layer and on the proposals

The decoder, its blocks and the box geometry: :mod:`mvdense.models.e2e_mobileformer_layers`; the design
and what each choice is for: ``docs/e2e_mobileformer.md``.
"""
from __future__ import annotations

import torch
from mmdet.models.dense_heads import DABDETRHead
from mmdet.models.detectors import DetectionTransformer
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.structures import OptSampleList, SampleList
from mmengine.structures import InstanceData
from torch import Tensor

from .e2e_mobileformer_layers import MobileFormerDecoder, padding_masks

__all__ = ['E2EMobileFormer', 'repeat_instances']


def repeat_instances(instances: InstanceData, repeats: int) -> InstanceData:
    """``instances`` (ground-truth boxes and labels) each repeated ``repeats`` times, as one-to-many
    matching needs: [g] -> [repeats * g] (the whole list, then again)."""
    if repeats == 1:
        return instances
    return instances[torch.arange(len(instances)).repeat(repeats)]


@MMDET_MODELS.register_module()
class E2EMobileFormer(DetectionTransformer):
    """E2E-MF: a DETR whose backbone, encoder and decoder are Mobile-Former.

    Config fields as mmdet's ``DETR``: ``backbone`` a ``MobileFormer`` with ``with_tokens=True`` (maps fine
    to coarse, then its global tokens); ``decoder`` the kwargs of :class:`MobileFormerDecoder` without
    ``in_channels``, ``backbone_token_dim``, ``num_queries`` and ``num_classes`` (taken from the backbone,
    ``num_queries`` and the box head); ``positional_encoding`` optional kwargs of the sine encoding;
    ``encoder`` and ``neck`` None; ``bbox_head`` a ``DABDETRHead`` whose ``embed_dims`` is the decoder's
    ``token_dim``.

    The four DETR hooks: :meth:`pre_transformer` (maps, tokens, padding masks), :meth:`forward_encoder`
    (the dense proposals), :meth:`pre_decoder` (initial tokens and reference boxes),
    :meth:`forward_decoder` (the head blocks).

    ``one_to_many`` (training only; None: every output matched one-to-one, as DETR): H-DETR's hybrid
    matching over the head's layers, ``dict(repeats=k, decoder_layers=n, proposals=True)``: the outputs
    of the first ``n`` head blocks (and, with ``proposals``, the dense proposals) are matched to each
    ground-truth box repeated ``k`` times, so that every object trains ``k`` queries (or proposal pixels)
    at once; the later blocks, whose last one gives the detections, stay one-to-one and learn to keep one
    query per object. Inference is unchanged.
    """

    def __init__(self, *args, one_to_many: dict | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.one_to_many = self._check_one_to_many(dict(one_to_many or {}))

    def _init_layers(self) -> None:
        if self.encoder is not None or self.with_neck:
            raise ValueError('E2EMobileFormer has no separate encoder or neck: the Mobile-Former backbone '
                             'and head replace them')
        if not getattr(self.backbone, 'with_tokens', False):
            raise ValueError('E2EMobileFormer needs a MobileFormer backbone built with with_tokens=True')
        if not isinstance(self.bbox_head, DABDETRHead):
            raise ValueError(f'E2EMobileFormer predicts boxes relative to reference boxes: bbox_head must be a '
                             f'DABDETRHead, got {type(self.bbox_head).__name__}')
        self.decoder = MobileFormerDecoder(
            in_channels=self.backbone.out_channels, backbone_token_dim=self.backbone.token_dim,
            num_queries=self.num_queries, num_classes=self.bbox_head.cls_out_channels,
            positional_encoding=self.positional_encoding, **dict(self.decoder or {}))
        if self.bbox_head.embed_dims != self.decoder.queries.embedding_dim:
            raise ValueError(f'bbox_head.embed_dims ({self.bbox_head.embed_dims}) must equal the head '
                             f'token_dim ({self.decoder.queries.embedding_dim})')

    def _check_one_to_many(self, settings: dict) -> dict:
        """``one_to_many`` with its defaults filled in ({} when off); a clear error for a bad value."""
        if not settings:
            return {}
        unknown = set(settings) - {'repeats', 'decoder_layers', 'proposals'}
        if unknown:
            raise ValueError(f'one_to_many: unknown key(s) {sorted(unknown)}; expected repeats, decoder_layers, '
                             f'proposals')
        settings = dict(dict(repeats=1, decoder_layers=0, proposals=False), **settings)
        num_layers = sum(len(blocks) for blocks in self.decoder.levels)
        if not isinstance(settings['repeats'], int) or settings['repeats'] < 1:
            raise ValueError(f'one_to_many.repeats must be an integer >= 1, got {settings["repeats"]!r}')
        if not isinstance(settings['decoder_layers'], int) or not 0 <= settings['decoder_layers'] < num_layers:
            raise ValueError(f'one_to_many.decoder_layers must be in [0, {num_layers - 1}] (the last of the '
                             f'{num_layers} head blocks gives the detections: one-to-one), got '
                             f'{settings["decoder_layers"]!r}')
        return settings

    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> dict:
        """``DetectionTransformer.loss`` plus the dense proposals' loss (``enc_loss_*``: Hungarian-matched
        focal + L1 + GIoU over all proposal pixels, Deformable DETR's two-stage encoder loss); with
        ``one_to_many``, the early layers and the proposals matched to repeated ground truth.

        Losses and matching run in float32: under CPU bfloat16 autocast (``CpuBf16OptimWrapper``) the
        head's outputs would be bfloat16, which SciPy's Hungarian solver cannot take and whose 8-bit
        mantissa is too coarse for box costs. Backbone and decoder still run in bfloat16."""
        head_inputs = self.forward_transformer(self.extract_feat(batch_inputs), batch_data_samples)
        proposal_logits, proposal_boxes = head_inputs.pop('proposal_logits'), head_inputs.pop('proposal_boxes')
        gt_instances = [sample.gt_instances for sample in batch_data_samples]
        metas = [sample.metainfo for sample in batch_data_samples]
        repeated = [repeat_instances(gt, self.one_to_many.get('repeats', 1)) for gt in gt_instances]
        with torch.autocast(batch_inputs.device.type, enabled=False):
            head_inputs = {name: value.float() for name, value in head_inputs.items()}
            if self.one_to_many:
                losses = self._hybrid_losses(*self.bbox_head(**head_inputs), gt_instances, repeated, metas)
            else:
                losses = self.bbox_head.loss(**head_inputs, batch_data_samples=batch_data_samples)
            proposal_targets = repeated if self.one_to_many.get('proposals') else gt_instances
            proposal_losses = self.bbox_head.loss_by_feat_single(proposal_logits, proposal_boxes, proposal_targets,
                                                                 metas)
        losses.update(zip(('enc_loss_cls', 'enc_loss_bbox', 'enc_loss_iou'), proposal_losses))
        return losses

    def _hybrid_losses(self, all_cls_scores: Tensor, all_bbox_preds: Tensor, gt_instances: list,
                       repeated: list, metas: list[dict]) -> dict:
        """The head's losses (names as ``DETRHead.loss_by_feat``: ``loss_*`` for the last layer, ``d{i}.loss_*``
        for the others) with the first ``one_to_many['decoder_layers']`` layers matched to ``repeated``.
        all_cls_scores [L, B, N, K], all_bbox_preds [L, B, N, 4]."""
        losses, last = {}, len(all_cls_scores) - 1
        for layer, (cls_scores, bbox_preds) in enumerate(zip(all_cls_scores, all_bbox_preds)):
            targets = repeated if layer < self.one_to_many['decoder_layers'] else gt_instances
            values = self.bbox_head.loss_by_feat_single(cls_scores, bbox_preds, targets, metas)
            prefix = '' if layer == last else f'd{layer}.'
            losses.update({f'{prefix}loss_{name}': value for name, value in zip(('cls', 'bbox', 'iou'), values)})
        return losses

    def pre_transformer(self, img_feats: tuple[Tensor, ...],
                        batch_data_samples: OptSampleList = None) -> tuple[dict, dict]:
        """Backbone outputs (maps fine to coarse, then tokens [B, G, d_b]) -> encoder and decoder inputs;
        ``masks`` per map [B, H_i, W_i] (True = padding), or None when no image of the batch is padded."""
        *maps, global_tokens = img_feats
        masks = padding_masks(maps, batch_data_samples)
        return dict(global_tokens=global_tokens, maps=maps, masks=masks), dict(maps=maps, masks=masks)

    def forward_encoder(self, global_tokens: Tensor, maps: list[Tensor], masks: list[Tensor] | None) -> dict:
        """No transformer encoder: only the dense proposals, logits [B, P, K] and boxes [B, P, 4]."""
        proposal_logits, proposal_boxes = self.decoder.propose(maps, masks)
        return dict(global_tokens=global_tokens, proposal_logits=proposal_logits, proposal_boxes=proposal_boxes,
                    masks=masks)

    def pre_decoder(self, global_tokens: Tensor, proposal_logits: Tensor, proposal_boxes: Tensor,
                    masks: list[Tensor] | None) -> tuple[dict, dict]:
        """Initial head tokens [B, G + N, d] and reference boxes [B, N, 4] (the top proposals); in training
        the proposals also go to the loss."""
        decoder_inputs = dict(tokens=self.decoder.initial_tokens(global_tokens),
                              boxes=self.decoder.select(proposal_logits, proposal_boxes, masks))
        head_inputs = dict(proposal_logits=proposal_logits, proposal_boxes=proposal_boxes) if self.training else {}
        return decoder_inputs, head_inputs

    def forward_decoder(self, tokens: Tensor, boxes: Tensor, maps: list[Tensor],
                        masks: list[Tensor] | None) -> dict:
        """-> ``hidden_states`` [L, B, N, d] and ``references`` [L, B, N, 4], what ``DABDETRHead`` takes;
        the head's own regression branch refines the boxes block by block."""
        hidden_states, references = self.decoder(maps, tokens, boxes, self.bbox_head.fc_reg, masks)
        return dict(hidden_states=hidden_states, references=references)
