"""Benchmark: one training epoch over a pseudo-label store, log-mels recomputed vs kept in the store.

A store of ``--clips`` clips (T=5 frames of ``--size`` x ``--size`` png, masks, a 5 s 16-bit wav at
``--sample-rate``) is written with ``StoreWriter``; then every epoch iterates the training loader as
``AVSDataModule`` builds it (``ClipDataset`` over the ``store`` clip source, ``ClipTransform`` at
``--size``, the epoch-seeded shuffle, ``--batch`` clips per batch, ``--workers`` workers):

- ``recompute``: ``PseudoLabelStore(cache_log_mel=False)``, the old path: every access decodes the wav and
  computes its VGGish log-mel (resampling to 16 kHz first if needed);
- ``cached``: the default: the first epoch computes each log-mel once and writes
  ``audio/<clip>.logmel.npz`` (reported as ``cached, first epoch``); later epochs read it.

The two alternate for ``--rounds`` rounds in one process (median epoch time). The same comparison is made
for the log-mel alone (``log_mel_of`` of every clip, what the off-screen negatives read).

Usage (repository root)::

    python benchmarks/store_epoch.py [--clips 64] [--size 224] [--sample-rate 44100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from openavs_st.data.clip import Clip
from openavs_st.data.sources import StoreSource
from openavs_st.data.store import StoreWriter
from openavs_st.data.transforms import ClipTransform
from openavs_st.datamodule import AVSDataModule, ClipDataset, SourceSpec

T = 5


def write_store(root: Path, clips: int, size: int, sample_rate: int) -> None:
    """Smooth random frames (png compresses them as it does video frames, unlike white noise), a square mask,
    and a tone in noise."""
    rng = np.random.default_rng(0)
    writer = StoreWriter(root, labeler="benchmark")
    seconds = np.arange(T * sample_rate) / sample_rate
    for i in range(clips):
        coarse = rng.integers(0, 255, (T, 8, 8, 3), dtype=np.uint8)
        frames = np.repeat(np.repeat(coarse, size // 8, axis=1), size // 8, axis=2)
        masks = np.zeros((T, size, size), bool)
        masks[:, size // 4 : size // 2, size // 4 : size // 2] = True
        wave = 0.2 * np.sin(2 * np.pi * (200 + 10 * i) * seconds) + 0.05 * rng.standard_normal(seconds.size)
        writer.write(Clip(f"clip{i:04d}", frames, wave.astype(np.float32), sample_rate), masks)


def epoch_seconds(module: AVSDataModule, dataset: ClipDataset, epoch: int) -> float:
    loader = module.loader(dataset, train=True)
    loader.sampler.set_epoch(epoch)
    start = time.perf_counter()
    for batch in loader:
        assert batch["audio"].shape[1:] == (T, 1, 96, 64)
    return time.perf_counter() - start


def log_mel_seconds(source: StoreSource) -> float:
    start = time.perf_counter()
    for index in range(len(source)):
        source.log_mel_of(index)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--sample-rate", type=int, default=44100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        write_store(root, args.clips, args.size, args.sample_rate)
        spec = SourceSpec("pseudo", str(root))
        module = AVSDataModule(spec, spec, input_size=args.size, batch_size=args.batch, num_workers=args.workers,
                               pin_memory=False, persistent_workers=False)
        transform = ClipTransform(args.size)
        recompute = StoreSource(root, cache_log_mel=False)
        cached = StoreSource(root)
        old = ClipDataset(recompute, transform)
        new = ClipDataset(cached, transform)

        first = epoch_seconds(module, new, epoch=0)  # computes and writes every cache
        caches = len(list((root / "audio").glob("*.logmel.npz")))
        epochs = {"recompute": [], "cached": []}
        mels = {"recompute": [], "cached": []}
        for r in range(args.rounds):
            epochs["recompute"].append(epoch_seconds(module, old, epoch=r + 1))
            epochs["cached"].append(epoch_seconds(module, new, epoch=r + 1))
            mels["recompute"].append(log_mel_seconds(recompute))
            mels["cached"].append(log_mel_seconds(cached))

        # Same inputs either way.
        for index in (0, len(cached) - 1):
            np.testing.assert_array_equal(recompute.log_mel_of(index), cached.log_mel_of(index))

    epoch = {k: statistics.median(v) for k, v in epochs.items()}
    mel = {k: statistics.median(v) for k, v in mels.items()}
    print(
        f"torch {torch.__version__}, {args.threads} threads; {args.clips} clips x {T} frames {args.size}x{args.size}, "
        f"wav {args.sample_rate} Hz; batch {args.batch}, {args.workers} workers; median of {args.rounds} epochs"
    )
    print(f"epoch, recompute log-mels   : {epoch['recompute']:8.3f} s  ({args.clips / epoch['recompute']:6.1f} clips/s)")
    print(f"epoch, cached, first epoch  : {first:8.3f} s  (writes {caches} caches)")
    print(f"epoch, cached               : {epoch['cached']:8.3f} s  ({args.clips / epoch['cached']:6.1f} clips/s)")
    print(f"epoch speed-up              : {epoch['recompute'] / epoch['cached']:8.2f}x")
    print(f"log-mels only, recompute    : {1000 * mel['recompute'] / args.clips:8.2f} ms/clip")
    print(f"log-mels only, cached       : {1000 * mel['cached'] / args.clips:8.2f} ms/clip")
    print(f"log-mel speed-up            : {mel['recompute'] / mel['cached']:8.1f}x")


if __name__ == "__main__":
    main()
