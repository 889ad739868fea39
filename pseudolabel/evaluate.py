"""``python -m pseudolabel.evaluate store=... data=avsbench_s4 data.root=... split=test``: score a pseudo-label
store against AVSBench ground truth (the training-free rows of the OpenAVS paper's Table 1a).

Metrics (:mod:`openavs_st.metrics`, AVSBench-exact): ``miou_avsbench`` (frame-averaged foreground IoU,
empty-GT rule included), ``f_avsbench`` (beta^2 = 0.3, max over 255 thresholds of the curve averaged over
groups of ``f_group_size`` frames, AVSBench's test batches), ``f_pooled`` (one curve over all frames),
and the OpenAVS paper's two-class ``miou_2class_dataset``. A store mask is binary, so it enters the
metrics as logits of +/-1e4 (sigmoid exactly 1 or 0 in float32). Only frames with ground truth count
(``Clip.has_label``); AVSS is scored in its binary view. Clips are scored in the reader's order.

Prints a table and writes ``metrics.json`` (default: in the store folder).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from pseudolabel.cli import CLIError, run_entry
from pseudolabel.components import config_number

MISSING_POLICIES = ("error", "empty", "skip")
BINARY_LOGIT = 1e4  # sigmoid(+1e4) == 1.0 and sigmoid(-1e4) == 0.0 in float32


def mask_logits(masks: np.ndarray) -> Any:
    """Binary masks (nonzero = foreground) as float32 logits ``±BINARY_LOGIT`` (a torch tensor), what the
    AVSBench metrics of :mod:`openavs_st.metrics` take."""
    import torch

    return torch.from_numpy(np.where(masks > 0, BINARY_LOGIT, -BINARY_LOGIT).astype(np.float32))


def evaluate_store(
    store: str | Path,
    dataset: str,
    root: str | Path,
    split: str = "test",
    *,
    missing: str = "error",
    f_group_size: int = 20,
    reader_kwargs: dict[str, Any] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Scores of a store on an AVSBench split (see the module docstring); a JSON-ready dict. ``progress``:
    a progress bar on stderr."""
    import torch
    from tqdm.auto import tqdm

    from openavs_st.data.avsbench import open_reader
    from openavs_st.data.clip import ClipError
    from openavs_st.data.store import STATUS_OK, PseudoLabelStore
    from openavs_st.metrics import FScore, MaskIoU, TwoClassMIoU

    if missing not in MISSING_POLICIES:
        raise ValueError(f"missing must be one of {MISSING_POLICIES}, got {missing!r}")
    labels = PseudoLabelStore(Path(store).expanduser(), compute_log_mel=False)
    store, records = labels.root, labels.all_records
    # a store holds binary masks: an AVSS split is scored against its binary (any-class) masks
    reader_name = "avsbench_avss_binary" if dataset == "avsbench_avss" else dataset
    reader = open_reader(reader_name, root, split, audio="none", **(reader_kwargs or {}))
    absent = {cid for cid in reader.ids if records.get(cid, {}).get("status") != STATUS_OK}
    if absent and missing == "error":
        failed = [cid for cid in absent if cid in records]
        examples = [cid for cid in reader.ids if cid in absent][:5]
        raise ClipError(
            f"{len(absent)} of {len(reader)} {dataset} {split} clips have no ok record in {store} "
            f"(e.g. {examples}; {len(failed)} failed); label them, or pass missing=empty (score them as "
            "empty masks) or missing=skip"
        )
    metrics = {
        "miou_avsbench": MaskIoU(),
        "f_avsbench": FScore("avsbench", group_size=int(f_group_size)),
        "f_pooled": FScore("pooled"),
        "miou_2class_dataset": TwoClassMIoU("dataset"),
    }
    scored = frames = 0
    bar = tqdm(reader.ids, desc=f"scoring {dataset} {split}", unit="clip", disable=not progress)
    for index, clip_id in enumerate(bar):
        if clip_id in absent and missing == "skip":
            continue
        clip = reader[index]
        gt = np.minimum(clip.masks, 1).astype(np.uint8)
        if clip_id in absent:
            pred = np.zeros_like(gt)
        else:
            pred = labels.read_masks(records[clip_id])
            if pred.shape != gt.shape:
                raise ClipError(
                    f"{store}: clip {clip_id!r} has masks {pred.shape} but the ground truth is {gt.shape} "
                    "(a different frame count or size)"
                )
        logits = mask_logits(pred)
        target = torch.from_numpy(gt)
        valid = torch.from_numpy(clip.has_label.copy())
        for metric in metrics.values():
            metric.update(logits, target, valid)
        scored += 1
        frames += int(valid.sum())
    values = {name: float(metric.compute()) for name, metric in metrics.items()}
    return {
        "store": str(store),
        "dataset": dataset,
        "split": split,
        "clips": len(reader),
        "clips_scored": scored,
        "clips_missing": len(absent),
        "missing_policy": missing,
        "frames_scored": frames,
        "f_group_size": int(f_group_size),
        "metrics": values,
    }


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result['dataset']} {result['split']}: {result['store']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result["metrics"].items():
        table.add_row(name, f"{value:.4f}")
    table.add_row("clips scored / missing", f"{result['clips_scored']} / {result['clips_missing']}")
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    return run_entry("evaluate", argv, __doc__, run)


def run(cfg: dict[str, Any]) -> int:
    from openavs_st.data.configs import require_root
    from openavs_st.data.store import atomic_write

    data = cfg.get("data") or {}
    require_root(data.get("root"), key="data.root", owner=f"data.name={data.get('name')}")
    options = {"subsets": list(data["subsets"])} if data.get("subsets") else {}
    out = Path(str(cfg.get("out") or cfg["store"])).expanduser()
    path = out / "metrics.json" if out.suffix != ".json" else out
    if path.parent.exists() and not path.parent.is_dir():  # checked before the scoring, which can take a while
        raise CLIError(f"out={cfg.get('out')}: {path.parent} is a file, so {path.name} cannot be written in it")
    if path.is_dir():
        raise CLIError(f"out={cfg.get('out')}: {path} is a folder")
    f_group_size = config_number(cfg.get("f_group_size"), "f_group_size", minimum=1, default=20)
    result = evaluate_store(
        cfg["store"],
        str(data["name"]),
        str(data["root"]),
        str(cfg.get("split") or "test"),
        missing=str(cfg.get("missing") or "error"),
        f_group_size=f_group_size,
        reader_kwargs=options,
        progress=bool(cfg.get("progress", True)),
    )
    print_table(result)  # shown even if the file cannot be written
    text = json.dumps(result, indent=2) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
