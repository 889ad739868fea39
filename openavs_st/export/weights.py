"""Writing an export folder (:func:`export_module`: weights, config, metrics, model card, optional
ONNX) and loading its backbone back without Lightning (:func:`load_model`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from openavs_st.config import build_backbone
from openavs_st.data.store import scrub_secrets
from openavs_st.export.card import model_card
from openavs_st.export.folder import (
    CARD_FILE,
    CONFIG_FILE,
    EXPORT_FORMAT,
    METRICS_FILE,
    NET_PREFIX,
    ONNX_FILE,
    SIMILARITY_PREFIX,
    WEIGHTS_FILE,
    export_config,
    read_export_config,
    to_plain,
)
from openavs_st.export.onnx import export_onnx

if TYPE_CHECKING:
    from openavs_st.module import AVSLitModule

log = logging.getLogger(__name__)


def export_state_dict(module: AVSLitModule) -> dict[str, torch.Tensor]:
    """Backbone (``net.``) and similarity head (``similarity.``) tensors, CPU, contiguous, unshared."""
    parts = [(NET_PREFIX, module.net)]
    if module.similarity is not None:
        parts.append((SIMILARITY_PREFIX, module.similarity))
    tensors: dict[str, torch.Tensor] = {}
    seen_storage: set[int] = set()
    for prefix, part in parts:
        for key, value in part.state_dict().items():
            tensor = value.detach().cpu().contiguous()
            storage = tensor.untyped_storage().data_ptr()
            # safetensors refuses tensors sharing memory (tied weights): store a copy.
            tensors[prefix + key] = tensor.clone() if storage in seen_storage else tensor
            seen_storage.add(storage)
    return tensors


def export_module(
    module: AVSLitModule,
    out_dir: str | Path,
    *,
    cfg: Any = None,
    metrics: Mapping[str, float] | None = None,
    onnx: bool = False,
) -> Path:
    """Write ``module`` as an export folder (see the module docstring) and return its path.

    Args:
        module: the trained :class:`~openavs_st.module.AVSLitModule`.
        out_dir: the folder (created; files in it are overwritten).
        cfg: the training config (``DictConfig`` or mapping), for the frame size, the provenance
            and the model card; secrets in it are scrubbed.
        metrics: final metrics by logged name (``{"test/miou_avsbench": 0.71, ...}``).
        onnx: also write ``model.onnx`` and check it against PyTorch (:func:`export_onnx`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = export_config(module, cfg)
    metric_values = scrub_secrets(to_plain(dict(metrics or {})))
    save_file(
        export_state_dict(module),
        str(out / WEIGHTS_FILE),
        metadata={"format": EXPORT_FORMAT, "backbone": config["backbone"]["name"]},
    )
    (out / METRICS_FILE).write_text(json.dumps(metric_values, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    write_description(out, config, metric_values)
    if onnx:
        size = tuple(config["input"]["size"])
        config["onnx"] = export_onnx(
            module.net,
            out / ONNX_FILE,
            num_frames=config["input"]["num_frames"],
            size=size,
            metadata={
                "backbone": config["backbone"]["name"],
                "openavs_st_version": config["openavs_st_version"],
                "mean": json.dumps(config["input"]["mean"]),
                "std": json.dumps(config["input"]["std"]),
            },
        )
        write_description(out, config, metric_values)
    log.info("exported %s to %s", config["backbone"]["name"], out)
    return out


def write_description(out: Path, config: dict[str, Any], metrics: Mapping[str, Any]) -> None:
    """``config.yaml`` and the model card ``README.md``."""
    (out / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    (out / CARD_FILE).write_text(model_card(config, metrics), encoding="utf-8")


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The backbone of an export folder, weights loaded strictly, in eval mode on ``device``.

    Rebuilds the backbone from ``config.backbone`` with ``dataset=config.dataset`` (its ``_target_``,
    whose module must be importable, or for older exports the registered ``name``; see
    :func:`openavs_st.config.build_backbone`) and loads the ``net.`` tensors of
    ``model.safetensors``; no Lightning import, no local weight files read.

    Raises:
        FileNotFoundError: naming the missing folder, ``config.yaml`` or ``model.safetensors``.
        KeyError: naming missing and unexpected weight keys.
        ValueError: naming a tensor whose shape differs from the rebuilt model's.
    """
    folder = Path(folder)
    config = read_export_config(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing (the export folder has no weights)")
    name = config["backbone"]["name"]
    net = build_backbone(config["backbone"], dataset=config["dataset"])
    try:
        tensors = load_file(str(weights), device="cpu")
    except SafetensorError as exc:
        raise ValueError(f"{weights}: not a readable safetensors file ({exc})") from None
    allowed_prefixes = (NET_PREFIX, SIMILARITY_PREFIX) if config.get("similarity_head") else (NET_PREFIX,)
    state = {k[len(NET_PREFIX):]: v for k, v in tensors.items() if k.startswith(NET_PREFIX)}
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(
        [NET_PREFIX + k for k in set(state) - set(expected)]
        + [k for k in tensors if not k.startswith(allowed_prefixes)]
    )
    if missing or unexpected:
        raise KeyError(
            f"{weights} does not match backbone {name!r} built from {folder / CONFIG_FILE}: "
            f"missing {_preview([NET_PREFIX + k for k in missing])}, unexpected {_preview(unexpected)}"
        )
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise ValueError(
                f"{weights}: {NET_PREFIX}{key} has shape {tuple(value.shape)}, the rebuilt "
                f"{name!r} expects {tuple(expected[key].shape)}"
            )
    net.load_state_dict(state, strict=True)
    return net.to(device).eval()


def _preview(keys: list[str], limit: int = 8) -> str:
    if not keys:
        return "none"
    more = f" … (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return "[" + ", ".join(keys[:limit]) + "]" + more
