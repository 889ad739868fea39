"""The model card (``README.md`` of an export folder, Hugging Face style) from ``config.yaml`` content."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import yaml

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
    "miou_avss": "AVSBench-semantic mIoU: per frame and class, IoU of the argmax prediction; per class the mean "
    "over the frames where it is predicted or labelled; mean over all 71 classes (absent ones count 0)",
    "f_avss": "AVSBench-semantic F-score (beta^2 = 0.3) of the argmax prediction, averaged per class over the "
    "frames where it appears, then over all 71 classes",
    "fpr": "fraction of pixels predicted foreground (on negative audio: lower is better)",
    "g_miou": "AVSBench-Robust G-mIoU: harmonic mean of positive mIoU and 1 - negative mIoU",
    "g_f": "AVSBench-Robust G-F: harmonic mean of positive F and 1 - negative F",
    "g_fpr": "AVSBench-Robust G-FPR over the negative kinds",
}


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
