"""Segment Anything (SAM) building blocks: ViT image encoder, two-way-transformer mask decoder and
the random-Fourier positional encoding.

Module and parameter names follow facebookresearch/segment-anything
(``segment_anything/modeling/{image_encoder,mask_decoder,transformer,common,prompt_encoder}.py``)
so that the ``image_encoder.*`` / ``mask_decoder.*`` entries of ``sam_vit_{h,l,b}_*.pth`` load by
name. The code is written from the architecture description, not copied; sources of constants
are cited where they appear.

Shapes use ``N`` for a batch of images (frames), ``h, w`` for the token grid
(``img_size // patch_size``), ``C`` for the ViT width and ``D`` for the decoder width (256).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# Per-variant encoder sizes: segment_anything/build_sam.py (build_sam_vit_{h,l,b}).
# Shared by all three: img 1024, patch 16, window 14, mlp ratio 4, qkv bias, relative positions,
# LayerNorm eps 1e-6, neck / prompt width 256.


@dataclass(frozen=True)
class SamViTSize:
    """Width, depth, heads and global-attention blocks of one SAM ViT variant."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]


SAM_VIT_SIZES: dict[str, SamViTSize] = {
    "vit_h": SamViTSize(1280, 32, 16, (7, 15, 23, 31)),
    "vit_l": SamViTSize(1024, 24, 16, (5, 11, 17, 23)),
    "vit_b": SamViTSize(768, 12, 12, (2, 5, 8, 11)),
}


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of ``[N, C, H, W]`` maps (SAM ``common.LayerNorm2d``)."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W] -> [N, C, H, W]``."""
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class MLPBlock(nn.Module):
    """``lin2(act(lin1(x)))`` on the last axis (SAM ``common.MLPBlock``)."""

    def __init__(self, embedding_dim: int, mlp_dim: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., embedding_dim] -> [..., embedding_dim]``."""
        return self.lin2(self.act(self.lin1(x)))


# ----------------------------------------------------------------------------------------------
# Image encoder
# ----------------------------------------------------------------------------------------------


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Cut a token grid into non-overlapping ``window × window`` tiles, zero-padding the bottom
    and right edges to a multiple of ``window``.

    Args:
        x: ``[N, H, W, C]`` tokens.
        window: tile side.

    Returns:
        ``[N * nH * nW, window, window, C]`` tiles (row-major over tiles) and the padded size
        ``(Hp, Wp)``.
    """
    n, h, w, c = x.shape
    pad_h, pad_w = -h % window, -w % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    tiles = x.view(n, hp // window, window, wp // window, window, c).transpose(2, 3)
    return tiles.reshape(-1, window, window, c), (hp, wp)


def window_unpartition(
    tiles: torch.Tensor, window: int, padded_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`window_partition`: reassemble tiles and drop the padding.

    Args:
        tiles: ``[N * nH * nW, window, window, C]``.
        window: tile side.
        padded_hw: ``(Hp, Wp)`` returned by :func:`window_partition`.
        hw: original ``(H, W)``.

    Returns:
        ``[N, H, W, C]``.
    """
    hp, wp = padded_hw
    h, w = hw
    n_h, n_w = hp // window, wp // window
    n = tiles.shape[0] // (n_h * n_w)
    c = tiles.shape[-1]
    x = tiles.view(n, n_h, n_w, window, window, c).transpose(2, 3).reshape(n, hp, wp, c)
    return x[:, :h, :w].contiguous()


def relative_position_table(size: int, table: torch.Tensor) -> torch.Tensor:
    """Embeddings for every (query, key) offset along one axis of a ``size``-long grid.

    Args:
        size: grid length along the axis (queries and keys share the grid).
        table: ``[2 * size - 1, d]`` learned embeddings indexed by offset ``q - k + size - 1``.

    Returns:
        ``[size, size, d]`` with ``out[i, j] = table[i - j + size - 1]``.
    """
    if table.shape[0] != 2 * size - 1:
        raise ValueError(
            f"relative-position table has {table.shape[0]} rows but a grid of {size} needs "
            f"{2 * size - 1}: the block was built for a different input / window size"
        )
    positions = torch.arange(size, device=table.device)
    return table[positions[:, None] - positions[None, :] + size - 1]


def decomposed_rel_pos_bias(
    q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor, hw: tuple[int, int]
) -> torch.Tensor:
    """Additive attention bias of decomposed relative positions (MViTv2; SAM
    ``image_encoder.add_decomposed_rel_pos``): for query at (hq, wq) and key at (hk, wk),
    ``q · Rh[hq - hk] + q · Rw[wq - wk]`` with the *unscaled* query.

    Args:
        q: ``[M, H * W, d]`` queries (``M`` = images × heads).
        rel_pos_h: ``[2H - 1, d]``; rel_pos_w: ``[2W - 1, d]``.
        hw: ``(H, W)`` grid of queries and keys.

    Returns:
        ``[M, H * W, H * W]`` bias.
    """
    h, w = hw
    m, _, d = q.shape
    q_grid = q.reshape(m, h, w, d)
    bias_h = torch.einsum("mhwd,hkd->mhwk", q_grid, relative_position_table(h, rel_pos_h))
    bias_w = torch.einsum("mhwd,wkd->mhwk", q_grid, relative_position_table(w, rel_pos_w))
    return (bias_h[:, :, :, :, None] + bias_w[:, :, :, None, :]).reshape(m, h * w, h * w)


class ViTAttention(nn.Module):
    """Multi-head self-attention over a token grid with decomposed relative positions
    (SAM ``image_encoder.Attention``; keys ``qkv``, ``proj``, ``rel_pos_h``, ``rel_pos_w``).

    Computed with ``scaled_dot_product_attention`` and the relative-position bias as an additive
    mask, which equals SAM's ``softmax(q·kᵀ·scale + bias)·v`` up to float rounding.
    """

    def __init__(
        self, dim: int, num_heads: int, *, qkv_bias: bool, rel_pos_size: tuple[int, int] | None
    ) -> None:
        """``rel_pos_size``: the grid the block attends over (window or full grid); ``None``
        disables relative positions."""
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = rel_pos_size is not None
        if rel_pos_size is not None:
            # Zero init as SAM (rel_pos_zero_init=True); real values come from the checkpoint.
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * rel_pos_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * rel_pos_size[1] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, H, W, C] -> [N, H, W, C]``."""
        n, h, w, c = x.shape
        head_dim = c // self.num_heads
        qkv = self.qkv(x).reshape(n, h * w, 3, self.num_heads, head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [N, heads, HW, head_dim]
        bias = None
        if self.use_rel_pos:
            flat_q = q.reshape(n * self.num_heads, h * w, head_dim)
            bias = decomposed_rel_pos_bias(flat_q, self.rel_pos_h, self.rel_pos_w, (h, w))
            bias = bias.view(n, self.num_heads, h * w, h * w)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(n, h, w, c))


class ViTBlock(nn.Module):
    """Pre-norm transformer block with windowed or global attention (SAM ``image_encoder.Block``;
    keys ``norm1``, ``attn``, ``norm2``, ``mlp.lin1``, ``mlp.lin2``).

    With ``window_size > 0`` the grid is zero-padded to a multiple of the window *after*
    ``norm1`` and the padded tokens take part in attention as keys, exactly as in SAM (no mask).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float,
        qkv_bias: bool,
        use_rel_pos: bool,
        window_size: int,
        grid_size: tuple[int, int],
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        attended = (window_size, window_size) if window_size > 0 else grid_size
        self.attn = ViTAttention(
            dim, num_heads, qkv_bias=qkv_bias, rel_pos_size=attended if use_rel_pos else None
        )
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), nn.GELU)
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, H, W, C] -> [N, H, W, C]``."""
        y = self.norm1(x)
        if self.window_size > 0:
            hw = (y.shape[1], y.shape[2])
            tiles, padded_hw = window_partition(y, self.window_size)
            y = window_unpartition(self.attn(tiles), self.window_size, padded_hw, hw)
        else:
            y = self.attn(y)
        x = x + y
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection (SAM ``image_encoder.PatchEmbed``; key ``proj``)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W] -> [N, H / p, W / p, C]`` (channels last)."""
        return self.proj(x).permute(0, 2, 3, 1)


class ImageEncoderViT(nn.Module):
    """SAM's ViT image encoder with an optional per-block prompt hook.

    Keys: ``patch_embed.proj``, ``pos_embed`` ``[1, h, w, C]``, ``blocks.{i}.*``,
    ``neck.{0,1,2,3}`` (conv1×1 C→out, LayerNorm2d, conv3×3 out→out, LayerNorm2d, no conv bias),
    and, if given, ``prompt_generator.*``.

    ``prompt_generator`` (optional) maps a conditioning tensor to ``depth`` offsets ``[N, C]``;
    offset ``i`` is added to every token right before block ``i`` (after the absolute position
    embedding) — the SAMA-AVS audio adapters (anno-free-AVS
    ``models/mmseg/models/sam/image_encoder.py::ImageEncoderViT.forward``).
    """

    def __init__(
        self,
        *,
        img_size: int = 1024,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 1280,
        depth: int = 32,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        qkv_bias: bool = True,
        use_rel_pos: bool = True,
        window_size: int = 14,
        global_attn_indexes: Sequence[int] = (7, 15, 23, 31),
        prompt_generator: nn.Module | None = None,
    ) -> None:
        super().__init__()
        bad = [i for i in global_attn_indexes if not 0 <= i < depth]
        if bad:
            raise ValueError(f"global_attn_indexes {bad} are outside 0..{depth - 1}")
        self.img_size = img_size
        self.depth = depth
        grid = (img_size // patch_size, img_size // patch_size)
        self.grid_size = grid
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid[0], grid[1], embed_dim))
        self.blocks = nn.ModuleList(
            ViTBlock(
                embed_dim,
                num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                use_rel_pos=use_rel_pos,
                window_size=0 if i in global_attn_indexes else window_size,
                grid_size=grid,
            )
            for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )
        self.prompt_generator = prompt_generator

    def forward(self, images: torch.Tensor, prompt_input: torch.Tensor | None = None) -> torch.Tensor:
        """Encode images.

        Args:
            images: ``[N, 3, img_size, img_size]`` normalised images.
            prompt_input: input of ``prompt_generator`` (e.g. ``[N, 128]`` audio embeddings);
                required if and only if the encoder has a prompt generator.

        Returns:
            ``[N, out_chans, h, w]`` image embeddings (``h = w = img_size / patch_size``).
        """
        if images.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(
                f"image encoder expects {self.img_size}x{self.img_size} images, "
                f"got {tuple(images.shape[-2:])}"
            )
        block_offsets: Sequence[torch.Tensor] | None = None
        if self.prompt_generator is not None:
            if prompt_input is None:
                raise ValueError("this image encoder has a prompt generator: pass prompt_input")
            block_offsets = self.prompt_generator(prompt_input)
        elif prompt_input is not None:
            raise ValueError("prompt_input given but the image encoder has no prompt generator")
        x = self.patch_embed(images) + self.pos_embed
        for i, block in enumerate(self.blocks):
            if block_offsets is not None:
                x = x + block_offsets[i][:, None, None, :]
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))


# ----------------------------------------------------------------------------------------------
# Positional encoding and mask decoder
# ----------------------------------------------------------------------------------------------


class PositionEmbeddingRandom(nn.Module):
    """Random-Fourier positional encoding (SAM ``prompt_encoder.PositionEmbeddingRandom``).

    Buffer ``positional_encoding_gaussian_matrix`` ``[2, num_pos_feats]`` ~ N(0, 1); a point
    ``(x, y) ∈ [0, 1]²`` maps to ``[sin(2π·(2p−1)·G), cos(2π·(2p−1)·G)]`` with ``p = (x, y)``.
    """

    def __init__(self, num_pos_feats: int = 128) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_pos_feats))

    def forward(self, hw: tuple[int, int]) -> torch.Tensor:
        """Encoding of the pixel centres of an ``h × w`` grid: ``[2 * num_pos_feats, h, w]``."""
        h, w = hw
        gauss = self.positional_encoding_gaussian_matrix
        ys = (torch.arange(h, device=gauss.device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=gauss.device, dtype=torch.float32) + 0.5) / w
        coords = torch.stack(torch.broadcast_tensors(xs[None, :], ys[:, None]), dim=-1)
        proj = 2 * math.pi * ((2 * coords - 1) @ gauss)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1).permute(2, 0, 1)


class DecoderAttention(nn.Module):
    """Multi-head attention whose projections may shrink the width by ``downsample_rate``
    (SAM ``transformer.Attention``; keys ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``)."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        internal_dim = embedding_dim // downsample_rate
        if internal_dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the attention width {internal_dim}")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(embedding_dim, internal_dim)
        self.k_proj = nn.Linear(embedding_dim, internal_dim)
        self.v_proj = nn.Linear(embedding_dim, internal_dim)
        self.out_proj = nn.Linear(internal_dim, embedding_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        n, length, c = x.shape
        return x.reshape(n, length, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``q [N, Lq, D]``, ``k, v [N, Lk, D]`` -> ``[N, Lq, D]``."""
        out = F.scaled_dot_product_attention(
            self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        )
        n, heads, length, head_dim = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(n, length, heads * head_dim))


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token→image cross-attention, token MLP, image→token cross-attention,
    each followed by a post-LayerNorm (SAM ``transformer.TwoWayAttentionBlock``)."""

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        *,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = DecoderAttention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = DecoderAttention(
            embedding_dim, num_heads, attention_downsample_rate
        )
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, nn.ReLU)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = DecoderAttention(
            embedding_dim, num_heads, attention_downsample_rate
        )
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor, key_pe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``queries [N, P, D]``, ``keys [N, hw, D]`` (+ same-shaped PEs) -> updated both."""
        if self.skip_first_layer_pe:  # the first layer replaces the tokens by their self-attention
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        keys_with_pe = keys + key_pe
        queries = self.norm2(
            queries + self.cross_attn_token_to_image(queries + query_pe, keys_with_pe, keys)
        )
        queries = self.norm3(queries + self.mlp(queries))
        keys = self.norm4(
            keys + self.cross_attn_image_to_token(keys_with_pe, queries + query_pe, queries)
        )
        return queries, keys


class TwoWayTransformer(nn.Module):
    """SAM ``transformer.TwoWayTransformer``: ``depth`` two-way blocks, then a final
    token→image attention and LayerNorm (keys ``layers.{i}``, ``final_attn_token_to_image``,
    ``norm_final_attn``)."""

    def __init__(
        self,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim,
                num_heads,
                mlp_dim,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=i == 0,
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = DecoderAttention(
            embedding_dim, num_heads, attention_downsample_rate
        )
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``image_embedding [N, D, h, w]``, ``image_pe [N or 1, D, h, w]``,
        ``point_embedding [N, P, D]`` -> (tokens ``[N, P, D]``, image tokens ``[N, h*w, D]``)."""
        keys = image_embedding.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)
        attended = self.final_attn_token_to_image(queries + point_embedding, keys + key_pe, keys)
        return self.norm_final_attn(queries + attended), keys


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them (SAM ``mask_decoder.MLP``; key
    ``layers.{i}``)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., input_dim] -> [..., output_dim]``."""
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x)


class MaskDecoder(nn.Module):
    """SAM ``mask_decoder.MaskDecoder``: IoU token + ``num_multimask_outputs + 1`` mask tokens run
    through the two-way transformer with the prompt tokens; the image tokens are upscaled ×4 and
    dotted with per-token hypernetwork outputs.

    Keys: ``transformer.*``, ``iou_token`` ``[1, D]``, ``mask_tokens`` ``[M, D]``,
    ``output_upscaling.{0,1,3}`` (ConvT D→D/4, LayerNorm2d, GELU, ConvT D/4→D/8, GELU),
    ``output_hypernetworks_mlps.{m}.layers.{0,1,2}``, ``iou_prediction_head.layers.{0,1,2}``.
    """

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: TwoWayTransformer,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.transformer = transformer
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
            for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth
        )

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict masks for each image from its own prompts.

        Args:
            image_embeddings: ``[N, D, h, w]``.
            image_pe: ``[1, D, h, w]`` dense positional encoding.
            sparse_prompt_embeddings: ``[N, S, D]`` (``S`` may be 0).
            dense_prompt_embeddings: ``[N or 1, D, h, w]``.
            multimask_output: ``False`` -> mask token 0 only (``[N, 1, 4h, 4w]``);
                ``True`` -> tokens 1.. (``[N, M - 1, 4h, 4w]``), as in SAM.

        Returns:
            low-resolution mask logits ``[N, k, 4h, 4w]`` and IoU predictions ``[N, k]``.
        """
        n, dim, h, w = image_embeddings.shape
        selected = range(1, self.num_mask_tokens) if multimask_output else range(0, 1)
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.expand(n, -1, -1), sparse_prompt_embeddings], dim=1)
        src = image_embeddings + dense_prompt_embeddings
        token_out, image_tokens = self.transformer(src, image_pe, tokens)

        upscaled = self.output_upscaling(image_tokens.transpose(1, 2).reshape(n, dim, h, w))
        # Only the selected tokens' hypernetworks are evaluated: the others do not reach the output.
        hyper_in = torch.stack(
            [self.output_hypernetworks_mlps[m](token_out[:, 1 + m]) for m in selected], dim=1
        )
        masks = (hyper_in @ upscaled.flatten(2)).view(n, len(selected), *upscaled.shape[-2:])
        iou_pred = self.iou_prediction_head(token_out[:, 0])[:, selected.start : selected.stop]
        return masks, iou_pred
