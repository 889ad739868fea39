"""The interface every AVS backbone implements, its training recipe, and the backbone registry.

``backbones`` is plain ``torch.nn``: no Lightning, no file I/O beyond loading weights, and it
imports nothing of openavs-st outside this package.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch
from torch import nn


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

    Subclasses set ``recipes`` (dataset name -> :class:`Recipe`) and implement ``forward`` and
    ``load_official``.
    """

    recipes: dict[str, Recipe] = {}

    def recipe(self, dataset: str) -> Recipe:
        try:
            return self.recipes[dataset]
        except KeyError:
            raise KeyError(
                f"{type(self).__name__} has no recipe for dataset {dataset!r}; "
                f"known: {sorted(self.recipes)}"
            ) from None

    def load_official(self, state_dict: dict[str, torch.Tensor]) -> None:  # pragma: no cover
        raise NotImplementedError


_REGISTRY: dict[str, Callable[..., AVSBackbone]] = {}


def register(name: str) -> Callable[[Callable[..., AVSBackbone]], Callable[..., AVSBackbone]]:
    """Decorator: register a backbone factory under ``name``."""

    def deco(factory: Callable[..., AVSBackbone]) -> Callable[..., AVSBackbone]:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory

    return deco


def create(name: str, **cfg: Any) -> AVSBackbone:
    """Build the backbone registered as ``name`` with keyword configuration ``cfg``."""
    _import_builtin()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown backbone {name!r}; available: {sorted(_REGISTRY)}") from None
    return factory(**cfg)


def available() -> list[str]:
    """Names of the registered backbones."""
    _import_builtin()
    return sorted(_REGISTRY)


def _import_builtin() -> None:
    # Importing the modules runs their @register decorators. Done lazily so that
    # ``import backbones`` stays cheap.
    import importlib

    for mod in ("tpavi", "avsegformer", "sama_avs"):
        importlib.import_module(f"backbones.{mod}")
