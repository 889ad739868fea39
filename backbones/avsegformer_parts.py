"""AVSegFormer head (``AVSegHead``) and its parts, with the original module names.

Facts from vvvb-github/AVSegFormer (commit 7083cb6): ``model/head/AVSegHead.py``,
``model/utils/transformer.py``, ``model/utils/query_generator.py``,
``model/utils/fusion_block.py``, ``model/utils/positional_encoding.py``. Attribute names follow
those files so that the official ``head.*`` checkpoint keys map 1:1 onto this module. The unused
original modules ``fpn`` and ``attn_fc`` are not built.

Shapes: N = frames in the batch (B*T; AVSegFormer is per frame), E = ``embed_dim`` (256),
Q = ``num_queries`` (300), K = classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from backbones.deform_attn import MSDeformAttn

# The deformable encoder runs over backbone stages 2..4 (strides 8/16/32): AVSegHead
# ``valid_indices=[1, 2, 3]``. Stage 1 (stride 4) only feeds the mask feature.
ENCODER_STAGES = (1, 2, 3)


@dataclass(frozen=True)
class AVSegHeadConfig:
    """Sizes of the AVSegFormer head. Defaults are the original (``config/*/AVSegFormer_*.py``
    and constants hard-coded in ``AVSegHead.py``).

    Attributes:
        in_channels: channels of the 4 backbone stages (PVT-v2-B5: 64/128/320/512).
        num_classes: K output channels (1 for S4/MS3, 71 for AVSS).
        embed_dim: E, transformer width (``embed_dim=256``).
        num_queries: Q, ``query_num=300``.
        num_heads: attention heads everywhere (8).
        encoder_layers / decoder_layers: transformer depth (6 / 6).
        generator_layers: audio query generator depth (6).
        ffn_dim: encoder/decoder FFN width (2048).
        generator_ffn_dim: query generator FFN width (``hidden_dim=1024``).
        mask_mlp_dim: hidden width of ``mlp`` (``MLP(query_num, 2048, embed_dim, 3)``).
        fc_dims: hidden channels of the ``fc`` prediction head (128, 32).
        num_points: deformable sampling points per head and level (4).
        dropout: encoder/decoder dropout (0.1).
        pos_temperature: sine positional encoding temperature (1e4).
    """

    in_channels: tuple[int, int, int, int] = (64, 128, 320, 512)
    num_classes: int = 1
    embed_dim: int = 256
    num_queries: int = 300
    num_heads: int = 8
    encoder_layers: int = 6
    decoder_layers: int = 6
    generator_layers: int = 6
    ffn_dim: int = 2048
    generator_ffn_dim: int = 1024
    mask_mlp_dim: int = 2048
    fc_dims: tuple[int, int] = (128, 32)
    num_points: int = 4
    dropout: float = 0.1
    pos_temperature: float = 10000.0


def sine_positional_encoding(
    height: int, width: int, num_feats: int, temperature: float, device: torch.device
) -> torch.Tensor:
    """DETR sine encoding of an unpadded ``height x width`` map, not normalised
    (``positional_encoding.py::SinePositionalEncoding`` with ``normalize=False``).

    Positions count from 1; channel ``2i`` is ``sin(p / T^(2i/F))`` and ``2i+1`` is
    ``cos(p / T^(2i/F))``; the y encoding comes first, then x.

    Returns:
        ``[height * width, 2 * num_feats]`` (row-major positions).
    """
    y_pos = torch.arange(1, height + 1, dtype=torch.float32, device=device)
    x_pos = torch.arange(1, width + 1, dtype=torch.float32, device=device)
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * (dim_t // 2) / num_feats)

    def encode(pos: torch.Tensor) -> torch.Tensor:  # [L] -> [L, num_feats]
        angles = pos[:, None] / dim_t
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)

    pos_y = encode(y_pos)[:, None, :].expand(height, width, num_feats)
    pos_x = encode(x_pos)[None, :, :].expand(height, width, num_feats)
    return torch.cat((pos_y, pos_x), dim=2).reshape(height * width, 2 * num_feats)


def encoder_reference_points(
    spatial_shapes: list[tuple[int, int]], device: torch.device
) -> torch.Tensor:
    """Pixel centres of every level, normalised to [0, 1] as ``(x, y)``
    (``transformer.py::AVSTransformerEncoder.get_reference_points``; no padding, so the valid
    ratios are 1 and every level sees the same point).

    Returns:
        ``[S, L, 2]`` with ``S = sum(H_l * W_l)``.
    """
    points = []
    for h, w in spatial_shapes:
        ref_y, ref_x = torch.meshgrid(
            (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h,
            (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w,
            indexing="ij",
        )
        points.append(torch.stack((ref_x.reshape(-1), ref_y.reshape(-1)), -1))
    return torch.cat(points, 0)[:, None, :].expand(-1, len(spatial_shapes), -1)


class _PostNormFFN(nn.Module):
    """``x + Dropout(Linear(Dropout(GELU(Linear(x)))))`` followed by a LayerNorm (the ``ffn``
    method shared by the original encoder and decoder layers)."""

    def __init__(self, dim: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.activation = nn.GELU()
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.ffn_dropout_inner = nn.Dropout(dropout)
        self.ffn_dropout_out = nn.Dropout(dropout)

    def _ffn(self, x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        hidden = self.ffn_dropout_inner(self.activation(self.linear1(x)))
        return norm(x + self.ffn_dropout_out(self.linear2(hidden)))


class DeformableEncoderLayer(_PostNormFFN):
    """Post-norm layer: multi-scale deformable self-attention (query = src + pos, value = src),
    then FFN (``transformer.py::AVSTransformerEncoderLayer``)."""

    def __init__(
        self, dim: int, ffn_dim: int, dropout: float, num_levels: int, num_heads: int,
        num_points: int,
    ):
        super().__init__(dim, ffn_dim, dropout)
        self.self_attn = MSDeformAttn(dim, num_levels, num_heads, num_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(
        self,
        src: torch.Tensor,
        pos: torch.Tensor,
        reference_points: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        """src, pos: ``[N, S, E]``; reference_points: ``[N, S, L, 2]``. Returns ``[N, S, E]``."""
        attended = self.self_attn(src + pos, reference_points, src, spatial_shapes)
        src = self.norm1(src + self.dropout1(attended))
        return self._ffn(src, self.norm2)


class DecoderLayer(_PostNormFFN):
    """Post-norm layer: self-attention over the queries, cross-attention to the flattened encoder
    memory (no positional embedding), FFN (``transformer.py::AVSTransformerDecoderLayer``)."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float):
        super().__init__(dim, ffn_dim, dropout)
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """query: ``[N, Q, E]``; memory: ``[N, S, E]``. Returns ``[N, Q, E]``."""
        out = self.self_attn(query, query, query, need_weights=False)[0]
        query = self.norm1(query + self.dropout1(out))
        out = self.cross_attn(query, memory, memory, need_weights=False)[0]
        query = self.norm2(query + self.dropout2(out))
        return self._ffn(query, self.norm3)


class _LayerStack(nn.Module):
    """Holds ``layers`` (the original ``AVSTransformerEncoder``/``Decoder`` key prefix)."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)


class Transformer(nn.Module):
    """Deformable encoder over strides 8/16/32 + standard decoder
    (``transformer.py::AVSTransformer``)."""

    def __init__(self, cfg: AVSegHeadConfig):
        super().__init__()
        self.encoder = _LayerStack([
            DeformableEncoderLayer(
                cfg.embed_dim, cfg.ffn_dim, cfg.dropout, len(ENCODER_STAGES), cfg.num_heads,
                cfg.num_points,
            )
            for _ in range(cfg.encoder_layers)
        ])
        self.decoder = _LayerStack([
            DecoderLayer(cfg.embed_dim, cfg.num_heads, cfg.ffn_dim, cfg.dropout)
            for _ in range(cfg.decoder_layers)
        ])

    def forward(
        self,
        query: torch.Tensor,
        src: torch.Tensor,
        pos: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query: ``[N, Q, E]``; src, pos: ``[N, S, E]``.

        Returns:
            memory ``[N, S, E]`` and the last decoder output ``[N, Q, E]`` (the only one the
            released head uses).
        """
        reference_points = encoder_reference_points(spatial_shapes, src.device)
        reference_points = reference_points[None].expand(src.shape[0], -1, -1, -1)
        memory = src
        for layer in self.encoder.layers:
            memory = layer(memory, pos, reference_points, spatial_shapes)
        out = query
        for layer in self.decoder.layers:
            out = layer(out, memory)
        return memory, out


class QueryGeneratorLayer(nn.Module):
    """Self-attention -> cross-attention to the audio token -> FFN (GELU), each post-LN, with
    bias-free attention (``query_generator.py::AttentionLayer``)."""

    def __init__(self, dim: int, num_heads: int, hidden_dim: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, bias=False, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, bias=False, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, dim))
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, query: torch.Tensor, audio_token: torch.Tensor) -> torch.Tensor:
        """query: ``[N, Q, E]``; audio_token: ``[N, 1, E]``. Returns ``[N, Q, E]``."""
        query = self.norm1(query + self.self_attn(query, query, query, need_weights=False)[0])
        attended = self.cross_attn(query, audio_token, audio_token, need_weights=False)[0]
        query = self.norm2(query + attended)
        return self.norm3(query + self.ffn(query))


class AudioQueryGenerator(nn.Module):
    """Q learnable queries refined by the audio token
    (``query_generator.py::AttentionGenerator``)."""

    def __init__(self, cfg: AVSegHeadConfig):
        super().__init__()
        self.query = nn.Embedding(cfg.num_queries, cfg.embed_dim)
        self.layers = nn.ModuleList([
            QueryGeneratorLayer(cfg.embed_dim, cfg.num_heads, cfg.generator_ffn_dim)
            for _ in range(cfg.generator_layers)
        ])

    def forward(self, audio_token: torch.Tensor) -> torch.Tensor:
        """audio_token: ``[N, 1, E]``. Returns queries ``[N, Q, E]``."""
        query = self.query.weight[None].expand(audio_token.shape[0], -1, -1)
        for layer in self.layers:
            query = layer(query, audio_token)
        return query


class CrossModalMixer(nn.Module):
    """Audio-driven channel gate on the mask feature (``fusion_block.py::CrossModalMixer``).

    The audio token attends over the pixels (one query, softmax over H*W per head, scale
    ``(E/heads)^-0.5``); the attended vector goes through ``proj`` and a sigmoid and multiplies
    the feature map channel-wise. There is no residual: a zero gate zeroes the feature.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.kv_proj = nn.Linear(dim, dim * 2, bias=False)
        self.proj = nn.Linear(dim, dim)

    def gate(self, feature_map: torch.Tensor, audio_token: torch.Tensor) -> torch.Tensor:
        """feature_map: ``[N, E, h, w]``; audio_token: ``[N, 1, E]``. Returns the gate ``[N, E]``
        in (0, 1)."""
        n, c = feature_map.shape[:2]
        heads, head_dim = self.num_heads, c // self.num_heads
        pixels = feature_map.flatten(2).transpose(1, 2)  # [N, hw, E]
        q = self.q_proj(audio_token).view(n, 1, heads, head_dim).transpose(1, 2)  # [N, M, 1, d]
        k, v = self.kv_proj(pixels).view(n, -1, 2, heads, head_dim).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)  # [N, M, 1, hw]
        attended = (attn @ v).transpose(1, 2).reshape(n, c)
        return self.proj(attended).sigmoid()

    def forward(self, feature_map: torch.Tensor, audio_token: torch.Tensor) -> torch.Tensor:
        """Returns ``feature_map * gate`` ``[N, E, h, w]``."""
        return feature_map * self.gate(feature_map, audio_token)[:, :, None, None]


class MaskMLP(nn.Module):
    """1x1 convs Q -> hidden -> hidden -> E with ReLU between (``AVSegHead.py::MLP``)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 3):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Conv2d(a, b, kernel_size=1) for a, b in zip(dims, dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x)


class Upsample(nn.Module):
    """Bilinear resize by a fixed factor (``align_corners=False``); no parameters."""

    def __init__(self, scale_factor: int):
        super().__init__()
        self.scale_factor = scale_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(
            x, scale_factor=self.scale_factor, mode="bilinear", align_corners=False
        )


def _conv_gn(in_ch: int, out_ch: int, kernel_size: int) -> list[nn.Module]:
    """Conv (same padding) + GroupNorm(32), as in ``in_proj``/``lateral_conv``/``out_conv``."""
    conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2)
    return [conv, nn.GroupNorm(32, out_ch)]


class AVSegHead(nn.Module):
    """The AVSegFormer head (``AVSegHead.py::AVSegHead``, released version).

    ``forward(feats, audio_token)``: ``in_proj`` (1x1 conv + GN) on the 4 stages; stages 2-4 with
    sine + level embeddings through the deformable encoder; Q audio queries
    (``query_generator`` + ``learnable_query``) through the decoder; mask feature = ``out_conv``(
    ``lateral_conv``(stage-1) + bilinear-upsampled level-0 memory), gated by ``fusion_block``;
    prediction = ``fc``(mask feature + ``mlp``(einsum(queries, mask feature))).
    """

    def __init__(self, cfg: AVSegHeadConfig):
        super().__init__()
        if len(cfg.in_channels) != 4:
            raise ValueError(
                f"AVSegHead needs 4 backbone stages, got in_channels {cfg.in_channels}"
            )
        e = cfg.embed_dim
        self.cfg = cfg
        self.level_embed = nn.Parameter(torch.empty(len(ENCODER_STAGES), e))
        self.learnable_query = nn.Embedding(cfg.num_queries, e)
        self.query_generator = AudioQueryGenerator(cfg)
        self.transformer = Transformer(cfg)
        self.in_proj = nn.ModuleList(nn.Sequential(*_conv_gn(c, e, 1)) for c in cfg.in_channels)
        self.mlp = MaskMLP(cfg.num_queries, cfg.mask_mlp_dim, e)
        self.fusion_block = CrossModalMixer(e, cfg.num_heads)
        self.lateral_conv = nn.Sequential(*_conv_gn(e, e, 1))
        self.out_conv = nn.Sequential(*_conv_gn(e, e, 3), nn.ReLU(inplace=True))
        hidden1, hidden2 = cfg.fc_dims
        self.fc = nn.Sequential(
            nn.Conv2d(e, hidden1, kernel_size=3, padding=1),
            Upsample(4),
            nn.Conv2d(hidden1, hidden2, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden2, cfg.num_classes, kernel_size=1, bias=False),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Original init (``AVSegHead._reset_parameters``): Xavier-uniform on every parameter with
        more than one dimension, then the Deformable-DETR init of each ``MSDeformAttn``, then
        N(0, 1) ``level_embed``."""
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        nn.init.normal_(self.level_embed)

    def forward(
        self, feats: list[torch.Tensor], audio_token: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Args:
            feats: 4 backbone maps ``[N, C_i, H/2^(i+2), W/2^(i+2)]``.
            audio_token: ``[N, 1, E]`` (VGGish embedding after ``audio_proj``).

        Returns:
            logits ``[N, K, 4h, 4w]`` (h, w = stride-4 map size) and the gated mask feature
            ``[N, E, h, w]``.
        """
        cfg = self.cfg
        n = audio_token.shape[0]
        stage1 = self.in_proj[0](feats[0])
        srcs, pos, spatial_shapes = [], [], []
        for level, stage in enumerate(ENCODER_STAGES):
            src = self.in_proj[stage](feats[stage])
            h, w = src.shape[-2:]
            spatial_shapes.append((h, w))
            srcs.append(src.flatten(2).transpose(1, 2))
            pos.append(
                sine_positional_encoding(h, w, cfg.embed_dim // 2, cfg.pos_temperature, src.device)
                + self.level_embed[level]
            )
        src_flatten = torch.cat(srcs, 1)  # [N, S, E]
        pos_flatten = torch.cat(pos, 0)[None].expand(n, -1, -1)

        query = self.query_generator(audio_token) + self.learnable_query.weight[None]
        memory, decoded = self.transformer(query, src_flatten, pos_flatten, spatial_shapes)

        h0, w0 = spatial_shapes[0]
        level0 = memory[:, : h0 * w0].transpose(1, 2).reshape(n, -1, h0, w0)
        lateral = self.lateral_conv(stage1)
        mask_feature = self.out_conv(
            lateral
            + F.interpolate(level0, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
        )
        mask_feature = self.fusion_block(mask_feature, audio_token)

        query_maps = self.mlp(torch.einsum("nqc,nchw->nqhw", decoded, mask_feature))
        logits = self.fc(mask_feature + query_maps)
        return logits, mask_feature
