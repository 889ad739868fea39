"""Read the official tensor layouts in ``tests/data/official_keys/*.tsv`` (see the generator there)."""

from __future__ import annotations

from pathlib import Path

import torch

OFFICIAL_KEYS_DIR = Path(__file__).resolve().parent / "data" / "official_keys"


def read_layout(name: str) -> dict[str, tuple[int, ...]]:
    """``name<TAB>d0,d1,...`` lines -> {tensor name: shape} in file order."""
    layout: dict[str, tuple[int, ...]] = {}
    for line in (OFFICIAL_KEYS_DIR / name).read_text().splitlines():
        key, shape = line.split("\t")
        layout[key] = tuple(int(d) for d in shape.split(",")) if shape else ()
    return layout


def random_state_dict(layout: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors of the given shapes (``num_batches_tracked`` as int64, like torch saves it)."""
    gen = torch.Generator().manual_seed(seed)
    return {
        key: (
            torch.randint(0, 100, shape, generator=gen)
            if key.endswith("num_batches_tracked")
            else torch.randn(shape, generator=gen)
        )
        for key, shape in layout.items()
    }


def meta_state_dict(layout: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Shape-only tensors on the ``meta`` device (for checking full-size layouts for free)."""
    return {key: torch.empty(shape, device="meta") for key, shape in layout.items()}
