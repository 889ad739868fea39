"""Pengi (microsoft/Pengi) inference on transformers 5: the model, its configs, strict loading of the original
weights, audio preparation and the decoder prefix.

Structure and key names follow microsoft/Pengi ``models/pengi.py`` (``PENGI``), ``models/decoder.py``
(``DecoderModel``, ``TransformerMapper``, ``TransformerMapperSeq``) and ``models/htsat.py``; the settings
follow ``configs/base.yml`` / ``configs/base_no_text_enc.yml``:

- ``audio_encoder.base.htsat``: HTS-AT (:mod:`.htsat`), 768-d clip embedding; ``audio_encoder.projection``:
  ``Projection(768, 1024)`` (linear, GELU, linear, residual, LayerNorm);
- ``caption_encoder`` (``base`` only): the CLIP text tower (``base`` = ``CLIPTextModel.text_model``), its
  ``clip_text_projection`` (512 -> 512, no bias) applied to the pooled output, then ``Projection(512, 1024)``;
  ``base_no_text_enc`` embeds the prompt with GPT-2's ``wte`` instead (40 tokens);
- ``caption_decoder``: ``gpt`` (``GPT2LMHeadModel``), ``audio_project`` and ``text_project`` (transformer
  mappers: 4 layers, 8 heads, MLP ratio 2, ReLU; a linear map of the 1024-d vector to 40 tokens + 40
  learned constant tokens, the output is the 40 constant positions; ``TransformerMapperSeq`` for the
  40 GPT-2 prompt embeddings of ``base_no_text_enc``). The decoder prefix is 40 audio + 40 prompt tokens.

As in microsoft/Pengi ``wrapper.py`` (the inference API OpenAVS used), the audio embedding is L2-normalised
before ``audio_project`` and the prompt embedding is not (``normalize_prompt=False``; the training
forward of ``models/decoder.py`` normalises both: ``normalize_prompt=True``).

No GPT-2 or CLIP weights are used: the two contribute only their configs and tokenizers (a local directory
reads offline; a Hub id is fetched by transformers as usual, or read from its cache); every weight comes from
``base.pth``.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backbones.encoders import load_weights_only
from pseudolabel.alm.pengi.htsat import HTSAT, PENGI_HTSAT, HTSATConfig

CONFIGS = ("base", "base_no_text_enc")
WEIGHTS_SOURCE = (
    "the Pengi checkpoints base.pth / base_no_text_enc.pth are published on Zenodo (record 8387083, "
    "https://zenodo.org/records/8387083), linked from the README of github.com/microsoft/Pengi"
)
# Keys of constant buffers: transformers 4.28 (which saved base.pth) kept GPT-2's causal mask / masked_bias and
# CLIP's position_ids in the state dict; HTS-AT saves its relative-position index and shift masks. They are
# checked by shape when present and not loaded (they are recomputed from the architecture).
CONSTANT_KEYS = re.compile(
    r"(\.attn\.bias|\.attn\.masked_bias|\.embeddings\.position_ids|\.relative_position_index|\.attn_mask)$"
)


@dataclass
class PengiConfig:
    """Sizes of a Pengi model (defaults: ``configs/base.yml``)."""

    use_text_encoder: bool = True
    sample_rate: int = 44100
    duration: float = 7.0
    d_proj: int = 1024
    prefix_length: int = 40
    clip_length: int = 40
    mapper_layers: int = 4  # int(num_layers / 2) with num_layers 8
    mapper_heads: int = 8
    enc_text_len: int = 40
    normalize_prompt: bool = False
    htsat: HTSATConfig = field(default_factory=lambda: PENGI_HTSAT)

    @classmethod
    def named(cls, name: str) -> PengiConfig:
        if name not in CONFIGS:
            raise ValueError(f"Pengi config must be one of {CONFIGS}, got {name!r}")
        return cls(use_text_encoder=name == "base")

    def with_sizes(self, sizes: Mapping[str, Any]) -> PengiConfig:
        """A copy with fields replaced (``htsat``: a mapping of :class:`HTSATConfig` fields)."""
        sizes = dict(sizes)
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(sizes) - known)
        if unknown:
            raise ValueError(f"unknown Pengi config fields {unknown}; known: {sorted(known)}")
        if "htsat" in sizes and isinstance(sizes["htsat"], Mapping):
            fields = {k: tuple(v) if isinstance(v, list) else v for k, v in sizes["htsat"].items()}
            sizes["htsat"] = dataclasses.replace(self.htsat, **fields)
        return dataclasses.replace(self, **sizes)


# --- modules (names as in microsoft/Pengi models/pengi.py and models/decoder.py) -----------------------


class Projection(nn.Module):
    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_in, d_out, bias=False)
        self.linear2 = nn.Linear(d_out, d_out, bias=False)
        self.layer_norm = nn.LayerNorm(d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.linear1(x)
        return self.layer_norm(e1 + self.linear2(F.gelu(e1)))


class MultiHeadAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.to_queries = nn.Linear(dim, dim, bias=False)
        self.to_keys_values = nn.Linear(dim, dim * 2, bias=False)
        self.project = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h = self.num_heads
        q = self.to_queries(x).reshape(b, n, h, c // h)
        kv = self.to_keys_values(x).reshape(b, n, 2, h, c // h)
        attn = torch.einsum("bnhd,bmhd->bnmh", q, kv[:, :, 0]) * self.scale
        out = torch.einsum("bnmh,bmhd->bnhd", attn.softmax(dim=2), kv[:, :, 1]).reshape(b, n, c)
        return self.project(out)


class MlpTransformer(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


class TransformerLayer(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MlpTransformer(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    def __init__(self, dim: int, num_heads: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(dim, num_heads) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class TransformerMapper(nn.Module):
    """A vector ``[B, d_in]`` -> ``[B, prefix_length, dim]`` (``linear`` to ``clip_length`` tokens, then
    the transformer over those and the learned ``prefix_const``; the ``prefix_const`` positions are kept)."""

    def __init__(self, d_in: int | None, dim: int, prefix_length: int, clip_length: int, layers: int, heads: int):
        super().__init__()
        self.clip_length = clip_length
        self.transformer = Transformer(dim, heads, layers)
        if d_in is not None:  # TransformerMapperSeq (a token sequence in) has no linear
            self.linear = nn.Linear(d_in, clip_length * dim)
        self.prefix_const = nn.Parameter(torch.randn(prefix_length, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "linear"):
            x = self.linear(x)
        x = x.reshape(x.shape[0], self.clip_length, -1)
        prefix = self.prefix_const.unsqueeze(0).expand(x.shape[0], -1, -1)
        return self.transformer(torch.cat((x, prefix), dim=1))[:, self.clip_length :]


class AudioEncoder(nn.Module):
    def __init__(self, config: PengiConfig) -> None:
        super().__init__()
        self.base = nn.Module()
        self.base.htsat = HTSAT(config.htsat)
        self.projection = Projection(config.htsat.num_features, config.d_proj)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.projection(self.base.htsat(wave))


class TextEncoder(nn.Module):
    """CLIP text tower (``base``), its text projection, and ``Projection`` to ``d_proj``."""

    def __init__(self, clip_config: Any, d_proj: int) -> None:
        super().__init__()
        from transformers import CLIPTextModelWithProjection

        clip = CLIPTextModelWithProjection(clip_config)
        self.base = clip.text_model
        self.clip_text_projection = clip.text_projection
        self.projection = Projection(clip.text_projection.out_features, d_proj)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = self.base(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        return self.projection(self.clip_text_projection(pooled))


class CaptionDecoder(nn.Module):
    def __init__(self, gpt2_config: Any, config: PengiConfig) -> None:
        super().__init__()
        from transformers import GPT2LMHeadModel

        self.gpt = GPT2LMHeadModel(gpt2_config)
        dim = gpt2_config.n_embd
        args = (dim, config.prefix_length, config.clip_length, config.mapper_layers, config.mapper_heads)
        self.audio_project = TransformerMapper(config.d_proj, *args)
        self.text_project = TransformerMapper(config.d_proj if config.use_text_encoder else None, *args)


class PengiModel(nn.Module):
    """Pengi: ``prefix(wave, prompt tokens) -> [B, 80, n_embd]`` decoder prefix, and ``caption_decoder.gpt``.

    Args:
        config: sizes (:class:`PengiConfig`).
        gpt2_config: a ``GPT2Config``.
        clip_config: a ``CLIPTextConfig`` (``base`` only; None for ``base_no_text_enc``).
    """

    def __init__(self, config: PengiConfig, gpt2_config: Any, clip_config: Any = None) -> None:
        super().__init__()
        self.config = config
        self.audio_encoder = AudioEncoder(config)
        if config.use_text_encoder:
            if clip_config is None:
                raise ValueError("the base Pengi config needs a CLIP text config (clip=...)")
            self.caption_encoder = TextEncoder(clip_config, config.d_proj)
        self.caption_decoder = CaptionDecoder(gpt2_config, config)

    @property
    def gpt(self) -> nn.Module:
        return self.caption_decoder.gpt

    def audio_prefix(self, wave: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` samples at the model rate -> ``[B, prefix_length, n_embd]``."""
        embedding = self.audio_encoder(wave)
        embedding = embedding / embedding.norm(2, -1, keepdim=True)
        return self.caption_decoder.audio_project(embedding)

    def prompt_prefix(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Tokenised prompts -> ``[P, prefix_length, n_embd]``."""
        if self.config.use_text_encoder:
            embedding = self.caption_encoder(input_ids, attention_mask)
            if self.config.normalize_prompt:
                embedding = embedding / embedding.norm(2, -1, keepdim=True)
        else:
            embedding = self.gpt.transformer.wte(input_ids)
        return self.caption_decoder.text_project(embedding)

    # --- the original key layout -----------------------------------------------------------------

    def expected_keys(self) -> dict[str, tuple[int, ...]]:
        """Tensor names and shapes of this model's layout in the original ``base.pth`` (constant buffers
        included)."""
        keys = {name: tuple(t.shape) for name, t in self.state_dict().items()}
        for name, buf in self.named_buffers():
            if CONSTANT_KEYS.search(name) and buf is not None:
                keys[name] = tuple(buf.shape)
        gpt = self.gpt
        n_pos = gpt.config.n_positions
        for i in range(gpt.config.n_layer):
            prefix = f"caption_decoder.gpt.transformer.h.{i}.attn."
            keys[prefix + "bias"] = (1, 1, n_pos, n_pos)
            keys[prefix + "masked_bias"] = ()
        if self.config.use_text_encoder:
            keys["caption_encoder.base.embeddings.position_ids"] = (1, self.caption_encoder.base.config.max_position_embeddings)
        keys.setdefault("caption_decoder.gpt.lm_head.weight", tuple(gpt.transformer.wte.weight.shape))
        return keys

    def load_original_state_dict(self, state: Mapping[str, torch.Tensor], source: str = "the state dict") -> None:
        """Load a state dict in the original layout strictly: every tensor of the model must be present with
        its shape, and nothing else may be (a ``module.`` prefix of a DataParallel save is removed). Constant
        buffers (:data:`CONSTANT_KEYS`) may be absent (newer saves); when present their shape is checked.

        Raises:
            KeyError: naming the missing and unexpected keys and ``source``.
            ValueError: naming a key whose shape differs.
        """
        if state and all(key.startswith("module.") for key in state):
            state = {key[len("module.") :]: value for key, value in state.items()}
        expected = self.expected_keys()
        missing = [key for key in expected if key not in state and not CONSTANT_KEYS.search(key)]
        unexpected = [key for key in state if key not in expected]
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"missing keys ({len(missing)}): {missing[:8]}{' ...' if len(missing) > 8 else ''}")
            if unexpected:
                parts.append(
                    f"unexpected keys ({len(unexpected)}): {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}"
                )
            raise KeyError(f"{source} does not have the Pengi {self.config_name} layout: " + "; ".join(parts))
        for key, shape in expected.items():
            if key in state and tuple(state[key].shape) != shape:
                raise ValueError(f"{source}: {key} has shape {tuple(state[key].shape)}, expected {shape}")
        own = self.state_dict()
        with torch.no_grad():
            for key, target in own.items():
                source_tensor = state.get(key)
                if source_tensor is None:  # lm_head.weight tied to wte (absent from some saves)
                    continue
                target.copy_(source_tensor.to(target.dtype))
        wte = self.gpt.transformer.wte.weight
        head = state.get("caption_decoder.gpt.lm_head.weight")
        if head is not None and self.gpt.lm_head.weight is not wte:
            self.gpt.lm_head.weight.data.copy_(head)

    @property
    def config_name(self) -> str:
        return "base" if self.config.use_text_encoder else "base_no_text_enc"


# --- building and loading ----------------------------------------------------------------------------


def _hf_config(kind: str, source: str | os.PathLike[str]) -> Any:
    from transformers import CLIPTextConfig, GPT2Config

    cls = GPT2Config if kind == "gpt2" else CLIPTextConfig
    try:
        return cls.from_pretrained(str(source))
    except OSError as exc:
        raise _source_error(
            kind,
            f"Pengi {kind}={str(source)!r}: no {cls.__name__} there (give a local directory holding config.json and "
            f"the tokenizer files of {'gpt2' if kind == 'gpt2' else 'openai/clip-vit-base-patch16'}, or a Hub id "
            f"that is in the local cache): {exc}",
        ) from None


def _source_error(kind: str, message: str) -> FileNotFoundError:
    """A ``FileNotFoundError`` naming the option that failed (``gpt2`` / ``clip``), not ``weights``, in the
    component's load error (``source_key`` / ``source_hint``, read by :func:`pseudolabel.components.load_all`)."""
    error = FileNotFoundError(message)
    error.source_key = kind  # type: ignore[attr-defined]
    error.source_hint = "a local directory holding them (or a Hub id in the local cache)"  # type: ignore[attr-defined]
    return error


def load_tokenizer(kind: str, source: str | os.PathLike[str]) -> Any:
    """The GPT-2 or CLIP tokenizer (``AutoTokenizer``); GPT-2's gets the pad token ``!`` as in the original."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source))
    except OSError as exc:
        raise _source_error(kind, f"Pengi {kind}={str(source)!r}: cannot load its tokenizer: {exc}") from None
    if kind == "gpt2":
        tokenizer.add_special_tokens({"pad_token": "!"})
    return tokenizer


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The ``model`` state dict of an original Pengi checkpoint (``torch.load(weights_only=True)``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Pengi weights: {path} does not exist (set the yaml key weights: to the path of base.pth or "
            f"base_no_text_enc.pth; {WEIGHTS_SOURCE})"
        )
    with torch.serialization.safe_globals([argparse.Namespace, collections.OrderedDict]):
        checkpoint = load_weights_only(path, "Pengi weights:")
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"Pengi weights: {path} holds no state dict (expected {{'model': {{name: tensor}}}})")
    return dict(state)


def build_model(config: PengiConfig, gpt2_config: Any, clip_config: Any = None) -> PengiModel:
    """A randomly initialised :class:`PengiModel` (eval mode)."""
    return PengiModel(config, gpt2_config, clip_config if config.use_text_encoder else None).eval()


# --- audio -------------------------------------------------------------------------------------------


DOWNMIXES = ("mean", "concat")


def prepare_audio(
    wave: np.ndarray, sample_rate: int, *, target_rate: int = 44100, duration: float = 7.0,
    downmix: str = "mean", crop: str | int = "center",
) -> np.ndarray:  # fmt: skip
    """A clip as Pengi's input: ``duration * target_rate`` float32 samples.

    As microsoft/Pengi ``wrapper.py`` ``load_audio_into_tensor``: resampled to ``target_rate``; a clip of at
    most ``duration`` seconds is tiled (repeated from its start) and cut to the length. Differences, by
    option: channels ``[C, N]`` are averaged (``downmix="mean"``; ``"concat"`` joins them one after the
    other like the original's ``reshape(-1)``), and a longer clip is cropped deterministically:
    ``crop="center"`` (the middle), or an int seed (``numpy.random.default_rng(seed)`` picks the start the
    original picks with ``random.randrange``).
    """
    if downmix not in DOWNMIXES:
        raise ValueError(f"downmix must be one of {DOWNMIXES}, got {downmix!r}")
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=0) if downmix == "mean" else wave.reshape(-1)
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"audio must be non-empty samples [N] or [channels, N], got shape {wave.shape}")
    if sample_rate != target_rate:
        from openavs_st.data.audio import resample

        wave = resample(wave, sample_rate, target_rate).astype(np.float32)
    length = int(duration * target_rate)
    if wave.shape[0] <= length:
        return np.tile(wave, -(-length // wave.shape[0]))[:length]
    spare = wave.shape[0] - length
    if crop == "center":
        start = spare // 2
    elif isinstance(crop, (int, np.integer)) and not isinstance(crop, bool):
        start = int(np.random.default_rng(int(crop)).integers(0, spare))
    else:
        raise ValueError(f"crop must be 'center' or an int seed, got {crop!r}")
    return wave[start : start + length]
