"""PVT-v2-B5 multi-scale encoder on timm's implementation, with the official key mapping.

TPAVI and AVSegFormer copy the official whai362/PVT ``pvt_v2_b5`` into their repositories
(AVSBench ``avs_scripts/*/model/pvt.py``): embed dims (64,128,320,512), depths (3,6,40,3), heads
(1,2,5,8), mlp ratio 4, sr ratios (8,4,2,1), qkv bias, LayerNorm eps 1e-6 in blocks and stage
norms (default eps in patch embeddings and the sr norm), drop_path_rate 0.1 with a linear decay over
all 52 blocks, no classifier. timm's ``PyramidVisionTransformerV2`` computes the same function
(attention through ``scaled_dot_product_attention``) under different parameter names;
:func:`convert_official_pvt_keys` / :func:`to_official_pvt_keys` translate between the two
(timm ``pvt_v2.checkpoint_filter_fn`` documents the renaming).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from timm.models.pvt_v2 import PyramidVisionTransformerV2

from backbones.encoders import (
    check_preset,
    load_state_dict_strict,
    read_checkpoint,
    rename_keys,
    strip_module_prefix,
)

# Architecture of pvt_v2_b5 (whai362/PVT classification/pvt_v2.py, copied as AVSBench model/pvt.py).
PVT_V2_B5_ARGS: dict[str, Any] = {
    "embed_dims": (64, 128, 320, 512),
    "depths": (3, 6, 40, 3),
    "num_heads": (1, 2, 5, 8),
    "mlp_ratios": (4, 4, 4, 4),
    "sr_ratios": (8, 4, 2, 1),
    "qkv_bias": True,
}
# Same code paths, a few thousand times cheaper: one block per stage, narrow channels.
PVT_TINY_ARGS: dict[str, Any] = {**PVT_V2_B5_ARGS, "embed_dims": (16, 32, 40, 64), "depths": (1, 1, 1, 1)}


class PVTv2Encoder(PyramidVisionTransformerV2):
    """timm PVT-v2 without classifier: ``forward(x [N,3,H,W]) -> [c1, c2, c3, c4]``.

    ``c_i`` is ``[N, out_channels[i], H / 2^(i+1), W / 2^(i+1)]`` for strides 4, 8, 16, 32.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(num_classes=0, **kwargs)
        self.out_channels: list[int] = list(kwargs["embed_dims"])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        x = self.patch_embed(x)  # [N, H/4, W/4, C1] (channels-last; stage 1 has no downsample)
        maps = []
        for stage in self.stages:
            x = stage(x)  # [N, C_i, H_i, W_i]
            maps.append(x)
        return maps

    def load_official(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load official whai362 PVT-v2 names (e.g. ``pvt_v2_b5.pth``) strictly."""
        source = "PVT-v2 checkpoint"
        renamed, original = rename_keys(
            strip_module_prefix(state_dict), official_pvt_key_to_timm, source=source
        )
        load_state_dict_strict(self, renamed, source=source, original_names=original)

    def load_pretrained(self, path: str | Path) -> None:
        """Load the ImageNet ``pvt_v2_b5.pth`` (official names) from a local path."""
        self.load_official(read_checkpoint(path))


def build_pvt_v2_b5(*, drop_path_rate: float = 0.1, preset: str = "full", **overrides: Any) -> PVTv2Encoder:
    """PVT-v2-B5 encoder as used by TPAVI and AVSegFormer (random weights).

    Args:
        drop_path_rate: stochastic depth at the last block (0.1 in the original ``pvt_v2_b5``).
        preset: ``"full"`` (81,443,008 parameters) or ``"tiny"`` (1 block per stage, narrow).
        overrides: any ``PyramidVisionTransformerV2`` argument (``depths``, ``embed_dims``, ...).
    """
    check_preset(preset)
    args = dict(PVT_V2_B5_ARGS if preset == "full" else PVT_TINY_ARGS)
    args.update(overrides)
    return PVTv2Encoder(drop_path_rate=drop_path_rate, **args)


# Official (whai362) -> timm name rules. Each is (official regex, timm template); the final
# tensor name (weight/bias) is carried in the last group.
_PARAM = r"(weight|bias)"
_OFFICIAL_TO_TIMM: tuple[tuple[str, str], ...] = (
    (rf"patch_embed1\.(proj|norm)\.{_PARAM}", "patch_embed.{0}.{1}"),
    (rf"patch_embed([234])\.(proj|norm)\.{_PARAM}", "stages.{0-1}.downsample.{1}.{2}"),
    (rf"block(\d)\.(\d+)\.(norm1|norm2)\.{_PARAM}", "stages.{0-1}.blocks.{1}.{2}.{3}"),
    (rf"block(\d)\.(\d+)\.attn\.(q|kv|sr|norm|proj)\.{_PARAM}", "stages.{0-1}.blocks.{1}.attn.{2}.{3}"),
    (rf"block(\d)\.(\d+)\.mlp\.(fc1|fc2)\.{_PARAM}", "stages.{0-1}.blocks.{1}.mlp.{2}.{3}"),
    (rf"block(\d)\.(\d+)\.mlp\.dwconv\.dwconv\.{_PARAM}", "stages.{0-1}.blocks.{1}.mlp.dwconv.{2}"),
    (rf"norm(\d)\.{_PARAM}", "stages.{0-1}.norm.{1}"),
)
_TIMM_TO_OFFICIAL: tuple[tuple[str, str], ...] = (
    (rf"patch_embed\.(proj|norm)\.{_PARAM}", "patch_embed1.{0}.{1}"),
    (rf"stages\.([123])\.downsample\.(proj|norm)\.{_PARAM}", "patch_embed{0+1}.{1}.{2}"),
    (rf"stages\.(\d)\.blocks\.(\d+)\.(norm1|norm2)\.{_PARAM}", "block{0+1}.{1}.{2}.{3}"),
    (rf"stages\.(\d)\.blocks\.(\d+)\.attn\.(q|kv|sr|norm|proj)\.{_PARAM}", "block{0+1}.{1}.attn.{2}.{3}"),
    (rf"stages\.(\d)\.blocks\.(\d+)\.mlp\.(fc1|fc2)\.{_PARAM}", "block{0+1}.{1}.mlp.{2}.{3}"),
    (rf"stages\.(\d)\.blocks\.(\d+)\.mlp\.dwconv\.{_PARAM}", "block{0+1}.{1}.mlp.dwconv.dwconv.{2}"),
    (rf"stages\.(\d)\.norm\.{_PARAM}", "norm{0+1}.{1}"),
)
# The ImageNet classifier of pvt_v2_b5.pth; the AVS models have none.
_OFFICIAL_HEAD = re.compile(rf"head\.{_PARAM}")


def _fill(template: str, groups: tuple[str, ...]) -> str:
    """Fill ``{i}``, ``{i-1}``, ``{i+1}`` placeholders of ``template`` from regex groups."""

    def repl(m: re.Match[str]) -> str:
        value = groups[int(m.group(1))]
        shift = m.group(2)
        return str(int(value) + int(shift)) if shift else value

    return re.sub(r"\{(\d)([+-]1)?\}", repl, template)


def _rename_key(key: str, rules: tuple[tuple[re.Pattern[str], str], ...]) -> str:
    for pattern, template in rules:
        m = pattern.fullmatch(key)
        if m:
            return _fill(template, m.groups())
    raise KeyError(key)


_OFFICIAL_RULES = tuple((re.compile(p), t) for p, t in _OFFICIAL_TO_TIMM)
_TIMM_RULES = tuple((re.compile(p), t) for p, t in _TIMM_TO_OFFICIAL)


def official_pvt_key_to_timm(key: str) -> str | None:
    """One official whai362 PVT-v2 name -> timm's; ``None`` for the ImageNet ``head.*``.

    ``patch_embed1`` -> ``patch_embed``, ``patch_embedN`` -> ``stages.N-1.downsample``,
    ``blockN.i`` -> ``stages.N-1.blocks.i``, ``mlp.dwconv.dwconv`` -> ``mlp.dwconv``,
    ``normN`` -> ``stages.N-1.norm``. Raises ``KeyError(key)`` for any other name.
    """
    if _OFFICIAL_HEAD.fullmatch(key):
        return None
    return _rename_key(key, _OFFICIAL_RULES)


def timm_pvt_key_to_official(key: str) -> str:
    """Inverse of :func:`official_pvt_key_to_timm`; raises ``KeyError(key)`` for unknown names."""
    return _rename_key(key, _TIMM_RULES)


def convert_official_pvt_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a state dict with official PVT-v2 names to timm names (``head.*`` dropped).

    Raises ``KeyError`` naming any key that is not an official PVT-v2 name.
    """
    return rename_keys(state_dict, official_pvt_key_to_timm, source="official PVT-v2 weights")[0]


def to_official_pvt_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`convert_official_pvt_keys` (timm names -> official, no head)."""
    return rename_keys(state_dict, timm_pvt_key_to_official, source="timm PVT-v2 weights")[0]
