"""SAMA-AVS on CPU: parity with Meta's SAM code, and time per frame.

1. Parity (needs Meta's ``segment_anything`` package; ``--sam-package DIR`` adds an unpacked wheel
   to ``sys.path``): a SAMA-AVS model whose audio adapters are zeroed is exactly SAM with the
   "no prompt" inputs, so with the same random weights our output must match
   ``Sam.image_encoder`` -> ``Sam.mask_decoder(multimask_output=False)`` ->
   ``Sam.postprocess_masks`` up to float rounding. Reports the largest absolute differences and
   one image-encoder forward time of each implementation.
2. Speed: tiny preset forward+backward (B=1, T=5, 64²), and one 1024² frame through the real
   ViT-B / ViT-H models (forward without grad; ViT-B also forward+backward into the adapters and
   the decoder, as in training).

    python -m benchmarks.sama_avs [--sam-package DIR] [--variants vit_b vit_h] [--repeats 1]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Callable

import torch

from backbones.sama_avs import SAMAAVS, build_sama_avs


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Fill every tensor with small random values (norm weights around 1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            noise = torch.randn(tensor.shape, generator=gen)
            if tensor.dim() == 1 and name.endswith("weight"):
                tensor.copy_(1 + 0.1 * noise)
            else:
                tensor.copy_(0.02 * noise)


def parity(variant: str) -> dict[str, float]:
    """Max |ours - SAM| for the image embedding and the 1024² logits of one frame, and the time
    of one image-encoder forward in each implementation."""
    from segment_anything import sam_model_registry

    sam = sam_model_registry[variant]().eval()
    randomise(sam, seed=0)
    ours: SAMAAVS = build_sama_avs(sam_variant=variant).eval()
    ours.load_sam(sam.state_dict(), prompt_from_sam=True)
    generator = ours.image_encoder.prompt_generator
    with torch.no_grad():
        generator.shared_mlp.weight.zero_()
        generator.shared_mlp.bias.zero_()

    gen = torch.Generator().manual_seed(1)
    frame = torch.randn(1, 1, 3, 1024, 1024, generator=gen)
    audio = torch.randn(1, 1, 1, 96, 64, generator=gen)
    with torch.no_grad():
        start = time.perf_counter()
        sam_embedding = sam.image_encoder(frame[0])
        sam_seconds = time.perf_counter() - start
        sparse, dense = sam.prompt_encoder(points=None, boxes=None, masks=None)
        low_res, _ = sam.mask_decoder(
            image_embeddings=sam_embedding,
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        sam_logits = sam.postprocess_masks(low_res, (1024, 1024), (1024, 1024))
        audio_embedding = ours.audio_encoder(audio[0])
        start = time.perf_counter()
        our_embedding = ours.image_encoder(frame[0], audio_embedding)
        our_seconds = time.perf_counter() - start
        our_logits = ours(frame, audio).logits[0]
    return {
        "embedding_max_abs_diff": (our_embedding - sam_embedding).abs().max().item(),
        "embedding_max_abs": sam_embedding.abs().max().item(),
        "logits_max_abs_diff": (our_logits - sam_logits).abs().max().item(),
        "logits_max_abs": sam_logits.abs().max().item(),
        "mask_disagreement": ((our_logits > 0) != (sam_logits > 0)).float().mean().item(),
        "sam_image_encoder_seconds": sam_seconds,
        "our_image_encoder_seconds": our_seconds,
    }


def seconds(fn: Callable[[], None], repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def train_step(model: SAMAAVS, frames: torch.Tensor, audio: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(frames, audio).logits.sigmoid().mean().backward()

    return step


def speed(variants: list[str], repeats: int) -> list[tuple[str, float]]:
    rows: list[tuple[str, float]] = []
    torch.manual_seed(0)
    tiny = build_sama_avs(preset="tiny").train()
    frames, audio = torch.randn(1, 5, 3, 64, 64), torch.randn(1, 5, 1, 96, 64)
    tiny_step = seconds(train_step(tiny, frames, audio), repeats)
    rows.append(("tiny, B=1 T=5 64², forward+backward (whole clip)", tiny_step))
    for variant in variants:
        model = build_sama_avs(sam_variant=variant)
        frame, audio = torch.randn(1, 1, 3, 1024, 1024), torch.randn(1, 1, 1, 96, 64)

        def forward(model: SAMAAVS = model, frame: torch.Tensor = frame, audio: torch.Tensor = audio) -> None:
            with torch.no_grad():
                model.eval()(frame, audio)

        rows.append((f"{variant}, one 1024² frame, forward (no grad)", seconds(forward, repeats)))
        if variant == "vit_b":
            step = seconds(train_step(model.train(), frame, audio), repeats)
            rows.append((f"{variant}, one 1024² frame, forward+backward", step))
        del model
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sam-package", help="directory holding Meta's segment_anything package")
    parser.add_argument("--variants", nargs="*", default=["vit_b", "vit_h"])
    parser.add_argument("--parity-variant", default="vit_b")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    if args.sam_package:
        sys.path.insert(0, args.sam_package)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    try:
        result = parity(args.parity_variant)
    except ImportError:
        print("parity: skipped (segment_anything not importable)")
    else:
        print(f"parity ({args.parity_variant}, 1024², zeroed adapters vs segment_anything 1.0):")
        for key, value in result.items():
            print(f"  {key}: {value:.3g}")
    print("speed (median of", args.repeats, "runs after a warm-up):")
    for label, value in speed(args.variants, args.repeats):
        print(f"  {label}: {value:.3f} s")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB")


if __name__ == "__main__":
    main()
