"""AVSegFormer on CPU: time of the pure-PyTorch deformable attention and of the model.

1. ``ms_deform_attn``: one encoder layer's multi-scale deformable attention at the shapes of one
   512² frame (levels 64², 32², 16² -> 5376 queries, 8 heads x 32 channels, 4 points), forward
   and forward+backward.
2. Tiny preset forward+backward (B=1, T=5, 64²), the size the tests use.
3. Full AVSegFormer-PVTv2 on one frame at each ``--sizes`` (224 = AVSS, 512 = S4/MS3): forward
   without grad (evaluation), and forward+backward with the backbone frozen (the first epochs of
   the S4/MS3 recipes).

    python -m benchmarks.avsegformer [--sizes 224 512] [--repeats 3]

Prints a markdown table; peak resident memory of the process is reported at the end.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable

import torch

import backbones
from backbones.deform_attn import MSDeformAttn


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time in seconds of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def deform_attn_rows(repeats: int) -> list[tuple[str, float]]:
    torch.manual_seed(0)
    shapes = [(64, 64), (32, 32), (16, 16)]
    length = sum(h * w for h, w in shapes)
    attn = MSDeformAttn(d_model=256, n_levels=3, n_heads=8, n_points=4)
    src = torch.randn(1, length, 256)
    query = torch.randn(1, length, 256, requires_grad=True)
    ref = torch.rand(1, length, 3, 2)

    def forward() -> None:
        with torch.no_grad():
            attn(query, ref, src, shapes)

    def forward_backward() -> None:
        attn(query, ref, src, shapes).sum().backward()

    return [
        ("MSDeformAttn, 1 frame @512 (5376 queries), forward", timed(forward, repeats)),
        ("MSDeformAttn, 1 frame @512, forward+backward", timed(forward_backward, repeats)),
    ]


def model_rows(sizes: list[int], repeats: int) -> list[tuple[str, float]]:
    rows = []
    torch.manual_seed(0)
    tiny = backbones.create("avsegformer", dataset="s4", preset="tiny").train()
    frames, audio = torch.randn(1, 5, 3, 64, 64), torch.randn(1, 5, 1, 96, 64)
    rows.append((
        "tiny preset, B=1 T=5 @64, forward+backward",
        timed(lambda: tiny(frames, audio).logits.mean().backward(), repeats),
    ))
    full = backbones.create("avsegformer", dataset="s4", preset="full")
    for size in sizes:
        frame, example = torch.randn(1, 1, 3, size, size), torch.randn(1, 1, 1, 96, 64)

        def evaluate() -> None:
            with torch.no_grad():
                full(frame, example)

        def train_step() -> None:
            full(frame, example).logits.mean().backward()

        full.eval()
        rows.append(
            (f"full PVTv2, 1 frame @{size}, forward (eval, no grad)", timed(evaluate, repeats))
        )
        full.train()
        rows.append((
            f"full PVTv2, 1 frame @{size}, forward+backward (backbone frozen)",
            timed(train_step, repeats),
        ))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 512])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rows = deform_attn_rows(args.repeats) + model_rows(args.sizes, args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} after 1 warm-up\n")
    print("| case | seconds |\n|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} |")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak resident memory: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
