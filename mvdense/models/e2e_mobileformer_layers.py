"""The E2E-MF head: a decoder of Mobile-Former blocks whose Former tokens are DETR's object queries.

What :class:`MobileFormerDecoder` computes (maps [B, C, H, W], tokens [B, M, d], batch first)::

    proposals: every pixel of one backbone map -> LN(Linear) -> class logits [B, P, K] and a box [B, P, 4]
               regressed from a pixel anchor (sigmoid cx, cy, w, h)
    tokens     = [LN(Linear(backbone global tokens)) ; N learned queries]      [B, G + N, d]
    boxes      = the N proposals with the highest class logit (detached)      [B, N, 4]
    for each level, coarse to fine:
        x = BN(1x1(backbone map)) (+ nearest-upsampled BN(1x1(previous level's x)))         [B, C_l, H, W]
        for each QueryBlock of the level (one DETR "decoder layer"):
            box_code = MLP(sine(boxes)); prior = Gaussian log-prior around boxes            [B, N, d], [B, N, HW]
            x, tokens = block(x, tokens, pos, mask, query_pos=box_code, attn_bias=prior)
            hidden = query tokens + box_code                                            [B, N, d]
            boxes = sigmoid(box_delta(hidden) + logit(boxes)), detached
    -> hidden states [L, B, N, d] and the boxes each layer started from [L, B, N, 4]

:class:`QueryBlock` is the backbone's block order (Mobile->Former, Former, Mobile, Former->Mobile) at
stride 1, with :class:`PositionalMobileToFormer` as its Mobile->Former bridge. The geometry helpers
(pixel anchors, the Gaussian prior, padding masks) normalise coordinates to each image's valid
(unpadded) region, as DETR's boxes are. Why the head is built this way: ``docs/e2e_mobileformer.md``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmdet.models.layers import MLP, SinePositionalEncoding, coordinate_to_encoding, inverse_sigmoid
from mmdet.structures import OptSampleList
from mmengine.model import BaseModule, bias_init_with_prob
from torch import Tensor, nn

from .backbones.mobileformer import (
    BRIDGE_HEADS,
    FORMER_HEADS,
    Former,
    FormerToMobile,
    MobileToFormer,
    RegularMobile,
)
from .layers import FastLinear, fast_inference

__all__ = ['MobileFormerDecoder', 'PositionalMobileToFormer', 'QueryBlock', 'box_prior', 'padding_masks',
           'pixel_anchors', 'pixel_centres']


class PositionalMobileToFormer(MobileToFormer):
    """Mobile->Former bridge whose keys and values carry a positional encoding, with padded pixels masked
    and an optional additive attention bias (the reference boxes' spatial prior).

    Same parameters and arithmetic as :class:`MobileToFormer` (tokens query the raw features, gated
    output, Linear back to d, residual, LN), except: keys = values = features + ``pos``; the query is
    ``q(tokens + query_pos)`` (the residual stream stays ``tokens``); ``attn_bias`` is added to the
    attention logits; attention to pixels where ``mask`` is True is -inf.

    Shape: x [B, C, H, W], tokens [B, M, d], pos [B, C, H, W], mask [B, H*W] bool or None,
    query_pos [B, M, d] or None, attn_bias [B, M, H*W] or None -> [B, M, d].
    """

    def forward(self, x: Tensor, tokens: Tensor, pos: Tensor | None = None, mask: Tensor | None = None,
                query_pos: Tensor | None = None, attn_bias: Tensor | None = None) -> Tensor:
        batch, channels, height, width = x.shape
        num_tokens, heads = tokens.shape[1], self.num_heads
        features = (x if pos is None else x + pos).reshape(batch, heads, channels // heads, height * width)
        query_in = tokens if query_pos is None else tokens + query_pos
        query = (self.q(query_in) * self.scale).view(batch, num_tokens, heads, -1).transpose(1, 2)
        logits = query @ features                                                      # [B, h, M, HW]
        if attn_bias is not None:
            logits = logits + attn_bias[:, None]
        if mask is not None:
            logits = logits.masked_fill(mask[:, None, None, :], float('-inf'))
        out = (logits.softmax(dim=-1) @ features.transpose(-1, -2)).transpose(1, 2)  # [B, M, h, C/h]
        out = out.reshape(batch, num_tokens, channels) * (2.0 * F.hardsigmoid(self.gate(tokens)))
        return self.norm(tokens + self.drop_path(self.proj(out)))


class QueryBlock(nn.Module):
    """One head block: Mobile->Former (positional) -> Former -> Mobile (stride 1, identity skip, DyReLU
    from token 0) -> Former->Mobile, at constant width.

    Args:
        channels: C, the width of the map (in and out).
        token_dim: d, the width of the tokens.
        expansion: Expansion of the Mobile sub-block.
        bridge_heads / former_heads: Attention heads of the two bridges / of the Former.
        norm_cfg: Norm of the Mobile sub-block's convs.

    Shape: x [B, C, H, W], tokens [B, M, d], pos [B, C, H, W], mask [B, H*W] or None, query_pos
    [B, M, d] or None, attn_bias [B, M, H*W] or None -> ([B, C, H, W], [B, M, d]).
    """

    def __init__(self, channels: int, token_dim: int, expansion: float, bridge_heads: int = BRIDGE_HEADS,
                 former_heads: int = FORMER_HEADS, norm_cfg: dict | None = None) -> None:
        super().__init__()
        self.mobile_to_former = PositionalMobileToFormer(channels, token_dim, bridge_heads)
        self.former = Former(token_dim, former_heads)
        self.mobile = RegularMobile(channels, channels, 1, expansion, token_dim, norm_cfg=norm_cfg)
        self.former_to_mobile = FormerToMobile(channels, token_dim, bridge_heads)

    def forward(self, x: Tensor, tokens: Tensor, pos: Tensor | None = None, mask: Tensor | None = None,
                query_pos: Tensor | None = None, attn_bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
        tokens = self.former(self.mobile_to_former(x, tokens, pos, mask, query_pos, attn_bias))
        # token 0: the first (projected) backbone global token
        out = run_in_row_bands(self.mobile, x, tokens[:, 0])
        return self.former_to_mobile(out, tokens), tokens


# Bytes of the widest intermediate map one band of rows may hold, halo rows included (see
# run_in_row_bands): 24 MiB is 24 rows + 2 halo rows of E2E-MF-508M's stride-8 level at 800 x 1333 (1440 x 167
# floats a row). Of 2-64 MiB, 16-32 MiB were fastest on our CPU for one head sub-block at 512 x 853 and
# 800 x 1333, with and without mvdense.utils.memory.keep_freed_memory (benchmarks/results.md): smaller
# bands recompute a larger share of halo rows, larger ones no longer stay in cache.
BAND_BYTES = 24 * 2**20


def run_in_row_bands(block: nn.Module, x: Tensor, token: Tensor, band_bytes: int | None = None) -> Tensor:
    """``block(x, token)`` for a stride-1 conv block (a Mobile sub-block: 1x1 expand -> 3x3 depthwise ->
    1x1 project, per-pixel norms and activations), computed band of rows by band of rows at inference.

    Why: at high resolution the block's expanded map is large (E2E-MF-508M's stride-8 level at
    800 x 1333: 1440 x 100 x 167 floats, 96 MB), and each of its norms, activations and convolutions
    streams it through memory; a band of a few rows stays in cache from one to the next (the sub-block
    ran about 1.6x faster). Each band is computed with ``halo`` extra rows on each side (what the
    spatial convs read beyond it) and cropped, so every output row is computed from exactly the rows
    it is in one pass: the result is the same to float rounding (oneDNN may sum a band's products in
    another order; tested).

    Only on the inference fast path (:func:`~mvdense.models.layers.fast_inference`) and on channels-last
    maps (its CPU layout, where a band of rows is a contiguous slice); while training, under autocast,
    tracing or compiling (ONNX export, MAdds, torch.compile) or on NCHW maps the block runs once.

    ``band_bytes``: the widest intermediate map of a band, halo included (default :data:`BAND_BYTES`).

    Shape: x [B, C, H, W], token [B, d] -> [B, C', H, W].
    """
    rows, halo = _band_rows(block, x, band_bytes or BAND_BYTES)
    if rows >= x.shape[2] or block.training or not fast_inference() or x.is_contiguous() \
            or not x.is_contiguous(memory_format=torch.channels_last):
        return block(x, token)
    height, bands = x.shape[2], []
    for start in range(0, height, rows):
        stop = min(start + rows, height)
        low, high = max(start - halo, 0), min(stop + halo, height)
        bands.append(block(x[:, :, low:high], token)[:, :, start - low:stop - low])
    return torch.cat(bands, dim=2)


def _band_rows(block: nn.Module, x: Tensor, band_bytes: int) -> tuple[int, int]:
    """(rows per band, at least 2; halo rows on each side) of ``block`` on ``x`` [B, C, H, W]."""
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    if any(stride != 1 for conv in convs for stride in conv.stride):
        raise ValueError('row bands need a stride-1 block: a band of input rows must give one of output rows')
    halo = max((conv.kernel_size[0] - 1) // 2 * conv.dilation[0] for conv in convs)
    batch, _, _, width = x.shape
    row_bytes = batch * max(conv.out_channels for conv in convs) * width * x.element_size()
    return max(2, band_bytes // row_bytes - 2 * halo), halo


class MobileFormerDecoder(BaseModule):
    """The E2E-MF head: dense proposals pick each query's first reference box, then Mobile-Former blocks
    over a coarse-to-fine pyramid refine the query tokens and, block by block, the boxes.

    Args:
        in_channels: Widths of the backbone maps, fine to coarse (as the backbone returns them).
        backbone_token_dim: Width of the backbone's global tokens.
        num_queries: N, the object queries.
        num_classes: Class logits of the proposals (the box head's ``cls_out_channels``).
        token_dim: d, the width of the head's tokens (and of the box head's ``embed_dims``).
        channels: Width of each head level, coarse to fine (one per backbone map).
        num_blocks: Blocks per level, coarse to fine (0 runs none there but still passes the map on).
        expansion: Mobile sub-block expansion (one number, or one per level).
        bridge_heads / former_heads: Attention heads of the bridges / Former.
        spatial_prior: tau of the Gaussian attention prior around each query's reference box (standard
            deviations tau * box width / height); None turns the prior off.
        proposal_map: Index (into the backbone maps, fine to coarse) of the map whose pixels propose boxes.
        proposal_size: Side of the pixel anchors the proposals are regressed from (fraction of the image).
        positional_encoding: Kwargs of mmdet's ``SinePositionalEncoding`` (``num_feats`` is C_l / 2).
        norm_cfg: Norm of the convs.

    Shapes: :meth:`propose` maps -> logits [B, P, K], boxes [B, P, 4] (P pixels of the proposal map);
    :meth:`forward` maps, tokens [B, G + N, d], boxes [B, N, 4] -> hidden states [L, B, N, d] and the
    boxes each block started from [L, B, N, 4] (sigmoid cx, cy, w, h), L = sum(num_blocks).
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
        self.proposal_embed = nn.Sequential(FastLinear(in_channels[proposal_map], token_dim), nn.LayerNorm(token_dim))
        self.proposal_cls = FastLinear(token_dim, num_classes)
        self.proposal_reg = MLP(token_dim, token_dim, 4, 3)
        # Sine code of a reference box (4 x d/2) -> the query's positional part, shared by every block.
        self.reference_encoder = MLP(2 * token_dim, token_dim, token_dim, 2)
        self.global_proj = nn.Sequential(FastLinear(backbone_token_dim, token_dim), nn.LayerNorm(token_dim))
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
        """Every pixel of the proposal map -> class logits [B, P, K] and a box [B, P, 4] (sigmoid cx, cy,
        w, h, regressed from a ``proposal_size`` anchor centred on the pixel). Padded pixels propose like
        any other here (the loss teaches them background); :meth:`select` never picks them."""
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
            x = self._level_input(level, feat, x)
            if len(self.levels[level]) == 0:
                continue
            pos = self._position(level, x, mask)
            flat_mask = None if mask is None else mask.flatten(1)
            for block in self.levels[level]:
                box_code = self.reference_encoder(
                    coordinate_to_encoding(boxes, num_feats=tokens.shape[-1] // 2).to(tokens.dtype))
                attn_bias = None
                if self.spatial_prior is not None:
                    attn_bias = _with_global_rows(
                        box_prior(boxes, x.shape[-2:], mask, self.spatial_prior).to(x.dtype), num_global)
                x, tokens = block(x, tokens, pos, flat_mask, _with_global_rows(box_code, num_global), attn_bias)
                # What the heads read: the query token plus its box's code, so that the box MLP, which
                # predicts an offset from the reference box, knows the box it offsets.
                hidden = tokens[:, num_global:] + box_code
                hidden_states.append(hidden)
                references.append(boxes)
                boxes = (box_delta(hidden).float() + inverse_sigmoid(boxes)).sigmoid().detach()
        return torch.stack(hidden_states), torch.stack(references)

    def _level_input(self, level: int, feat: Tensor, previous: Tensor | None) -> Tensor:
        """The map of head level ``level``: its backbone map projected to C_l, plus the previous (coarser)
        level's map projected and upsampled to its size (FPN's top-down path). -> [B, C_l, H, W]."""
        lateral = self.laterals[level](feat)
        if previous is None:
            return lateral
        return lateral + F.interpolate(self.top_downs[level - 1](previous), size=lateral.shape[-2:],
                                       mode='nearest')

    def _position(self, level: int, x: Tensor, mask: Tensor | None) -> Tensor:
        """[B, C_l, H, W] sine encoding (normalised to the valid region when ``mask`` [B, H, W] is given).
        Without padding it is the same for every image: computed once and broadcast over the batch."""
        encoding = self.positional_encodings[level]
        if mask is None:
            return encoding(None, input=x[:1]).to(x.dtype)
        return encoding(mask).to(x.dtype)


def _with_global_rows(query_rows: Tensor, num_global: int) -> Tensor:
    """[B, N, ...] per-query tensor -> [B, G + N, ...] with zeros for the global tokens (no box: no
    positional query, no spatial prior)."""
    return F.pad(query_rows, (0, 0) * (query_rows.dim() - 2) + (num_global, 0))


# ----------------------------------------------------------------------------------------------------
# Geometry: pixel coordinates, anchors and priors in each image's valid region


def pixel_centres(batch: int, size: Sequence[int], mask: Tensor | None, device: torch.device) -> tuple[Tensor, Tensor]:
    """Pixel centres of an [H, W] map in image coordinates normalised to each image's valid (unpadded)
    region, as DETR's boxes are: xs [B, W], ys [B, H] (padded pixels fall beyond 1).

    ``mask`` [B, H, W] (True = padding) or None; images sit top-left in the padded batch."""
    height, width = size
    if mask is None:
        # ones * size rather than full(float(size)): in an ONNX trace the size stays symbolic (a graph
        # exported with dynamic height / width), and in eager the values are the same.
        valid_h = torch.ones(batch, device=device) * height
        valid_w = torch.ones(batch, device=device) * width
    else:   # the first row / column holds each image's width / height
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
