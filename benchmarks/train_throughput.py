"""Benchmark: clips/s of our Lightning training step against a plain PyTorch loop.

Both sides train the same backbone (built from the same config and seed) on the same batches of the
synthetic dataset, with the same optimizer and the same loss terms of the backbone's recipe:

- ``lightning``: ``AVSLitModule`` + ``AVSDataModule`` under ``lightning.Trainer`` exactly as
  ``python train.py`` builds them (logging of every loss term, metrics objects attached), with
  checkpointing, validation, progress bar and loggers off so only the step itself is compared;
- ``plain``: ``for batch in loader: zero_grad; forward; sum of recipe loss terms; backward; step``.

The two run in alternating rounds in one process; each round times ``--steps`` steps after
``--warmup`` untimed ones and the result is the median over rounds.

Usage (repository root)::

    python -m benchmarks.train_throughput [--backbone tpavi] [--preset tiny] [--size 128] \
        [--steps 20] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from backbones.losses import LOSS_TERMS
from openavs_st.config import compose
from openavs_st.training import build_datamodule, build_module


class StepClock(L.Callback):
    """Wall time from the end of the ``warmup``-th batch to the end of the last one."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start: float | None = None
        self.end: float | None = None
        self.clips = 0
        self.steps = 0  # over epochs (batch_idx restarts every epoch)

    def on_train_batch_end(self, trainer: L.Trainer, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()
        self.steps += 1
        if self.steps == self.warmup:
            self.start = now
        elif self.steps > self.warmup:
            self.clips += batch["frames"].shape[0]
            self.end = now


def config(args: argparse.Namespace, data_dir: Path) -> Any:
    overrides = [
        f"backbone={args.backbone}",
        f"backbone.preset={args.preset}",
        "data=synthetic",
        f"data.root={data_dir}",
        f"data.input_size={args.size}",
        f"data.batch_size={args.batch_size}",
        "logger=none",
        f"paths.output_dir={data_dir / 'out'}",
    ]
    return compose(overrides)


def run_lightning(cfg: Any, steps: int, warmup: int) -> float:
    torch.manual_seed(0)
    module = build_module(cfg)
    data = build_datamodule(cfg, module)
    clock = StepClock(warmup)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=warmup + steps,
        max_epochs=-1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
    )
    trainer.fit(module, datamodule=data)
    return clock.clips / (clock.end - clock.start)


def run_plain(cfg: Any, steps: int, warmup: int) -> float:
    torch.manual_seed(0)
    module = build_module(cfg)  # only to get the same backbone, recipe and optimizer settings
    net, recipe = module.net.train(), module.recipe
    data = build_datamodule(cfg, module)
    data.setup("fit")
    loader = data.train_dataloader()
    opt_cls = torch.optim.AdamW if recipe.optimizer == "adamw" else torch.optim.Adam
    opt = opt_cls([p for p in net.parameters() if p.requires_grad], lr=recipe.lr, weight_decay=recipe.weight_decay)
    done, clips, start = 0, 0, None
    while done < warmup + steps:
        for batch in loader:
            opt.zero_grad(set_to_none=True)
            out = net(batch["frames"], batch["audio"])
            weight = (batch["has_label"] & batch["frame_valid"]).float()
            loss = sum(w * LOSS_TERMS[name](out, batch["masks"], weight) for name, w in recipe.loss_terms.items() if w)
            loss.backward()
            opt.step()
            done += 1
            if done == warmup:
                start = time.perf_counter()
            elif done > warmup:
                clips += batch["frames"].shape[0]
            if done == warmup + steps:
                break
    return clips / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="tpavi")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config(args, Path(tmp))
        rates: dict[str, list[float]] = {"lightning": [], "plain": []}
        for _ in range(args.rounds):
            rates["plain"].append(run_plain(cfg, args.steps, args.warmup))
            rates["lightning"].append(run_lightning(cfg, args.steps, args.warmup))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"torch {torch.__version__}, lightning {L.__version__}, {args.threads} threads")
    print(
        f"backbone={args.backbone} preset={args.preset} size={args.size} batch={args.batch_size} "
        f"steps={args.steps} (+{args.warmup} warm-up) rounds={args.rounds}"
    )
    print("| loop | clips/s per round | median clips/s |")
    print("|---|---|---|")
    for k in ("plain", "lightning"):
        print(f"| {k} | {', '.join(f'{r:.2f}' for r in rates[k])} | {med[k]:.2f} |")
    print(f"\nratio lightning / plain = {med['lightning'] / med['plain']:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
