"""Audio describers (audio -> text): the interface, the one-second segmenter, and the chat-model plumbing the
backends (and :mod:`pseudolabel.vlm`) share. Backends register with ``@register(name)`` (the ``alm`` role of
:mod:`pseudolabel.components`).

OpenAVS describes every one-second audio segment of a clip with an audio-language model (ALM) and a
fixed prompt (paper, Appendix F: Pengi with three prompts, "Please describe the audio in detail" for
Audio Flamingo 3 and Qwen2.5-Omni). :func:`split_seconds` cuts a clip's waveform into those segments;
:meth:`AudioDescriber.describe` returns one text per (segment, prompt).

Two kinds of backend:

- :class:`GenerativeAudioDescriber`: an audio LM prompted per segment, decoded greedily
  (``qwen2_5_omni``, ``audio_flamingo3``);
- :class:`AudioTagger`: a classifier or zero-shot scorer whose text is its top-k labels above a
  threshold, joined by ``", "`` (``clap``, ``ast``).

Every transformers model is held by :class:`~pseudolabel.components.LazyModel`: ``from_pretrained(id_or_local_dir)`` on the
first call that needs it (a downloaded model works offline), or, with ``config=`` given, built with
random weights from a tiny configuration, tokenizer and processor included, without any download
(tests). Two describers of the same checkpoint on the same device and dtype share one loaded model
(e.g. Qwen2.5-Omni as both the ALM and the VLM of OpenAVS-Large).

Nothing here imports torch or transformers at import time: they are imported when a model loads.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pseudolabel.components import ALM, Component, LazyModel, positive_int

VOCABULARY_DIR = Path(__file__).resolve().parent / "vocabularies"
SHIPPED_VOCABULARIES = ("audioset", "vggsound", "avsbench")

# --- input checks and the one-second segmenter -----------------------------------------------------


def check_prompts(prompts: Sequence[str]) -> tuple[str, ...]:
    """``prompts`` as a tuple after checking it is a non-empty list of non-empty strings."""
    if isinstance(prompts, str):
        raise TypeError(f"prompts must be a list of strings, got the single string {prompts!r}; wrap it in a list")
    prompts = tuple(prompts)
    if not prompts:
        raise ValueError("prompts is empty; give at least one prompt")
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompts[{index}] must be a non-empty string, got {prompt!r}")
    return prompts


def check_segments(segments: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each segment as float32 ``[N]`` after checking it is a non-empty, finite, mono float array."""
    if isinstance(segments, np.ndarray):
        raise TypeError(
            "segments must be a list of 1-D arrays (one per segment), got a single array; "
            "wrap it in a list or cut it with split_seconds()"
        )
    checked = []
    for index, segment in enumerate(segments):
        if not isinstance(segment, np.ndarray):
            raise TypeError(f"segments[{index}] is {type(segment).__name__}, expected a numpy array")
        if segment.ndim != 1:
            raise ValueError(f"segments[{index}] has shape {segment.shape}; expected mono samples [N]")
        if not np.issubdtype(segment.dtype, np.floating):
            raise TypeError(f"segments[{index}] has dtype {segment.dtype}; expected float samples in [-1, 1]")
        if segment.size == 0:
            raise ValueError(f"segments[{index}] is empty")
        if not np.isfinite(segment).all():
            raise ValueError(f"segments[{index}] contains NaN or infinite samples")
        checked.append(segment.astype(np.float32, copy=False))
    return checked


def split_seconds(wave: np.ndarray, sr: int, num_frames: int) -> list[np.ndarray]:
    """Cut a mono waveform into ``num_frames`` one-second segments, one per labelled frame.

    Segment ``t`` holds samples ``[t * sr, (t + 1) * sr)``; a segment that runs past the end of the
    waveform is zero-padded (so a 4.5 s clip gives a last segment of 0.5 s of audio and 0.5 s of
    silence, and seconds past the end are silent), and audio after ``num_frames`` seconds is dropped.

    Args:
        wave: ``[N]`` mono samples.
        sr: sample rate in Hz (also the segment length in samples).
        num_frames: number of segments (the clip's frame count T).

    Returns:
        ``num_frames`` float32 arrays of shape ``[sr]``.
    """
    sr = positive_int(sr, "sample_rate (Hz)")
    num_frames = positive_int(num_frames, "num_frames")
    wave = np.asarray(wave)
    if wave.ndim != 1:
        raise ValueError(f"wave has shape {wave.shape}; expected mono samples [N]")
    if not (np.issubdtype(wave.dtype, np.floating) or np.issubdtype(wave.dtype, np.integer)):
        raise TypeError(f"wave has dtype {wave.dtype}; expected real-valued samples")
    padded = np.zeros(num_frames * sr, dtype=np.float32)
    kept = min(wave.shape[0], padded.shape[0])
    padded[:kept] = wave[:kept]
    return list(padded.reshape(num_frames, sr))


def batched_pairs(
    items: Sequence[Any],
    prompts: Sequence[Any],
    batch_size: int,
    run: Callable[[list[Any], list[Any]], list[str]],
) -> list[list[str]]:
    """Run ``run(items_batch, prompts_batch) -> texts`` over every (item, prompt) pair, ``batch_size`` pairs
    at a time (item-major), and return ``texts[item][prompt]``."""
    pairs = [(item, prompt) for item in items for prompt in prompts]
    texts: list[str] = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        texts.extend(run([item for item, _ in chunk], [prompt for _, prompt in chunk]))
    width = len(prompts)
    return [texts[row * width : (row + 1) * width] for row in range(len(items))]


# --- the interface -------------------------------------------------------------------------------


class Describer(Component):
    """Base of the audio and image describers: the prompts and batch size they record as provenance."""

    prompts: tuple[str | None, ...]
    batch_size: int

    def provenance(self) -> dict[str, Any]:
        """JSON-serialisable settings that determine the texts (for the pseudo-label manifest)."""
        return {"backend": self.name, "prompts": list(self.prompts), "batch_size": self.batch_size}


class AudioDescriber(Describer, ABC):
    """Describes audio segments in text: ``describe(segments, sample_rate, prompts) -> texts[segment][prompt]``.

    Subclasses provide :attr:`sample_rate` (the rate the model expects) and :meth:`_describe_waves`;
    this class checks the inputs, resamples to the model's rate (``openavs_st.data.audio.resample``,
    resampy's ``kaiser_best`` filter) and batches.

    Args:
        prompts: default prompts for :meth:`describe` (None: the backend's :attr:`default_prompts`).
            Backends that take no prompt (``takes_prompts = False``) refuse them.
        batch_size: segments (or segment-prompt pairs) per model call.
    """

    name: ClassVar[str]
    default_prompts: ClassVar[tuple[str, ...]] = ()
    takes_prompts: ClassVar[bool] = True

    def __init__(self, *, prompts: Sequence[str] | None = None, batch_size: int = 8) -> None:
        self.prompts: tuple[str | None, ...] = self._resolve_prompts(prompts, self.default_prompts)
        self.batch_size = positive_int(batch_size, "batch_size")

    def _resolve_prompts(self, prompts: Sequence[str] | None, fallback: Sequence[str | None]) -> tuple[str | None, ...]:
        if not self.takes_prompts:
            if prompts is not None:
                name = getattr(self, "name", type(self).__name__)
                raise ValueError(f"the {name!r} audio describer takes no prompts, got {list(prompts)!r}")
            return (None,)
        return check_prompts(prompts) if prompts is not None else tuple(fallback)

    @property
    @abstractmethod
    def sample_rate(self) -> int:
        """The sample rate (Hz) the model expects; segments are resampled to it."""

    @abstractmethod
    def _describe_waves(self, waves: list[np.ndarray], prompts: Sequence[str | None]) -> list[list[str]]:
        """Texts ``[segment][prompt]`` for float32 ``[N]`` segments already at :attr:`sample_rate`."""

    def prepare(self, segments: Sequence[np.ndarray], sample_rate: int) -> list[np.ndarray]:
        """Check ``segments`` and resample them to :attr:`sample_rate`: float32 ``[N']`` each."""
        sample_rate = positive_int(sample_rate, "sample_rate (Hz)")
        waves = check_segments(segments)
        if not waves:
            return []
        from openavs_st.data.audio import (
            resample,  # imported here: openavs_st.data imports torch
        )

        target = self.sample_rate
        return [resample(wave, sample_rate, target) for wave in waves]

    def describe(
        self, segments: Sequence[np.ndarray], sample_rate: int, prompts: Sequence[str] | None = None
    ) -> list[list[str]]:
        """Describe each segment once per prompt.

        Args:
            segments: mono float arrays ``[N_i]`` (e.g. from :func:`split_seconds`).
            sample_rate: their sample rate in Hz (any; resampled to the model's).
            prompts: prompts for this call (None: the describer's prompts).

        Returns:
            ``texts[i][j]``: the text for segment ``i`` and prompt ``j`` (taggers without prompts give
            one text per segment).
        """
        resolved = self._resolve_prompts(prompts, self.prompts)
        waves = self.prepare(segments, sample_rate)
        if not waves:
            return []
        return self._describe_waves(waves, resolved)



# The ``alm`` role: @register(name) on a backend class; create_alm(name, **cfg) builds one; available() lists them.
register, create_alm, available = ALM.register, ALM.create, ALM.names


# --- chat models prompted with one media item ------------------------------------------------------


class ChatModel:
    """A multimodal chat model (processor with a chat template) prompted with one audio clip or image per
    conversation and decoded greedily; shared by the generative ALM and VLM backends.

    Each conversation is ``[system]`` (if a system prompt is set) and one user turn holding the media
    placeholder and the prompt, in the order the model's own examples use (``media_first``). The
    processor's chat template renders it; ``processor(text=..., <media>=...)`` expands the placeholders.

    Args:
        lazy: the model.
        media_type: content type of the media part (``audio`` or ``image``).
        media_first: media part before the prompt text (Qwen) or after it (Audio Flamingo 3).
        system_prompt: system message, or None for none (the chat template may add its own default).
        max_new_tokens: generation budget per text.
    """

    def __init__(
        self,
        lazy: LazyModel,
        *,
        media_type: str,
        media_first: bool,
        system_prompt: str | None,
        max_new_tokens: int,
    ) -> None:
        if system_prompt is not None and not isinstance(system_prompt, str):
            raise TypeError(f"system_prompt must be a string or None, got {type(system_prompt).__name__}")
        self.lazy = lazy
        self.media_type = media_type
        self.media_first = media_first
        self.system_prompt = system_prompt
        self.max_new_tokens = positive_int(max_new_tokens, "max_new_tokens")

    def conversation(self, prompt: str) -> list[dict[str, Any]]:
        """The chat messages for one media item and ``prompt``."""
        parts = [{"type": self.media_type}, {"type": "text", "text": prompt}]
        user = {"role": "user", "content": parts if self.media_first else parts[::-1]}
        if self.system_prompt is None:
            return [user]
        return [{"role": "system", "content": [{"type": "text", "text": self.system_prompt}]}, user]

    def inputs(self, prompts: Sequence[str], **media: Any) -> Any:
        """Model inputs (a ``BatchFeature`` on the model's device) for one conversation per prompt, with the
        media items passed to the processor (``audio=..., sampling_rate=...`` or ``images=...``), left-padded."""
        processor = self.lazy.processor
        texts = [
            processor.apply_chat_template(self.conversation(prompt), add_generation_prompt=True, tokenize=False)
            for prompt in prompts
        ]
        batch = processor(
            text=texts, return_tensors="pt", text_kwargs={"padding": True, "padding_side": "left"}, **media
        )
        return self.lazy.to_device(batch)

    def generate(self, inputs: Any) -> list[str]:
        """Greedy generation (``do_sample=False``; logits processors of the checkpoint's generation config,
        e.g. a repetition penalty, still apply); the new text of each row, special tokens removed, stripped."""
        import torch

        loaded = self.lazy.get()
        tokenizer = loaded.processor.tokenizer
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        with torch.inference_mode():
            output = loaded.model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=pad_id
            )
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        texts = loaded.processor.batch_decode(new_tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return [text.strip() for text in texts]

    def provenance(self) -> dict[str, Any]:
        """Model and generation settings."""
        return {
            **self.lazy.provenance(),
            "system_prompt": self.system_prompt,
            "max_new_tokens": self.max_new_tokens,
            "decoding": "greedy",
        }


# --- generative describers -------------------------------------------------------------------------


class ChatBackend:
    """Mixin of the generative audio and image describers: a :class:`ChatModel` (``self.chat``) over the
    subclass's :attr:`family` and loaders, put before the describer base in the bases.

    Args:
        model: Hub id or local directory.
        config: tiny random build instead of ``model`` (see :class:`LazyModel`).
        device, dtype, seed: see :class:`LazyModel`.
        max_new_tokens: generation budget per description.
        system_prompt: system message (None: none; the chat template may add its own default).
        prompts, batch_size: passed to the describer base (``batch_size=None``: :attr:`default_batch_size`).
    """

    family: ClassVar[str]
    media_type: ClassVar[str]
    media_first: ClassVar[bool]
    default_batch_size: ClassVar[int]

    @staticmethod
    @abstractmethod
    def load_pretrained(source: str, dtype: Any) -> tuple[Any, Any]:
        """``from_pretrained`` the processor and model."""

    @staticmethod
    @abstractmethod
    def build_random(config: dict[str, Any]) -> tuple[Any, Any]:
        """A tiny random processor and model, built offline."""

    def __init__(
        self,
        model: str | Path | None,
        *,
        config: Mapping[str, Any] | None = None,
        device: str = "cpu",
        dtype: str = "auto",
        seed: int = 0,
        max_new_tokens: int = 256,
        system_prompt: str | None = None,
        prompts: Sequence[str] | None = None,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(prompts=prompts, batch_size=self.default_batch_size if batch_size is None else batch_size)
        lazy = LazyModel(
            self.family,
            model,
            config=config,
            device=device,
            dtype=dtype,
            seed=seed,
            load_pretrained=self.load_pretrained,
            build_random=self.build_random,
        )
        self.chat = ChatModel(
            lazy,
            media_type=self.media_type,
            media_first=self.media_first,
            system_prompt=system_prompt,
            max_new_tokens=max_new_tokens,
        )

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), **self.chat.provenance()}  # type: ignore[misc]


class GenerativeAudioDescriber(ChatBackend, AudioDescriber):
    """An audio-language model (transformers) prompted once per (segment, prompt), decoded greedily.

    Subclasses set :attr:`family` and :attr:`media_first` and provide the two loaders; their constructors
    give the default model id (and system prompt). Arguments: see :class:`ChatBackend`; a batch is
    ``batch_size`` (segment, prompt) pairs (default 8).
    """

    media_type = "audio"
    default_batch_size = 8

    @property
    def sample_rate(self) -> int:
        return int(self.chat.lazy.processor.feature_extractor.sampling_rate)

    def model_inputs(self, segments: Sequence[np.ndarray], sample_rate: int, prompts: Sequence[str]) -> Any:
        """The processor output (on the model's device) for ``segments[i]`` paired with ``prompts[i]``."""
        prompts = check_prompts(prompts)
        waves = self.prepare(segments, sample_rate)
        if len(waves) != len(prompts):
            raise ValueError(f"got {len(waves)} segments but {len(prompts)} prompts; pair them one to one")
        return self._inputs(waves, list(prompts))

    def _inputs(self, waves: list[np.ndarray], prompts: list[str]) -> Any:
        return self.chat.inputs(prompts, audio=waves, sampling_rate=self.sample_rate)

    def _describe_waves(self, waves: list[np.ndarray], prompts: Sequence[str | None]) -> list[list[str]]:
        def run(chunk: list[np.ndarray], chunk_prompts: list[str]) -> list[str]:
            return self.chat.generate(self._inputs(chunk, chunk_prompts))

        return batched_pairs(waves, prompts, self.batch_size, run)


# --- audio taggers -------------------------------------------------------------------------------


def load_vocabulary(vocabulary: str | Path | Sequence[str]) -> list[str]:
    """Class names from a shipped vocabulary (``audioset``, ``vggsound``, ``avsbench``), a text file (one name
    per line; blank lines and lines starting with ``#`` are skipped), or a list of names.

    Raises:
        ValueError: naming the file (and line) for an empty vocabulary or a duplicated name.
        FileNotFoundError: for a name that is neither shipped nor an existing file.
    """
    if isinstance(vocabulary, (str, Path)):
        path = VOCABULARY_DIR / f"{vocabulary}.txt" if str(vocabulary) in SHIPPED_VOCABULARIES else Path(vocabulary)
        if not path.is_file():
            raise FileNotFoundError(
                f"vocabulary {str(vocabulary)!r} is neither a shipped vocabulary {list(SHIPPED_VOCABULARIES)} "
                "nor an existing text file"
            )
        source = str(path)
        entries = [
            (number, line.strip())
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
    else:
        source = "the vocabulary list"
        entries = [(index, str(name).strip()) for index, name in enumerate(vocabulary)]
        if any(not name for _, name in entries):
            raise ValueError(f"{source} contains an empty name")
    if not entries:
        raise ValueError(f"{source} holds no class names")
    first_seen: dict[str, int] = {}
    for position, name in entries:
        if name in first_seen:
            raise ValueError(f"{source}: {name!r} at line/index {position} repeats line/index {first_seen[name]}")
        first_seen[name] = position
    return [name for _, name in entries]


class AudioTagger(AudioDescriber):
    """A describer whose text is its best labels: the ``top_k`` labels scoring at least ``threshold``, best
    first, joined by ``separator`` (``""`` when none qualifies).

    Args:
        top_k: at most this many labels per text.
        threshold: minimum score of a label (scores are probabilities; 0 keeps the plain top-k).
        exclude: label names never returned. None: ``["Silence"]`` if the label set has it (AL-Ref-SAM2
            zeroes AudioSet's Silence class before its top-5, ``avs/*/beats.py``), else nothing. Names
            given explicitly must exist.
        separator: joins the labels of a text (AudioSet names contain commas: ``"; "`` keeps them apart).
        prompts, batch_size: see :class:`AudioDescriber`.
    """

    def __init__(
        self,
        *,
        top_k: int,
        threshold: float,
        exclude: Sequence[str] | None = None,
        separator: str = ", ",
        prompts: Sequence[str] | None = None,
        batch_size: int = 8,
    ) -> None:
        super().__init__(prompts=prompts, batch_size=batch_size)
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold must be a probability in [0, 1], got {threshold!r}")
        if isinstance(exclude, str):
            raise TypeError(f"exclude must be a list of label names, got the single string {exclude!r}")
        self.top_k = positive_int(top_k, "top_k")
        self.threshold = float(threshold)
        self.exclude = None if exclude is None else tuple(exclude)
        self.separator = str(separator)
        self._excluded: np.ndarray | None = None

    @property
    @abstractmethod
    def labels(self) -> list[str]:
        """The label of each score column."""

    @abstractmethod
    def _scores(self, waves: list[np.ndarray], prompt: str | None) -> np.ndarray:
        """Scores ``[len(waves), len(labels)]`` in [0, 1] for waves at :attr:`sample_rate`."""

    def excluded_mask(self) -> np.ndarray:
        """Boolean ``[len(labels)]``: labels never returned."""
        if self._excluded is None:
            labels = self.labels
            if self.exclude is None:
                names = [name for name in ("Silence",) if name in labels]
            else:
                unknown = [name for name in self.exclude if name not in labels]
                if unknown:
                    raise ValueError(f"{self.name}: exclude names {unknown} are not labels of this model/vocabulary")
                names = list(self.exclude)
            self._excluded = np.array([label in names for label in labels], dtype=bool)
        return self._excluded

    def scores(self, segments: Sequence[np.ndarray], sample_rate: int, prompt: str | None = None) -> np.ndarray:
        """Label scores ``[len(segments), len(labels)]`` (float32, in [0, 1]) after resampling."""
        (resolved,) = self._resolve_prompts(None if prompt is None else [prompt], self.prompts[:1])
        return self._batched_scores(self.prepare(segments, sample_rate), resolved)

    def _batched_scores(self, waves: list[np.ndarray], prompt: str | None) -> np.ndarray:
        if not waves:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        step = self.batch_size
        rows = [self._scores(waves[start : start + step], prompt) for start in range(0, len(waves), step)]
        return np.concatenate(rows, axis=0).astype(np.float32)

    def top_labels(self, row: np.ndarray) -> list[str]:
        """The labels of one score row that make the text: at most ``top_k`` of those scoring at least
        ``threshold`` and not excluded, best first (ties: lower index first)."""
        return [label for label, _ in self.top_scores(row)]

    def top_scores(self, row: np.ndarray) -> list[tuple[str, float]]:
        """:meth:`top_labels` with their scores: ``[(label, score), ...]``, best first."""
        row = np.asarray(row, dtype=np.float64)
        excluded = self.excluded_mask()
        order = np.argsort(-row, kind="stable")
        keep = [index for index in order if not excluded[index] and row[index] >= self.threshold]
        labels = self.labels
        return [(labels[index], float(row[index])) for index in keep[: self.top_k]]

    def tag(self, wave: np.ndarray, sample_rate: int, num_frames: int | None = None) -> dict[str, Any]:
        """Top-k ``(label, score)`` pairs of a clip: ``{"clip": [...]}`` (the whole wave scored at once) and,
        with ``num_frames``, ``"seconds": [[...] per second]`` (:func:`split_seconds`)."""
        wave = np.asarray(wave, dtype=np.float32)
        result: dict[str, Any] = {"clip": self.top_scores(self.scores([wave], sample_rate)[0])}
        if num_frames is not None:
            rows = self.scores(split_seconds(wave, sample_rate, num_frames), sample_rate)
            result["seconds"] = [self.top_scores(row) for row in rows]
        return result

    def _describe_waves(self, waves: list[np.ndarray], prompts: Sequence[str | None]) -> list[list[str]]:
        per_prompt = [self._batched_scores(waves, prompt) for prompt in prompts]
        return [
            [self.separator.join(self.top_labels(scores[row])) for scores in per_prompt] for row in range(len(waves))
        ]

    def provenance(self) -> dict[str, Any]:
        return {
            **super().provenance(),
            "top_k": self.top_k,
            "threshold": self.threshold,
            "exclude": None if self.exclude is None else list(self.exclude),
            "separator": self.separator,
        }
