"""Exporting a Lightning checkpoint: :func:`load_checkpoint` and the command line
``python -m openavs_st.export ckpt=PATH out=DIR [onnx=true] [cfg=PATH] [metrics=PATH]``. A corrupt file
given as a checkpoint is named, never loaded unsafely (:class:`CheckpointError`)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from openavs_st.config import ConfigError
from openavs_st.export.folder import WEIGHT_FILE_ARG_PREFIX, ExportError
from openavs_st.export.weights import export_module

if TYPE_CHECKING:
    from openavs_st.module import AVSLitModule

log = logging.getLogger(__name__)


class CheckpointError(ConfigError):
    """A file given as a checkpoint (``ckpt=``, ``checkpoint=``, ``ckpt_path=``) cannot be read as one; the
    message names the file."""


def read_checkpoint(path: str | Path, *, mmap: bool = False) -> dict[str, Any]:
    """A Lightning checkpoint's dictionary, read safely (``weights_only=True``, CPU).

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is corrupt, truncated or not a Lightning checkpoint (never loaded with
            ``weights_only=False``: a file that fails the safe loader is not trusted).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # noqa: BLE001 - any failure of the safe loader means an unusable file
        raise CheckpointError(f"{path}: corrupt or not a checkpoint (cannot be read: {type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), Mapping):
        raise CheckpointError(f"{path}: corrupt or not a checkpoint (no state_dict)")
    return ckpt


def checkpoint_metrics(ckpt: Mapping[str, Any]) -> dict[str, float]:
    """The validation values of the epoch a checkpoint was written at: recorded by the module
    (``openavs.val_metrics``), else the best-epoch values of ``BestValidationMetrics`` when the checkpoint is
    of that epoch; ``{}`` when it holds neither."""
    own = (ckpt.get("openavs") or {}).get("val_metrics")
    if own:
        return {str(k): float(v) for k, v in own.items()}
    for key, state in (ckpt.get("callbacks") or {}).items():
        if str(key).startswith("BestValidationMetrics") and isinstance(state, Mapping):
            metrics = dict(state.get("metrics") or {})
            if metrics.get("val/best_epoch") == float(ckpt.get("epoch", -1)):
                return {str(k): float(v) for k, v in metrics.items()}
    return {}


def run_config_of(checkpoint: Path) -> Path | None:
    """``config_resolved.yaml`` of the training run a checkpoint belongs to
    (``<run>/checkpoints/<name>.ckpt``), or ``None``."""
    candidate = checkpoint.resolve().parent.parent / "config_resolved.yaml"
    return candidate if candidate.is_file() else None


def load_checkpoint(path: str | Path, cfg_path: str | Path | None = None) -> tuple[AVSLitModule, Any]:
    """An :class:`AVSLitModule` from a Lightning checkpoint (``weights_only=True``, CPU) and its
    training config: ``cfg_path``, else the run's ``config_resolved.yaml``, else ``None``.

    Raises:
        FileNotFoundError: naming the missing checkpoint or config file.
        CheckpointError: the file is corrupt or not a checkpoint (naming it).
    """
    from omegaconf import OmegaConf

    from openavs_st.module import AVSLitModule

    path = Path(path)
    # The checkpoint holds every weight, so the backbone is rebuilt without the local weight files it
    # started from (pretrained_*): they are not needed and may not exist on this machine.
    hparams = read_checkpoint(path, mmap=True).get("hyper_parameters") or {}
    overrides: dict[str, Any] = {}
    if isinstance(hparams.get("backbone"), Mapping):
        overrides["backbone"] = {
            k: v for k, v in hparams["backbone"].items() if not str(k).startswith(WEIGHT_FILE_ARG_PREFIX)
        }
    module = AVSLitModule.load_from_checkpoint(path, map_location="cpu", weights_only=True, **overrides)
    if overrides:  # keep the weight files as provenance (export_config's ``initial_weights``)
        module.hparams["backbone"] = dict(hparams["backbone"])
    if cfg_path is not None and not Path(cfg_path).is_file():
        raise FileNotFoundError(f"training config not found: {cfg_path}")
    found = Path(cfg_path) if cfg_path is not None else run_config_of(path)
    if found is None:
        log.warning(
            "no config_resolved.yaml next to %s: the frame size falls back to the recipe's "
            "input_size; pass cfg=PATH to record the training data", path,
        )
    return module, (OmegaConf.load(found) if found is not None else None)


def main(argv: list[str] | None = None) -> int:
    """``python -m openavs_st.export ckpt=PATH out=DIR [onnx=true] [cfg=PATH] [metrics=PATH]``"""
    args = dict(a.split("=", 1) for a in (sys.argv[1:] if argv is None else argv) if "=" in a)
    unknown = set(args) - {"ckpt", "out", "onnx", "cfg", "metrics"}
    if unknown or not {"ckpt", "out"} <= set(args):
        print(main.__doc__ + (f"\nunknown arguments: {sorted(unknown)}" if unknown else ""), file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        module, cfg = load_checkpoint(args["ckpt"], args.get("cfg"))
        # Without metrics=PATH: the validation values the checkpoint's epoch logged.
        metrics = checkpoint_metrics(read_checkpoint(args["ckpt"], mmap=True))
        if args.get("metrics"):
            metrics_path = Path(args["metrics"])
            if not metrics_path.is_file():
                raise FileNotFoundError(f"metrics file not found: {metrics_path}")
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        onnx = args.get("onnx", "false").lower() in ("1", "true", "yes")
        out = export_module(module, args["out"], cfg=cfg, metrics=metrics, onnx=onnx)
    except (FileNotFoundError, ExportError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0
