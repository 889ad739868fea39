"""ONNX export of the backbones at their original sizes: export time, parity with PyTorch, latency.

For each backbone (random weights, ``--preset``, the s4 recipe's input size, T = 5) this times
:func:`openavs_st.export.export_onnx` (trace, then the onnxruntime-vs-PyTorch check on one random
clip per ``--check-batches`` size, which fails beyond 1e-4 * (1 + |logit|)), then times one clip
(B = 1) in PyTorch and in onnxruntime (best of ``--repeats``) and records the largest abs
difference on a fresh random clip. Run from the repository root::

    python -m benchmarks.export_onnx --backbones tpavi avsegformer
    python -m benchmarks.export_onnx --backbones sama_avs --sam-variant vit_b --sama-img-size 512 --check-batches 1
"""

from __future__ import annotations

import argparse
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from openavs_st.export import example_inputs, export_onnx
from openavs_st.module import AVSLitModule


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench(name: str, args: argparse.Namespace, out_root: Path) -> dict:
    cfg = {"name": name, "preset": args.preset}
    if name == "sama_avs":
        cfg["sam_variant"] = args.sam_variant
        if args.sama_img_size:
            cfg["img_size"] = args.sama_img_size
    module = AVSLitModule(backbone=cfg, dataset="s4").eval()
    net = module.net
    side = args.sama_img_size if name == "sama_avs" and args.sama_img_size else module.recipe.input_size
    size = (side, side)
    path = out_root / f"{name}.onnx"
    start = time.perf_counter()
    info = export_onnx(net, path, num_frames=5, size=size, check_batches=tuple(args.check_batches))
    export_seconds = time.perf_counter() - start
    frames, audio = example_inputs(1, 5, size, seed=100)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"frames": frames.numpy(), "audio": audio.numpy()}
    with torch.no_grad():
        expected = net(frames, audio).logits.numpy()
        torch_seconds = best_time(lambda: net(frames, audio), args.repeats)
    (got,) = session.run(["logits"], feed)
    ort_seconds = best_time(lambda: session.run(["logits"], feed), args.repeats)
    return {
        "backbone": name + (f" ({args.sam_variant}, img_size {side})" if name == "sama_avs" else ""),
        "params": sum(p.numel() for p in net.parameters()),
        "size": f"{size[0]}x{size[1]}",
        "export_s": export_seconds,
        "onnx_mb": path.stat().st_size / 2**20,
        "check_diff": info["max_abs_diff_vs_pytorch"],
        "fresh_diff": float(np.abs(got - expected).max()),
        "logit_absmax": float(np.abs(expected).max()),
        "torch_s": torch_seconds,
        "ort_s": ort_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["tpavi", "avsegformer"])
    parser.add_argument("--preset", default="full")
    parser.add_argument("--sam-variant", default="vit_b")
    parser.add_argument("--sama-img-size", type=int, default=None, help="SAM encoder (and input) size; default 1024")
    parser.add_argument("--check-batches", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.backbones:
            rows.append(bench(name, args, Path(tmp)))
            print(rows[-1], flush=True)
    print(
        f"\nExport check batches {args.check_batches}.\n\n| backbone | params | input | export s | model.onnx MB | "
        "max abs diff (export check) | max abs diff (fresh clip) | max abs logit | PyTorch s/clip | "
        "onnxruntime s/clip |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['backbone']} | {r['params'] / 1e6:.1f} M | {r['size']} | {r['export_s']:.1f} | "
            f"{r['onnx_mb']:.0f} | {r['check_diff']:.2e} | {r['fresh_diff']:.2e} | {r['logit_absmax']:.2f} | "
            f"{r['torch_s']:.2f} | {r['ort_s']:.2f} |"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"\nEnvironment: {platform.machine()}, {args.threads} threads, torch {torch.__version__}, onnxruntime "
        f"{ort.__version__}, preset {args.preset}; times best of {args.repeats}; peak RSS {peak:.1f} GB."
    )


if __name__ == "__main__":
    main()
