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
    tokens  = [LN(Linear(global tokens)) ; object queries]          [B, 6 + N, d]   (N = num_queries, 100)
    for each level, coarse to fine (strides 32 -> 16 -> 8):
        x = BN(1x1 conv(backbone map)) (+ nearest-upsampled BN(1x1 conv(previous level's x)))   [B, C_l, H, W]
        n_l Mobile-Former blocks on (x, tokens); after each one the N query tokens are a "decoder layer"
    hidden_states [L = sum(n_l), B, N, d] -> mmdet DETRHead (shared Linear classifier, 3-layer box MLP ->
        sigmoid cx, cy, w, h), every layer supervised (auxiliary losses), Hungarian matching.

* Object queries *are* the head's Former tokens. The paper's abstract says the decoder is replaced by
  Mobile-Former, and in Mobile-Former a few learned tokens exchange with the map through the two bridges;
  DETR's object queries are exactly learned tokens that read the map (cross attention) and talk to each
  other (self attention). So: N learned embeddings of width d, the same for every image, as the backbone's
  tokens are. Unlike DETR there is no separate ``query_pos``: the token is content and slot at once, as in
  the backbone.
* The backbone's global tokens are carried into the head (projected to d and layer-normalised) and put
  *in front of* the queries. They take part in every Former (self attention) and bridge, but predict no
  box. Token 0 is therefore the backbone's first global token, and it is what the Mobile sub-blocks'
  DyReLU reads (Mobile-Former's DyReLU reads token 0, a global token; an object query would be an odd
  source of image-wide activation parameters).
* Block: the backbone's ``MobileFormerBlock`` order, Mobile->Former -> Former -> Mobile (a stride-1
  ``RegularMobile``, identity skip) -> Former->Mobile, all reused from
  :mod:`mvdense.models.backbones.mobileformer`. One departure: the Mobile->Former bridge adds a DETR sine
  positional encoding to its keys *and values* and masks padded pixels. Mobile-Former's bridge has
  neither; the backbone does not need to localise, but attention over a map with no position in the keys
  can only find *what*, not *where* (DETR adds positions to the keys for the same reason), and with no
  position in the values the token does not hold where it looked, which its box must be read from. DETR
  keeps position out of its decoder's values and needs 500 epochs; our first demo run with position in
  the keys only plateaued (AP50 ~0.005 after 300 iterations; see the README).
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
* Predictions and losses: mmdet's ``DETRHead`` unchanged (softmax CE with no-object weight 0.1, L1 x 5,
  GIoU x 2; ``HungarianAssigner`` with the same costs), i.e. DETR's recipe.

Tensors: maps [B, C, H, W], tokens [B, M, d] (batch first, as the backbone).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmdet.models.detectors import DetectionTransformer
from mmdet.models.layers import SinePositionalEncoding
from mmdet.structures import DetDataSample, OptSampleList
from mmengine.model import BaseModule
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
    """Mobile->Former bridge whose keys and values carry a positional encoding, with padded pixels masked.

    Same parameters and arithmetic as :class:`MobileToFormer` (tokens query the raw features, 2 heads,
    gated output, Linear back to d, residual, LN), except: keys = values = features + ``pos``, and
    attention to pixels where ``mask`` is True is -inf.

    Shape: x [B, C, H, W], tokens [B, M, d], pos [B, C, H, W], mask [B, H*W] bool or None -> [B, M, d].
    """

    def forward(self, x: Tensor, tokens: Tensor, pos: Tensor | None = None,
                mask: Tensor | None = None) -> Tensor:
        batch, channels, height, width = x.shape
        num_tokens, heads = tokens.shape[1], self.num_heads
        # Keys and values both carry the position: the keys so that a query can pick *where* to look, the
        # values so that its token then holds where it looked, which its box is read from.
        features = (x if pos is None else x + pos).reshape(batch, heads, channels // heads, height * width)
        keys = values = features                                                       # [B, h, C/h, HW]
        query = (self.q(tokens) * self.scale).view(batch, num_tokens, heads, -1).transpose(1, 2)
        logits = query @ keys                                                          # [B, h, M, HW]
        if mask is not None:
            logits = logits.masked_fill(mask[:, None, None, :], float('-inf'))
        out = (logits.softmax(dim=-1) @ values.transpose(-1, -2)).transpose(1, 2)    # [B, M, h, C/h]
        out = out.reshape(batch, num_tokens, channels) * (2.0 * F.hardsigmoid(self.gate(tokens)))
        return self.norm(tokens + self.drop_path(self.proj(out)))


class QueryBlock(MobileFormerBlock):
    """A head block: :class:`MobileFormerBlock` at stride 1 and constant width, with the positional
    Mobile->Former bridge and configurable head counts.

    Shape: x [B, C, H, W], tokens [B, M, d], pos [B, C, H, W], mask [B, H*W] or None
    -> ([B, C, H, W], [B, M, d]).
    """

    def __init__(self, channels: int, token_dim: int, expansion: float, bridge_heads: int = BRIDGE_HEADS,
                 former_heads: int = FORMER_HEADS, norm_cfg: dict | None = None) -> None:
        mobile = RegularMobile(channels, channels, 1, expansion, token_dim, norm_cfg=norm_cfg)
        super().__init__(mobile, channels, channels, token_dim)
        # Replace the parent's bridges / Former: position-aware keys, and head counts of our choosing.
        self.mobile_to_former = PositionalMobileToFormer(channels, token_dim, bridge_heads)
        self.former = Former(token_dim, former_heads)
        self.former_to_mobile = FormerToMobile(channels, token_dim, bridge_heads)

    def forward(self, x: Tensor, tokens: Tensor, pos: Tensor | None = None,
                mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        tokens = self.former(self.mobile_to_former(x, tokens, pos, mask))
        out = self.mobile(x, tokens[:, 0])          # DyReLU from token 0: a (projected) global token
        return self.former_to_mobile(out, tokens), tokens


class MobileFormerDecoder(BaseModule):
    """The E2E-MF head: object-query tokens refined by Mobile-Former blocks over a coarse-to-fine pyramid.

    Args:
        in_channels: Widths of the backbone maps, fine to coarse (as the backbone returns them).
        backbone_token_dim: Width of the backbone's global tokens.
        num_queries: N, the object queries.
        token_dim: d, the width of the head's tokens (and of DETRHead's ``embed_dims``).
        channels: Width of each head level, coarse to fine (one per backbone map).
        num_blocks: Blocks per level, coarse to fine (0 runs none there but still passes the map on).
        expansion: Mobile sub-block expansion (an int, or one per level).
        bridge_heads / former_heads: Attention heads of the bridges / Former.
        positional_encoding: Kwargs of mmdet's ``SinePositionalEncoding`` (``num_feats`` is C_l / 2).
        norm_cfg: Norm of the convs.

    Shape: maps (fine to coarse) [B, C_i, H_i, W_i], global tokens [B, G, d_b], masks per map [B, H_i*W_i]
    or None -> hidden states [sum(num_blocks), B, N, d].
    """

    def __init__(self, in_channels: Sequence[int], backbone_token_dim: int, num_queries: int,
                 token_dim: int = 256, channels: Sequence[int] = (256, 192, 128),
                 num_blocks: Sequence[int] = (2, 2, 2), expansion: float | Sequence[float] = 4,
                 bridge_heads: int = BRIDGE_HEADS, former_heads: int = FORMER_HEADS,
                 positional_encoding: dict | None = None, norm_cfg: dict | None = None,
                 init_cfg: dict | list | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not len(in_channels) == len(channels) == len(num_blocks):
            raise ValueError(f'one head level per backbone map: in_channels={in_channels}, '
                             f'channels={channels}, num_blocks={num_blocks}')
        if sum(num_blocks) == 0:
            raise ValueError('the head needs at least one block')
        expansions = expansion if isinstance(expansion, Sequence) else [expansion] * len(channels)
        norm_cfg = norm_cfg or dict(type='BN')
        self.num_queries = num_queries
        self.queries = nn.Embedding(num_queries, token_dim)
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
        a transformer trained from scratch); norms and the query embedding: PyTorch's."""
        super().init_weights()
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def initial_tokens(self, global_tokens: Tensor) -> Tensor:
        """[B, G, d_b] backbone tokens -> [B, G + N, d]: projected global tokens, then the queries."""
        queries = self.queries.weight.unsqueeze(0).expand(global_tokens.shape[0], -1, -1)
        return torch.cat((self.global_proj(global_tokens), queries), dim=1)

    def forward(self, maps: Sequence[Tensor], tokens: Tensor,
                masks: Sequence[Tensor | None] | None = None) -> Tensor:
        """maps fine to coarse, tokens [B, G + N, d] (from :meth:`initial_tokens`) -> [L, B, N, d]."""
        masks = list(masks) if masks is not None else [None] * len(maps)
        num_global = tokens.shape[1] - self.num_queries
        hidden_states, x = [], None
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
                x, tokens = block(x, tokens, pos, flat_mask)
                hidden_states.append(tokens[:, num_global:])
        return torch.stack(hidden_states)

    def _position(self, level: int, x: Tensor, mask: Tensor | None) -> Tensor:
        """[B, C_l, H, W] sine encoding (normalised to the valid region when ``mask`` [B, H, W] is given).
        Without padding it is the same for every image: computed once and broadcast over the batch."""
        encoding = self.positional_encodings[level]
        if mask is None:
            return encoding(None, input=x[:1]).to(x.dtype)
        return encoding(mask).to(x.dtype)


@MODELS.register_module()
class E2EMobileFormer(DetectionTransformer):
    """E2E-MF: a DETR whose backbone, encoder and decoder are Mobile-Former (see the module docstring).

    Built like mmdet's ``DETR`` (``DetectionTransformer``): ``backbone`` must be a ``MobileFormer`` with
    ``with_tokens=True`` (its maps, fine to coarse, then its global tokens); ``decoder`` holds the
    kwargs of :class:`MobileFormerDecoder` (no ``in_channels``/``backbone_token_dim``/``num_queries``:
    they come from the backbone and ``num_queries``); ``positional_encoding`` optional kwargs of the sine
    encoding; ``encoder`` and ``neck`` must be None (the backbone is the encoder); ``bbox_head`` a
    ``DETRHead`` with ``embed_dims`` = the head's ``token_dim``.

    The four DETR stages map to: ``pre_transformer`` (split maps/tokens, padding masks), ``forward_encoder``
    (nothing: Mobile-Former's backbone already mixes global information through its tokens),
    ``pre_decoder`` (initial tokens), ``forward_decoder`` (the head) -> ``hidden_states`` [L, B, N, d].
    """

    def _init_layers(self) -> None:
        if self.encoder is not None or self.with_neck:
            raise ValueError('E2EMobileFormer has no separate encoder or neck: the Mobile-Former backbone '
                             'and head replace them')
        if not getattr(self.backbone, 'with_tokens', False):
            raise ValueError('E2EMobileFormer needs a MobileFormer backbone built with with_tokens=True')
        head_cfg = dict(self.decoder or {})
        self.decoder = MobileFormerDecoder(
            in_channels=self.backbone.out_channels, backbone_token_dim=self.backbone.token_dim,
            num_queries=self.num_queries, positional_encoding=self.positional_encoding, **head_cfg)
        if self.bbox_head.embed_dims != self.decoder.queries.embedding_dim:
            raise ValueError(f'bbox_head.embed_dims ({self.bbox_head.embed_dims}) must equal the head '
                             f'token_dim ({self.decoder.queries.embedding_dim})')

    def pre_transformer(self, img_feats: tuple[Tensor, ...],
                        batch_data_samples: OptSampleList = None) -> tuple[dict, dict]:
        """Backbone outputs (maps fine to coarse, then tokens [B, G, d_b]) -> encoder and decoder inputs;
        ``masks`` per map [B, H_i, W_i] (True = padding) or None when no image of the batch is padded."""
        *maps, global_tokens = img_feats
        masks = padding_masks(maps, batch_data_samples)
        return dict(global_tokens=global_tokens), dict(maps=maps, masks=masks)

    def forward_encoder(self, global_tokens: Tensor) -> dict:
        """No encoder: the backbone's Mobile-Former blocks already did the global mixing."""
        return dict(global_tokens=global_tokens)

    def pre_decoder(self, global_tokens: Tensor) -> tuple[dict, dict]:
        """Initial head tokens [B, G + N, d]; no extra head inputs."""
        return dict(tokens=self.decoder.initial_tokens(global_tokens)), dict()

    def forward_decoder(self, tokens: Tensor, maps: list[Tensor], masks: list[Tensor] | None) -> dict:
        """-> ``hidden_states`` [L, B, N, d], what ``DETRHead`` takes."""
        return dict(hidden_states=self.decoder(maps, tokens, masks))


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
