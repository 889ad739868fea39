"""Benchmark: TPAVI's factorised (rank <= T) affinity against the original (THW)^2 one.

Two measurements, each mode in its own subprocess so peak memory (``ru_maxrss``) is not shared:

- ``block``: one TPAVI block at stage 1 of a 224x224 clip (x ``[1, 256, 5, 56, 56]``, 15,680
  positions; the naive affinity is a 15,680^2 matrix), forward + backward.
- ``model``: a full TPAVI-PVTv2-B5 train step (random weights, B=1 clip, T=5, 224x224,
  forward + backward of the mean logit).

Usage::

    python benchmarks/tpavi_affinity.py [--repeats 3] [--threads 2] [--skip-model]

Prints a markdown table: median step time and peak RSS growth during the steps, per mode.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch


def current_rss_mib() -> float:
    """Resident set size now (``/proc/self/statm``), MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB), MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_step(kind: str, affinity: str) -> Callable[[], None]:
    """A closure running one forward + backward of the benchmarked module."""
    import backbones
    from backbones.tpavi import TPAVIBlock

    torch.manual_seed(0)
    if kind == "block":
        block = TPAVIBlock(256, affinity=affinity).train()
        x = torch.randn(1, 256, 5, 56, 56, requires_grad=True)
        audio = torch.randn(1, 5, 128)

        def step() -> None:
            block(x, audio)[0].mean().backward()

        return step
    model = backbones.create("tpavi", dataset="ms3", visual_encoder="pvt_v2_b5", affinity=affinity).train()
    frames = torch.randn(1, 5, 3, 224, 224)
    audio = torch.randn(1, 5, 1, 96, 64)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(frames, audio).logits.mean().backward()

    return step


def worker(kind: str, affinity: str, repeats: int, threads: int) -> dict[str, float]:
    """Run in a fresh process: median seconds per step and peak RSS growth (MiB) over the steps."""
    torch.set_num_threads(threads)
    step = make_step(kind, affinity)
    baseline = current_rss_mib()
    step()  # warm-up (counted in the peak, not in the time)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times), "peak_mib": peak_rss_mib() - baseline}


def run_isolated(kind: str, affinity: str, repeats: int, threads: int) -> dict[str, float]:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        affinity,
        "--repeats",
        str(repeats),
        "--threads",
        str(threads),
    ]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"worker {kind}/{affinity} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--skip-model", action="store_true", help="only the stage-1 block")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "AFFINITY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, repeats=args.repeats, threads=args.threads)))
        return

    kinds = ["block"] if args.skip_model else ["block", "model"]
    labels = {
        "block": "TPAVI block, stage 1 (x [1,256,5,56,56]), fwd+bwd",
        "model": "TPAVI-PVTv2-B5 train step (B=1, T=5, 224x224), fwd+bwd",
    }
    print(
        f"torch {torch.__version__}, {args.threads} threads, median of {args.repeats} steps after 1 warm-up\n"
    )
    print(
        "| what | naive s | factorised s | speed-up | naive peak MiB | factorised peak MiB | memory ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    for kind in kinds:
        naive = run_isolated(kind, "naive", args.repeats, args.threads)
        fact = run_isolated(kind, "factorised", args.repeats, args.threads)
        print(
            f"| {labels[kind]} | {naive['seconds']:.3f} | {fact['seconds']:.3f} | "
            f"{naive['seconds'] / fact['seconds']:.1f}x | {naive['peak_mib']:.0f} | {fact['peak_mib']:.0f} | "
            f"{fact['peak_mib'] / naive['peak_mib']:.3f} |"
        )


if __name__ == "__main__":
    main()
