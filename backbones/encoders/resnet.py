"""ResNet-50 multi-scale encoder (torchvision trunk) and the original ``B2_ResNet`` key mapping.

TPAVI and AVSegFormer use ``B2_ResNet`` (AVSBench ``avs_scripts/avss/model/resnet.py``), a ResNet-50
with a second, never-used branch: ``conv1, bn1, layer1, layer2, layer3_1, layer4_1`` are run,
``layer3_2, layer4_2`` (22,063,104 parameters) are built, saved and ignored. Its bottleneck is the
torchvision one (stride on the 3x3 conv), initialised from torchvision's ``resnet50-19c8e357.pth``
by renaming ``layer3 -> layer3_1`` (``ResNet_AVSModel.py::initialize_weights``). Here the trunk is
torchvision's ``ResNet`` without ``avgpool``/``fc`` and without the dead branch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torchvision.models.resnet import Bottleneck, ResNet

from backbones.encoders import (
    KeyFn,
    check_preset,
    load_state_dict_strict,
    read_checkpoint,
    rename_keys,
    strip_module_prefix,
)

# Bottleneck blocks per layer and bottleneck width of ResNet-50 (torchvision ``resnet50``).
RESNET50_ARGS: dict[str, Any] = {"layers": (3, 4, 6, 3), "width_per_group": 64}
# Same code paths: one block per layer and a 4x narrower bottleneck (outputs keep 256..2048).
RESNET_TINY_ARGS: dict[str, Any] = {"layers": (1, 1, 1, 1), "width_per_group": 16}

_B2_DEAD_BRANCH = re.compile(r"layer[34]_2\..*")
_B2_RENAME = re.compile(r"layer([34])_1\.")


class ResNet50Encoder(ResNet):
    """torchvision ResNet-50 trunk: ``forward(x [N,3,H,W]) -> [c1, c2, c3, c4]``.

    ``c_i`` has ``out_channels[i]`` = 256, 512, 1024, 2048 channels at strides 4, 8, 16, 32.
    """

    def __init__(self, layers: tuple[int, int, int, int], width_per_group: int) -> None:
        super().__init__(Bottleneck, list(layers), width_per_group=width_per_group)
        del self.avgpool, self.fc  # classifier unused by the AVS models
        self.out_channels: list[int] = [64 * Bottleneck.expansion * 2**i for i in range(4)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return [c1, c2, c3, c4]

    def load_official(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load original ``B2_ResNet`` names strictly (dead ``layer3_2``/``layer4_2`` dropped)."""
        self._load_renamed(state_dict, b2_resnet_key_to_torchvision, "B2_ResNet weights")

    def load_torchvision(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load torchvision ``resnet50`` names strictly (the ImageNet ``fc`` is dropped)."""
        self._load_renamed(state_dict, torchvision_resnet_key, "torchvision ResNet-50")

    def _load_renamed(self, state_dict: Mapping[str, torch.Tensor], key_fn: KeyFn, source: str) -> None:
        renamed, original = rename_keys(strip_module_prefix(state_dict), key_fn, source=source)
        load_state_dict_strict(self, renamed, source=source, original_names=original)

    def load_pretrained(self, path: str | Path) -> None:
        """Load torchvision's ImageNet ``resnet50-19c8e357.pth`` from a local path."""
        self.load_torchvision(read_checkpoint(path))


def build_resnet50(*, preset: str = "full", **overrides: Any) -> ResNet50Encoder:
    """ResNet-50 encoder (random weights); ``preset="tiny"`` keeps the output channels.

    Args:
        preset: ``"full"`` (23,508,032 parameters) or ``"tiny"``.
        overrides: ``layers`` (blocks per layer) and/or ``width_per_group``.
    """
    check_preset(preset)
    args = dict(RESNET50_ARGS if preset == "full" else RESNET_TINY_ARGS)
    unknown = set(overrides) - set(args)
    if unknown:
        raise TypeError(f"build_resnet50: unknown override(s) {sorted(unknown)}; allowed: {sorted(args)}")
    args.update(overrides)
    return ResNet50Encoder(**args)


def b2_resnet_key_to_torchvision(key: str) -> str | None:
    """One ``B2_ResNet`` name -> torchvision's: ``layer3_1 -> layer3``, ``layer4_1 -> layer4``.

    ``None`` for the unused second branch (``layer3_2.*``, ``layer4_2.*``); other names are
    returned unchanged (the strict load reports unknown ones).
    """
    if _B2_DEAD_BRANCH.fullmatch(key):
        return None
    return _B2_RENAME.sub(r"layer\1.", key, count=1) if _B2_RENAME.match(key) else key


def torchvision_resnet_key(key: str) -> str | None:
    """torchvision ResNet-50 names are ours; ``None`` for the ImageNet classifier ``fc.*``."""
    return None if key.startswith("fc.") else key


def convert_b2_resnet_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map ``B2_ResNet`` names to the torchvision trunk; the dead branch is dropped with a log line."""
    return rename_keys(state_dict, b2_resnet_key_to_torchvision, source="B2_ResNet weights")[0]


def convert_torchvision_resnet_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ImageNet classifier (``fc.weight``, ``fc.bias``) of a torchvision ResNet-50."""
    return rename_keys(state_dict, torchvision_resnet_key, source="torchvision ResNet-50")[0]
