"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch.

AVSegFormer's encoder uses ``MSDeformAttn`` from the Deformable-DETR CUDA extension
(vvvb-github/AVSegFormer ``ops/modules/ms_deform_attn.py``). This module computes the same
function with ``F.grid_sample`` (bilinear, zero padding, ``align_corners=False``), so it runs on
CPU and needs no compiled op. Parameter names match the original (``sampling_offsets``,
``attention_weights``, ``value_proj``, ``output_proj``) so official checkpoints load 1:1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def ms_deform_attn_sample(
    value: torch.Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Attention-weighted bilinear sampling of multi-level value maps.

    Args:
        value: ``[N, S, M, D]`` per-head values of all levels flattened (``S = sum(H_l * W_l)``,
            level ``l`` row-major ``H_l x W_l``), M heads of D channels.
        spatial_shapes: ``L`` pairs ``(H_l, W_l)``.
        sampling_locations: ``[N, Lq, M, L, P, 2]`` normalised ``(x, y)`` in ``[0, 1]``
            (0 = left/top edge, 1 = right/bottom edge of the map; outside samples read zeros).
        attention_weights: ``[N, Lq, M, L, P]`` weights (softmax over ``L*P`` per head).

    Returns:
        ``[N, Lq, M * D]``.
    """
    n, _, m, d = value.shape
    _, lq, _, num_levels, num_points, _ = sampling_locations.shape
    sizes = [h * w for h, w in spatial_shapes]
    if sum(sizes) != value.shape[1]:
        raise ValueError(
            f"value has {value.shape[1]} positions but spatial_shapes {spatial_shapes} sum to "
            f"{sum(sizes)}"
        )
    # grid_sample works on [-1, 1] with align_corners=False: x_pix = loc * W - 0.5.
    grids = 2.0 * sampling_locations - 1.0
    sampled_levels = []
    for level, ((h, w), value_level) in enumerate(zip(spatial_shapes, value.split(sizes, dim=1))):
        # [N, H*W, M, D] -> [N*M, D, H, W]
        value_map = value_level.permute(0, 2, 3, 1).reshape(n * m, d, h, w)
        # [N, Lq, M, P, 2] -> [N*M, Lq, P, 2]
        grid = grids[:, :, :, level].transpose(1, 2).reshape(n * m, lq, num_points, 2)
        sampled_levels.append(  # [N*M, D, Lq, P]
            F.grid_sample(
                value_map, grid, mode="bilinear", padding_mode="zeros", align_corners=False
            )
        )
    sampled = torch.stack(sampled_levels, dim=-2).flatten(-2)  # [N*M, D, Lq, L*P]
    weights = attention_weights.transpose(1, 2).reshape(n * m, 1, lq, num_levels * num_points)
    out = (sampled * weights).sum(-1)  # [N*M, D, Lq]
    return out.view(n, m * d, lq).transpose(1, 2)


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention with 2-d reference points.

    Args:
        d_model: channels C. n_levels: L feature levels. n_heads: M heads. n_points: P sampling
            points per head per level.
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model {d_model} must be divisible by n_heads {n_heads}")
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable-DETR init: zero offset weights, offset biases on a ring of M directions
        scaled 1..P, uniform attention, Xavier value/output projections
        (``ops/modules/ms_deform_attn.py::_reset_parameters``)."""
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        input_flatten: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        """Args:
            query: ``[N, Lq, C]``.
            reference_points: ``[N, Lq, L, 2]`` normalised ``(x, y)`` per level.
            input_flatten: ``[N, S, C]`` all levels flattened (see :func:`ms_deform_attn_sample`).
            spatial_shapes: ``L`` pairs ``(H_l, W_l)``.

        Returns:
            ``[N, Lq, C]``.
        """
        n, lq, _ = query.shape
        m, num_levels, num_points = self.n_heads, self.n_levels, self.n_points
        if len(spatial_shapes) != num_levels:
            raise ValueError(f"expected {num_levels} levels, got spatial_shapes {spatial_shapes}")
        value = self.value_proj(input_flatten).view(n, input_flatten.shape[1], m, -1)
        offsets = self.sampling_offsets(query).view(n, lq, m, num_levels, num_points, 2)
        weights = self.attention_weights(query).view(n, lq, m, num_levels * num_points)
        weights = weights.softmax(-1).view(n, lq, m, num_levels, num_points)
        # Offsets are in pixels of each level: normalise by (W_l, H_l).
        normalizer = torch.tensor(
            [[w, h] for h, w in spatial_shapes], dtype=query.dtype, device=query.device
        )
        locations = (
            reference_points[:, :, None, :, None, :]
            + offsets / normalizer[None, None, None, :, None, :]
        )
        return self.output_proj(ms_deform_attn_sample(value, spatial_shapes, locations, weights))
