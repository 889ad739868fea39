"""``beats``: BEATs (Chen et al., ICML 2023) fine-tuned on AudioSet as a tagger: our implementation of the model
of microsoft/unilm ``beats/`` that loads the original checkpoints (``BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt``
...) with their key layout, strictly.

The model (microsoft/unilm ``beats/BEATs.py``, ``beats/backbone.py``):

- front end: Kaldi log-mel filterbank of the 16 kHz wave scaled to 16-bit range (128 mel bins, 25 ms povey
  window, 10 ms shift; ``torchaudio.compliance.kaldi.fbank`` in the original, computed here with
  ``transformers.audio_utils``), normalised as ``(fbank - 15.41663) / (2 * 6.55582)``;
- 16 x 16 patch embedding (``Conv2d``) of the ``[frames, 128]`` fbank, LayerNorm, projection to the encoder
  width;
- a post-LayerNorm transformer encoder: a weight-normalised grouped convolutional position embedding,
  attention with a bucketed relative position bias (shared by all layers, gated per query in
  ``gru_rel_pos`` mode) and DeepNorm residual scaling ``(2 * layers) ** 0.25``;
- the predictor: a linear layer per patch, averaged over patches, sigmoid: 527 AudioSet probabilities.

A checkpoint is a ``torch.save``d dict ``{"cfg": dict, "model": state_dict, "label_dict": {index: MID}}``;
:meth:`BEATs.from_pretrained` reads it with ``torch.load(weights_only=True)`` and loads ``model`` strictly
(missing, unexpected and mis-shaped keys are named). Output ``i`` is the AudioSet class whose id is
``label_dict[i]`` (BEATs' order is not ``class_labels_indices.csv``'s); ids become names through the shipped
``audioset_ids.txt`` / ``audioset.txt``. AL-Ref-SAM2 (``avs/*/beats.py``) zeroes the Silence class
(``/m/028v0c``) before its top 5: the tagger's default ``exclude`` does the same (``exclude: []`` keeps it).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pseudolabel.alm.base import VOCABULARY_DIR, AudioTagger, load_vocabulary, register
from pseudolabel.components import LazyModel

SAMPLE_RATE = 16000
FBANK_MEAN = 15.41663  # microsoft/unilm beats/BEATs.py, BEATs.preprocess defaults
FBANK_STD = 6.55582
NUM_MEL_BINS = 128
DEFAULT_MODEL = "BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt"
SILENCE_ID = "/m/028v0c"

# BEATsConfig's defaults (microsoft/unilm beats/BEATs.py); a checkpoint's cfg overrides them.
DEFAULT_CONFIG: dict[str, Any] = {
    "input_patch_size": -1,
    "embed_dim": 512,
    "conv_bias": False,
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "activation_fn": "gelu",
    "layer_wise_gradient_decay_ratio": 1.0,
    "layer_norm_first": False,
    "deep_norm": False,
    "dropout": 0.1,
    "attention_dropout": 0.1,
    "activation_dropout": 0.0,
    "encoder_layerdrop": 0.0,
    "dropout_input": 0.0,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "relative_position_embedding": False,
    "num_buckets": 320,
    "max_distance": 1280,
    "gru_rel_pos": False,
    "finetuned_model": False,
    "predictor_dropout": 0.1,
    "predictor_class": 527,
}
# The cfg of the AudioSet fine-tuned iter3+ checkpoints (12 layers, 768 wide, 90.7M parameters).
FULL_CONFIG: dict[str, Any] = {
    **DEFAULT_CONFIG,
    "input_patch_size": 16,
    "layer_wise_gradient_decay_ratio": 0.6,
    "deep_norm": True,
    "dropout": 0.0,
    "attention_dropout": 0.0,
    "encoder_layerdrop": 0.05,
    "relative_position_embedding": True,
    "max_distance": 800,
    "gru_rel_pos": True,
    "finetuned_model": True,
    "predictor_dropout": 0.0,
}
# A ~40k-parameter BEATs of the same structure (tests).
TINY_CONFIG: dict[str, Any] = {
    **FULL_CONFIG,
    "embed_dim": 16,
    "encoder_layers": 2,
    "encoder_embed_dim": 32,
    "encoder_ffn_embed_dim": 64,
    "encoder_attention_heads": 2,
    "conv_pos": 16,
    "conv_pos_groups": 4,
    "num_buckets": 32,
    "max_distance": 64,
}


def beats_config(cfg: Mapping[str, Any] | None = None, *, where: str = "cfg") -> dict[str, Any]:
    """:data:`DEFAULT_CONFIG` updated with ``cfg`` (keys BEATs does not use, e.g. training options a checkpoint
    records, are kept and ignored); checks what the model is built from."""
    if cfg is not None and not isinstance(cfg, Mapping):
        raise TypeError(f"{where} must be a dict of BEATs options, got {type(cfg).__name__}")
    merged = {**DEFAULT_CONFIG, **dict(cfg or {})}
    for key in ("input_patch_size", "embed_dim", "encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim",
                "encoder_attention_heads", "conv_pos", "conv_pos_groups", "num_buckets", "max_distance",
                "predictor_class"):
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{where}: {key} must be a positive integer, got {value!r}")
    if merged["encoder_embed_dim"] % merged["encoder_attention_heads"]:
        raise ValueError(f"{where}: encoder_embed_dim {merged['encoder_embed_dim']} is not divisible by "
                         f"encoder_attention_heads {merged['encoder_attention_heads']}")
    if merged["activation_fn"] not in ("gelu", "relu"):
        raise ValueError(f"{where}: activation_fn {merged['activation_fn']!r} is not supported (gelu, relu)")
    if merged["deep_norm"] and merged["layer_norm_first"]:
        raise ValueError(f"{where}: deep_norm and layer_norm_first exclude each other")
    return merged


@functools.cache
def _fbank_tables() -> tuple[np.ndarray, np.ndarray]:
    """The povey window and the Kaldi mel bank (``[257, 128]``; its lowest bins are empty, as Kaldi's are)."""
    from transformers.audio_utils import mel_filter_bank, window_function

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
        filters = mel_filter_bank(
            num_frequency_bins=257, num_mel_filters=NUM_MEL_BINS, min_frequency=20, max_frequency=SAMPLE_RATE // 2,
            sampling_rate=SAMPLE_RATE, norm=None, mel_scale="kaldi", triangularize_in_mel_space=True,
        )
    return window_function(400, "hann", periodic=False) ** 0.85, filters


def kaldi_fbank(waves: Sequence[np.ndarray]) -> Any:
    """BEATs' normalised input: ``[B, frames, 128]`` float32 torch tensor of equal-length 16 kHz waves in [-1, 1].

    Kaldi ``compute-fbank-feats`` defaults as BEATs calls them (``torchaudio.compliance.kaldi.fbank(wave * 2**15,
    num_mel_bins=128, sample_frequency=16000, frame_length=25, frame_shift=10)``): per frame DC removal,
    pre-emphasis 0.97, povey window (Hann ** 0.85), 512-point power spectrum, Kaldi mel bank 20 Hz - 8 kHz,
    log floored at float32 epsilon; then ``(fbank - 15.41663) / (2 * 6.55582)``.
    """
    import torch
    from transformers.audio_utils import spectrogram

    window, filters = _fbank_tables()
    features = []
    for index, wave in enumerate(waves):
        wave = np.asarray(wave, dtype=np.float64)
        if wave.shape[0] < 400 + 15 * 160:
            raise ValueError(f"audio {index} has {wave.shape[0]} samples; BEATs needs at least 2800 (0.175 s at 16 kHz)")
        fbank = spectrogram(
            wave * 2.0**15, window, frame_length=400, hop_length=160, fft_length=512, power=2.0, center=False,
            preemphasis=0.97, mel_filters=filters, log_mel="log", mel_floor=float(np.finfo(np.float32).eps),
            remove_dc_offset=True,
        ).T
        features.append((fbank - FBANK_MEAN) / (2 * FBANK_STD))
    lengths = {f.shape[0] for f in features}
    if len(lengths) > 1:
        raise ValueError(f"kaldi_fbank batches equal-length waves, got frame counts {sorted(lengths)}")
    return torch.from_numpy(np.stack(features).astype(np.float32))


def _modules() -> dict[str, type]:
    """The torch modules of BEATs, defined on first use (this module imports torch lazily)."""
    if _MODULES:
        return _MODULES
    import torch
    import torch.nn.functional as F
    from torch import nn

    from backbones.encoders import load_state_dict_strict

    class PositionConv(nn.Module):
        """Grouped conv over time with a weight-normalised kernel (``weight_g`` per tap, ``weight_v``), as
        ``nn.utils.weight_norm(conv, dim=2)`` stores it; the last output step is dropped for an even kernel."""

        def __init__(self, width: int, kernel: int, groups: int) -> None:
            super().__init__()
            self.kernel, self.groups = kernel, groups
            self.weight_g = nn.Parameter(torch.ones(1, 1, kernel))
            self.weight_v = nn.Parameter(torch.empty(width, width // groups, kernel))
            self.bias = nn.Parameter(torch.zeros(width))
            nn.init.normal_(self.weight_v, std=math.sqrt(4.0 / (kernel * width)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T]
            norm = self.weight_v.pow(2).sum(dim=(0, 1), keepdim=True).sqrt()
            weight = self.weight_g * self.weight_v / norm
            out = F.conv1d(x, weight, self.bias, padding=self.kernel // 2, groups=self.groups)
            return F.gelu(out[:, :, :-1] if self.kernel % 2 == 0 else out)

    class Attention(nn.Module):
        def __init__(self, cfg: dict[str, Any], with_bias_table: bool) -> None:
            super().__init__()
            width, heads = cfg["encoder_embed_dim"], cfg["encoder_attention_heads"]
            self.heads, self.head_dim = heads, width // heads
            self.num_buckets, self.max_distance = cfg["num_buckets"], cfg["max_distance"]
            self.gated = bool(cfg["gru_rel_pos"])
            if with_bias_table:
                self.relative_attention_bias = nn.Embedding(self.num_buckets, heads)
            self.k_proj = nn.Linear(width, width)
            self.v_proj = nn.Linear(width, width)
            self.q_proj = nn.Linear(width, width)
            self.out_proj = nn.Linear(width, width)
            if self.gated:
                self.grep_linear = nn.Linear(self.head_dim, 8)
                self.grep_a = nn.Parameter(torch.ones(1, heads, 1, 1))

        def position_bias(self, length: int) -> torch.Tensor:
            """``[H, L, L]`` bias from the bucketed relative positions (bidirectional T5-style buckets: half
            per direction, exact below a quarter of the buckets, logarithmic up to ``max_distance``)."""
            position = torch.arange(length, device=self.relative_attention_bias.weight.device)
            relative = position[None, :] - position[:, None]
            half = self.num_buckets // 2
            bucket = (relative > 0).long() * half
            distance = relative.abs()
            exact = half // 2
            far = exact + (
                torch.log(distance.float().clamp(min=1) / exact) / math.log(self.max_distance / exact) * (half - exact)
            ).long()
            bucket = bucket + torch.where(distance < exact, distance, far.clamp(max=half - 1))
            return self.relative_attention_bias(bucket).permute(2, 0, 1)

        def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:  # [B, L, C]
            batch, length, width = x.shape
            query = self.q_proj(x).view(batch, length, self.heads, self.head_dim).transpose(1, 2)
            key = self.k_proj(x).view(batch, length, self.heads, self.head_dim).transpose(1, 2)
            value = self.v_proj(x).view(batch, length, self.heads, self.head_dim).transpose(1, 2)
            mask = None
            if bias is not None:
                mask = bias.unsqueeze(0).to(query.dtype)
                if self.gated:  # per-query gate of the bias from the (unscaled) query projection
                    gates = torch.sigmoid(self.grep_linear(query).view(batch, self.heads, length, 2, 4).sum(-1))
                    gate_a, gate_b = gates[..., :1], gates[..., 1:]
                    mask = (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * mask
            out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
            return self.out_proj(out.transpose(1, 2).reshape(batch, length, width))

    class Layer(nn.Module):
        def __init__(self, cfg: dict[str, Any], with_bias_table: bool) -> None:
            super().__init__()
            width = cfg["encoder_embed_dim"]
            self.self_attn = Attention(cfg, with_bias_table)
            self.self_attn_layer_norm = nn.LayerNorm(width)
            self.fc1 = nn.Linear(width, cfg["encoder_ffn_embed_dim"])
            self.fc2 = nn.Linear(cfg["encoder_ffn_embed_dim"], width)
            self.final_layer_norm = nn.LayerNorm(width)
            self.pre_norm = bool(cfg["layer_norm_first"])
            self.alpha = (2.0 * cfg["encoder_layers"]) ** 0.25 if cfg["deep_norm"] else 1.0
            self.activation = F.gelu if cfg["activation_fn"] == "gelu" else F.relu

        def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
            if self.pre_norm:
                x = x + self.self_attn(self.self_attn_layer_norm(x), bias)
                return x + self.fc2(self.activation(self.fc1(self.final_layer_norm(x))))
            x = self.self_attn_layer_norm(x * self.alpha + self.self_attn(x, bias))
            return self.final_layer_norm(x * self.alpha + self.fc2(self.activation(self.fc1(x))))

    class Encoder(nn.Module):
        def __init__(self, cfg: dict[str, Any]) -> None:
            super().__init__()
            width = cfg["encoder_embed_dim"]
            self.pos_conv = nn.Sequential(PositionConv(width, cfg["conv_pos"], cfg["conv_pos_groups"]))
            relative = bool(cfg["relative_position_embedding"])
            self.layers = nn.ModuleList(Layer(cfg, relative and i == 0) for i in range(cfg["encoder_layers"]))
            if relative:  # one table, registered under every layer (the original's state dict lists it 12 times)
                for layer in list(self.layers)[1:]:
                    layer.self_attn.relative_attention_bias = self.layers[0].self_attn.relative_attention_bias
            self.relative = relative
            self.layer_norm = nn.LayerNorm(width)
            self.pre_norm = bool(cfg["layer_norm_first"])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
            if not self.pre_norm:
                x = self.layer_norm(x)
            bias = self.layers[0].self_attn.position_bias(x.shape[1]) if self.relative else None
            for layer in self.layers:
                x = layer(x, bias)
            return self.layer_norm(x) if self.pre_norm else x

    class BEATs(nn.Module):
        """BEATs on normalised fbanks: ``forward(fbank [B, frames, 128]) -> probabilities [B, classes]``."""

        def __init__(self, cfg: Mapping[str, Any] | None = None) -> None:
            super().__init__()
            self.cfg = beats_config(cfg)
            embed, width, patch = self.cfg["embed_dim"], self.cfg["encoder_embed_dim"], self.cfg["input_patch_size"]
            self.post_extract_proj = nn.Linear(embed, width) if embed != width else None
            self.patch_embedding = nn.Conv2d(1, embed, kernel_size=patch, stride=patch, bias=self.cfg["conv_bias"])
            self.encoder = Encoder(self.cfg)
            self.layer_norm = nn.LayerNorm(embed)
            if self.cfg["finetuned_model"]:
                self.predictor = nn.Linear(width, self.cfg["predictor_class"])
            else:
                self.predictor = None
            self.label_ids: list[str] = []
            self.labels: list[str] = []

        def features(self, fbank: torch.Tensor) -> torch.Tensor:
            """Encoder output ``[B, patches, width]`` (patches time-major: frames // 16 x 128 // 16)."""
            x = self.patch_embedding(fbank.unsqueeze(1))
            x = self.layer_norm(x.flatten(2).transpose(1, 2))
            if self.post_extract_proj is not None:
                x = self.post_extract_proj(x)
            return self.encoder(x)

        def forward(self, fbank: torch.Tensor) -> torch.Tensor:
            if self.predictor is None:
                raise ValueError("this BEATs has no predictor (cfg finetuned_model is false): it gives features, not tags")
            return torch.sigmoid(self.predictor(self.features(fbank)).mean(dim=1))

        def tag_waves(self, waves: Sequence[np.ndarray]) -> np.ndarray:
            """Class probabilities ``[len(waves), classes]`` of 16 kHz waves (one forward per distinct length)."""
            rows: dict[int, np.ndarray] = {}
            by_length: dict[int, list[int]] = {}
            for index, wave in enumerate(waves):
                by_length.setdefault(len(wave), []).append(index)
            param = next(self.parameters())
            for indices in by_length.values():
                fbank = kaldi_fbank([waves[i] for i in indices]).to(param.device, param.dtype)
                with torch.inference_mode():
                    probs = self(fbank).float().cpu().numpy()
                rows.update(zip(indices, probs))
            return np.stack([rows[i] for i in range(len(waves))]) if rows else np.zeros((0, self.cfg["predictor_class"]))

        @classmethod
        def from_pretrained(cls, path: str | Path, *, map_location: str = "cpu") -> BEATs:
            """The model of an original BEATs checkpoint file, loaded strictly, with its labels."""
            checkpoint = read_checkpoint(path, map_location=map_location)
            model = cls(beats_config(checkpoint["cfg"], where=f"{path}: cfg"))
            load_state_dict_strict(model, checkpoint["model"], source=f"BEATs checkpoint {path}")
            model.set_labels(checkpoint.get("label_dict"), where=str(path))
            return model

        def set_labels(self, label_dict: Mapping[int, str] | None, *, where: str = "label_dict") -> None:
            """Output index -> AudioSet id (``label_dict``) -> display name; None: the shipped AudioSet order."""
            classes = self.cfg["predictor_class"] if self.predictor is not None else 0
            names = audioset_names()
            if label_dict is None:
                ids = load_vocabulary(VOCABULARY_DIR / "audioset_ids.txt")[:classes]
            else:
                if not isinstance(label_dict, Mapping):
                    raise TypeError(f"{where}: label_dict must map output index -> AudioSet id, got {type(label_dict).__name__}")
                missing = [i for i in range(classes) if i not in label_dict]
                if missing:
                    raise ValueError(f"{where}: label_dict has no id for outputs {missing[:10]} (of {classes})")
                ids = [str(label_dict[i]) for i in range(classes)]
            self.label_ids = ids
            self.labels = [names.get(i, i) for i in ids]

    _MODULES.update(BEATs=BEATs, Encoder=Encoder, Layer=Layer, Attention=Attention, PositionConv=PositionConv)
    return _MODULES


_MODULES: dict[str, type] = {}


def __getattr__(name: str) -> Any:  # BEATs and its parts are built with torch on first access
    if name in ("BEATs", "Encoder", "Layer", "Attention", "PositionConv"):
        return _modules()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def audioset_names() -> dict[str, str]:
    """AudioSet id -> display name (the shipped ``audioset_ids.txt`` and ``audioset.txt``, line by line)."""
    ids = load_vocabulary(VOCABULARY_DIR / "audioset_ids.txt")
    names = load_vocabulary("audioset")
    if len(ids) != len(names):
        raise ValueError(f"audioset_ids.txt has {len(ids)} ids but audioset.txt {len(names)} names")
    return dict(zip(ids, names))


def read_checkpoint(path: str | Path, *, map_location: str = "cpu") -> dict[str, Any]:
    """An original BEATs checkpoint (``{"cfg", "model", "label_dict"}``) read with ``weights_only=True``."""
    import torch

    from backbones.encoders import load_weights_only

    path = Path(path).expanduser()
    if path.is_dir():
        files = sorted(path.glob("*.pt"))
        if len(files) != 1:
            raise FileNotFoundError(f"{path}: expected one BEATs checkpoint (*.pt) in the folder, found {len(files)}")
        path = files[0]
    if not path.is_file():
        raise FileNotFoundError(f"BEATs checkpoint {str(path)!r} does not exist (download it from microsoft/unilm beats/)")
    checkpoint = load_weights_only(path, "BEATs checkpoint", map_location)
    if not isinstance(checkpoint, Mapping) or not {"cfg", "model"} <= set(checkpoint):
        if not isinstance(checkpoint, Mapping):
            raise ValueError(
                f"{path}: a BEATs checkpoint is a dict with 'cfg', 'model' (and 'label_dict'), found a "
                f"{type(checkpoint).__name__}"
            )
        keys = sorted(map(str, checkpoint))
        shown = ", ".join(map(repr, keys[:5])) + (f", ... ({len(keys)} keys)" if len(keys) > 5 else "")
        if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            raise ValueError(
                f"{path}: a bare state dict ({shown}); BEATs needs the original checkpoint "
                "{'cfg', 'model', 'label_dict'} (microsoft/unilm beats/), which holds the model config and labels too"
            )
        raise ValueError(f"{path}: a BEATs checkpoint is a dict with 'cfg', 'model' (and 'label_dict'), found [{shown}]")
    if not isinstance(checkpoint["model"], Mapping):
        raise ValueError(f"{path}: 'model' must be a state dict, got {type(checkpoint['model']).__name__}")
    return dict(checkpoint)


def load_beats(source: str, dtype: Any) -> tuple[Any, Any]:
    """``(None, BEATs)`` from a checkpoint file (or a folder holding one)."""
    model = _modules()["BEATs"].from_pretrained(source)
    return None, model if dtype == "auto" else model.to(dtype)


def build_tiny_beats(config: dict[str, Any]) -> tuple[Any, Any]:
    """``(None, BEATs)`` with random weights from :data:`TINY_CONFIG` updated with ``config``; labels: the
    shipped AudioSet order (527 outputs) or ``label_dict`` in ``config`` (index -> AudioSet id)."""
    config = dict(config)
    label_dict = config.pop("label_dict", None)
    model = _modules()["BEATs"]({**TINY_CONFIG, **config})
    model.set_labels(None if label_dict is None else {int(k): v for k, v in label_dict.items()})
    return None, model


@register("beats")
class BEATsAudioTagger(AudioTagger):
    """AudioSet tags from BEATs (original checkpoints loaded strictly): the top-k labels by probability. Takes no prompts.

    Args:
        model: path of an original fine-tuned checkpoint (``BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt``),
            or a folder holding one.
        top_k: at most this many labels per text (AL-Ref-SAM2 keeps 5).
        threshold: minimum probability of a label (0: plain top-k).
        exclude: labels never returned (default: ``Silence``, as AL-Ref-SAM2; ``[]`` keeps it).
        separator: joins the labels of a text.
        config, device, dtype, seed: see :class:`~pseudolabel.components.LazyModel` (``config``: a tiny random
            BEATs, :func:`build_tiny_beats`).
        batch_size: see :class:`~pseudolabel.alm.base.AudioDescriber`.
    """

    takes_prompts = False
    source_key = "model"
    source_hint = "the downloaded BEATs checkpoint (a .pt file, or a folder holding one)"  # local files only

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        *,
        top_k: int = 5,
        threshold: float = 0.0,
        exclude: Sequence[str] | None = None,
        separator: str = ", ",
        batch_size: int = 8,
        config: Mapping[str, Any] | None = None,
        device: str = "cpu",
        dtype: str = "auto",
        seed: int = 0,
    ) -> None:
        super().__init__(top_k=top_k, threshold=threshold, exclude=exclude, separator=separator, batch_size=batch_size)
        self.lazy = LazyModel(
            "beats", model, config=config, device=device, dtype=dtype, seed=seed,
            load_pretrained=load_beats, build_random=build_tiny_beats,
        )

    @property
    def labels(self) -> list[str]:
        return list(self.lazy.model.labels)

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    def _scores(self, waves: list[np.ndarray], prompt: str | None) -> np.ndarray:
        return self.lazy.model.tag_waves(waves)

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), **self.lazy.provenance()}
