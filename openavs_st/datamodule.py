"""``AVSDataModule``: AVSBench splits, the pseudo-label store, or a mix, batched as tensors.

A *source* (:class:`SourceSpec`, a ``configs/data`` node) is one of the following, opened through the
one clip-source registry (:mod:`openavs_st.data.sources`):

- ``avsbench_s4`` / ``avsbench_ms3`` / ``avsbench_avss_binary``: an AVSBench split read by
  :mod:`openavs_st.data.avsbench` (``root`` = the dataset folder);
- ``avsbench_avss``: AVSBench-semantic with its 71 classes (masks are class-index maps; v1s/v1m clips
  padded to 10 frames with ``frame_valid`` false; train frames short-side resized and centre-cropped as
  the original ``avss/color_dataloader.py``);
- ``pseudo``: a pseudo-label store (:mod:`openavs_st.data.store`; ``root`` = the store folder), its clips
  read as windows of ``num_frames`` frames (``configs/data/pseudo.yaml``: 5, the S4/MS3 recipes' T), the
  last window of a clip padded with ``frame_valid`` false, so clips of any lengths batch;
- ``synthetic``: the synthetic S4-layout dataset, generated under ``root`` on first use.

Training reads ``train``; validation and test read ``val``/``test`` of the same source, or of
another source (``eval_source``): the usual OpenAVS-ST set-up trains on a store and validates on
an AVSBench split. A pseudo-label store has no splits: all of it trains.

A batch is a dict of tensors: ``frames [B, T, 3, H, W]`` (ImageNet-normalised), ``audio
[B, T, 1, 96, 64]``, ``masks [B, T, H, W]`` float {0, 1} (``avsbench_avss``: int64 class indices), ``has_label [B, T]`` (frames whose mask is
ground truth: S4 train carries frame 1 only), ``frame_valid [B, T]``, ``negative [B]`` (1 for a
negative-audio pair, whose target is empty), ``negative_kind`` and ``id`` (lists of str).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from openavs_st.data.audio_features import (
    AudioFeatures,
    LogMelFeatures,
    make_audio_features,
)
from openavs_st.data.clip import Clip, ClipError
from openavs_st.data.configs import ConfigError, require_root
from openavs_st.data.negatives import NEGATIVE_KINDS, NegativeAudio
from openavs_st.data.sources import ClipSource, open_source
from openavs_st.data.synthetic import ensure_synthetic
from openavs_st.data.transforms import ClipTransform

AVSBENCH_SOURCES = ("avsbench_s4", "avsbench_ms3", "avsbench_avss", "avsbench_avss_binary")
# The datasets training reads; those with class-index masks (71-class AVSS) train K > 1 heads.
SOURCES = (*AVSBENCH_SOURCES, "pseudo", "synthetic")
SEMANTIC_SOURCES = ("avsbench_avss",)
# Train-split frame geometry of the original loaders (avss/color_dataloader.py: crop_resize_img).
TRAIN_RESIZE_MODE = {"avsbench_avss": "short_side_center_crop"}


@dataclass(frozen=True)
class SourceSpec:
    """A dataset to read (``configs/data/``): ``name`` (one of :data:`SOURCES`), ``root`` and reader options.

    The clips of a split come from the one clip-source registry (:func:`openavs_st.data.sources.open_source`).
    """

    name: str
    root: str
    audio: str = "wav"
    allow_pickle: bool = False
    subsets: tuple[str, ...] | None = None
    num_frames: int | None = None  # pseudo: clips are read as windows of this many frames (None: whole)
    classes: bool = False  # pseudo: read the store's class-index maps (a semantic store) instead of binary masks

    def __post_init__(self) -> None:
        check_source_name(self.name, "data")
        require_root(self.root, key="data.root", owner=f"data.name={self.name}", must_exist=False)
        if self.subsets is not None:
            object.__setattr__(self, "subsets", tuple(self.subsets))

    @classmethod
    def from_config(cls, node: Mapping[str, Any], key: str = "data") -> SourceSpec:
        """The spec of a data config node (``data`` or ``data.eval``); a :class:`ConfigError` naming the key
        when the name cannot train, or the root is unset or (but for ``synthetic``) missing."""
        name = node.get("name")
        check_source_name(name, key)
        root = require_root(
            node.get("root"), key=f"{key}.root", owner=f"{key}.name={name}", must_exist=name != "synthetic"
        )
        subsets = node.get("subsets")
        return cls(
            name=str(name),
            root=str(root),
            audio=str(node.get("audio") or "wav"),
            allow_pickle=bool(node.get("allow_pickle", False)),
            subsets=tuple(subsets) if subsets else None,
            num_frames=node.get("num_frames"),
            classes=bool(node.get("semantic", False)) if name == "pseudo" else False,
        )

    @property
    def semantic(self) -> bool:
        """Whether the masks are class-index maps (71-class AVSS, a semantic store) rather than binary."""
        return self.name in SEMANTIC_SOURCES or self.classes

    def data_config(self) -> dict[str, Any]:
        """The spec as a ``data`` config (what :func:`~openavs_st.data.sources.open_source` reads)."""
        return {"name": self.name, "root": self.root, "audio": self.audio, "allow_pickle": self.allow_pickle,
                "subsets": list(self.subsets) if self.subsets else None, "num_frames": self.num_frames,
                "semantic": self.classes}

    def open(self, split: str) -> ClipSource:
        """The clips of one split (a pseudo-label store has no splits: all of it, whatever ``split``)."""
        return open_source({"split": split}, self.data_config())


def check_source_name(name: Any, key: str) -> None:
    """A :class:`ConfigError` unless ``name`` is a dataset training reads."""
    if name not in SOURCES:
        raise ConfigError(
            f"{key}.name={name} cannot be loaded for training or evaluation; use one of {', '.join(SOURCES)}"
        )


class ClipDataset(Dataset):
    """Clips of a source as tensors, optionally mixing in negative-audio pairs.

    Args:
        clips: the source (a reader or a store).
        transform: the clip transform (resize + normalise).
        negative_ratio: fraction of items that are negative pairs (0 = none). With ratio r the
            dataset grows to ``len(clips) / (1 - r)`` items; positives are all kept.
        negative_kinds: which kinds to draw from (equally often).
        seed: makes the choice of negatives and their audio reproducible.
        only_negative: every item is a negative of this kind (robust evaluation). Such items keep
            the clip's original masks, as AVSBench-Robust scores negatives against the positive GT
            (mIoU_N, F_N); mixed-in training negatives get empty masks instead, on the frames the
            clip supervises (S4 train: frame 1 only, as AVSBench-Robust's ``empty_GT.png``), so a
            negative clip weighs as much in the loss as a positive one and ``negative_ratio`` is
            also the share of supervised frames.
        audio_features: what the backbone hears, computed from the log-mel examples of positives and
            negatives alike (:mod:`openavs_st.data.audio_features`; None: the log-mels).
        semantic: masks are class indices, returned as int64 (else binary, float {0, 1}).
    """

    def __init__(
        self,
        clips: Sequence[Clip],
        transform: ClipTransform,
        *,
        negative_ratio: float = 0.0,
        negative_kinds: Sequence[str] = ("silence", "noise", "offscreen"),
        seed: int = 0,
        only_negative: str | None = None,
        audio_features: AudioFeatures | None = None,
        semantic: bool = False,
    ) -> None:
        if not 0.0 <= negative_ratio < 1.0:
            raise ValueError(f"negative_ratio must be in [0, 1), got {negative_ratio}")
        unknown = set(negative_kinds) - set(NEGATIVE_KINDS) | ({only_negative} - {None, *NEGATIVE_KINDS})
        if unknown:
            raise ValueError(f"unknown negative kinds {sorted(unknown)}; expected {NEGATIVE_KINDS}")
        if len(clips) == 0:
            raise ClipError("the data source holds no clips")
        self.clips = clips
        self.audio_features = audio_features or LogMelFeatures()
        self.transform = transform
        self.seed = seed
        n = len(clips)
        # (clip index, negative kind or "")
        if only_negative is not None:
            self.items = [(i, only_negative) for i in range(n)]
        else:
            num_neg = int(round(n * negative_ratio / (1.0 - negative_ratio))) if negative_ratio else 0
            rng = np.random.default_rng(seed)
            kinds = list(negative_kinds)
            negs = [(int(rng.integers(n)), kinds[k % len(kinds)]) for k in range(num_neg)]
            self.items = [(i, "") for i in range(n)] + negs
        self.only_negative = only_negative
        self.semantic = semantic
        self._negatives: NegativeAudio | None = None

    def negatives(self, num_frames: int) -> NegativeAudio:
        if self._negatives is None:
            categories = self.clips.categories() if hasattr(self.clips, "categories") else [None] * len(self.clips)
            self._negatives = NegativeAudio(categories, self.clips.log_mel_of, num_frames, seed=self.seed)
        return self._negatives

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip_index, kind = self.items[index]
        clip = self.clips[clip_index]
        if clip.log_mel is None:
            raise ClipError(f"clip {clip.id!r} has no audio features (was the source opened with audio='none'?)")
        sample = self.transform(clip)
        audio = clip.log_mel
        masks = sample.masks.astype(np.float32)
        has_label = sample.has_label
        if kind:
            audio = self.negatives(clip.num_frames)(clip_index, kind, draw=index)
            if self.only_negative is None:
                masks = np.zeros_like(masks)
        return {
            "frames": torch.from_numpy(sample.frames),
            "audio": torch.from_numpy(np.ascontiguousarray(self.audio_features(audio), dtype=np.float32)),
            "masks": torch.from_numpy(masks.astype(np.int64) if self.semantic else np.minimum(masks, 1.0)),
            "has_label": torch.from_numpy(has_label),
            "frame_valid": torch.from_numpy(sample.frame_valid),
            "negative": torch.tensor(1 if kind else 0, dtype=torch.long),
            "negative_kind": kind,
            "id": clip.id,
        }


class EpochShuffleSampler(Sampler[int]):
    """A random order that depends only on (seed, epoch): a run resumed at epoch k sees the same
    order as an uninterrupted one. Lightning calls ``set_epoch`` before every epoch (and wraps this
    sampler for DDP)."""

    def __init__(self, length: int, seed: int) -> None:
        self.length = length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):  # noqa: ANN204
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.length, generator=generator).tolist())

    def __len__(self) -> int:
        return self.length


class AVSDataModule(L.LightningDataModule):
    """Train/val/test loaders over AVSBench splits, a pseudo-label store, or a mix.

    Args:
        source: where training clips come from: a :class:`SourceSpec` or a data config mapping
            (``name``, ``root``, ...; see :meth:`SourceSpec.from_config`).
        eval_source: where val/test clips come from (default: ``source``; required for ``pseudo``).
        input_size: frame side fed to the model (the backbone recipe's ``input_size``).
        batch_size: clips per batch for training; ``eval_batch_size`` for val/test.
        negative_ratio: fraction of negative-audio pairs mixed into training (0 = off).
        robust_test_kinds: negative kinds to evaluate after the positive test set; each becomes an
            extra test dataloader (the test split with that audio replaced).
    """

    def __init__(
        self,
        source: SourceSpec | Mapping[str, Any],
        eval_source: SourceSpec | Mapping[str, Any] | None = None,
        *,
        input_size: int = 224,
        batch_size: int = 4,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        augment: bool = False,
        negative_ratio: float = 0.0,
        negative_kinds: Sequence[str] = ("silence", "noise", "offscreen"),
        robust_test_kinds: Sequence[str] = (),
        seed: int = 0,
        audio_features: str = "log_mel",
    ) -> None:
        super().__init__()
        if not isinstance(source, SourceSpec):
            source = SourceSpec.from_config(source, "data")
        if eval_source is not None and not isinstance(eval_source, SourceSpec):
            eval_source = SourceSpec.from_config(eval_source, "data.eval")
        if eval_source is None:
            if source.name == "pseudo":
                raise ValueError(
                    "a pseudo-label store has no val/test split: set data.eval.name and data.eval.root "
                    "(e.g. data.eval.name=avsbench_s4 data.eval.root=/data/avsbench_data)"
                )
            eval_source = source
        if source.semantic != eval_source.semantic:
            raise ConfigError(
                f"data.name={source.name} and data.eval.name={eval_source.name}: one trains a 71-class "
                "(avsbench_avss) head and the other has binary masks; train and evaluate on the same kind"
            )
        self.source = source
        self.eval_source = eval_source
        self.input_size = input_size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self.persistent_workers = persistent_workers and num_workers > 0
        self.augment = augment
        self.negative_ratio = negative_ratio
        self.negative_kinds = tuple(negative_kinds)
        self.robust_test_kinds = tuple(robust_test_kinds)
        self.seed = seed
        self.audio_features = make_audio_features(audio_features)
        self.datasets: dict[str, ClipDataset] = {}

    def prepare_data(self) -> None:
        for spec in {self.source, self.eval_source}:
            if spec.name == "synthetic":
                ensure_synthetic(Path(spec.root))

    def dataset(self, split: str, *, negative: str | None = None, augment: bool | None = None) -> ClipDataset:
        """The dataset of a split (``negative``: every item a negative pair of that kind)."""
        spec = self.source if split == "train" else self.eval_source
        clips = spec.open(split)
        lengths = clips.frame_counts() if hasattr(clips, "frame_counts") else []
        if len(lengths) > 1:
            raise ConfigError(
                f"{spec.root}: the clips have {', '.join(map(str, lengths))} frames, and a batch needs one length: "
                "set data.num_frames=N to read them as windows of N frames (the last one of a clip padded)"
            )
        mode = TRAIN_RESIZE_MODE.get(spec.name, "resize") if split == "train" else "resize"
        transform = ClipTransform(self.input_size, mode=mode, augment=self.augment if augment is None else augment)
        ratio = self.negative_ratio if split == "train" else 0.0
        return ClipDataset(
            clips, transform, negative_ratio=ratio, negative_kinds=self.negative_kinds,
            seed=self.seed, only_negative=negative, audio_features=self.audio_features, semantic=spec.semantic,
        )

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self.datasets["train"] = self.dataset("train")
            self.datasets["val"] = self.dataset("val", augment=False)
        if stage in (None, "fit", "validate"):
            self.datasets.setdefault("val", self.dataset("val", augment=False))
        if stage in (None, "test", "predict"):
            self.datasets["test"] = self.dataset("test", augment=False)
            for kind in self.robust_test_kinds:
                self.datasets[f"test_{kind}"] = self.dataset("test", negative=kind, augment=False)

    def loader(self, dataset: Dataset, *, train: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=EpochShuffleSampler(len(dataset), self.seed) if train else None,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader(self.datasets["train"], train=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.datasets["val"], train=False)

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        test = self.loader(self.datasets["test"], train=False)
        if not self.robust_test_kinds:
            return test
        return [test, *(self.loader(self.datasets[f"test_{k}"], train=False) for k in self.robust_test_kinds)]
