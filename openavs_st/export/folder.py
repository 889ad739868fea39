"""What an export folder holds: its file names and the ``config.yaml`` that rebuilds the model
(written by :func:`export_config`, read back and checked by :func:`read_export_config`)."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import yaml

from openavs_st.config import backbone_spec
from openavs_st.data.store import load_records, scrub_secrets
from openavs_st.data.transforms import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    from openavs_st.module import AVSLitModule

log = logging.getLogger(__name__)

EXPORT_FORMAT = "openavs-st-export/1"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
CARD_FILE = "README.md"
ONNX_FILE = "model.onnx"
ONNX_DATA_FILE = "model.onnx.data"  # external weights of a model.onnx above the protobuf limit
NET_PREFIX = "net."
SIMILARITY_PREFIX = "similarity."
# Builder arguments that name local weight files: provenance, not needed (nor valid) to rebuild.
WEIGHT_FILE_ARG_PREFIX = "pretrained_"
VGGISH_AUDIO = "VGGish log-mel examples [B, T, 1, 96, 64]: 16 kHz mono, one 0.96 s example per frame-second"


class ExportError(RuntimeError):
    """An export could not be written or does not reproduce the PyTorch model."""


def to_plain(obj: Any) -> Any:
    """A YAML/JSON-safe copy: mappings -> dict, tuples -> list, paths -> str, NaN/inf -> None."""
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, (np.generic, torch.Tensor)):
        return to_plain(obj.item())
    return str(obj)


def resolve_config(cfg: Any) -> dict[str, Any]:
    """A training config (``DictConfig`` or mapping) as a plain dict, resolved where possible.

    Interpolations that only resolve inside a Hydra run (``${hydra:...}``) make full resolution
    fail outside it; the config is then kept unresolved rather than dropped.
    """
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if cfg is None:
        return {}
    if isinstance(cfg, DictConfig):
        try:
            return OmegaConf.to_container(cfg, resolve=True)
        except OmegaConfBaseException:
            return OmegaConf.to_container(cfg, resolve=False)
    return dict(cfg)


def data_provenance(node: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Name and root folder name of a data source; for a pseudo-label store, its labelers.

    Returns ``{"name", "root_name", "labelers": [{"labeler", "config_hash", "clips"}]}`` (the
    labelers only for ``pseudo`` sources whose manifest is readable), or ``None`` without a node.
    """
    if not node:
        return None
    root = node.get("root")
    info: dict[str, Any] = {"name": node.get("name"), "root_name": Path(str(root)).name if root else None}
    if node.get("name") == "pseudo" and root and Path(str(root)).is_dir():
        counts: dict[tuple[str, str], int] = {}
        try:
            records = load_records(Path(str(root)))
        except ValueError as exc:  # ClipError: a damaged manifest only loses the labeler line
            log.warning("could not read the labeler from the store manifest: %s", exc)
            records = {}
        for rec in records.values():
            if rec.get("status") == "ok":
                key = (str(rec.get("labeler")), str(rec.get("config_hash")))
                counts[key] = counts.get(key, 0) + 1
        info["labelers"] = [
            {"labeler": lab, "config_hash": h, "clips": n} for (lab, h), n in sorted(counts.items())
        ]
    return info


def export_config(module: AVSLitModule, cfg: Any = None) -> dict[str, Any]:
    """The ``config.yaml`` content for ``module`` (secrets scrubbed).

    ``cfg`` is the training config (optional): its ``data.input_size`` (when set) is the frame size
    the model was trained at, and its data sources and full resolved tree are recorded. The
    backbone is written as its registered ``name``, its ``_target_`` and its keyword config without
    the local weight files it started from (``pretrained_*``, kept as ``training.initial_weights``).
    """
    hparams = dict(module.hparams)
    backbone_cfg = backbone_spec(hparams["backbone"])  # the _target_ form, also for name-form hparams
    target = backbone_cfg.pop("_target_")
    rebuild = {k: v for k, v in backbone_cfg.items() if not k.startswith(WEIGHT_FILE_ARG_PREFIX)}
    initial_weights = {k: v for k, v in backbone_cfg.items() if k.startswith(WEIGHT_FILE_ARG_PREFIX)}
    recipe = dataclasses.asdict(module.recipe)
    training = resolve_config(cfg)
    data = training.get("data") or {}
    size = int(data.get("input_size") or recipe["input_size"])
    similarity = module.similarity
    config = {
        "format": EXPORT_FORMAT,
        "openavs_st_version": package_version(),
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        # name: the registered name, for readers; _target_ + the rest: what load_model instantiates
        "backbone": {"name": module.backbone_name, "_target_": target, **rebuild},
        "dataset": hparams.get("dataset", recipe["dataset"]),
        "recipe": recipe,
        "input": {
            # the clips' T when the data sets it (AVSS/AVSS-binary: 10, though they follow the MS3 recipe)
            "num_frames": int(data.get("num_frames") or recipe["num_frames"]),
            "size": [size, size],
            "frames": "RGB [B, T, 3, H, W] float32: pixel / 255, then (x - mean) / std",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "audio": VGGISH_AUDIO,
            # what the backbone reads, computed from those examples (openavs_st.data.audio_features)
            "audio_features": str(data.get("audio_features") or "log_mel"),
        },
        "output": {"logits": "[B, T, K, H, W] at the input size", "mask": "sigmoid(logits) > 0.5"},
        "weights": {"file": WEIGHTS_FILE, "backbone_prefix": NET_PREFIX},
        "similarity_head": None,
        "training": {
            "recipe_overrides": hparams.get("recipe_overrides") or {},
            "lambda_sim": float(hparams.get("lambda_sim", 0.0)),
            "initial_weights": initial_weights,
            "data": data_provenance(data),
            "eval_data": data_provenance(data.get("eval")),
            "config": training,
        },
    }
    if similarity is not None:
        config["weights"]["similarity_prefix"] = SIMILARITY_PREFIX
        config["similarity_head"] = {
            "audio_dim": int(similarity.audio_proj.in_features),
            "visual_dim": int(similarity.audio_proj.out_features),
        }
    return scrub_secrets(to_plain(config))


def package_version() -> str:
    import openavs_st

    return openavs_st.__version__


def read_export_config(folder: str | Path) -> dict[str, Any]:
    """``config.yaml`` of an export folder, checked for the keys :func:`load_model` needs.

    Raises:
        FileNotFoundError: naming the missing folder or file.
        ValueError: naming the file and the missing or malformed key.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"export folder not found: {folder}")
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {folder} is not an openavs-st export folder")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a mapping, got {type(config).__name__}")
    if config.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{path}: format is {config.get('format')!r}, expected {EXPORT_FORMAT!r}")
    for dotted in ("backbone.name", "dataset", "input.num_frames", "input.size"):
        node: Any = config
        for key in dotted.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            raise ValueError(f"{path}: key {dotted!r} is missing")
    return config
