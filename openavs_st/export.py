"""Export a trained model to a self-contained folder, and load it back without Lightning.

An export folder holds::

    model.safetensors   weights only: the backbone under ``net.`` (VGGish included) and the robust
                        similarity head, if trained, under ``similarity.`` (the key names of the
                        Lightning checkpoint's ``state_dict``)
    config.yaml         what rebuilds the model: backbone name + cfg, recipe key and full recipe,
                        input size, T, normalisation, package version; plus the training provenance
    metrics.json        final metrics by logged name (``test/miou_avsbench``, ``test/f_avsbench`` …)
    README.md           model card
    model.onnx          optional (``onnx=True``): ``(frames, audio) -> logits``, fixed T and frame
                        size, dynamic batch; checked against PyTorch with onnxruntime at export

Secrets (API keys, tokens) never reach any of these files (:func:`scrub_secrets`).

``openavs_st.load_model(folder)`` rebuilds the backbone with :func:`backbones.create` from
``config.yaml`` and loads ``model.safetensors`` strictly. From a Lightning checkpoint::

    python -m openavs_st.export ckpt=logs/train/runs/<run>/checkpoints/last.ckpt out=DIR [onnx=true]
        [cfg=PATH/config_resolved.yaml] [metrics=PATH/metrics.json]
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
import tempfile
import warnings
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

import backbones
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
ONNX_OPSET = 17  # grid_sample (AVSegFormer's deformable attention) needs >= 16; LayerNormalization 17
ONNX_TOLERANCE = 1e-4  # |onnx - torch| <= tol * (1 + |torch|), elementwise
ONNX_CHECK_BATCHES = (1, 2)  # batch sizes the exported graph is checked at (the batch axis is dynamic)
ONNX_MAX_INLINE_BYTES = 1_800_000_000  # protobuf messages are capped at 2 GiB
VGGISH_AUDIO = "VGGish log-mel examples [B, T, 1, 96, 64]: 16 kHz mono, one 0.96 s example per frame-second"

# What a metric's mode means, by logged-name suffix (see openavs_st.metrics).
METRIC_MODES = {
    "miou_avsbench": "AVSBench mIoU: per-frame foreground IoU of sigmoid > 0.5; an empty ground truth "
    "scores 1 - false-positive rate; mean over frames",
    "f_avsbench": "AVSBench F-score (beta^2 = 0.3): max over 255 thresholds of the mean F curve of each "
    "group of {group} consecutive test frames (the original test batch), averaged over groups",
    "f_pooled": "F-score (beta^2 = 0.3) with the F curves of all frames averaged before the max over "
    "thresholds: independent of batch size",
    "f_nosigmoid_avsbench": "as f_avsbench, thresholds applied to raw logits (SAMA-AVS's evaluation)",
    "f_nosigmoid_pooled": "as f_pooled, thresholds applied to raw logits (SAMA-AVS's evaluation)",
    "miou_2class_dataset": "OpenAVS two-class mIoU, intersections and unions summed over the set",
    "miou_2class_per_frame": "OpenAVS two-class mIoU per frame, mean over frames",
    "fpr": "fraction of pixels predicted foreground (on negative audio: lower is better)",
    "g_miou": "AVSBench-Robust G-mIoU: harmonic mean of positive mIoU and 1 - negative mIoU",
    "g_f": "AVSBench-Robust G-F: harmonic mean of positive F and 1 - negative F",
    "g_fpr": "AVSBench-Robust G-FPR over the negative kinds",
}


class ExportError(RuntimeError):
    """An export could not be written or does not reproduce the PyTorch model."""


# ------------------------------------------------------------------------------------ config


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
    the model was trained at, and its data sources and full resolved tree are recorded.
    """
    hparams = dict(module.hparams)
    backbone_cfg = dict(hparams["backbone"])
    name = backbone_cfg.pop("name")
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
        "backbone": {"name": name, **rebuild},
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


# ----------------------------------------------------------------------------------- weights


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


# -------------------------------------------------------------------------------------- ONNX


class LogitsOnly(nn.Module):
    """``(frames [B,T,3,H,W], audio [B,T,1,96,64]) -> logits [B,T,K,H,W]`` of a backbone."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, frames: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return self.net(frames, audio).logits


def example_inputs(
    batch: int, num_frames: int, size: tuple[int, int], seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``frames [B,T,3,H,W]`` and ``audio [B,T,1,96,64]`` (standard normal, seeded)."""
    generator = torch.Generator().manual_seed(seed)
    frames = torch.randn(batch, num_frames, 3, *size, generator=generator)
    audio = torch.randn(batch, num_frames, 1, 96, 64, generator=generator)
    return frames, audio


def export_onnx(
    net: nn.Module,
    path: Path,
    *,
    num_frames: int,
    size: tuple[int, int],
    metadata: Mapping[str, str] | None = None,
    opset: int = ONNX_OPSET,
    tolerance: float = ONNX_TOLERANCE,
    check_batches: tuple[int, ...] = ONNX_CHECK_BATCHES,
) -> dict[str, Any]:
    """Write ``net`` as ONNX (inputs ``frames``, ``audio``; output ``logits``) and check it.

    T and the frame size are fixed; the batch axis is dynamic. The graph is traced with the
    TorchScript exporter (``dynamo=False``: the torch.export-based one needs onnxscript). The
    file is then run in onnxruntime on fresh random inputs of each batch size in ``check_batches``
    (default 1 and 2, so a trace that baked in input values or the batch size is caught) and must
    match PyTorch within ``tolerance * (1 + |torch|)``. Models above 2 GiB keep their weights in
    ``model.onnx.data``. Export runs on the CPU (the net is moved there and back). Memory: the
    TorchScript trace holds about 3.7 times the activations of one forward (SAMA-AVS ViT-B at
    512: 2.1 GB forward, 7.7 GB trace; at its original 1024 the trace exceeded 24 GB).

    Returns:
        The ``onnx`` section of ``config.yaml`` (file, opset, names, measured max abs difference).

    Raises:
        ExportError: the exporter fails (naming the backbone and the reason) or the check fails
            (the file is removed).
    """
    was_training = net.training
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    # Traced and checked on the CPU (onnxruntime runs the check there; GPU kernels, e.g. TF32, differ).
    wrapper = LogitsOnly(net.cpu()).eval()  # a fresh module is in training mode; the exporter restores it
    try:
        large = _trace_to_onnx(wrapper, path, num_frames=num_frames, size=size, metadata=metadata, opset=opset)
        try:
            max_diff = check_onnx(
                wrapper, path, num_frames=num_frames, size=size, tolerance=tolerance, batches=check_batches
            )
        except ExportError:
            path.unlink(missing_ok=True)
            path.with_name(ONNX_DATA_FILE).unlink(missing_ok=True)
            raise
    finally:
        net.to(device).train(was_training)
    return {
        "file": path.name,
        "opset": opset,
        "inputs": {"frames": ["batch", num_frames, 3, *size], "audio": ["batch", num_frames, 1, 96, 64]},
        "outputs": {"logits": ["batch", num_frames, "K", *size]},
        "max_abs_diff_vs_pytorch": max_diff,
        "checked_batches": list(check_batches),
        "external_data": ONNX_DATA_FILE if large else None,
    }


def _trace_to_onnx(
    wrapper: nn.Module,
    path: Path,
    *,
    num_frames: int,
    size: tuple[int, int],
    metadata: Mapping[str, str] | None,
    opset: int,
) -> bool:
    """Trace ``wrapper`` to ``path`` (with ``metadata`` in the model's properties); True if the
    weights went to the external file ``model.onnx.data``.

    Raises:
        ExportError: the exporter failed, naming the backbone and the reason.
    """
    import onnx

    try:
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            traced = Path(tmp) / ONNX_FILE
            with warnings.catch_warnings():
                # Shape checks turn into constants: intended, T and the frame size are fixed.
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                # The legacy exporter is chosen on purpose (export_onnx's docstring says why); its
                # deprecation notices are not the user's to act on.
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.onnx.export(
                    wrapper,
                    example_inputs(1, num_frames, size, seed=0),
                    str(traced),
                    input_names=["frames", "audio"],
                    output_names=["logits"],
                    dynamic_axes={"frames": {0: "batch"}, "audio": {0: "batch"}, "logits": {0: "batch"}},
                    opset_version=opset,
                    dynamo=False,
                )
            proto = onnx.load(str(traced))  # pulls in external weight files, if any
            for key, value in (metadata or {}).items():
                proto.metadata_props.add(key=key, value=value)
            large = sum(t.ByteSize() for t in proto.graph.initializer) > ONNX_MAX_INLINE_BYTES
            path.with_name(ONNX_DATA_FILE).unlink(missing_ok=True)
            onnx.save_model(
                proto, str(path), save_as_external_data=large, all_tensors_to_one_file=True,
                location=ONNX_DATA_FILE,
            )
    except Exception as exc:  # any exporter failure becomes one clear error
        name = type(getattr(wrapper, "net", wrapper)).__name__
        reason = (str(exc).strip().splitlines() or [""])[0]  # the exporter appends the whole graph
        if "_upsample_bilinear2d_aa" in reason:
            reason += (
                " (antialiased resizing has no ONNX operator; SAMA-AVS resizes frames to its SAM encoder "
                "size with it, so export SAMA-AVS at an input size equal to its img_size, e.g. 1024)"
            )
        raise ExportError(f"ONNX export of {name} failed: {type(exc).__name__}: {reason}") from exc
    return large


def check_onnx(
    wrapper: nn.Module,
    path: Path,
    *,
    num_frames: int,
    size: tuple[int, int],
    tolerance: float,
    batches: tuple[int, ...] = ONNX_CHECK_BATCHES,
) -> float:
    """Run ``path`` in onnxruntime and PyTorch on a random input per batch size in ``batches``
    (seeds 1, 2, ...: not the traced input); returns the max abs difference.

    Raises:
        ExportError: some element differs by more than ``tolerance * (1 + |torch|)``.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wrapper.eval()
    worst = 0.0
    for seed, batch in enumerate(batches, start=1):
        frames, audio = example_inputs(batch, num_frames, size, seed=seed)
        with torch.no_grad():
            expected = wrapper(frames, audio).numpy()
        (got,) = session.run(["logits"], {"frames": frames.numpy(), "audio": audio.numpy()})
        if got.shape != expected.shape:
            raise ExportError(f"{path}: onnxruntime logits have shape {got.shape}, PyTorch {expected.shape}")
        diff = np.abs(got - expected)
        worst = max(worst, float(diff.max()))
        if not np.all(diff <= tolerance * (1.0 + np.abs(expected))):
            raise ExportError(
                f"{path}: onnxruntime output differs from PyTorch by up to {worst:.3g} "
                f"(batch {batch}; allowed {tolerance:g} * (1 + |logit|)); the exported graph is wrong"
            )
    return worst


# ------------------------------------------------------------------------------------ export


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


# -------------------------------------------------------------------------------- model card


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def metric_mode(name: str, test_batch_frames: int) -> str:
    """The meaning of a logged metric (``"test/f_avsbench"`` -> its protocol), or ``""``."""
    suffix = name.rsplit("/", 1)[-1]
    return METRIC_MODES.get(suffix, "").format(group=test_batch_frames)


def _source_line(info: Mapping[str, Any] | None) -> str:
    if not info:
        return "not recorded"
    line = f"`{info.get('name')}` (folder `{info.get('root_name')}`)"
    labelers = info.get("labelers")
    if labelers:
        parts = [f"`{x['labeler']}` (config hash `{x['config_hash']}`, {x['clips']} clips)" for x in labelers]
        line += "; pseudo-labels by " + ", ".join(parts)
    elif info.get("name") == "pseudo":
        line += "; labeler not recorded (store manifest not readable here)"
    return line


def model_card(config: Mapping[str, Any], metrics: Mapping[str, Any]) -> str:
    """A Hugging Face style model card (YAML header + markdown) from ``config.yaml`` content."""
    backbone = config["backbone"]
    header = {
        "library_name": "openavs-st",
        "tags": ["audio-visual-segmentation", backbone["name"]],
        "metrics": sorted(metrics),
    }
    sections = [
        "---\n" + yaml.safe_dump(header, sort_keys=False).strip() + "\n---",
        f"# {backbone['name']} audio-visual segmentation model",
        f"Exported by openavs-st {config['openavs_st_version']} on {config['exported']}.",
        _card_model(config),
        _card_recipe(config),
        _card_data(config["training"]),
        _card_metrics(metrics, config["recipe"]["test_batch_frames"]),
        _card_usage(config["input"]),
    ]
    if config.get("onnx"):
        sections.append(_card_onnx(config["onnx"]))
    return "\n\n".join(sections) + "\n"


def _card_model(config: Mapping[str, Any]) -> str:
    backbone, inp = config["backbone"], config["input"]
    options = ", ".join(f"{k}={v}" for k, v in backbone.items() if k != "name") or "defaults"
    head = "yes" if config.get("similarity_head") else "no"
    return (
        "## Model\n"
        f"- Backbone: `{backbone['name']}` ({options}), recipe `{config['dataset']}`.\n"
        f"- Input: T = {inp['num_frames']} frames of {inp['size'][0]}x{inp['size'][1]} RGB ({inp['frames']}; "
        f"mean {inp['mean']}, std {inp['std']}) and audio as {inp['audio']}.\n"
        f"- Output: {config['output']['logits']}; mask = {config['output']['mask']}.\n"
        f"- Robust similarity head: {head} (lambda_sim = {config['training']['lambda_sim']})."
    )


def _card_recipe(config: Mapping[str, Any]) -> str:
    overrides = config["training"].get("recipe_overrides") or {}
    origin = (
        f"Overridden from the original: {json.dumps(overrides)}." if overrides
        else "The backbone's original recipe, unchanged."
    )
    rows = [(k, json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in config["recipe"].items()]
    return f"## Training recipe (`{config['dataset']}`)\n{origin}\n\n" + _table(("field", "value"), rows)


def _card_data(training: Mapping[str, Any]) -> str:
    return (
        "## Training data\n"
        f"- Training: {_source_line(training.get('data'))}\n"
        f"- Validation/test: {_source_line(training.get('eval_data') or training.get('data'))}"
    )


def _card_metrics(metrics: Mapping[str, Any], test_batch_frames: int) -> str:
    if not metrics:
        return "## Metrics\nNone recorded."
    rows = [
        (f"`{k}`", "n/a" if v is None else f"{v:.4f}", metric_mode(k, test_batch_frames))
        for k, v in sorted(metrics.items())
    ]
    return "## Metrics\n" + _table(("metric", "value", "mode"), rows)


def _card_usage(inp: Mapping[str, Any]) -> str:
    shape = f"[B, {inp['num_frames']}, 3, {inp['size'][0]}, {inp['size'][1]}]"
    return (
        "## How to load\n"
        "```python\n"
        "import openavs_st\n\n"
        'net = openavs_st.load_model("<this folder>")  # backbone nn.Module, eval mode (no Lightning)\n'
        f"out = net(frames, audio)  # frames {shape}, audio [B, {inp['num_frames']}, 1, 96, 64]\n"
        "masks = out.logits.sigmoid() > 0.5\n"
        "```\n\n"
        "Masks and overlay videos for video files, folders or dataset splits:\n\n"
        "```bash\npython infer.py model=<this folder> input=video.mp4 out=predictions/\n```"
    )


def _card_onnx(onnx_info: Mapping[str, Any]) -> str:
    return (
        "## ONNX\n"
        f"`{onnx_info['file']}` (opset {onnx_info['opset']}): inputs `frames` {onnx_info['inputs']['frames']}, "
        f"`audio` {onnx_info['inputs']['audio']}; output `logits`. Max abs difference to PyTorch at export "
        f"(batches {onnx_info['checked_batches']}): {onnx_info['max_abs_diff_vs_pytorch']:.2e}.\n\n"
        "```python\nimport onnxruntime as ort\n\n"
        f'session = ort.InferenceSession("{onnx_info["file"]}")\n'
        'logits, = session.run(["logits"], {"frames": frames, "audio": audio})\n```'
    )


# ---------------------------------------------------------------------------------- loading


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


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The backbone of an export folder, weights loaded strictly, in eval mode on ``device``.

    Rebuilds with ``backbones.create(config.backbone.name, dataset=config.dataset, **cfg)`` and loads
    the ``net.`` tensors of ``model.safetensors``; no Lightning import, no local weight files read.

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
    cfg = dict(config["backbone"])
    name = cfg.pop("name")
    net = backbones.create(name, dataset=config["dataset"], **cfg)
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


# ------------------------------------------------------------------------ checkpoints and CLI


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


if __name__ == "__main__":
    raise SystemExit(main())
