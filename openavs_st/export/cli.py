"""Exporting a Lightning checkpoint: :func:`load_checkpoint` and the command line
``python -m openavs_st.export ckpt=PATH out=DIR [onnx=true] [cfg=PATH] [metrics=PATH]``."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from openavs_st.export.folder import WEIGHT_FILE_ARG_PREFIX, ExportError
from openavs_st.export.weights import export_module

if TYPE_CHECKING:
    from openavs_st.module import AVSLitModule

log = logging.getLogger(__name__)


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
    """
    from omegaconf import OmegaConf

    from openavs_st.module import AVSLitModule

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    # The checkpoint holds every weight, so the backbone is rebuilt without the local weight files it
    # started from (pretrained_*): they are not needed and may not exist on this machine.
    hparams = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("hyper_parameters") or {}
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
        metrics = None
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
