"""``pengi``: Pengi (microsoft/Pengi), the audio-language model of the OpenAVS paper, on transformers 5.

OpenAVS describes each one-second segment with Pengi's three prompts ("generate audio caption", "generate
metadata", "this is a sound of"; microsoft/Pengi ``wrapper.py`` ``describe``). :class:`Pengi` is our
inference implementation (HTS-AT + CLIP text tower + GPT-2, :mod:`.model`; beam search, :mod:`.decode`);
:class:`PengiDescriber` is the ``alm`` component: one batched beam search per call over every
(segment, prompt) pair.

Weights: the original ``base.pth`` / ``base_no_text_enc.pth`` (Zenodo record 8387083), loaded strictly;
GPT-2 and CLIP give only their configs and tokenizers (``gpt2:`` / ``clip:``: local directories, or Hub ids
already in the local cache). Segments are tiled to Pengi's 7 s window (a one-second segment becomes
seven copies of itself); longer audio is centre-cropped (``crop: <int>`` for a seeded crop).

Importing this package imports neither torch nor transformers (the component registry imports it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pseudolabel.alm.base import AudioDescriber, batched_pairs, register
from pseudolabel.components import ComponentConfigError, LazyModel, positive_int

PENGI_PROMPTS = ("generate audio caption", "generate metadata", "this is a sound of")
DEFAULT_GPT2 = "gpt2"
DEFAULT_CLIP = "openai/clip-vit-base-patch16"

# A tiny Pengi (same code paths, small sizes) for offline tests: 8 kHz audio keeps the 7 s window within
# HTS-AT's 256 frames (hop 256); GPT-2's larger initialisation makes its texts depend on the prefix.
TINY_PENGI: dict[str, Any] = {
    "pengi": {"sample_rate": 8000, "d_proj": 32, "prefix_length": 16, "clip_length": 16, "enc_text_len": 16,
              "mapper_layers": 1, "mapper_heads": 2},
    "htsat": {"mel_sample_rate": 8000, "window_size": 512, "hop_size": 256, "mel_bins": 16, "fmin": 50.0,
              "fmax": 4000.0, "spec_size": 64, "embed_dim": 8, "depths": [2, 2], "num_heads": [2, 4], "window": 4,
              "num_classes": 5},
    "gpt2": {"n_positions": 128, "n_embd": 32, "n_layer": 2, "n_head": 2, "initializer_range": 0.5},
    "clip": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
             "max_position_embeddings": 77, "projection_dim": 32},
}  # fmt: skip


def tiny_tokenizers() -> tuple[Any, Any]:
    """Offline byte-level GPT-2 and CLIP tokenizers without merges (one token per byte)."""
    from transformers import GPT2Tokenizer

    from pseudolabel.tiny_models import byte_level_vocab, tiny_clip_tokenizer

    gpt2 = GPT2Tokenizer(vocab=byte_level_vocab(["<|endoftext|>"], specials_first=False), merges=[])
    gpt2.add_special_tokens({"pad_token": "!"})
    return gpt2, tiny_clip_tokenizer()


def check_crop(crop: Any) -> str | int:
    """``crop`` if it is ``"center"`` or an int seed, else a ValueError."""
    if crop != "center" and (not isinstance(crop, (int, np.integer)) or isinstance(crop, bool)):
        raise ValueError(f"crop must be 'center' or an int seed, got {crop!r}")
    return crop


class Pengi:
    """Pengi inference: audio + prompt -> text by beam search.

    Build with :meth:`from_pretrained` (original weights) or :meth:`tiny` (random, offline).

    Args:
        model: a :class:`~pseudolabel.alm.pengi.model.PengiModel` (eval mode).
        dec_tokenizer: GPT-2 tokenizer (pad ``!``).
        enc_tokenizer: CLIP tokenizer (``base``) or the GPT-2 one (``base_no_text_enc``).
        beam, max_len, temperature, stop_token: decoding (microsoft/Pengi ``example.py``: 3, 30, 1.0,
            ``' <|endoftext|>'``).
        max_repeats: runaway-repetition cap of :func:`~pseudolabel.alm.pengi.decode.clean_text`.
        crop: ``"center"`` or an int seed, for audio longer than the model's window.
        downmix: multi-channel clips ``[C, N]``: ``"mean"`` of the channels, or ``"concat"`` (the original's
            ``reshape(-1)``: the channels one after the other).
    """

    def __init__(
        self, model: Any, dec_tokenizer: Any, enc_tokenizer: Any, *, beam: int = 3, max_len: int = 30,
        temperature: float = 1.0, stop_token: str = " <|endoftext|>", max_repeats: int = 2, crop: str | int = "center",
        downmix: str = "mean",
    ) -> None:  # fmt: skip
        from pseudolabel.alm.pengi.decode import stop_ids
        from pseudolabel.alm.pengi.model import DOWNMIXES

        self.model = model
        self.dec_tokenizer = dec_tokenizer
        self.enc_tokenizer = enc_tokenizer
        self.beam = positive_int(beam, "beam")
        self.max_len = positive_int(max_len, "max_len")
        self.temperature = float(temperature)
        self.stop_ids = stop_ids(dec_tokenizer, stop_token)
        self.max_repeats = positive_int(max_repeats, "max_repeats")
        self.crop = check_crop(crop)
        if downmix not in DOWNMIXES:
            raise ValueError(f"downmix must be one of {DOWNMIXES}, got {downmix!r}")
        self.downmix = downmix

    @property
    def sample_rate(self) -> int:
        return int(self.model.config.sample_rate)

    @classmethod
    def from_pretrained(
        cls, config: str = "base", *, weights: str | os.PathLike[str], gpt2: str | os.PathLike[str] = DEFAULT_GPT2,
        clip: str | os.PathLike[str] = DEFAULT_CLIP, device: str = "cpu", sizes: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Pengi:  # fmt: skip
        """The original Pengi: ``config`` ``base`` or ``base_no_text_enc``, ``weights`` its ``.pth``; ``gpt2`` /
        ``clip`` give the configs and tokenizers. The checkpoint must match the layout exactly.

        ``sizes`` overrides fields of :class:`~pseudolabel.alm.pengi.model.PengiConfig` (``htsat``: a mapping
        of :class:`~pseudolabel.alm.pengi.htsat.HTSATConfig` fields), for checkpoints of other sizes."""
        from pseudolabel.alm.pengi.model import (
            PengiConfig,
            _hf_config,
            build_model,
            load_tokenizer,
            read_checkpoint,
        )

        pengi_config = PengiConfig.named(config).with_sizes(sizes or {})
        state = read_checkpoint(weights)  # first: a missing file is the likeliest mistake
        gpt2_config = _hf_config("gpt2", gpt2)
        clip_config = _hf_config("clip", clip) if pengi_config.use_text_encoder else None
        model = build_model(pengi_config, gpt2_config, clip_config)
        model.load_original_state_dict(state, source=str(weights))
        dec = load_tokenizer("gpt2", gpt2)
        enc = load_tokenizer("clip", clip) if pengi_config.use_text_encoder else dec
        return cls(model.to(device), dec, enc, **options)

    @classmethod
    def tiny(cls, overrides: Mapping[str, Any] | None = None, *, text_encoder: bool = True, **options: Any) -> Pengi:
        """A randomly initialised tiny Pengi (:data:`TINY_PENGI` updated with ``overrides``), built offline.
        Seed torch's RNG first for reproducible weights."""
        from transformers import CLIPTextConfig, GPT2Config

        from pseudolabel.alm.pengi.model import PengiConfig, build_model
        from pseudolabel.tiny_models import deep_merge

        merged = deep_merge(TINY_PENGI, dict(overrides or {}))
        dec, clip_tok = tiny_tokenizers()
        config = PengiConfig(use_text_encoder=text_encoder).with_sizes({**merged["pengi"], "htsat": merged["htsat"]})
        gpt2_config = GPT2Config(
            vocab_size=len(dec), bos_token_id=dec.eos_token_id, eos_token_id=dec.eos_token_id, **merged["gpt2"]
        )
        clip_config = CLIPTextConfig(
            vocab_size=len(clip_tok), bos_token_id=clip_tok.bos_token_id, eos_token_id=clip_tok.eos_token_id,
            pad_token_id=clip_tok.pad_token_id, **merged["clip"],
        )  # fmt: skip
        model = build_model(config, gpt2_config, clip_config)
        return cls(model, dec, clip_tok if text_encoder else dec, **options)

    # --- inference ---------------------------------------------------------------------------------

    def audio_input(self, waves: Sequence[np.ndarray], sample_rate: int) -> Any:
        """``[B, duration * rate]`` float tensor of the clips (``[N]`` or ``[C, N]``) prepared by
        :func:`~pseudolabel.alm.pengi.model.prepare_audio`."""
        import torch

        from pseudolabel.alm.pengi.model import prepare_audio

        rate, duration = self.sample_rate, self.model.config.duration
        clips = [
            prepare_audio(w, sample_rate, target_rate=rate, duration=duration, downmix=self.downmix, crop=self.crop)
            for w in waves
        ]
        return torch.from_numpy(np.stack(clips)).to(self._device, self._dtype)

    @property
    def _device(self) -> Any:
        return next(self.model.parameters()).device

    @property
    def _dtype(self) -> Any:
        return next(self.model.parameters()).dtype

    def prompt_tokens(self, prompts: Sequence[str]) -> tuple[Any, Any]:
        """Input ids and attention mask of the prompts, padded to ``enc_text_len`` (GPT-2 prompts get the
        ``' <|endoftext|>'`` suffix, as in microsoft/Pengi ``wrapper.py`` ``preprocess_text``)."""
        if not self.model.config.use_text_encoder:
            prompts = [prompt + " <|endoftext|>" for prompt in prompts]
        length = self.model.config.enc_text_len
        batch = self.enc_tokenizer(
            list(prompts), padding="max_length", max_length=length, truncation=True, return_tensors="pt"
        )
        return batch["input_ids"].to(self._device), batch["attention_mask"].to(self._device)

    def generate(self, waves: Sequence[np.ndarray], sample_rate: int, prompts: Sequence[str]) -> list[Any]:
        """Beam search for each (clip, prompt) pair (``waves[i]`` with ``prompts[i]``), all in one batch:
        one :class:`~pseudolabel.alm.pengi.decode.Beams` per pair. Each distinct prompt is encoded once, and
        each distinct wave (the same array object paired with several prompts) goes through HTS-AT once."""
        import torch

        from pseudolabel.alm.pengi.decode import beam_search

        if len(waves) != len(prompts):
            raise ValueError(f"got {len(waves)} clips but {len(prompts)} prompts; pair them one to one")
        with torch.inference_mode():
            unique = list(dict.fromkeys(prompts))
            ids, mask = self.prompt_tokens(unique)
            prompt_prefix = self.model.prompt_prefix(ids, mask)
            distinct = {id(wave): wave for wave in waves}  # batched_pairs repeats a segment once per prompt
            audio_row = {key: row for row, key in enumerate(distinct)}
            audio_prefix = self.model.audio_prefix(self.audio_input(list(distinct.values()), sample_rate))
            audio_rows = torch.tensor([audio_row[id(wave)] for wave in waves], device=self._device)
            rows = torch.tensor([unique.index(p) for p in prompts], device=self._device)
            prefix = torch.cat([audio_prefix[audio_rows], prompt_prefix[rows]], dim=1)
            return beam_search(
                self.model.gpt, prefix, beam=self.beam, max_len=self.max_len, temperature=self.temperature,
                stop=self.stop_ids,
            )  # fmt: skip

    def texts(self, waves: Sequence[np.ndarray], sample_rate: int, prompts: Sequence[str]) -> list[str]:
        """The text of each (clip, prompt) pair (``waves[i]`` with ``prompts[i]``), one batched search."""
        return [self.text(beams) for beams in self.generate(waves, sample_rate, prompts)]

    def text(self, beams: Any) -> str:
        """The best beam's text, cut at the stop token, repetition capped."""
        from pseudolabel.alm.pengi.decode import clean_text

        return clean_text(self.dec_tokenizer.decode(beams.tokens[0]), self.max_repeats)

    def describe(
        self, waves: Sequence[np.ndarray], sample_rate: int, prompts: Sequence[str] = PENGI_PROMPTS
    ) -> list[list[str]]:
        """``texts[i][j]`` for clip ``i`` and prompt ``j``: every pair in one batched search."""
        every_pair = max(1, len(waves) * len(prompts))
        return batched_pairs(waves, prompts, every_pair, lambda chunk, ps: self.texts(chunk, sample_rate, ps))


# --- the alm component -------------------------------------------------------------------------------


@register("pengi")
class PengiDescriber(AudioDescriber):
    """Pengi (microsoft/Pengi, the OpenAVS paper's ALM): beam-searched captions with its three prompts.

    Args:
        weights: path of the original ``base.pth`` (or ``base_no_text_enc.pth``); required unless ``config``.
        variant: ``base`` (CLIP prompt encoder) or ``base_no_text_enc``.
        gpt2, clip: local directory or Hub id (in the local cache) of the GPT-2 / CLIP configs and tokenizers.
        config: build a tiny random Pengi instead (a mapping of :data:`TINY_PENGI` overrides; ``{}``), offline.
        device, dtype, seed: see :class:`~pseudolabel.components.LazyModel`.
        beam, max_len, temperature, stop_token, max_repeats, crop: see :class:`Pengi`.
        prompts: default the three Pengi prompts.
        batch_size: (segment, prompt) pairs per beam search (default 15: 5 seconds x 3 prompts).
    """

    default_prompts = PENGI_PROMPTS
    source_key = "weights"

    def __init__(
        self, weights: str | os.PathLike[str] | None = None, *, variant: str = "base", gpt2: str = DEFAULT_GPT2,
        clip: str = DEFAULT_CLIP, config: Mapping[str, Any] | None = None, device: str = "cpu", dtype: str = "float32",
        seed: int = 0, beam: int = 3, max_len: int = 30, temperature: float = 1.0, stop_token: str = " <|endoftext|>",
        max_repeats: int = 2, crop: str | int = "center", prompts: Sequence[str] | None = None, batch_size: int = 15,
    ) -> None:  # fmt: skip
        from pseudolabel.alm.pengi.model import CONFIGS, WEIGHTS_SOURCE

        super().__init__(prompts=prompts, batch_size=batch_size)
        if variant not in CONFIGS:
            raise ValueError(f"pengi variant must be one of {CONFIGS}, got {variant!r}")
        if config is None:
            if weights is None or not str(weights).strip():
                raise ComponentConfigError(
                    f"pengi: set weights: to the path of {variant}.pth (labeler.alm.pengi.weights=/path/{variant}.pth; "
                    f"or another ALM: labeler/alm=[qwen2_5_omni]); {WEIGHTS_SOURCE}"
                )
            if not Path(weights).is_file():
                raise ComponentConfigError(
                    f"pengi: weights: {weights} does not exist (labeler.alm.pengi.weights); {WEIGHTS_SOURCE}"
                )
        check_crop(crop)
        self.variant, self.gpt2, self.clip = variant, str(gpt2), str(clip)
        self.options = {"beam": beam, "max_len": max_len, "temperature": temperature, "stop_token": stop_token,
                        "max_repeats": max_repeats, "crop": crop}  # fmt: skip
        family = f"pengi:{variant}:{self.gpt2}:{self.clip}:{sorted(self.options.items())}"
        self.lazy = LazyModel(
            family, None if weights is None else str(weights), config=config, device=device, dtype=dtype, seed=seed,
            load_pretrained=self._load, build_random=self._build,
        )  # fmt: skip

    def _load(self, weights: str, dtype: Any) -> tuple[Any, Any]:
        pengi = Pengi.from_pretrained(self.variant, weights=weights, gpt2=self.gpt2, clip=self.clip, **self.options)
        if dtype != "auto":
            pengi.model.to(dtype)
        return pengi, pengi.model

    def _build(self, config: Mapping[str, Any]) -> tuple[Any, Any]:
        pengi = Pengi.tiny(config, text_encoder=self.variant == "base", **self.options)
        return pengi, pengi.model

    @property
    def pengi(self) -> Pengi:
        return self.lazy.processor

    @property
    def sample_rate(self) -> int:
        return self.pengi.sample_rate

    def _describe_waves(self, waves: list[np.ndarray], prompts: Sequence[str | None]) -> list[list[str]]:
        pengi = self.pengi  # prompts: resolved and checked by AudioDescriber.describe
        return batched_pairs(waves, prompts, self.batch_size, lambda chunk, ps: pengi.texts(chunk, pengi.sample_rate, ps))

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), **self.lazy.provenance(), "variant": self.variant, "gpt2": self.gpt2,
                "clip": self.clip, **self.options}  # fmt: skip


__all__ = ["PENGI_PROMPTS", "TINY_PENGI", "Pengi", "PengiDescriber", "tiny_tokenizers"]
