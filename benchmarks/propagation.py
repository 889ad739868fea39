"""OpenAVS masks per frame vs by video propagation (``labeler.propagate``): frames per second and mask agreement.

Both sides run the OpenAVS labeler's last stage (``OpenAVSLabeler.finish``: grounding + masks) on the same
synthetic AVSBench-S4 clips, in ``clip_label`` mode (each clip's class name is every frame's phrase, so no
audio model or LLM takes part), with the same tiny random GroundingDINO. Per-frame: SAM 2's image model
(transformers ``Sam2Model``, segmenter ``sam2``) segments every box on every frame. Propagation: each phrase's
best box over the clip prompts SAM 2's video model (``sam2_video``) on its frame, propagated forward and
backward. The image model reads the video model's checkpoint, so both use the same SAM 2 weights. Agreement
is the IoU of the two masks of each frame (a frame where both are empty counts 1, as AVSBench scores it).
Random weights: the numbers measure the pipeline's cost and how far propagation departs from per-frame
segmentation with identical weights, not the quality of either.

    python benchmarks/propagation.py [--clips 8] [--size 128] [--threads 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from openavs_st.data.sources import AVSBenchSource
from openavs_st.data.synthetic import write_synthetic
from pseudolabel.openavs import OpenAVSLabeler
from pseudolabel.vfm.video import create_video_segmenter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tiny_saved_models import save_component, save_grounding_dino  # noqa: E402

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "a", "circle", "square", "triangle"]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--size", type=int, default=128, help="frame side in pixels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per side (best kept)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        torch.manual_seed(0)
        save_grounding_dino(root / "dino", WORDS)
        save_component(create_video_segmenter("sam2_video", config={}), root / "sam2")
        data = write_synthetic(root / "data", ("s4",), splits={"test": args.clips}, size=args.size, seed=1)["s4"]
        source = AVSBenchSource("avsbench_s4", data, "test")

        common = {"mode": "clip_label", "grounder": {"name": "grounding_dino", "model": str(root / "dino")}}
        per_frame = OpenAVSLabeler.from_config({**common, "name": "per_frame",
                                                "segmenter": {"name": "sam2", "model": str(root / "sam2")}})
        propagated = OpenAVSLabeler.from_config({**common, "name": "propagate", "propagate": True,
                                                 "video_segmenter": {"name": "sam2_video", "model": str(root / "sam2")}})
        for labeler in (per_frame, propagated):
            labeler.load_models()
            labeler.finish([labeler.prepare(source, source.ids[0])])  # warm-up

        results: dict[str, tuple[float, list[np.ndarray], list[dict]]] = {}
        for name, labeler in (("per-frame", per_frame), ("propagation", propagated)):
            best = None
            for _ in range(args.repeats):
                items = [labeler.prepare(source, clip_id) for clip_id in source.ids]
                start = time.perf_counter()
                labels = [labeler.finish([item])[0] for item in items]
                elapsed = time.perf_counter() - start
                if best is None or elapsed < best[0]:
                    best = (elapsed, [label.masks for label in labels], [label.record for label in labels])
            results[name] = best
        frames_of = [source.load(clip_id).frames for clip_id in source.ids]
        report(args, results, per_frame, frames_of)


def report(args: argparse.Namespace, results: dict, per_frame: OpenAVSLabeler, frames_of: list[np.ndarray]) -> None:
    frames = sum(len(m) for m in results["per-frame"][1])
    print(f"torch {torch.__version__}, {args.threads} threads; {args.clips} synthetic S4 clips x 5 frames, "
          f"{args.size}x{args.size}; tiny random GroundingDINO + SAM 2 (same weights both sides); best of {args.repeats}")
    for name, (elapsed, _, records) in results.items():
        ground = sum(r["timings"]["ground_s"] for r in records)
        print(f"{name:12s}: {elapsed:7.2f} s  {frames / elapsed:6.2f} frames/s  (grounding {ground:.2f} s, "
              f"masks {elapsed - ground:.2f} s)")
    prompt_ious, other_ious = [], []
    for a, b, record in zip(results["per-frame"][1], results["propagation"][1], results["propagation"][2]):
        prompt_frames = {p["frame"] for p in record["propagation"]["prompts"]}
        for t in range(len(a)):
            (prompt_ious if t in prompt_frames else other_ious).append(iou(a[t], b[t]))
    every = prompt_ious + other_ious
    print(f"mask IoU per-frame vs propagation: mean {np.mean(every):.3f} over {len(every)} frames; "
          f"prompt frames {np.mean(prompt_ious) if prompt_ious else float('nan'):.3f} ({len(prompt_ious)}), "
          f"other frames {np.mean(other_ious) if other_ious else float('nan'):.3f} ({len(other_ious)})")
    print(f"frames with a non-empty mask: per-frame {sum(int(m.any()) for c in results['per-frame'][1] for m in c)}, "
          f"propagation {sum(int(m.any()) for c in results['propagation'][1] for m in c)}")
    # One object per phrase on both sides: per frame, the image model's mask of each phrase's best box there
    # (on a prompt frame: the prompt's box; the record's scores are rounded, so ties are resolved by it).
    single_prompt, single_other = [], []
    for masks, record, clip_frames in zip(results["propagation"][1], results["propagation"][2], frames_of):
        prompts = record["propagation"]["prompts"]
        prompt_frames = {p["frame"] for p in prompts}
        for t, info in enumerate(record["frames_info"]):
            best: dict[str, tuple[float, list[float]]] = {}
            for box, score, label in zip(info["boxes"], info["box_scores"], info["box_labels"]):
                if label not in best or score > best[label][0]:
                    best[label] = (score, box)
            best.update({p["phrase"]: (p["score"], p["box"]) for p in prompts if p["frame"] == t})
            boxes = np.array([b for _, b in best.values()], np.float32).reshape(-1, 4)
            single = per_frame.segmenter.segment([clip_frames[t]], [boxes])[0]
            (single_prompt if t in prompt_frames else single_other).append(iou(single, masks[t]))
    print(f"mask IoU best-box-per-phrase per frame vs propagation: prompt frames {np.mean(single_prompt):.3f} "
          f"({len(single_prompt)}), other frames {np.mean(single_other):.3f} ({len(single_other)})")


if __name__ == "__main__":
    main()
