"""End-to-end, set-prediction Mobile-Former detector (E2E-MF): Mobile-Former as backbone *and* head in
mmdet's DETR machinery.

Source. Chen et al., "Mobile-Former: Bridging MobileNet and Transformer" (arXiv 2108.05895, CVPR 2022)
report E2E-MF-508M at 43.1 COCO AP with 41.4 G MAdds and 26.6 M parameters (DETR-R50: 42.0 AP, 86 G,
41.3 M) and, in the abstract, that the detector replaces DETR's backbone, encoder *and* decoder with
Mobile-Former. We could not reach the paper's detection section or appendix from here (only the abstract
and the architecture sections are reachable; no public code exists), so everything below that is not
the abstract or the Mobile-Former block itself is **our design**, chosen from how Mobile-Former's tokens
already work and from DETR practice, and marked as such.

What the head is (ours unless stated)::

    backbone: MobileFormer(with_tokens=True) -> maps at strides 8, 16, 32 and its 6 global tokens [B, 6, 192]
    proposals: every stride-16 pixel -> LN(Linear) -> class logits + a box regressed from a pixel anchor
    tokens  = [LN(Linear(global tokens)) ; object queries]          [B, 6 + N, d]   (N = num_queries, 100)
    boxes   = the N proposals with the highest class logit           [B, N, 4]       (cx, cy, w, h)
    for each level, coarse to fine (strides 32 -> 16 -> 8):
        x = BN(1x1 conv(backbone map)) (+ nearest-upsampled BN(1x1 conv(previous level's x)))   [B, C_l, H, W]
        n_l Mobile-Former blocks on (x, tokens), each one a "decoder layer":
            box_code = MLP(sine(boxes)); prior = Gaussian around boxes
            x, tokens = block(x, tokens, query_pos=box_code, prior)
            hidden = query tokens + box_code
            boxes = sigmoid(box_mlp(hidden) + logit(boxes)), detached     (iterative refinement)
    hidden_states [L = sum(n_l), B, N, d] + the boxes each layer started from -> mmdet DABDETRHead (shared
        Linear classifier, 3-layer box MLP predicting offsets from the reference box), every layer
        supervised (auxiliary losses), Hungarian matching; the proposals get the same set loss.

* Object queries *are* the head's Former tokens. The paper's abstract says the decoder is replaced by
  Mobile-Former, and in Mobile-Former a few learned tokens exchange with the map through the two bridges;
  DETR's object queries are exactly learned tokens that read the map (cross attention) and talk to each
  other (self attention). So: N learned embeddings of width d, the same for every image, as the backbone's
  tokens are.
* Each query also owns a reference box (DETR-family practice since Conditional/DAB-DETR; the paper is
  silent). The reason is convergence: a DETR whose queries must discover *where* to look needs hundreds of
  epochs, and our first runs without boxes plateaued on the synthetic demo (AP50 ~0.005; see the README
  for the learning curves of each step). The box enters the block in two ways, both in the
  Mobile->Former bridge, the only place where tokens read the map: its sine code, through a shared MLP,
  is added to the token that forms the bridge's query (DAB-DETR's positional query; the residual stream
  stays content only), and a Gaussian log-prior centred on the box with standard deviations
  tau * (w, h) (tau = 0.5) is added to the attention logits (SMCA's spatially modulated co-attention).
  The box code is also added to what the class and box heads read, so that the box MLP, which predicts
  an offset from the reference box, knows that box. After every block the box head's regression MLP
  (shared with ``DABDETRHead.fc_reg``) refines the boxes, and the next block uses the refined, detached
  boxes (Deformable/DAB-DETR's iterative refinement).
* Where the first boxes come from: dense proposals (Deformable DETR's two-stage variant; "query
  selection" in DINO and RT-DETR, whose point is convergence in a few epochs). Every pixel of the
  backbone's stride-16 map classifies (same classes as the head) and regresses a box from an anchor of
  side 0.1 centred on it; the N pixels with the highest class logit give the queries' first reference
  boxes (detached). The proposals are trained with the head's own set loss (Hungarian matching over all
  pixels, focal + L1 + GIoU; ``enc_loss_*``), which also gives the from-scratch backbone a dense
  localisation signal. The query *content* stays the learned embeddings (DINO's "mixed" selection).
  Learned, image-independent reference boxes (DAB-DETR) were our previous step; with them the demo
  learned, but slowly (README).
* The backbone's global tokens are carried into the head (projected to d and layer-normalised) and put
  *in front of* the queries. They take part in every Former (self attention) and bridge, but predict no
  box and get no positional query or prior. Token 0 is therefore the backbone's first global token, and
  it is what the Mobile sub-blocks' DyReLU reads (Mobile-Former's DyReLU reads token 0, a global token;
  an object query would be an odd source of image-wide activation parameters).
* Block: the backbone's ``MobileFormerBlock`` order, Mobile->Former -> Former -> Mobile (a stride-1
  ``RegularMobile``, identity skip) -> Former->Mobile, all reused from
  :mod:`mvdense.models.backbones.mobileformer`. Departures in the Mobile->Former bridge: besides the
  positional query and prior above, it adds a DETR sine positional encoding to its keys *and values* and
  masks padded pixels. Mobile-Former's bridge has none of these; the backbone does not need to localise,
  but attention over a map with no position in the keys can only find *what*, not *where*, and with no
  position in the values the token does not hold where it looked, which its box is read from.
  Former->Mobile is unchanged, so the map is refined by the queries ("decoder" writing back), which DETR's
  decoder cannot do.
* Scales: the head's blocks run on three maps, strides 32, 16 and 8, coarse to fine, each built FPN-style
  from a 1x1 projection of the backbone's stage output plus the upsampled previous level. Stride 8 is
  where DETR-R50's main weakness (small objects) lies and where the MAdds budget goes; DETR itself runs
  at stride 32 only.
* How many blocks and how wide: the paper's totals (26.6 M parameters, 41.4 G MAdds at 800 x 1333 for
  E2E-MF-508M) were the constraint: ``configs/e2e_mobileformer_508m_coco.py`` has d = 256 (DETR's width),
  and per level the channels/blocks that land within 5 % of both (see the README for the measured
  numbers). The head has 6 "decoder layers" in that config, DETR's count.
* Predictions and losses: mmdet's ``DABDETRHead`` unchanged (sigmoid focal classification, L1 x 5 and
  GIoU x 2 on the boxes; ``HungarianAssigner`` with focal, L1 and GIoU costs), i.e. DAB-DETR's recipe.

Tensors: maps [B, C, H, W], tokens [B, M, d] (batch first, as the backbone).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmdet.models.dense_heads import DABDETRHead
from mmdet.models.detectors import DetectionTransformer
from mmdet.models.layers import MLP, SinePositionalEncoding, coordinate_to_encoding, inverse_sigmoid
from mmdet.structures import DetDataSample, OptSampleList, SampleList
from mmengine.model import BaseModule, bias_init_with_prob
from torch import Tensor, nn

from ..registry import MODELS
from .backbones.mobileformer import (
    BRIDGE_HEADS,
    FORMER_HEADS,
    Former,
    FormerToMobile,
    MobileFormerBlock,
    MobileToFormer,
    RegularMobile,
)


class PositionalMobileToFormer(MobileToFormer):
    """Mobile->Former bridge whose keys and values carry a positional encoding, with padded pixels masked
    and an optional additive attention bias (the reference boxes' spatial prior).

    Same parameters and arithmetic as :class:`MobileToFormer` (tokens query the raw features, 2 heads,
    gated output, Linear back to d, residual, LN), except: keys = values = features + ``pos``; the query
    is ``q(tokens + query_pos)`` (the residual stream stays ``tokens``); ``attn_bias`` is added to the
    attention logits; attention to pixels where ``mask`` is True is -inf.

    Shape: x [B, C, H, W], tokens [B, M, d], pos [B, C, H, W], mask [B, H*W] bool or None,
    query_pos [B, M, d] or None, attn_bias [B, M, H*W] or None -> [B, M, d].
    """

    def forward(self, x: Tensor, tokens: Tensor, pos: Tensor | None = None, mask: Tensor | None = None,
                query_pos: Tensor | None = None, attn_bias: Tensor | None = None) -> Tensor:
        batch, channels, height, width = x.shape
        num_tokens, heads = tokens.shape[1], self.num_heads
        # Keys and values both carry the position: the keys so that a query can pick *where* to look, the
        # values so that its token then holds where it looked, which its box is read from.
        features = (x if pos is None else x + pos).reshape(batch, heads, channels // heads, height * width)
        keys = values = features                                                       # [B, h, C/h, HW]
        query_in = tokens if query_pos is None else tokens + query_pos
        query = (self.q(query_in) * self.scale).view(batch, num_tokens, heads, -1).transpose(1, 2)
        logits = query @ keys                                                          # [B, h, M, HW]
        if attn_bias is not None:
            logits = logits + attn_bias[:, None]
        if mask is not None:
            logits = logits.masked_fill(mask[:, None, None, :], float('-inf'))
        out = (logits.softmax(dim=-1) @ values.transpose(-1, -2)).transpose(1, 2)    # [B, M, h, C/h]
        out = out.reshape(batch, num_tokens, channels) * (2.0 * F.hardsigmoid(self.gate(tokens)))
        return self.norm(tokens + self.drop_path(self.proj(out)))


class QueryBlock(MobileFormerBlock):
    """A head block: :class:`MobileFormerBlock` at stride 1 and constant width, with the positional
    Mobile->Former bridge and configurable head counts.

    Shape: x [B, C, H, W], tokens [B, M, d], pos [B, C, H, W], mask [B, H*W] or None, query_pos
    [B, M, d] or None, attn_bias [B, M, H*W] or None -> ([B, C, H, W], [B, M, d]).
    """

    def __init__(self, channels: int, token_dim: int, expansion: float, bridge_heads: int = BRIDGE_HEADS,
                 former_heads: int = FORMER_HEADS, norm_cfg: dict | None = None) -> None:
        mobile = RegularMobile(channels, channels, 1, expansion, token_dim, norm_cfg=norm_cfg)
        super().__init__(mobile, channels, channels, token_dim)
        # Replace the parent's bridges / Former: position-aware keys, and head counts of our choosing.
        self.mobile_to_former = PositionalMobileToFormer(channels, token_dim, bridge_heads)
        self.former = Former(token_dim, former_heads)
        self.former_to_mobile = FormerToMobile(channels, token_dim, bridge_heads)

    def forward(self, x: Tensor, tokens: Tensor, pos: Tensor | None = None, mask: Tensor | None = None,
                query_pos: Tensor | None = None, attn_bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
        tokens = self.former(self.mobile_to_former(x, tokens, pos, mask, query_pos, attn_bias))
        out = self.mobile(x, tokens[:, 0])          # DyReLU from token 0: a (projected) global token
        return self.former_to_mobile(out, tokens), tokens


class MobileFormerDecoder(BaseModule):
    """The E2E-MF head: dense proposals pick each query's reference box, then object-query tokens are refined
    by Mobile-Former blocks over a coarse-to-fine pyramid while every block refines the boxes.

    Args:
        in_channels: Widths of the backbone maps, fine to coarse (as the backbone returns them).
        backbone_token_dim: Width of the backbone's global tokens.
        num_queries: N, the object queries.
        num_classes: Class logits of the proposals (the box head's ``cls_out_channels``).
        token_dim: d, the width of the head's tokens (and of the box head's ``embed_dims``).
        channels: Width of each head level, coarse to fine (one per backbone map).
        num_blocks: Blocks per level, coarse to fine (0 runs none there but still passes the map on).
        expansion: Mobile sub-block expansion (an int, or one per level).
        bridge_heads / former_heads: Attention heads of the bridges / Former.
        spatial_prior: tau of the Gaussian attention prior around each query's reference box (the
            standard deviations are tau * box width / height); None turns the prior off.
        proposal_map: Index (into the backbone maps, fine to coarse) of the map whose pixels propose boxes.
        proposal_size: Width and height of the pixel anchors the proposals are regressed from (fraction of
            the image).
        positional_encoding: Kwargs of mmdet's ``SinePositionalEncoding`` (``num_feats`` is C_l / 2).
        norm_cfg: Norm of the convs.

    Shapes: :meth:`propose` maps -> proposal logits [B, P, K] and boxes [B, P, 4] (P pixels of the proposal
    map); :meth:`forward` maps, tokens [B, G + N, d], reference boxes [B, N, 4] -> hidden states
    [L, B, N, d] and the reference boxes each block started from [L, B, N, 4] (sigmoid cx, cy, w, h),
    L = sum(num_blocks).
    """

    def __init__(self, in_channels: Sequence[int], backbone_token_dim: int, num_queries: int, num_classes: int,
                 token_dim: int = 256, channels: Sequence[int] = (256, 192, 128),
                 num_blocks: Sequence[int] = (2, 2, 2), expansion: float | Sequence[float] = 4,
                 bridge_heads: int = BRIDGE_HEADS, former_heads: int = FORMER_HEADS,
                 spatial_prior: float | None = 0.5, proposal_map: int = -2, proposal_size: float = 0.1,
                 positional_encoding: dict | None = None, norm_cfg: dict | None = None,
                 init_cfg: dict | list | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not len(in_channels) == len(channels) == len(num_blocks):
            raise ValueError(f'one head level per backbone map: in_channels={in_channels}, '
                             f'channels={channels}, num_blocks={num_blocks}')
        if sum(num_blocks) == 0:
            raise ValueError('the head needs at least one block')
        if spatial_prior is not None and spatial_prior <= 0:
            raise ValueError(f'spatial_prior must be positive or None, got {spatial_prior}')
        expansions = expansion if isinstance(expansion, Sequence) else [expansion] * len(channels)
        norm_cfg = norm_cfg or dict(type='BN')
        self.num_queries = num_queries
        self.spatial_prior = spatial_prior
        self.proposal_map = proposal_map
        self.proposal_size = proposal_size
        self.queries = nn.Embedding(num_queries, token_dim)
        # Dense proposals (Deformable DETR's two-stage head): every pixel of one map classifies and regresses
        # a box from its anchor; the top N become the queries' first reference boxes.
        self.proposal_embed = nn.Sequential(nn.Linear(in_channels[proposal_map], token_dim), nn.LayerNorm(token_dim))
        self.proposal_cls = nn.Linear(token_dim, num_classes)
        self.proposal_reg = MLP(token_dim, token_dim, 4, 3)
        # Sine code of a reference box (4 x d/2) -> the query's positional part, shared by every block.
        self.reference_encoder = MLP(2 * token_dim, token_dim, token_dim, 2)
        self.global_proj = nn.Sequential(nn.Linear(backbone_token_dim, token_dim), nn.LayerNorm(token_dim))
        coarse_in = list(in_channels)[::-1]
        self.laterals = nn.ModuleList(ConvModule(c_in, c, 1, norm_cfg=norm_cfg, act_cfg=None)
                                      for c_in, c in zip(coarse_in, channels))
        self.top_downs = nn.ModuleList(ConvModule(c_prev, c, 1, norm_cfg=norm_cfg, act_cfg=None)
                                       for c_prev, c in zip(channels[:-1], channels[1:]))
        pos_cfg = dict(normalize=True, **(positional_encoding or {}))
        self.positional_encodings = nn.ModuleList(SinePositionalEncoding(num_feats=c // 2, **pos_cfg)
                                                  for c in channels)
        self.levels = nn.ModuleList(
            nn.ModuleList(QueryBlock(c, token_dim, e, bridge_heads, former_heads, norm_cfg) for _ in range(n))
            for c, n, e in zip(channels, num_blocks, expansions))

    def init_weights(self) -> None:
        """Convs: Kaiming (fan out), as the backbone; Linear: Xavier-uniform, zero bias (DETR's choice for
        a transformer trained from scratch); norms and the query embedding: PyTorch's. The proposal
        classifier starts at probability 0.01 and the proposal boxes at their anchors (as the box head)."""
        super().init_weights()
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.constant_(self.proposal_cls.bias, bias_init_with_prob(0.01))
        nn.init.zeros_(self.proposal_reg.layers[-1].weight)

    def initial_tokens(self, global_tokens: Tensor) -> Tensor:
        """[B, G, d_b] backbone tokens -> [B, G + N, d]: projected global tokens, then the queries."""
        queries = self.queries.weight.unsqueeze(0).expand(global_tokens.shape[0], -1, -1)
        return torch.cat((self.global_proj(global_tokens), queries), dim=1)

    def propose(self, maps: Sequence[Tensor], masks: Sequence[Tensor | None] | None = None) -> tuple[Tensor, Tensor]:
        """Every pixel of the proposal map -> class logits [B, P, K] and a box [B, P, 4] (sigmoid cx, cy, w, h,
        regressed from a ``proposal_size`` anchor centred on the pixel). Padded pixels are proposals like any
        other here (the loss teaches them background); :meth:`select` never picks them."""
        feat = maps[self.proposal_map]
        mask = None if masks is None else masks[self.proposal_map]
        pixels = self.proposal_embed(feat.flatten(2).transpose(1, 2))                          # [B, P, d]
        anchors = pixel_anchors(feat.shape[0], feat.shape[-2:], mask, self.proposal_size, feat.device)
        boxes = (self.proposal_reg(pixels).float() + inverse_sigmoid(anchors)).sigmoid()
        return self.proposal_cls(pixels).float(), boxes

    def select(self, logits: Tensor, boxes: Tensor, masks: Sequence[Tensor | None] | None = None) -> Tensor:
        """The N proposals with the highest class logit, padded pixels excluded -> reference boxes [B, N, 4]
        (detached: the proposals learn from their own loss, not through the queries)."""
        if logits.shape[1] < self.num_queries:
            raise ValueError(f'the proposal map has {logits.shape[1]} pixels, fewer than the '
                             f'{self.num_queries} queries: use larger inputs or fewer queries')
        scores = logits.max(dim=-1).values                                                       # [B, P]
        mask = None if masks is None else masks[self.proposal_map]
        if mask is not None:
            # -inf only here: in the loss it would make the focal term NaN (-inf * 0 in its BCE).
            scores = scores.masked_fill(mask.flatten(1), float('-inf'))
        top = scores.topk(self.num_queries, dim=1).indices                                      # [B, N]
        return boxes.gather(1, top[..., None].expand(-1, -1, 4)).detach()

    def forward(self, maps: Sequence[Tensor], tokens: Tensor, boxes: Tensor, box_delta: nn.Module,
                masks: Sequence[Tensor | None] | None = None) -> tuple[Tensor, Tensor]:
        """maps fine to coarse, tokens [B, G + N, d] (from :meth:`initial_tokens`), reference boxes [B, N, 4]
        (from :meth:`select`), ``box_delta`` the box head's regression branch ([..., d] -> [..., 4] before
        the sigmoid) -> (hidden states [L, B, N, d], reference boxes [L, B, N, 4]).

        After each block the queries' boxes are sigmoid(box_delta(hidden) + logit(reference)), as the box
        head predicts them, and become the next block's (detached) references."""
        masks = list(masks) if masks is not None else [None] * len(maps)
        num_global = tokens.shape[1] - self.num_queries
        hidden_states, references, x = [], [], None
        for level, (feat, mask) in enumerate(zip(maps[::-1], masks[::-1])):
            lateral = self.laterals[level](feat)
            x = lateral if x is None else lateral + F.interpolate(
                self.top_downs[level - 1](x), size=lateral.shape[-2:], mode='nearest')
            blocks = self.levels[level]
            if len(blocks) == 0:
                continue
            pos = self._position(level, x, mask)
            flat_mask = None if mask is None else mask.flatten(1)
            for block in blocks:
                box_code = self.reference_encoder(
                    coordinate_to_encoding(boxes, num_feats=tokens.shape[-1] // 2).to(tokens.dtype))
                attn_bias = None
                if self.spatial_prior is not None:
                    attn_bias = self._with_global_rows(
                        box_prior(boxes, x.shape[-2:], mask, self.spatial_prior).to(x.dtype), num_global)
                x, tokens = block(x, tokens, pos, flat_mask, self._with_global_rows(box_code, num_global), attn_bias)
                # What the heads read: the query token plus its box's positional code, so that the box
                # MLP, which predicts an offset from the reference box, knows the box it offsets.
                hidden = tokens[:, num_global:] + box_code
                hidden_states.append(hidden)
                references.append(boxes)
                boxes = (box_delta(hidden).float() + inverse_sigmoid(boxes)).sigmoid().detach()
        return torch.stack(hidden_states), torch.stack(references)

    @staticmethod
    def _with_global_rows(query_rows: Tensor, num_global: int) -> Tensor:
        """[B, N, ...] per-query tensor -> [B, G + N, ...] with zeros for the global tokens (no box: no
        positional query, no spatial prior)."""
        return F.pad(query_rows, (0, 0) * (query_rows.dim() - 2) + (num_global, 0))

    def _position(self, level: int, x: Tensor, mask: Tensor | None) -> Tensor:
        """[B, C_l, H, W] sine encoding (normalised to the valid region when ``mask`` [B, H, W] is given).
        Without padding it is the same for every image: computed once and broadcast over the batch."""
        encoding = self.positional_encodings[level]
        if mask is None:
            return encoding(None, input=x[:1]).to(x.dtype)
        return encoding(mask).to(x.dtype)


def pixel_centres(batch: int, size: Sequence[int], mask: Tensor | None, device: torch.device) -> tuple[Tensor, Tensor]:
    """Pixel centres of an [H, W] map in image coordinates normalised to each image's valid (unpadded)
    region, as DETR's boxes are: xs [B, W], ys [B, H] (padded pixels fall beyond 1)."""
    height, width = size
    if mask is None:
        valid_h = torch.full((batch,), float(height), device=device)
        valid_w = torch.full((batch,), float(width), device=device)
    else:   # images sit top-left in the padded batch: the first row / column holds their width / height
        valid_w = (~mask[:, 0, :]).sum(-1).float()
        valid_h = (~mask[:, :, 0]).sum(-1).float()
    xs = (torch.arange(width, device=device) + 0.5) / valid_w[:, None]
    ys = (torch.arange(height, device=device) + 0.5) / valid_h[:, None]
    return xs, ys


def pixel_anchors(batch: int, size: Sequence[int], mask: Tensor | None, box_size: float,
                  device: torch.device) -> Tensor:
    """[B, H*W, 4] boxes (cx, cy, w, h) of side ``box_size`` centred on every pixel, row by row."""
    xs, ys = pixel_centres(batch, size, mask, device)
    height, width = size
    cx = xs[:, None, :].expand(-1, height, -1)
    cy = ys[:, :, None].expand(-1, -1, width)
    side = torch.full_like(cx, box_size)
    return torch.stack((cx, cy, side, side), dim=-1).flatten(1, 2)


def box_prior(boxes: Tensor, size: Sequence[int], mask: Tensor | None, tau: float) -> Tensor:
    """Gaussian log-prior of attention around each reference box (SMCA-style spatial modulation).

    -((x - cx)^2 / (tau w)^2 + (y - cy)^2 / (tau h)^2) / 2 at every pixel centre, coordinates normalised to
    the image's valid (unpadded) region as the boxes are.

    Shape: boxes [B, N, 4] (cx, cy, w, h), size (H, W), mask [B, H, W] (True = padding) or None -> [B, N, H*W].
    """
    xs, ys = pixel_centres(boxes.shape[0], size, mask, boxes.device)                              # [B, W], [B, H]
    cx, cy, w, h = boxes.float().unbind(-1)                                                          # [B, N]
    dx = ((xs[:, None, :] - cx[..., None]) / (tau * w[..., None])).square()                         # [B, N, W]
    dy = ((ys[:, None, :] - cy[..., None]) / (tau * h[..., None])).square()                         # [B, N, H]
    return (-0.5 * (dy[..., :, None] + dx[..., None, :])).flatten(2)


@MODELS.register_module()
class E2EMobileFormer(DetectionTransformer):
    """E2E-MF: a DETR whose backbone, encoder and decoder are Mobile-Former (see the module docstring).

    Built like mmdet's ``DETR`` (``DetectionTransformer``): ``backbone`` must be a ``MobileFormer`` with
    ``with_tokens=True`` (its maps, fine to coarse, then its global tokens); ``decoder`` holds the
    kwargs of :class:`MobileFormerDecoder` (no ``in_channels``/``backbone_token_dim``/``num_queries``/
    ``num_classes``: they come from the backbone, ``num_queries`` and the box head);
    ``positional_encoding`` optional kwargs of the sine encoding; ``encoder`` and ``neck`` must be None
    (the backbone is the encoder); ``bbox_head`` a ``DABDETRHead`` with ``embed_dims`` = the head's
    ``token_dim``.

    The four DETR stages map to: ``pre_transformer`` (split maps/tokens, padding masks), ``forward_encoder``
    (no transformer: Mobile-Former's backbone already mixes global information through its tokens; only
    the dense proposals), ``pre_decoder`` (initial tokens, reference boxes = top proposals),
    ``forward_decoder`` (the head) -> ``hidden_states`` [L, B, N, d] and ``references`` [L, B, N, 4].
    """

    def _init_layers(self) -> None:
        if self.encoder is not None or self.with_neck:
            raise ValueError('E2EMobileFormer has no separate encoder or neck: the Mobile-Former backbone '
                             'and head replace them')
        if not getattr(self.backbone, 'with_tokens', False):
            raise ValueError('E2EMobileFormer needs a MobileFormer backbone built with with_tokens=True')
        if not isinstance(self.bbox_head, DABDETRHead):
            raise ValueError(f'E2EMobileFormer predicts boxes relative to reference boxes: bbox_head must be a '
                             f'DABDETRHead, got {type(self.bbox_head).__name__}')
        head_cfg = dict(self.decoder or {})
        self.decoder = MobileFormerDecoder(
            in_channels=self.backbone.out_channels, backbone_token_dim=self.backbone.token_dim,
            num_queries=self.num_queries, num_classes=self.bbox_head.cls_out_channels,
            positional_encoding=self.positional_encoding, **head_cfg)
        if not isinstance(self.bbox_head, DABDETRHead):
            raise ValueError(f'E2EMobileFormer predicts boxes relative to reference boxes: bbox_head must be a '
                             f'DABDETRHead, got {type(self.bbox_head).__name__}')
        if self.bbox_head.embed_dims != self.decoder.queries.embedding_dim:
            raise ValueError(f'bbox_head.embed_dims ({self.bbox_head.embed_dims}) must equal the head '
                             f'token_dim ({self.decoder.queries.embedding_dim})')

    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> dict:
        """``DetectionTransformer.loss`` plus the dense proposals' loss (``enc_loss_*``: Hungarian-matched
        focal + L1 + GIoU over all proposal pixels, as Deformable DETR's two-stage encoder loss), all in
        float32.

        Under CPU bfloat16 autocast (``CpuBf16OptimWrapper``) the head's outputs and hence the matching
        costs would be bfloat16, which SciPy's Hungarian solver cannot take and whose 8-bit mantissa is too
        coarse for box costs; backbone and decoder still run in bfloat16."""
        head_inputs = self.forward_transformer(self.extract_feat(batch_inputs), batch_data_samples)
        proposal_logits, proposal_boxes = head_inputs.pop('proposal_logits'), head_inputs.pop('proposal_boxes')
        with torch.autocast(batch_inputs.device.type, enabled=False):
            head_inputs = {name: value.float() for name, value in head_inputs.items()}
            losses = self.bbox_head.loss(**head_inputs, batch_data_samples=batch_data_samples)
            gt_instances = [sample.gt_instances for sample in batch_data_samples]
            metas = [sample.metainfo for sample in batch_data_samples]
            proposal_losses = self.bbox_head.loss_by_feat_single(proposal_logits, proposal_boxes, gt_instances, metas)
        losses.update(zip(('enc_loss_cls', 'enc_loss_bbox', 'enc_loss_iou'), proposal_losses))
        return losses

    def pre_transformer(self, img_feats: tuple[Tensor, ...],
                        batch_data_samples: OptSampleList = None) -> tuple[dict, dict]:
        """Backbone outputs (maps fine to coarse, then tokens [B, G, d_b]) -> encoder and decoder inputs;
        ``masks`` per map [B, H_i, W_i] (True = padding) or None when no image of the batch is padded."""
        *maps, global_tokens = img_feats
        masks = padding_masks(maps, batch_data_samples)
        return dict(global_tokens=global_tokens, maps=maps, masks=masks), dict(maps=maps, masks=masks)

    def forward_encoder(self, global_tokens: Tensor, maps: list[Tensor], masks: list[Tensor] | None) -> dict:
        """No transformer encoder (the backbone's Mobile-Former blocks already mixed global information):
        only the dense proposals, logits [B, P, K] and boxes [B, P, 4]."""
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


def padding_masks(maps: Sequence[Tensor], batch_data_samples: OptSampleList) -> list[Tensor] | None:
    """Per map [B, H_i, W_i] bool (True where the padded batch holds no image), as DETR builds its mask;
    None when nothing is padded (or no data samples are given, e.g. when tracing)."""
    if not batch_data_samples:
        return None
    input_h, input_w = batch_data_samples[0].batch_input_shape
    shapes = [sample.img_shape for sample in batch_data_samples]
    if all(h == input_h and w == input_w for h, w in shapes):
        return None
    image_mask = maps[0].new_ones((len(shapes), 1, input_h, input_w))
    for index, (h, w) in enumerate(shapes):
        image_mask[index, :, :h, :w] = 0
    return [F.interpolate(image_mask, size=feat.shape[-2:]).to(torch.bool)[:, 0] for feat in maps]


class _TransformerForward(nn.Module):
    """``detector._forward`` of one unpadded image batch (no data samples): backbone, (neck, encoder,)
    head and the DETRHead outputs, i.e. what a DETR-family model computes before post-processing."""

    def __init__(self, detector: DetectionTransformer) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        sample = DetDataSample(metainfo=dict(batch_input_shape=tuple(x.shape[-2:]), img_shape=tuple(x.shape[-2:])))
        return self.detector._forward(x, [sample] * x.shape[0])


def detector_madds(detector: DetectionTransformer, input_shape: tuple[int, int, int, int]) -> int:
    """MAdds (``mvdense.utils.complexity.count_madds`` conventions) of a DETR-family detector's forward
    on ``zeros(input_shape)``, up to the class/box outputs of every layer (no post-processing). The
    same function measures mmdet's DETR, so both are counted alike."""
    from ..utils.complexity import count_madds
    was_training = detector.training
    detector.eval()
    try:
        with torch.no_grad():
            return count_madds(_TransformerForward(detector), input_shape)
    finally:
        detector.train(was_training)
