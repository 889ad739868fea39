"""Encoders shared by the AVS backbones (VGGish, PVT-v2-B5, ResNet-50, EfficientNet-Lite0) and strict
weight loading.

The encoders live in submodules (``vggish``, ``pvt``, ``resnet``, ``efficientnet_lite``); this module holds what they and
the backbones share: reading a checkpoint file safely and loading a state dict with errors that
name the offending key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

VISUAL_ENCODERS = ("pvt_v2_b5", "resnet50", "efficientnet_lite0")


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` with ``torch.load(weights_only=True)`` on CPU.

    A checkpoint that wraps its weights under ``"state_dict"`` or ``"model"`` is unwrapped.
    Raises ``FileNotFoundError`` / ``ValueError`` naming the file when it is missing or is not a
    mapping of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    obj = load_weights_only(path, "checkpoint")
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and wrapper in obj and isinstance(obj[wrapper], Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"checkpoint {path} is not a state dict (a mapping of names to tensors)")
    return dict(obj)


def load_weights_only(path: str | Path, what: str, map_location: str = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; a file torch cannot read that way is a ValueError naming
    ``what`` and the file with torch's reason, never its advice to retry with ``weights_only=False`` (unsafe
    for a downloaded file). The readers of released weights (backbones, BEATs, Pengi, SAM 2) go through here."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling errors have many types
        raise ValueError(f"{what} {path} cannot be read as a weights-only torch checkpoint ({_unpickling_reason(exc)})") from None


def _unpickling_reason(exc: BaseException) -> str:
    """The reason ``torch.load(weights_only=True)`` gave, without torch's advice to retry with
    ``weights_only=False`` (unsafe for a downloaded file) or to allowlist the class."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        tail = text.split("WeightsUnpickler error:", 1)[1].strip()
        return tail.splitlines()[0].split(". ")[0].rstrip(".") if tail else "not a weights-only torch checkpoint"
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    return "not a weights-only torch checkpoint" if "weights_only" in first or "Weights only" in first else first


def strip_module_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a leading ``module.`` (DataParallel/DDP wrapper) from every key that has one."""
    return {k.removeprefix("module."): v for k, v in state_dict.items()}


KeyFn = Callable[[str], "str | None"]


def rename_keys(
    state_dict: Mapping[str, torch.Tensor], key_fn: KeyFn, *, source: str
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Apply ``key_fn`` (original name -> our name, or None to drop) to every key.

    Returns ``(renamed, original_name_of)``; dropped tensors are counted in one ``logging`` info
    line. A ``KeyError`` from ``key_fn`` (an unknown original name) is re-raised naming the full
    original key and ``source``.
    """
    renamed: dict[str, torch.Tensor] = {}
    original_name_of: dict[str, str] = {}
    dropped: list[str] = []
    for key, value in state_dict.items():
        try:
            new_key = key_fn(key)
        except KeyError:
            raise KeyError(f"{source}: unknown key {key!r}") from None
        if new_key is None:
            dropped.append(key)
            continue
        renamed[new_key] = value
        original_name_of[new_key] = key
    if dropped:
        logger.info(
            "%s: dropped %d tensors the model does not use (e.g. %s)", source, len(dropped), dropped[0]
        )
    return renamed, original_name_of


def _key_list(keys: Iterable[str], limit: int = 8) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_state_dict_strict(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str,
    ignore: Callable[[str], bool] | None = None,
    keep: Callable[[str], bool] | None = None,
    original_names: Mapping[str, str] | None = None,
) -> None:
    """Load ``state_dict`` into ``module`` requiring an exact match of names and shapes.

    Args:
        module: the target module.
        state_dict: names already mapped to ``module``'s own names.
        source: what the weights are (e.g. ``"official TPAVI checkpoint"``), used in messages.
        ignore: keys for which this returns True are dropped (with one ``logging`` info line
            giving how many) instead of being reported as unexpected.
        keep: module keys for which this returns True are not expected in ``state_dict`` and
            keep their current values (e.g. a frozen VGGish that a checkpoint does not contain).
        original_names: our key -> the checkpoint's own key (from :func:`rename_keys`), so that
            messages name the key as it appears in the file.

    Raises:
        KeyError: a key that the module does not have (and is not ignored), or a module key the
            state dict lacks; the message names the key(s).
        ValueError: a tensor whose shape differs, naming the key and both shapes.
    """
    incoming = dict(state_dict)

    def label(key: str) -> str:
        original = (original_names or {}).get(key, key)
        return key if original == key else f"{original} (-> {key})"

    if ignore is not None:
        dropped = [k for k in incoming if ignore(k)]
        for k in dropped:
            del incoming[k]
        if dropped:
            logger.info("%s: dropped %d unused tensors (e.g. %s)", source, len(dropped), dropped[0])
    own = {k: v for k, v in module.state_dict().items() if keep is None or not keep(k)}
    unexpected = set(incoming) - set(own)
    if unexpected:
        raise KeyError(f"{source}: unexpected key(s) {_key_list(label(k) for k in unexpected)}")
    missing = set(own) - set(incoming)
    if missing:
        raise KeyError(f"{source}: missing key(s) {_key_list(missing)}")
    for name, tensor in incoming.items():
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise ValueError(
                f"{source}: shape mismatch for {label(name)!r}: checkpoint {tuple(tensor.shape)}, "
                f"model {tuple(own[name].shape)}"
            )
    module.load_state_dict(incoming, strict=keep is None)


def build_visual_encoder(name: str, preset: str = "full", **overrides: Any) -> nn.Module:
    """Build a multi-scale visual encoder: ``forward(x [N,3,H,W]) -> 4 maps`` (strides 4..32).

    Args:
        name: ``"pvt_v2_b5"``, ``"resnet50"`` or ``"efficientnet_lite0"``.
        preset: ``"full"`` (original architecture) or ``"tiny"`` (same code, smaller; EfficientNet-Lite0:
            the same network).
        overrides: passed to :func:`backbones.encoders.pvt.build_pvt_v2_b5` /
            :func:`backbones.encoders.resnet.build_resnet50` /
            :func:`backbones.encoders.efficientnet_lite.build_efficientnet_lite0`.

    The returned module has ``out_channels`` (4 ints), ``load_official(state_dict)`` and
    ``load_pretrained(path)``.
    """
    if name == "pvt_v2_b5":
        from backbones.encoders.pvt import build_pvt_v2_b5

        return build_pvt_v2_b5(preset=preset, **overrides)
    if name == "resnet50":
        from backbones.encoders.resnet import build_resnet50

        return build_resnet50(preset=preset, **overrides)
    if name == "efficientnet_lite0":
        from backbones.encoders.efficientnet_lite import build_efficientnet_lite0

        return build_efficientnet_lite0(preset=preset, **overrides)
    raise ValueError(f"unknown visual encoder {name!r}; known: {list(VISUAL_ENCODERS)}")


def check_preset(preset: str) -> None:
    """Raise ``ValueError`` unless ``preset`` is ``"full"`` or ``"tiny"``."""
    if preset not in ("full", "tiny"):
        raise ValueError(f"unknown preset {preset!r}; expected 'full' or 'tiny'")


__all__ = [
    "VISUAL_ENCODERS",
    "KeyFn",
    "build_visual_encoder",
    "check_preset",
    "load_state_dict_strict",
    "load_weights_only",
    "read_checkpoint",
    "rename_keys",
    "strip_module_prefix",
]
