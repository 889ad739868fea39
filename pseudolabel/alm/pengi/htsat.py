"""Pengi's audio encoder: HTS-AT (a Swin transformer over log-mel "images") with its STFT / log-mel front end.

Re-stated from microsoft/Pengi ``models/htsat.py`` (itself from the HTS-AT code, RetroCirce/HTS-Audio-Transformer,
and microsoft/Swin-Transformer) for inference only, with the module names of the original so its
``base.pth`` loads unchanged: ``spectrogram_extractor.stft.conv_{real,imag}.weight``,
``logmel_extractor.melW``, ``bn0``, ``patch_embed``, ``layers.<i>.blocks.<j>``, ``layers.<i>.downsample``,
``norm``, ``tscam_conv``, ``head``.

Front end (torchlibrosa 0.1.0 ``Spectrogram`` / ``LogmelFilterBank``, as the original uses them): a
centred, reflect-padded STFT computed as a strided 1-D convolution with the windowed DFT kernels held by
``conv_real`` / ``conv_imag`` (periodic Hann window), power spectrum, product with the Slaney-normalised
mel matrix ``melW`` ``[n_fft/2 + 1, mel_bins]``, ``10 log10(max(x, 1e-10))`` (``ref = 1``, no ``top_db``).
The kernels and the mel matrix are buffers computed here (:func:`dft_kernels`, :func:`slaney_mel`) and
overwritten by the checkpoint's copies, so a checkpoint's front end is used exactly as saved.

Note (microsoft/Pengi ``models/htsat.py`` ``HTSATWrapper``): the original builds HTS-AT from
``models/config.py`` and ignores the arguments from ``configs/base.yml``, so its mel matrix is the one
for 32 kHz, 50-14000 Hz (64 bins, n_fft 1024, hop 320) although the audio is fed at 44.1 kHz;
:data:`PENGI_HTSAT` keeps those values.

Inference path of the original (``infer_mode=False``, eval, a clip of at most ``spec_size * freq_ratio``
frames): log-mel ``[B, 1, T, F]`` -> ``bn0`` over the mel axis -> bicubic resize of the time axis to
``spec_size * freq_ratio`` frames (``align_corners=True``) -> fold into a ``spec_size x spec_size`` image
(``reshape_wav2img``) -> patch embedding -> Swin stages -> ``norm`` -> mean over all tokens: the
``latent_output`` Pengi uses as the audio embedding. ``tscam_conv`` / ``head`` (the AudioSet classifier)
are kept for the weights but not run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class HTSATConfig:
    """HTS-AT and front-end settings (defaults: microsoft/Pengi ``models/config.py`` + ``HTSAT_Swin_Transformer``)."""

    mel_sample_rate: int = 32000  # the rate the mel matrix is built for (config.py), not the audio's
    window_size: int = 1024
    hop_size: int = 320
    mel_bins: int = 64
    fmin: float = 50.0
    fmax: float = 14000.0
    spec_size: int = 256
    patch_size: int = 4
    patch_stride: int = 4
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (4, 8, 16, 32)
    window: int = 8
    mlp_ratio: float = 4.0
    num_classes: int = 527

    @property
    def freq_ratio(self) -> int:
        return self.spec_size // self.mel_bins

    @property
    def num_features(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)


PENGI_HTSAT = HTSATConfig()


# --- front end -----------------------------------------------------------------------------------


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney mel scale (librosa ``hz_to_mel(htk=False)``): linear below 1 kHz, logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = freq / f_sp
    min_log_hz, logstep = 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    above = freq >= min_log_hz
    mels = np.where(above, min_log_mel + np.log(np.maximum(freq, min_log_hz) / min_log_hz) / logstep, mels)
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels)


def slaney_mel(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular mel filters with Slaney area normalisation, ``[n_mels, n_fft // 2 + 1]`` float32
    (the matrix ``librosa.filters.mel(sr=..., n_fft=..., n_mels=..., fmin=..., fmax=...)`` returns)."""
    fft_freqs = np.linspace(0.0, sr / 2.0, 1 + n_fft // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


def dft_kernels(n_fft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and imaginary STFT kernels ``[n_fft // 2 + 1, 1, n_fft]``: DFT rows times a periodic Hann window
    (torchlibrosa ``STFT`` with ``window='hann'``, ``win_length = n_fft``)."""
    n = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
    window = 0.5 - 0.5 * torch.cos(2 * math.pi * n / n_fft)
    angle = -2 * math.pi * k[:, None] * n[None, :] / n_fft
    real = (torch.cos(angle) * window).float()[:, None, :]
    imag = (torch.sin(angle) * window).float()[:, None, :]
    return real, imag


class _Kernel(nn.Module):
    """Holds one STFT kernel as ``weight`` (the original's frozen ``nn.Conv1d``, here a buffer)."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight)


class STFT(nn.Module):
    def __init__(self, n_fft: int, hop: int) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        real, imag = dft_kernels(n_fft)
        self.conv_real, self.conv_imag = _Kernel(real), _Kernel(imag)


class Spectrogram(nn.Module):
    """Power spectrogram ``[B, 1, frames, n_fft / 2 + 1]`` of ``[B, N]`` samples (centred, reflect padding)."""

    def __init__(self, n_fft: int, hop: int) -> None:
        super().__init__()
        self.stft = STFT(n_fft, hop)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        pad = self.stft.n_fft // 2
        x = F.pad(wave[:, None, :], (pad, pad), mode="reflect")
        real = F.conv1d(x, self.stft.conv_real.weight, stride=self.stft.hop)
        imag = F.conv1d(x, self.stft.conv_imag.weight, stride=self.stft.hop)
        return (real**2 + imag**2).transpose(1, 2)[:, None]


class LogmelFilterBank(nn.Module):
    """``10 log10(max(power @ melW, 1e-10))``: ``[B, 1, T, F] -> [B, 1, T, mel_bins]``."""

    def __init__(self, sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> None:
        super().__init__()
        self.register_buffer("melW", torch.from_numpy(slaney_mel(sr, n_fft, n_mels, fmin, fmax).T.copy()))

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        return 10.0 * torch.log10(torch.clamp(power @ self.melW, min=1e-10))


# --- Swin stages -----------------------------------------------------------------------------------


def window_partition(x: torch.Tensor, w: int) -> torch.Tensor:
    """``[B, H, W, C] -> [B * nW, w * w, C]``."""
    b, h, wd, c = x.shape
    x = x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, w * w, c)


def window_reverse(windows: torch.Tensor, w: int, h: int, wd: int) -> torch.Tensor:
    """``[B * nW, w * w, C] -> [B, H, W, C]``."""
    c = windows.shape[-1]
    b = windows.shape[0] // ((h // w) * (wd // w))
    x = windows.view(b, h // w, wd // w, w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, wd, c)


def relative_position_index(w: int) -> torch.Tensor:
    """``[w*w, w*w]`` index into the ``(2w-1)^2`` relative-position bias table (Swin)."""
    coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (w - 1)
    return rel[..., 0] * (2 * w - 1) + rel[..., 1]


def shift_mask(h: int, wd: int, w: int, shift: int) -> torch.Tensor:
    """``[nW, w*w, w*w]`` additive mask (0 / -100) of the shifted-window attention (Swin)."""
    regions = torch.zeros(1, h, wd, 1)
    cuts = (slice(0, -w), slice(-w, -shift), slice(-shift, None))
    label = 0
    for hs in cuts:
        for ws in cuts:
            regions[:, hs, ws, :] = label
            label += 1
    windows = window_partition(regions, w).squeeze(-1)
    diff = windows[:, None, :] - windows[:, :, None]
    return torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        # A constant of the architecture: the checkpoint's copy is checked by shape and not loaded.
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1)[None]
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(b // nw, nw, self.num_heads, n, n) + mask[None, :, None]).view(-1, self.num_heads, n, n)
        x = (attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, resolution: tuple[int, int], num_heads: int, window: int, shift: int, mlp_ratio: float):
        super().__init__()
        self.resolution = resolution
        if min(resolution) <= window:  # the window covers the whole map: no shift (Swin)
            window, shift = min(resolution), 0
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = shift_mask(*resolution, window, shift) if shift > 0 else None
        self.register_buffer("attn_mask", mask, persistent=False)  # constant, like relative_position_index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        b, _, c = x.shape
        y = self.norm1(x).view(b, h, w, c)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(window_partition(y, self.window), self.attn_mask)
        y = window_reverse(y, self.window, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y.reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, resolution: tuple[int, int], dim: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class BasicLayer(nn.Module):
    def __init__(self, dim: int, resolution: tuple[int, int], depth: int, num_heads: int, window: int,
                 mlp_ratio: float, downsample: bool) -> None:  # fmt: skip
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, num_heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio)
            for i in range(depth)
        )
        self.downsample = PatchMerging(resolution, dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, stride: int, dim: int) -> None:
        super().__init__()
        pad = (patch - stride) // 2
        self.proj = nn.Conv2d(1, dim, kernel_size=patch, stride=stride, padding=pad)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class HTSAT(nn.Module):
    """HTS-AT returning the ``latent_output`` embedding ``[B, num_features]`` of ``[B, N]`` samples."""

    def __init__(self, config: HTSATConfig = PENGI_HTSAT) -> None:
        super().__init__()
        c = self.config = config
        if c.freq_ratio < 1 or c.spec_size % c.freq_ratio:
            raise ValueError(f"spec_size {c.spec_size} must be a multiple of mel_bins {c.mel_bins}")
        if len(c.depths) != len(c.num_heads):
            raise ValueError(f"depths {c.depths} and num_heads {c.num_heads} must have the same length")
        self.spectrogram_extractor = Spectrogram(c.window_size, c.hop_size)
        self.logmel_extractor = LogmelFilterBank(c.mel_sample_rate, c.window_size, c.mel_bins, c.fmin, c.fmax)
        self.bn0 = nn.BatchNorm2d(c.mel_bins)
        self.patch_embed = PatchEmbed(c.patch_size, c.patch_stride, c.embed_dim)
        grid = c.spec_size // c.patch_stride
        self.layers = nn.ModuleList(
            BasicLayer(
                c.embed_dim * 2**i,
                (grid // 2**i, grid // 2**i),
                depth,
                c.num_heads[i],
                c.window,
                c.mlp_ratio,
                downsample=i < len(c.depths) - 1,
            )
            for i, depth in enumerate(c.depths)
        )
        self.norm = nn.LayerNorm(c.num_features)
        sf = c.spec_size // 2 ** (len(c.depths) - 1) // c.patch_stride // c.freq_ratio
        self.tscam_conv = nn.Conv2d(c.num_features, c.num_classes, kernel_size=(sf, 3), padding=(0, 1))
        self.head = nn.Linear(c.num_classes, c.num_classes)

    def logmel(self, wave: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[B, 1, T, mel_bins]`` after ``bn0`` (the original's front end, eval mode)."""
        x = self.logmel_extractor(self.spectrogram_extractor(wave))
        return self.bn0(x.transpose(1, 3)).transpose(1, 3)

    def to_image(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T, F]`` log-mel -> ``[B, 1, spec_size, spec_size]`` (``reshape_wav2img``)."""
        c = self.config
        target_t, target_f = c.spec_size * c.freq_ratio, c.spec_size // c.freq_ratio
        t, f = x.shape[2:]
        if t > target_t:
            raise ValueError(
                f"HTS-AT takes at most {target_t} frames ({target_t - 1} hops of {c.hop_size} samples); got {t}: "
                "crop the audio to the model's duration first"
            )
        if t < target_t:
            x = F.interpolate(x, (target_t, f), mode="bicubic", align_corners=True)
        if f < target_f:
            x = F.interpolate(x, (x.shape[2], target_f), mode="bicubic", align_corners=True)
        b = x.shape[0]
        x = x.permute(0, 1, 3, 2).reshape(b, 1, target_f, c.freq_ratio, target_t // c.freq_ratio)
        return x.permute(0, 1, 3, 2, 4).reshape(b, 1, c.spec_size, c.spec_size)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(self.to_image(self.logmel(wave)))
        for layer in self.layers:
            x = layer(x)
        return self.norm(x).mean(dim=1)
