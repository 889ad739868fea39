"""Silent-second gating (the ``gate`` role): per second of a clip's audio and per object category, whether
the category sounds, and the masks emptied where it does not.

AVSBench's ground truth has no mask in a second where the object makes no sound, but a labeler that finds
objects in the frames (OpenAVS, AL-Ref-SAM2) segments them whether or not they sound. A gate decides, for
every second ``t`` and category ``c`` of a clip, ``sounding[t, c]``; :meth:`GateDecision.apply` empties
the ``[T, H, W]`` masks of a category in the seconds where it does not sound.

``energy_clap`` (:class:`EnergyClapGate`) decides in two steps:

1. **energy**: a second whose RMS level is below ``silence_db`` dBFS sounds for no category;
2. **audio-text similarity** (optional): in the other seconds, a category sounds when the cosine
   similarity between the second's CLAP audio embedding and the embedding of the category's text
   (``template`` with the category, e.g. ``"This is a sound of dog"``) is at least ``min_similarity``
   and, with ``max_gap`` set, at most ``max_gap`` below the best category of that second (a second is
   given to the categories that explain it best). ``min_similarity=null`` and ``max_gap=null``: the energy
   gate only (CLAP is not loaded).

Levels are dBFS relative to a full-scale square wave (RMS 1.0): a full-scale sine is -3.01 dBFS, digital
silence is :data:`FLOOR_DB`. The CLAP model is loaded with :mod:`pseudolabel.alm.clap`'s loaders (a
``clap`` ALM of the same model, device and dtype shares it).

Use from any labeler::

    gate = GATE.create("energy_clap", silence_db=-50, min_similarity=0.1)
    decision = gate.decide(clip.waveform, clip.sample_rate, clip.num_frames, ["dog", "guitar"])
    decision.sounding            # [T, 2] bool
    masks = decision.apply({"dog": dog_masks, "guitar": guitar_masks})   # [T, H, W] each, emptied
    record["gate"] = decision.to_dict()
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pseudolabel.components import GATE, Component, LazyModel, positive_int

FLOOR_DB = -200.0  # the level of digital silence (RMS 0): 20 log10(1e-10)
_FLOOR_RMS = 10.0 ** (FLOOR_DB / 20.0)

register, create_gate, available = GATE.register, GATE.create, GATE.names


def rms_dbfs(segments: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """The RMS level of each segment in dBFS: ``20 log10(sqrt(mean(x^2)))``, at least :data:`FLOOR_DB`.

    Args:
        segments: ``[T, N]`` or a list of ``[N_t]`` float arrays (samples in [-1, 1]).

    Returns:
        float64 ``[T]``.
    """
    levels = []
    for index, segment in enumerate(segments):
        segment = np.asarray(segment, dtype=np.float64)
        if segment.ndim != 1 or segment.size == 0:
            raise ValueError(f"segment {index} has shape {segment.shape}; expected non-empty mono samples [N]")
        rms = math.sqrt(float(np.mean(segment * segment)))
        levels.append(20.0 * math.log10(max(rms, _FLOOR_RMS)))
    return np.asarray(levels, dtype=np.float64)


def check_categories(categories: Sequence[str]) -> list[str]:
    """``categories`` as a list after checking it is a list of distinct non-empty strings."""
    if isinstance(categories, str):
        raise TypeError(f"categories must be a list of names, got the single string {categories!r}; wrap it in a list")
    names = list(categories)
    for index, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"categories[{index}] must be a non-empty string, got {name!r}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"categories repeat {repeated}; give each category once")
    return names


def _rounded(values: np.ndarray, digits: int) -> list[Any]:
    """A float array as nested lists, rounded, NaN as None (JSON)."""
    if values.ndim == 0:
        value = float(values)
        return None if math.isnan(value) else round(value, digits)  # type: ignore[return-value]
    return [_rounded(row, digits) for row in values]


@dataclass
class GateDecision:
    """Which category sounds in which second of a clip.

    Attributes:
        categories: the ``C`` category names, in the column order of the arrays.
        sounding: ``[T, C]`` bool: category ``c`` sounds in second ``t``.
        energy_db: ``[T]`` float: the second's RMS level in dBFS (:data:`FLOOR_DB` for digital silence).
        similarity: ``[T, C]`` float: audio-text similarity (NaN where not computed: seconds below the energy
            gate, or no similarity gate).
        settings: the gate's thresholds (recorded by :meth:`to_dict`).
    """

    categories: list[str]
    sounding: np.ndarray
    energy_db: np.ndarray
    similarity: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.categories = list(self.categories)
        self.sounding = np.asarray(self.sounding, dtype=bool)
        self.energy_db = np.asarray(self.energy_db, dtype=np.float64)
        self.similarity = np.asarray(self.similarity, dtype=np.float64)
        shape = (self.energy_db.shape[0], len(self.categories))
        if self.energy_db.ndim != 1 or self.sounding.shape != shape or self.similarity.shape != shape:
            raise ValueError(
                f"GateDecision: energy_db {self.energy_db.shape}, sounding {self.sounding.shape} and similarity "
                f"{self.similarity.shape} must be [T], [T, C] and [T, C] with C = {len(self.categories)} categories"
            )

    @property
    def num_frames(self) -> int:
        """``T``, the number of seconds."""
        return int(self.energy_db.shape[0])

    def sounds(self, t: int, category: str) -> bool:
        """Whether ``category`` sounds in second ``t``."""
        return bool(self.sounding[t, self._column(category)])

    def sounding_categories(self, t: int) -> list[str]:
        """The categories that sound in second ``t``, in :attr:`categories` order."""
        return [name for name, on in zip(self.categories, self.sounding[t]) if on]

    def _column(self, category: str) -> int:
        try:
            return self.categories.index(category)
        except ValueError:
            raise KeyError(f"category {category!r} was not gated; the decision's categories: {self.categories}") from None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable record for the store's manifest: settings, categories, per-second levels,
        similarities (None where not computed, 4 decimals) and decisions."""
        return {
            **self.settings,
            "categories": list(self.categories),
            "energy_db": _rounded(self.energy_db, 2),
            "similarity": _rounded(self.similarity, 4),
            "sounding": self.sounding.tolist(),
        }

    def apply(self, masks_by_category: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The masks with the seconds where their category does not sound emptied (copies; inputs untouched).

        Args:
            masks_by_category: category -> ``[T, H, W]`` masks (any dtype; emptied frames become 0/False).

        Raises:
            KeyError: for a category the decision has no column for.
            ValueError: for masks whose first dimension is not ``T``.
        """
        gated: dict[str, np.ndarray] = {}
        for category, masks in masks_by_category.items():
            column = self._column(category)
            masks = np.array(masks, copy=True)
            if masks.ndim < 1 or masks.shape[0] != self.num_frames:
                raise ValueError(
                    f"masks of {category!r} have shape {masks.shape}; expected [T={self.num_frames}, H, W]"
                )
            masks[~self.sounding[:, column]] = 0
            gated[category] = masks
        return gated


@register("energy_clap")
class EnergyClapGate(Component):
    """Energy + CLAP gate: silent seconds sound for no category; a category sounds where CLAP matches its text.

    Args:
        model: CLAP Hub id or local directory (default ``laion/clap-htsat-unfused``).
        silence_db: seconds whose RMS level is below this (dBFS, at most 0) sound for no category.
        min_similarity: a category sounds in a second when the cosine similarity of the second's CLAP audio
            embedding and its text embedding is at least this; None: no absolute threshold.
        max_gap: also require the similarity to be at most this below the second's best category (>= 0;
            0 keeps only the best); None: no relative threshold. With both None the gate is energy only
            and CLAP is never loaded.
        template: the text of a category, one ``{}`` for its name (default: the CLAP ALM's template).
        batch_size: seconds per CLAP audio call.
        config, device, dtype, seed: see :class:`~pseudolabel.components.LazyModel` (``config``: a tiny random
            CLAP, see :func:`pseudolabel.alm.clap.build_tiny_clap`).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        silence_db: float = -50.0,
        min_similarity: float | None = 0.0,
        max_gap: float | None = None,
        template: str | None = None,
        batch_size: int = 8,
        config: Mapping[str, Any] | None = None,
        device: str = "cpu",
        dtype: str = "auto",
        seed: int = 0,
    ) -> None:
        from pseudolabel.alm import clap

        if isinstance(silence_db, bool) or not isinstance(silence_db, (int, float)) or not math.isfinite(silence_db):
            raise ValueError(f"silence_db must be a finite level in dBFS (e.g. -50), got {silence_db!r}")
        if silence_db > 0:
            raise ValueError(
                f"silence_db is an RMS level in dBFS, at most 0 (full scale; e.g. -50), got {silence_db!r}: no audio is "
                "that loud, so every second would count as silent"
            )
        if min_similarity is not None and not -1.0 <= float(min_similarity) <= 1.0:
            raise ValueError(f"min_similarity is a cosine similarity in [-1, 1] (or null), got {min_similarity!r}")
        if max_gap is not None and not 0.0 <= float(max_gap) <= 2.0:
            raise ValueError(f"max_gap is a cosine-similarity difference in [0, 2] (or null), got {max_gap!r}")
        self.silence_db = float(silence_db)
        self.min_similarity = None if min_similarity is None else float(min_similarity)
        self.max_gap = None if max_gap is None else float(max_gap)
        self.template = clap.check_template(clap.DEFAULT_TEMPLATE if template is None else str(template))
        self.batch_size = positive_int(batch_size, "batch_size")
        self.lazy: LazyModel | None = None
        if self.uses_similarity:
            self.lazy = LazyModel(
                "clap",
                clap.DEFAULT_MODEL if model is None and config is None else model,
                config=config,
                device=device,
                dtype=dtype,
                seed=seed,
                load_pretrained=clap.load_clap,
                build_random=clap.build_tiny_clap,
            )
        self._text_cache: dict[str, np.ndarray] = {}

    @property
    def uses_similarity(self) -> bool:
        """Whether the gate uses CLAP (a similarity threshold is set)."""
        return self.min_similarity is not None or self.max_gap is not None

    def settings(self) -> dict[str, Any]:
        """The thresholds (in every decision's record)."""
        return {
            "gate": getattr(self, "name", "energy_clap"),
            "silence_db": self.silence_db,
            "min_similarity": self.min_similarity,
            "max_gap": self.max_gap,
            "template": self.template if self.uses_similarity else None,
        }

    def provenance(self) -> dict[str, Any]:
        record = {"backend": getattr(self, "name", "energy_clap"), **self.settings(), "batch_size": self.batch_size}
        record.pop("gate")
        if self.lazy is not None:
            record.update(self.lazy.provenance())
        return record

    def _text_embeddings(self, categories: list[str]) -> np.ndarray:
        from pseudolabel.alm import clap

        missing = [name for name in categories if name not in self._text_cache]
        if missing:
            assert self.lazy is not None
            embedded = clap.text_embeddings(self.lazy, [self.template.replace("{}", name) for name in missing])
            for name, row in zip(missing, embedded.float().cpu().numpy()):
                self._text_cache[name] = row / max(float(np.linalg.norm(row)), 1e-12)
        return np.stack([self._text_cache[name] for name in categories])

    def _audio_embeddings(self, segments: list[np.ndarray], sample_rate: int) -> np.ndarray:
        from openavs_st.data.audio import resample
        from pseudolabel.alm import clap

        assert self.lazy is not None
        rate = int(self.lazy.processor.feature_extractor.sampling_rate)
        waves = [resample(segment, sample_rate, rate) for segment in segments]
        rows = []
        for start in range(0, len(waves), self.batch_size):
            rows.append(clap.audio_embeddings(self.lazy, waves[start : start + self.batch_size]).float().cpu().numpy())
        audio = np.concatenate(rows, axis=0)
        return audio / np.maximum(np.linalg.norm(audio, axis=1, keepdims=True), 1e-12)

    def decide(self, wave: np.ndarray, sample_rate: int, num_frames: int, categories: Sequence[str]) -> GateDecision:
        """Decide for every second of a clip which of ``categories`` sound.

        Args:
            wave: ``[N]`` mono float samples in [-1, 1] (the clip's audio).
            sample_rate: their rate in Hz.
            num_frames: ``T``; second ``t`` is samples ``[t * sample_rate, (t + 1) * sample_rate)``, zero-padded
                past the end of the audio (:func:`pseudolabel.alm.split_seconds`).
            categories: the object categories (phrases) to decide for, each once.

        Returns:
            A :class:`GateDecision` with ``sounding [T, C]``, ``energy_db [T]`` and ``similarity [T, C]``.
        """
        from pseudolabel.alm.base import split_seconds

        names = check_categories(categories)
        wave = np.asarray(wave)
        if wave.ndim != 1:
            raise ValueError(f"wave has shape {wave.shape}; expected mono samples [N]")
        if not np.issubdtype(wave.dtype, np.floating):
            raise TypeError(f"wave has dtype {wave.dtype}; expected float samples in [-1, 1]")
        if not np.isfinite(wave).all():
            raise ValueError("wave contains NaN or infinite samples")
        segments = split_seconds(wave, sample_rate, num_frames)
        energy = rms_dbfs(segments)
        loud = energy >= self.silence_db
        sounding = np.repeat(loud[:, None], len(names), axis=1)
        similarity = np.full((len(segments), len(names)), np.nan)
        rows = np.flatnonzero(loud)
        if self.uses_similarity and names and rows.size:
            text = self._text_embeddings(names)
            audio = self._audio_embeddings([segments[t] for t in rows], int(sample_rate))
            scores = audio @ text.T
            keep = np.ones_like(scores, dtype=bool)
            if self.min_similarity is not None:
                keep &= scores >= self.min_similarity
            if self.max_gap is not None:
                keep &= scores >= scores.max(axis=1, keepdims=True) - self.max_gap
            similarity[rows] = scores
            sounding[rows] = keep
        return GateDecision(names, sounding, energy, similarity, settings=self.settings())
