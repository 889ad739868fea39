"""The interface every AVS backbone implements, its training recipe, and the backbone registry.

``backbones`` is plain ``torch.nn``: no Lightning, no file I/O beyond loading weights. Outside this
package it imports only :mod:`openavs_st.registry` (standard library only; ``import openavs_st`` is
cheap), the registry mechanism every pluggable part of openavs-st shares.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
from torch import nn

from openavs_st.registry import Registry

VGGISH_EMBEDDING_DIM = 128  # backbones.encoders.vggish.EMBEDDING_DIM (kept import-free here)
LOG_MEL_SHAPE = (1, 96, 64)  # one VGGish log-mel example per frame-second
_AUDIO_KINDS = {LOG_MEL_SHAPE: "VGGish log-mel", (VGGISH_EMBEDDING_DIM,): "VGGish embeddings"}


@dataclass
class AVSOutput:
    """What a backbone's ``forward`` returns.

    Attributes:
        logits: ``[B, T, K, H, W]`` mask logits at the input resolution (K=1 binary, K=71 AVSS).
        aux: tensors the losses (and the robustness head) need, by name. Common keys:
            ``stage_features`` (list of per-stage maps), ``audio_aligned`` (list of per-stage
            aligned audio), ``mask_feature``, ``visual_pooled`` ``[B, T, C]`` (pooled last-stage
            visual feature) and ``audio_embedding`` ``[B, T, D]``.
    """

    logits: torch.Tensor
    aux: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """A backbone's original training recipe for one dataset, as data.

    Values come from the original configs and scripts (see each backbone's module for the source
    file of every number). ``loss_terms`` maps a loss-term name in ``backbones.losses`` to its
    weight. ``gt_frames`` says which frames carry ground truth in the original training:
    ``"first"`` (S4 train: frame 1 only), ``"all"``, or ``"temporal_flag"`` (AVSS).
    ``test_batch_frames`` is the original test batch in frames: the group size of the
    AVSBench-exact F-score.
    """

    dataset: str
    optimizer: str
    lr: float
    weight_decay: float
    epochs: int
    batch_size: int
    input_size: int
    loss_terms: dict[str, float]
    gt_frames: str
    test_batch_frames: int
    frozen_backbone_epochs: int = 0
    scheduler: str = "constant"
    scheduler_args: dict[str, Any] = field(default_factory=dict)
    fscore_from_logits: bool = True
    eval_size: int | None = None
    num_frames: int = 5
    seed: int = 123
    notes: str = ""

    def override(self, **changes: Any) -> "Recipe":
        """A copy with some values replaced (command-line overrides)."""
        unknown = set(changes) - set(self.__dataclass_fields__)
        if unknown:
            raise KeyError(f"unknown recipe field(s): {sorted(unknown)}")
        return replace(self, **changes)


class AVSBackbone(nn.Module):
    """Base class: ``forward(frames [B,T,3,H,W], audio [B,T,1,96,64]) -> AVSOutput``.

    A backbone is registered by name with :func:`register` (``@register("tpavi")`` on the class), and
    its constructor takes the keyword config of ``configs/backbone/<name>.yaml`` plus ``dataset``
    (the recipe key), so ``backbones.create(name, **cfg)`` and Hydra's ``_target_`` build it alike.
    Subclasses set ``recipes`` (dataset name -> :class:`Recipe`) and implement ``forward`` and
    ``load_official``. What :class:`openavs_st.module.AVSLitModule` needs from a backbone is declared
    here, with defaults that suit a backbone without these features; ``tests/test_backbones.py``
    checks every registered backbone against it.
    """

    #: Name in the backbone registry (set by :func:`register`).
    name: ClassVar[str] = ""
    recipes: ClassVar[dict[str, Recipe]] = {}
    #: Width ``C`` of ``aux["visual_pooled"]`` ``[B, T, C]``, the pooled visual feature the robust
    #: similarity head projects the audio embedding onto. ``None``: the backbone returns no
    #: ``visual_pooled``, and training with ``robust.lambda_sim > 0`` is refused.
    pooled_visual_dim: int | None = None
    #: Width ``D`` of ``aux["audio_embedding"]`` ``[B, T, D]`` (VGGish: 128).
    audio_embedding_dim: int = VGGISH_EMBEDDING_DIM
    #: Keyword config of a small instance with the same code paths, which takes 64x64 frames and
    #: T=5 (tests build every registered backbone with it).
    tiny_config: ClassVar[dict[str, Any]] = {}

    def recipe(self, dataset: str) -> Recipe:
        try:
            return self.recipes[dataset]
        except KeyError:
            raise KeyError(
                f"{type(self).__name__} has no recipe for dataset {dataset!r}; "
                f"known: {sorted(self.recipes)}"
            ) from None

    def visual_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters a recipe's ``frozen_backbone_epochs`` freeze (the visual encoder).

        Default: none, for backbones whose recipes never freeze a part for the first epochs. The
        optimizer gets them from the start; :meth:`freeze_visual` toggles their gradients.
        """
        return iter(())

    def freeze_visual(self, freeze: bool) -> None:
        """Freeze (True) or unfreeze (False) :meth:`visual_parameters`; the Lightning module calls
        it at every epoch start with ``epoch < recipe.frozen_backbone_epochs``. Parts frozen for the
        whole training (VGGish, SAM's image encoder) are not visual parameters: they stay frozen."""
        for param in self.visual_parameters():
            param.requires_grad_(not freeze)

    def load_official(self, state_dict: dict[str, torch.Tensor]) -> None:  # pragma: no cover
        raise NotImplementedError

    def check_inputs(
        self,
        frames: torch.Tensor,
        audio: torch.Tensor,
        frame_valid: torch.Tensor | None,
        *,
        audio_shapes: tuple[tuple[int, ...], ...] = (LOG_MEL_SHAPE,),
    ) -> tuple[int, int, int, int]:
        """Check ``forward``'s inputs: ``frames [B,T,3,H,W]``, ``audio [B,T,*shape]`` for one of
        ``audio_shapes`` (default the VGGish log-mel ``(1, 96, 64)``), ``frame_valid [B,T]`` or None.

        Returns:
            ``(B, T, H, W)``.

        Raises:
            ValueError: naming the backbone, the input, the expected and the given shape.
        """
        name = type(self).__name__
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise ValueError(f"{name}: frames must be [B, T, 3, H, W], got {tuple(frames.shape)}")
        b, t, _, h, w = frames.shape
        if tuple(audio.shape[2:]) not in audio_shapes or tuple(audio.shape[:2]) != (b, t):
            expected = " or ".join(f"{_AUDIO_KINDS.get(s, 'audio')} {_dims(s)} = {(b, t, *s)}" for s in audio_shapes)
            raise ValueError(f"{name}: audio must be {expected}, got {tuple(audio.shape)}")
        if frame_valid is not None and tuple(frame_valid.shape) != (b, t):
            raise ValueError(f"{name}: frame_valid must be [B, T] = {(b, t)}, got {tuple(frame_valid.shape)}")
        return b, t, h, w


def _dims(shape: tuple[int, ...]) -> str:
    return "[B, T, " + ", ".join(str(d) for d in shape) + "]"


# Built-in backbones register themselves when their module is imported; every public module of this
# package is imported on the first lookup, so a new built-in backbone is one file (no list to edit).
BACKBONES: Registry[AVSBackbone] = Registry("backbone", builtin=("backbones",), base=AVSBackbone)


def register(name: str) -> Callable[[type[AVSBackbone]], type[AVSBackbone]]:
    """Class decorator: register an :class:`AVSBackbone` subclass as ``name``
    (``BACKBONES.register``; the first docstring line is its description in listings)."""
    return BACKBONES.register(name)


def create(name: str, **cfg: Any) -> AVSBackbone:
    """Build the backbone registered as ``name`` with keyword configuration ``cfg``.

    Raises:
        UnknownComponentError: (a ``KeyError``) naming the registered backbones.
    """
    return BACKBONES.create(name, **cfg)


def available() -> list[str]:
    """Names of the registered backbones."""
    return BACKBONES.names()
