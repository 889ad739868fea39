"""ALM describe throughput: one batched call per clip vs one call per (segment, prompt) pair.

OpenAVS describes every one-second segment of a clip with each prompt (Pengi: three). The batched side
describes a clip's ``--seconds`` segments x prompts in one call (``batch_size = seconds x prompts``: one
beam search over all pairs for ``pengi``); the per-call side uses ``batch_size=1`` (one search per pair, as
microsoft/Pengi ``wrapper.py`` ``describe`` loops). Both run the same tiny random model (``config={}``,
offline), so the numbers measure the batching, not a real checkpoint's speed. The script checks that both
sides return the same texts.

    python benchmarks/alm.py [--alm pengi] [--clips 4] [--seconds 5] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from pseudolabel import alm


def clips(count: int, seconds: int, sample_rate: int = 16000) -> list[list[np.ndarray]]:
    """``count`` clips of ``seconds`` one-second segments (tones with a little noise, all different)."""
    rng = np.random.default_rng(0)
    t = np.arange(sample_rate) / sample_rate
    return [
        [
            (0.3 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t) + 0.02 * rng.standard_normal(sample_rate)).astype(
                np.float32
            )
            for _ in range(seconds)
        ]
        for _ in range(count)
    ]


def run(describer, data: list[list[np.ndarray]]) -> tuple[float, list]:
    start = time.perf_counter()
    texts = [describer.describe(segments, 16000) for segments in data]
    return time.perf_counter() - start, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alm", default="pengi")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    batched = alm.create_alm(args.alm, config={})
    pairs_per_clip = args.seconds * len(batched.prompts)
    batched = alm.create_alm(args.alm, config={}, batch_size=pairs_per_clip)
    single = alm.create_alm(args.alm, config={}, batch_size=1)
    data = clips(args.clips, args.seconds)
    run(batched, data[:1])  # load both models and warm up
    run(single, data[:1])

    results = {}
    for name, describer in (("per-call", single), ("batched", batched)):
        times, texts = zip(*(run(describer, data) for _ in range(args.repeats)))
        results[name] = (min(times), texts[0])
    if results["per-call"][1] != results["batched"][1]:
        raise SystemExit("batched and per-call texts differ")

    segments = args.clips * args.seconds
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); alm={args.alm} (tiny, config={{}}); "
        f"{args.clips} clips x {args.seconds} one-second segments x {len(batched.prompts)} prompts; best of {args.repeats}"
    )
    for name, (seconds, _) in results.items():
        batch = pairs_per_clip if name == "batched" else 1
        print(f"{name:9s} (batch_size {batch:2d}): {seconds:7.2f} s  {segments / seconds:7.2f} segments/s")
    print(f"speed-up: {results['per-call'][0] / results['batched'][0]:.2f}x (identical texts)")


if __name__ == "__main__":
    main()
