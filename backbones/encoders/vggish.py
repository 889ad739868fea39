"""VGGish audio encoder (log-mel example ``[N,1,96,64]`` -> 128-d embedding), always frozen.

Same network as the harritaylor/torchvggish port copied into every AVS repository
(AVSBench ``avs_scripts/*/torchvggish/vggish.py``, AVSegFormer ``model/vggish/``, SAMA
``torchvggish/``): VGG features conv64-M-conv128-M-conv256-conv256-M-conv512-conv512-M, a
channels-last flatten, and Linear(12288->4096)-ReLU-Linear(4096->4096)-ReLU-Linear(4096->128)-ReLU.
PCA post-processing is off in all of them (AVSBench issue #26), so it is not implemented.
Module names match ``vggish-10086976.pth`` (``features.{0,3,6,8,11,13}``, ``embeddings.{0,2,4}``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from backbones.encoders import load_state_dict_strict, read_checkpoint, strip_module_prefix

# Conv widths in order, "M" = 2x2 max-pool (torchvggish ``make_layers``).
_FULL_LAYOUT: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")
_TINY_LAYOUT: tuple[int | str, ...] = (4, "M", 8, "M", 16, 16, "M", 32, 32, "M")
_FULL_HIDDEN = 4096
_TINY_HIDDEN = 64
EMBEDDING_DIM = 128
# After four 2x2 pools a 96x64 example is 6x4 (time x mel).
_POOLED_TIME, _POOLED_MEL = 6, 4


class VGGish(nn.Module):
    """VGGish: ``forward(x [N,1,96,64]) -> [N,128]`` (non-negative: final ReLU, no PCA).

    Args:
        tiny: fewer channels (4..32 conv, 64 hidden) in the same structure, for tests.
        frozen: the AVS recipes never train VGGish. When True (default) the parameters have
            ``requires_grad=False``, the forward runs under ``torch.no_grad()`` and the module
            stays in eval mode even when a parent calls ``.train()``.
    """

    def __init__(self, *, tiny: bool = False, frozen: bool = True) -> None:
        super().__init__()
        layout = _TINY_LAYOUT if tiny else _FULL_LAYOUT
        hidden = _TINY_HIDDEN if tiny else _FULL_HIDDEN
        layers: list[nn.Module] = []
        in_channels = 1
        for item in layout:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                in_channels = int(item)
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(in_channels * _POOLED_TIME * _POOLED_MEL, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, EMBEDDING_DIM),
            nn.ReLU(inplace=True),
        )
        if tiny:
            self._init_informative()
        # True once official weights were loaded (load_official / load_pretrained): a model whose
        # checkpoints hold no VGGish (TPAVI) refuses to load them over a random one.
        self.weights_loaded = False
        self.frozen = frozen
        if frozen:
            self.requires_grad_(False)
            self.eval()

    def _init_informative(self) -> None:
        """He-normal weights and zero biases for the tiny preset. The recipes use the pretrained,
        frozen VGGish; a frozen *random* one with PyTorch's default init shrinks the signal at every
        layer until the bias dominates, so every sound gives almost the same embedding and a tiny
        model in the tests could not learn anything from audio. This init keeps the variance."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def train(self, mode: bool = True) -> VGGish:
        """Keep eval mode when frozen, whatever the parent asks."""
        return super().train(mode and not self.frozen)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # [N, C, 6, 4]
        # torchvggish transposes to channels-last [N, 6, 4, C] before flattening, to match the
        # TensorFlow weight layout of the first embedding layer.
        x = x.permute(0, 2, 3, 1).contiguous().flatten(1)
        return self.embeddings(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``[N, 1, 96, 64]`` log-mel examples -> ``[N, 128]`` embeddings."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 96, 64):
            raise ValueError(f"VGGish expects log-mel examples [N, 1, 96, 64], got {tuple(x.shape)}")
        if self.frozen:
            with torch.no_grad():
                return self._embed(x)
        return self._embed(x)

    def load_official(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load ``vggish-10086976.pth`` keys (``features.*``, ``embeddings.*``) strictly.

        PCA parameters (``pca_eigen_vectors``, ``pca_means``), if present, are unused by every
        AVS repository and are dropped.
        """
        load_state_dict_strict(
            self,
            strip_module_prefix(state_dict),
            source="VGGish checkpoint",
            ignore=lambda k: k.startswith("pproc.") or k in ("pca_eigen_vectors", "pca_means"),
        )
        self.weights_loaded = True

    def load_pretrained(self, path: str | Path) -> None:
        """Load the official ``vggish-10086976.pth`` from a local path."""
        self.load_official(read_checkpoint(path))
