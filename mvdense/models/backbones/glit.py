"""GLiT: global-local image transformer backbones (and their supernet mode for the search).

Chen et al., "GLiT: Neural Architecture Search for Global and Local Image Transformer", ICCV 2021,
re-implemented from the paper and the facts of the authors' code (bychen515/GLiT, which has no licence).

A DeiT-shaped isotropic transformer: a 16x16 patch embedding (conv), a class token, a learned position
embedding, a stack of global-local blocks and a final LayerNorm (eps 1e-6). A global-local block is
pre-norm: ``x + DropPath(GLM(LN(x)))`` then ``x + DropPath(FFN(LN(x)))``, where the FFN is
Linear(d -> r d) -> GELU -> Linear(r d -> d) (the paper's text says Swish; the authors' code, followed
here, uses GELU) and the global-local module (GLM) splits the d channels into 3 groups of d/3:

* the **first** ``g`` groups go through multi-head self-attention on those channels only (its own qkv and
  output projection back to g d/3 channels; q/k/v width ``qkv_ratio`` x g d/3, head dim
  ``qkv_ratio`` x d / num_heads, num_heads x g / 3 heads);
* the **last** 3 - g groups go, together, through one convolution module over the token sequence
  (class token first, then the patches in raster order): pointwise Conv1d(C -> 2 E C) -> GLU ->
  depthwise Conv1d(kernel K, zero padding K // 2) -> BatchNorm1d -> Swish -> pointwise Conv1d(E C -> C);
* the two outputs are concatenated in place (global channels first), with no output projection.

Because the convolution runs over the flattened sequence, its 2D reach depends on the grid width: K = 31
spans about 2 rows of a 224x224 input (14 tokens a row) but under one row at 512x512 (32 a row).

Dense use: any input of at least 32x32 (padded at the bottom/right to a multiple of the patch size); the
position embedding, learned for a ``img_size`` grid, is resized bicubically to the token grid; every
returned stage is the block's patch tokens as a [B, d, ceil(H / 16), ceil(W / 16)] map (class token
dropped), the last one after the final LayerNorm. Stages are the blocks: ``out_indices`` and
``frozen_stages`` count blocks, the stem is the patch and position embeddings and the class token.

Supernet mode: a block entry of ``arch`` that is a *list* of block specs becomes a
:class:`GLiTChoiceBlock` holding every candidate with separate weights (SPOS);
:meth:`GLiT.set_subnet` picks one per block.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath
from torch import Tensor, nn

from ...registry import MODELS
from ..layers import FastLinear, FeedForward, attention
from .base import BaseBackbone, check_out_indices, lookup_arch

NUM_GROUPS = 3  # GLiT splits the channels (and heads) in thirds.


@dataclass(frozen=True)
class GLiTBlockSpec:
    """One global-local block.

    Args:
        g: Global groups (0-3): the first g of the 3 channel groups get self-attention, the others the
            convolution module.
        mlp_ratio: FFN hidden width / d (the paper's d_z).
        qkv_ratio: q/k/v width / attended channels (the paper's d_k; the code's e_v); only when g > 0.
        expansion: Convolution module width / its channels (E); only when g < 3.
        kernel_size: Depthwise kernel over the token sequence (K, odd); only when g < 3.
    """

    g: int
    mlp_ratio: float = 4
    qkv_ratio: float | None = None
    expansion: int | None = None
    kernel_size: int | None = None

    def __post_init__(self) -> None:
        if self.g not in range(NUM_GROUPS + 1):
            raise ValueError(f'GLiT block: g (global groups) must be 0..3, got {self.g!r}')
        if self.mlp_ratio is None or self.mlp_ratio <= 0:
            raise ValueError(f'GLiT block: mlp_ratio must be > 0, got {self.mlp_ratio!r}')
        if self.g > 0 and (self.qkv_ratio is None or self.qkv_ratio <= 0):
            raise ValueError(f'GLiT block with g={self.g} needs qkv_ratio > 0, got {self.qkv_ratio!r}')
        if self.g < NUM_GROUPS:
            if not isinstance(self.expansion, int) or self.expansion < 1:
                raise ValueError(f'GLiT block with g={self.g} needs an integer expansion >= 1, '
                                 f'got {self.expansion!r}')
            if not isinstance(self.kernel_size, int) or self.kernel_size < 1 or self.kernel_size % 2 == 0:
                raise ValueError(f'GLiT block with g={self.g} needs an odd kernel_size, got {self.kernel_size!r}')

    @classmethod
    def coerce(cls, spec: GLiTBlockSpec | Mapping) -> GLiTBlockSpec:
        """A spec from a config dict (``dict(g=3, qkv_ratio=1, mlp_ratio=4)``) or a spec."""
        if isinstance(spec, cls):
            return spec
        if isinstance(spec, Mapping):
            unknown = set(spec) - set(cls.__dataclass_fields__)
            if unknown:
                raise ValueError(f'GLiT block spec {dict(spec)}: unknown keys {sorted(unknown)}')
            return cls(**spec)
        raise TypeError(f'a GLiT block spec is a dict or GLiTBlockSpec, got {spec!r}')

    def to_dict(self) -> dict:
        """The config form, without the fields this block type does not use."""
        return {key: value for key, value in asdict(self).items() if value is not None}


B = GLiTBlockSpec
# GLiT-Tiny as released (the authors' searched architecture): d = 192, 3 heads.
ARCHS: dict[str, dict] = {
    'tiny': dict(embed_dim=192, num_heads=3, blocks=(
        B(g=3, qkv_ratio=0.5, mlp_ratio=4),
        B(g=0, mlp_ratio=4, expansion=2, kernel_size=31),
        B(g=1, qkv_ratio=1, mlp_ratio=6, expansion=4, kernel_size=31),
        B(g=3, qkv_ratio=1, mlp_ratio=4),
        B(g=0, mlp_ratio=4, expansion=4, kernel_size=45),
        B(g=1, qkv_ratio=1, mlp_ratio=6, expansion=4, kernel_size=31),
        B(g=3, qkv_ratio=1, mlp_ratio=2),
        B(g=1, qkv_ratio=1, mlp_ratio=2, expansion=4, kernel_size=31),
        B(g=0, mlp_ratio=4, expansion=4, kernel_size=45),
        B(g=3, qkv_ratio=1, mlp_ratio=4),
        B(g=0, mlp_ratio=4, expansion=4, kernel_size=31),
        B(g=3, qkv_ratio=2, mlp_ratio=6),
    )),
}
del B


class GroupAttention(nn.Module):
    """Multi-head self-attention on ``channels`` of the tokens, with its own qkv and output projection.

    Shape: [B, N, C] -> [B, N, C], C = ``channels``; q/k/v are ``inner`` wide, split into ``heads``.
    """

    def __init__(self, channels: int, inner: int, heads: int) -> None:
        super().__init__()
        if inner % heads:
            raise ValueError(f'GLiT attention width {inner} is not divisible by {heads} heads')
        self.heads = heads
        self.qkv = FastLinear(channels, 3 * inner)
        self.proj = FastLinear(inner, channels)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, _ = x.shape
        # [B, N, 3 I] -> [3, B, heads, N, I / heads]
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        out = attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, -1))


class SequenceConv(nn.Module):
    """GLiT's convolution module over the token sequence (Conformer's, without its LayerNorm/dropout).

    pointwise(C -> 2 E C) -> GLU -> depthwise(K, zero padding K // 2) -> BatchNorm1d -> Swish ->
    pointwise(E C -> C), all convs with bias. Shape: [B, N, C] -> [B, N, C].
    """

    def __init__(self, channels: int, expansion: int, kernel_size: int) -> None:
        super().__init__()
        hidden = expansion * channels
        self.pw1 = nn.Conv1d(channels, 2 * hidden, 1)
        self.dw = nn.Conv1d(hidden, hidden, kernel_size, padding=kernel_size // 2, groups=hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.pw2 = nn.Conv1d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.glu(self.pw1(x.transpose(1, 2)), dim=1)          # [B, E C, N]
        return self.pw2(F.silu(self.bn(self.dw(x)))).transpose(1, 2)


class GlobalLocalModule(nn.Module):
    """The first ``g`` thirds of the channels through :class:`GroupAttention`, the rest through
    :class:`SequenceConv`, concatenated in place. Shape: [B, N, d] -> [B, N, d]."""

    def __init__(self, dim: int, num_heads: int, spec: GLiTBlockSpec) -> None:
        super().__init__()
        if dim % NUM_GROUPS or num_heads % NUM_GROUPS:
            raise ValueError(f'GLiT needs embed_dim and num_heads divisible by 3, got {dim} and {num_heads}')
        self.global_channels = dim // NUM_GROUPS * spec.g
        local_channels = dim - self.global_channels
        self.attn = None
        if spec.g > 0:
            inner = int(self.global_channels * spec.qkv_ratio)
            self.attn = GroupAttention(self.global_channels, inner, num_heads // NUM_GROUPS * spec.g)
        self.conv = None
        if local_channels:
            self.conv = SequenceConv(local_channels, spec.expansion, spec.kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        if self.conv is None:
            return self.attn(x)
        if self.attn is None:
            return self.conv(x)
        split = self.global_channels
        return torch.cat((self.attn(x[..., :split]), self.conv(x[..., split:])), dim=-1)


class GLiTBlock(nn.Module):
    """Pre-norm global-local block: x + DropPath(GLM(LN(x))); x + DropPath(FFN(LN(x))).

    Shape: [B, N, d] -> [B, N, d].
    """

    def __init__(self, dim: int, num_heads: int, spec: GLiTBlockSpec, drop_path: float = 0.0,
                 proj_drop: float = 0.0) -> None:
        super().__init__()
        self.spec = spec
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.mixer = GlobalLocalModule(dim, num_heads, spec)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.ffn = FeedForward(dim, int(dim * spec.mlp_ratio), nn.GELU, proj_drop)
        self.ffn_drop = nn.Dropout(proj_drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.mixer(self.norm1(x)))
        return x + self.drop_path(self.ffn_drop(self.ffn(self.norm2(x))))


class GLiTChoiceBlock(nn.Module):
    """A supernet block: every candidate :class:`GLiTBlock` with its own weights; runs ``choice``.

    Shape: [B, N, d] -> [B, N, d].
    """

    def __init__(self, candidates: Iterable[GLiTBlock]) -> None:
        super().__init__()
        self.candidates = nn.ModuleList(candidates)
        self.choice = 0

    @property
    def spec(self) -> GLiTBlockSpec:
        return self.candidates[self.choice].spec

    @property
    def specs(self) -> list[GLiTBlockSpec]:
        return [candidate.spec for candidate in self.candidates]

    def forward(self, x: Tensor) -> Tensor:
        return self.candidates[self.choice](x)


def block_code_flops(spec: GLiTBlockSpec, dim: int, num_tokens: int) -> float:
    """Multiply-adds of one block by the authors' analytic formula (their search constraint).

    Counts the linears, the two attention matmuls and the convolutions; norms, activations and GLU are
    free. As in the authors' code, the first pointwise conv of the convolution module is counted at
    half its size (C -> E C instead of C -> 2 E C), so this is below a true count.
    """
    n = num_tokens
    global_channels = dim // NUM_GROUPS * spec.g
    local_channels = dim - global_channels
    flops = 2 * n * dim * int(dim * spec.mlp_ratio)
    if spec.g:
        inner = int(global_channels * spec.qkv_ratio)
        flops += n * global_channels * 3 * inner + 2 * n * n * inner + n * inner * global_channels
    if local_channels:
        hidden = spec.expansion * local_channels
        flops += n * local_channels * hidden + n * hidden * spec.kernel_size + n * hidden * local_channels
    return flops


def glit_code_flops(specs: Sequence[GLiTBlockSpec], embed_dim: int, input_size: tuple[int, int] = (224, 224),
                    patch_size: int = 16, num_classes: int = 0) -> float:
    """The authors' FLOPs of a whole GLiT (patch embedding + blocks + classifier) at ``input_size``.

    GLiT-Tiny at 224x224 with the 1000-class head: 1332.5 M (the authors' "1.33 G").
    """
    grid = [math.ceil(side / patch_size) for side in input_size]
    patches = grid[0] * grid[1]
    flops = patches * 3 * patch_size ** 2 * embed_dim + embed_dim * num_classes
    return flops + sum(block_code_flops(spec, embed_dim, patches + 1) for spec in specs)


def resize_pos_embed(pos_embed: Tensor, grid: tuple[int, int], new_grid: tuple[int, int]) -> Tensor:
    """[1, 1 + h w, d] -> [1, 1 + h' w', d]: the patch part resized bicubically, the class entry kept."""
    if grid == new_grid:
        return pos_embed
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
    dim = pos_embed.shape[-1]
    patch_pos = patch_pos.reshape(1, *grid, dim).permute(0, 3, 1, 2)
    patch_pos = F.interpolate(patch_pos, size=new_grid, mode='bicubic', align_corners=False)
    return torch.cat((cls_pos, patch_pos.flatten(2).transpose(1, 2)), dim=1)


def parse_blocks(entries: Sequence) -> list[GLiTBlockSpec | list[GLiTBlockSpec]]:
    """Block specs (or, for supernet blocks, lists of candidate specs) from an arch table."""
    parsed = []
    for index, entry in enumerate(entries):
        try:
            if isinstance(entry, (list, tuple)) and not isinstance(entry, GLiTBlockSpec):
                if not entry:
                    raise ValueError('a supernet block needs at least one candidate')
                parsed.append([GLiTBlockSpec.coerce(candidate) for candidate in entry])
            else:
                parsed.append(GLiTBlockSpec.coerce(entry))
        except (TypeError, ValueError) as error:
            raise ValueError(f'GLiT arch, block {index}: {error}') from None
    return parsed


@MODELS.register_module()
class GLiT(BaseBackbone):
    """GLiT backbone for dense prediction (the backbone contract: ``backbones/base.py``).

    Args:
        arch: ``'tiny'`` or a dict ``dict(embed_dim, num_heads, blocks)`` whose ``blocks`` lists one
            entry per block: a spec (``dict(g=..., mlp_ratio=..., qkv_ratio=..., expansion=...,
            kernel_size=...)``, see :class:`GLiTBlockSpec`) or, in supernet mode, a list of candidate specs.
        img_size: Input size the position embedding is learned for (224: the ImageNet weights').
        patch_size: Side of the square patches (16).
        out_indices: Blocks whose patch tokens are returned as maps (stride 16); negative ones count from
            the last block.
        final_norm: Apply the final LayerNorm to the last block's output.
        num_classes: If set, build the ImageNet classifier ``head`` (Linear on the class token) used by
            :meth:`forward_classifier`.
        drop_rate: Dropout before the classifier.
        proj_drop_rate: Dropout after the position embedding and in the FFNs (DeiT's ``drop_rate``; 0 in
            the authors' training).
        drop_path_rate: Stochastic depth, linear from 0 to this value over the blocks (0.1 in the
            authors' ImageNet training).
        frozen_stages: -1 nothing; 0 the patch/position embeddings and class token; k those and blocks
            ``0..k-1``.
        norm_eval: Keep the convolution modules' BatchNorm in eval mode while training.
        pretrained: Deprecated alias of ``init_cfg=dict(type='Pretrained', checkpoint=...)``.
        init_cfg: e.g. ``dict(type='Pretrained', checkpoint='checkpoints/glit_tiny.pth')``.

    Attributes:
        out_channels / out_strides: Channels (d) and stride (the patch size) of each returned map.

    Shape: [B, 3, H, W] (H, W >= 32) -> tuple of [B, d, ceil(H / 16), ceil(W / 16)].
    """

    def __init__(self, arch: str | dict = 'tiny', img_size: int = 224, patch_size: int = 16,
                 out_indices: Sequence[int] = (-1,), final_norm: bool = True, num_classes: int | None = None,
                 drop_rate: float = 0.0, proj_drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 frozen_stages: int = -1, norm_eval: bool = False, pretrained: str | None = None,
                 init_cfg: dict | list | None = None) -> None:
        super().__init__(frozen_stages, norm_eval, pretrained, init_cfg)
        arch = lookup_arch(arch, ARCHS, 'GLiT')
        missing = {'embed_dim', 'num_heads', 'blocks'} - set(arch)
        if missing:
            raise KeyError(f'GLiT arch table lacks {sorted(missing)}')
        self.embed_dim, self.num_heads = arch['embed_dim'], arch['num_heads']
        entries = parse_blocks(arch['blocks'])
        depth = len(entries)
        if depth == 0:
            raise ValueError('GLiT arch has no blocks')
        self.out_indices = check_out_indices([i + depth if i < 0 else i for i in out_indices], depth, 'GLiT')
        self.patch_size = patch_size
        self.final_norm = final_norm
        self.pos_grid = (math.ceil(img_size / patch_size),) * 2

        dim = self.embed_dim
        self.patch_embed = nn.Conv2d(3, dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.pos_grid[0] * self.pos_grid[1], dim))
        self.pos_drop = nn.Dropout(proj_drop_rate)
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(
            self._make_block(entry, rate, proj_drop_rate) for entry, rate in zip(entries, rates))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = None
        if num_classes:
            self.head = nn.Sequential(nn.Dropout(drop_rate), FastLinear(dim, num_classes))
        self.out_channels = [dim] * len(self.out_indices)
        self.out_strides = [patch_size] * len(self.out_indices)
        self.freeze_stages()

    def _make_block(self, entry: GLiTBlockSpec | list[GLiTBlockSpec], drop_path: float,
                    proj_drop: float) -> GLiTBlock | GLiTChoiceBlock:
        if isinstance(entry, list):
            return GLiTChoiceBlock(GLiTBlock(self.embed_dim, self.num_heads, spec, drop_path, proj_drop)
                                   for spec in entry)
        return GLiTBlock(self.embed_dim, self.num_heads, entry, drop_path, proj_drop)

    # -- supernet mode -------------------------------------------------------------------------------
    @property
    def choice_blocks(self) -> list[tuple[int, GLiTChoiceBlock]]:
        """(block index, block) of every supernet block."""
        return [(i, block) for i, block in enumerate(self.blocks) if isinstance(block, GLiTChoiceBlock)]

    def set_subnet(self, choices: Sequence[int]) -> None:
        """Selects candidate ``choices[j]`` in the j-th supernet block."""
        blocks = self.choice_blocks
        if len(choices) != len(blocks):
            raise ValueError(f'GLiT supernet has {len(blocks)} searchable blocks, got {len(choices)} choices')
        for (index, block), choice in zip(blocks, choices):
            if not 0 <= choice < len(block.candidates):
                raise ValueError(f'GLiT block {index}: choice {choice} is not in 0..{len(block.candidates) - 1}')
            block.choice = int(choice)

    @property
    def block_specs(self) -> list[GLiTBlockSpec]:
        """The spec each block runs now (in supernet mode: the selected candidates)."""
        return [block.spec for block in self.blocks]

    def code_flops(self, input_size: tuple[int, int] = (224, 224)) -> float:
        """The authors' FLOPs formula for the blocks now selected, at ``input_size``."""
        num_classes = self.head[-1].out_features if self.head is not None else 0
        return glit_code_flops(self.block_specs, self.embed_dim, input_size, self.patch_size, num_classes)

    # -- the backbone contract ----------------------------------------------------------------------
    def stem_modules(self) -> list[nn.Module | nn.Parameter]:
        return [self.patch_embed, self.cls_token, self.pos_embed]

    def stage_modules(self) -> list[list[nn.Module]]:
        stages = [[block] for block in self.blocks]
        stages[-1].append(self.norm)
        return stages

    def init_from_scratch(self) -> None:
        """The authors' (DeiT's) initialisation: truncated normal (std 0.02) for linears, class token and
        position embedding, zero biases, LayerNorm 1/0; convolutions and BatchNorm keep PyTorch's."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def embed(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """[B, 3, H, W] -> (tokens [B, 1 + h w, d] with the class token first, grid (h, w))."""
        height, width = x.shape[-2:]
        if min(height, width) < 32:
            raise ValueError(f'GLiT needs inputs of at least 32x32, got {height}x{width}')
        patch = self.patch_size
        pad_h, pad_w = -height % patch, -width % patch
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = self.patch_embed(x)
        grid = (x.shape[-2], x.shape[-1])
        tokens = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x.flatten(2).transpose(1, 2)), dim=1)
        return self.pos_drop(tokens + resize_pos_embed(self.pos_embed, self.pos_grid, grid)), grid

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """[B, 3, H, W] -> the patch tokens of ``out_indices`` as [B, d, h, w] maps."""
        tokens, (height, width) = self.embed(x)
        outs = []
        last = len(self.blocks) - 1
        for index, block in enumerate(self.blocks[:self.out_indices[-1] + 1]):
            tokens = block(tokens)
            if index in self.out_indices:
                out = self.norm(tokens) if index == last and self.final_norm else tokens
                outs.append(out[:, 1:].transpose(1, 2).reshape(x.shape[0], -1, height, width))
        return tuple(outs)

    def forward_classifier(self, x: Tensor) -> Tensor:
        """[B, 3, H, W] -> ImageNet logits [B, num_classes] from the class token; needs ``num_classes``."""
        if self.head is None:
            raise RuntimeError('GLiT was built without num_classes: there is no classifier')
        tokens, _ = self.embed(x)
        for block in self.blocks:
            tokens = block(tokens)
        return self.head(self.norm(tokens)[:, 0])
