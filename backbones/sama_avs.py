"""SAMA-AVS (Liu et al., WACV 2024; jinxiang-liu/anno-free-AVS): SAM with per-block audio adapters.

Facts from anno-free-AVS (commit 15e6b04): ``models/sam.py`` (wrapper ``SAM``),
``models/mmseg/models/sam/image_encoder.py`` (``AudioPromptGenerator``, adapter injection),
``train_avs.py`` (freezing, optimiser, scheduler), ``configs/sam_avs_adapter.yaml`` (sizes,
recipe), ``datasets/avsb_dataloader_vggish*.py`` (frames used in training).

Per frame (the model has no temporal mixing), with ``N = B*T`` frames:

1. VGGish (frozen, no grad) turns each frame's log-mel example into a 128-d embedding.
2. The SAM ViT image encoder (frozen) runs on the frame resized to ``img_size`` (1024); before
   block ``i`` every token gets ``shared_mlp(lightweight_mlp_i(audio))`` added (the only audio
   path; trainable "adapters").
3. SAM's mask decoder (trainable) gets no sparse prompt, the learned ``no_mask_embed`` as dense
   prompt and the ``pe_layer`` random-Fourier positional map, and returns mask token 0
   (``multimask_output=False``): low-res ``4h × 4w`` (256²) logits.
4. Logits are upsampled bilinearly to ``img_size`` and then to the input size.

Weights: ``load_official`` takes a SAMA-AVS checkpoint; ``load_sam`` takes
``sam_vit_{h,l,b}_*.pth``. On initialising ``no_mask_embed`` / ``pe_layer`` from SAM see
:meth:`SAMAAVS.load_sam`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from backbones.base import AVSBackbone, AVSOutput, Recipe, register
from backbones.encoders import (
    check_preset,
    load_state_dict_strict,
    read_checkpoint,
    strip_module_prefix,
)
from backbones.encoders.sam import (
    SAM_VIT_SIZES,
    ImageEncoderViT,
    MaskDecoder,
    PositionEmbeddingRandom,
    TwoWayTransformer,
)
from backbones.encoders.vggish import EMBEDDING_DIM, VGGish

# SAMA has no AVSS variant: its code handles only S4, MS3 and AVS-Synthetic (train_avs.py
# ``--subset s4 | ms3 | synthetic``), so there is no original recipe or 71-class head to follow.
DATASETS = ("s4", "ms3")


@dataclass(frozen=True)
class SAMAConfig:
    """Sizes of SAMA-AVS. Defaults are the original ViT-H model.

    Attributes:
        img_size: encoder input side (``inp_size: 1024``); frames are resized to it.
        patch_size, embed_dim, depth, num_heads, window_size, global_attn_indexes, mlp_ratio:
            the SAM ViT (``encoder_mode`` in configs/sam_avs_adapter.yaml; segment_anything
            build_sam.py for vit_l / vit_b).
        prompt_embed_dim: neck / decoder width (``prompt_embed_dim: 256``).
        adapter_hidden_dim: adapter width (``AudioPromptGenerator(aud_in_dim=128,
            aud_hidden_dim=512)``).
        decoder_depth, decoder_mlp_dim, decoder_num_heads: ``TwoWayTransformer(depth=2,
            mlp_dim=2048, num_heads=8)`` (models/sam.py).
        num_multimask_outputs, iou_head_hidden_dim: ``MaskDecoder(num_multimask_outputs=3,
            iou_head_hidden_dim=256)``; the extra tokens and IoU head exist for key compatibility.
        tiny_vggish: VGGish with few channels (tests only: official VGGish weights do not fit).
    """

    img_size: int = 1024
    patch_size: int = 16
    embed_dim: int = 1280
    depth: int = 32
    num_heads: int = 16
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (7, 15, 23, 31)
    mlp_ratio: float = 4.0
    prompt_embed_dim: int = 256
    adapter_hidden_dim: int = 512
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    num_multimask_outputs: int = 3
    iou_head_hidden_dim: int = 256
    tiny_vggish: bool = False


# Same code paths as "full", small enough for CPU tests: an 8×8 token grid with window 3, so
# windowed blocks pad 8 -> 9 (the padding path) and block 1 uses global attention.
TINY_CONFIG = SAMAConfig(
    img_size=64,
    patch_size=8,
    embed_dim=32,
    depth=2,
    num_heads=2,
    window_size=3,
    global_attn_indexes=(1,),
    prompt_embed_dim=32,
    adapter_hidden_dim=16,
    decoder_mlp_dim=64,
    decoder_num_heads=2,
    iou_head_hidden_dim=32,
    tiny_vggish=True,
)


def _recipe(dataset: str, **values: Any) -> Recipe:
    # Shared by S4 and MS3 (configs/sam_avs_adapter.yaml; train_avs.py):
    # - optimizer adamw lr 0.0002 (utils.make_optimizer passes lr only: torch AdamW wd 0.01);
    # - CosineAnnealingLR(optimizer, epoch_max=80, eta_min=lr_min=1e-7), stepped once per epoch;
    # - epoch_max 80; train_dataset batch_size 2; inp_size 1024 (frames resized to 1024×1024,
    #   masks nearest); loss 'iou' = BCEWithLogits + soft IoU, weights 1 and 1 (models/sam.py
    #   backward_G); validation/test at 1024 with test batch 1 clip = 5 frames;
    # - utility.py::Eval_Fmeasure has the sigmoid commented out: F-score thresholds raw logits.
    # train_avs.py sets no seed; 123 is the framework default.
    common: dict[str, Any] = dict(
        optimizer="adamw",
        lr=2e-4,
        weight_decay=0.01,
        epochs=80,
        batch_size=2,
        input_size=1024,
        eval_size=1024,
        loss_terms={"bce_logits": 1.0, "soft_iou": 1.0},
        test_batch_frames=5,
        scheduler="cosine",
        scheduler_args={"T_max": 80, "eta_min": 1e-7, "interval": "epoch"},
        fscore_from_logits=False,
        num_frames=5,
    )
    return Recipe(dataset=dataset, **common, **values)


_BATCH_NOTE = (
    "The original ran torch.distributed.launch with 2 processes x batch 2 but trained "
    "model.module outside the DDP wrapper, so the ranks most likely stepped independently; "
    "batch_size=2 on one process is the faithful equivalent."
)

RECIPES: dict[str, Recipe] = {
    # datasets/avsb_dataloader_vggish.py: S4 training loads only frame 1 of each clip
    # (mask_num = 1 for split 'train'), so a step sees 2 frames. With whole clips, supervise
    # frame 1 only (gt_frames="first"); the other frames do not change the loss.
    "s4": _recipe(
        "s4",
        gt_frames="first",
        notes=_BATCH_NOTE
        + " S4: only frame 1 of each clip is supervised; SAMA is per-frame, so a trainer may "
        "feed just the labelled frames to save 4/5 of the compute without changing the loss.",
    ),
    # datasets/avsb_dataloader_vggish_ms3_train.py: MS3 training samples single frames from the
    # per-frame ms3_train_data.csv (2 frames per step); every frame has a mask (gt_frames="all").
    "ms3": _recipe(
        "ms3",
        gt_frames="all",
        notes=_BATCH_NOTE
        + " MS3: the original batches 2 independent frames (from ms3_train_data.csv) per step, "
        "not 2 clips; with clips a step covers 10 frames and an epoch has 1/5 of the steps.",
    ),
}


class AudioPromptGenerator(nn.Module):
    """SAMA's audio adapters (``AudioPromptGenerator`` in anno-free-AVS
    ``models/mmseg/models/sam/image_encoder.py``).

    Keys: ``lightweight_mlp_{i}.0`` Linear(audio_dim -> hidden) (+ GELU) for each block ``i``,
    one ``shared_mlp`` Linear(hidden -> embed_dim). Weights init trunc-normal(std 0.02), biases 0,
    as the original ``_init_weights``.
    """

    def __init__(
        self, embed_dim: int, depth: int, audio_dim: int = EMBEDDING_DIM, hidden_dim: int = 512
    ) -> None:
        super().__init__()
        self.depth = depth
        self.shared_mlp = nn.Linear(hidden_dim, embed_dim)
        for i in range(depth):
            adapter = nn.Sequential(nn.Linear(audio_dim, hidden_dim), nn.GELU())
            self.add_module(f"lightweight_mlp_{i}", adapter)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, audio_embedding: torch.Tensor) -> list[torch.Tensor]:
        """``[N, audio_dim]`` -> ``depth`` offsets ``[N, embed_dim]``, one per encoder block."""
        return [
            self.shared_mlp(getattr(self, f"lightweight_mlp_{i}")(audio_embedding))
            for i in range(self.depth)
        ]


class AudioEncoder(nn.Module):
    """Holds VGGish as ``audio_backbone`` so checkpoint keys read
    ``audio_encoder.audio_backbone.{features,embeddings}.*`` (models/sam.py ``audio_extractor``)."""

    def __init__(self, tiny: bool) -> None:
        super().__init__()
        self.audio_backbone = VGGish(tiny=tiny)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        """``[N, 1, 96, 64]`` -> ``[N, 128]`` (no grad)."""
        return self.audio_backbone(log_mel)


# prompt_encoder.* entries of a SAM checkpoint that SAMA has no use for (points, boxes, masks).
_SAM_PROMPT_ENCODER = "prompt_encoder."
# SAM checkpoint name -> SAMA name for the two prompt-encoder tensors SAMA keeps at top level.
_SAM_PROMPT_TENSORS = {
    "prompt_encoder.no_mask_embed.weight": "no_mask_embed.weight",
    "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": (
        "pe_layer.positional_encoding_gaussian_matrix"
    ),
}


@register("sama_avs")
class SAMAAVS(AVSBackbone):
    """SAMA-AVS (Liu et al., WACV 2024): a frozen SAM ViT with per-block audio adapters.

    ``forward(frames [B,T,3,H,W], audio [B,T,1,96,64], *, frame_valid [B,T] | None)``
    returns logits ``[B,T,1,H,W]`` at the input size and ``aux``:

    - ``visual_pooled`` ``[B,T,D]``: global average of the image embedding (neck output, D=256),
    - ``audio_embedding`` ``[B,T,128]``: VGGish output.

    Frames of any size are resized (bilinear, antialiased when shrinking, like PIL) to
    ``img_size`` — the original resizes its 224 PNGs to 1024×1024 with ``transforms.Resize`` — and
    the logits are resized back. Frames with
    ``frame_valid`` False are not computed: their logits and aux entries are 0 (the AVSS
    convention of the other backbones).

    Trainable: ``image_encoder.prompt_generator`` (adapters), ``mask_decoder`` and
    ``no_mask_embed`` (train_avs.py freezes every parameter whose name contains
    ``image_encoder`` but not ``prompt_generator``); VGGish is frozen and kept in eval mode. The
    mask decoder's tokens 1-3 hypernetworks and IoU head are trainable as in the original but
    receive no gradient (only mask token 0 is output).

    Random weights unless local weight paths are given; never downloads.

    Args:
        dataset: ``"s4"`` or ``"ms3"`` (K=1). The original has no AVSS model or recipe, so
            ``"avss"`` is refused rather than invented.
        preset: ``"full"`` (the ``sam_variant`` ViT at 1024) or ``"tiny"`` (same code paths, a
            2-block 32-wide ViT at 64×64 and a tiny VGGish; ``sam_variant`` is ignored).
        sam_variant: ``"vit_h"`` (the original), ``"vit_l"`` or ``"vit_b"``.
        pretrained_sam: ``sam_vit_{h,l,b}_*.pth`` matching ``sam_variant`` (see :meth:`load_sam`).
        pretrained_vggish: ``vggish-10086976.pth``.
        prompt_from_sam: with ``pretrained_sam``, take ``no_mask_embed`` / ``pe_layer`` from SAM
            (True) or leave them random as the original does (False).
        overrides: any :class:`SAMAConfig` field (e.g. ``img_size=512``).
    """

    recipes = RECIPES
    tiny_config = {"preset": "tiny"}

    def __init__(
        self,
        *,
        dataset: str = "s4",
        preset: str = "full",
        sam_variant: str = "vit_h",
        pretrained_sam: str | Path | None = None,
        pretrained_vggish: str | Path | None = None,
        prompt_from_sam: bool = True,
        **overrides: Any,
    ) -> None:
        super().__init__()
        config = _sama_config(dataset, preset, sam_variant, overrides)
        self.dataset = dataset
        self.config = config
        # width of aux["visual_pooled"]: SAM's neck output (robustness similarity head)
        self.pooled_visual_dim = int(config.prompt_embed_dim)
        self.image_encoder = ImageEncoderViT(
            img_size=config.img_size,
            patch_size=config.patch_size,
            embed_dim=config.embed_dim,
            depth=config.depth,
            num_heads=config.num_heads,
            mlp_ratio=config.mlp_ratio,
            out_chans=config.prompt_embed_dim,
            window_size=config.window_size,
            global_attn_indexes=config.global_attn_indexes,
            prompt_generator=AudioPromptGenerator(
                config.embed_dim, config.depth, hidden_dim=config.adapter_hidden_dim
            ),
        )
        self.mask_decoder = MaskDecoder(
            transformer_dim=config.prompt_embed_dim,
            transformer=TwoWayTransformer(
                depth=config.decoder_depth,
                embedding_dim=config.prompt_embed_dim,
                num_heads=config.decoder_num_heads,
                mlp_dim=config.decoder_mlp_dim,
            ),
            num_multimask_outputs=config.num_multimask_outputs,
            iou_head_hidden_dim=config.iou_head_hidden_dim,
        )
        self.audio_encoder = AudioEncoder(tiny=config.tiny_vggish)
        self.pe_layer = PositionEmbeddingRandom(config.prompt_embed_dim // 2)
        self.no_mask_embed = nn.Embedding(1, config.prompt_embed_dim)
        for name, param in self.image_encoder.named_parameters():
            if not name.startswith("prompt_generator."):
                param.requires_grad_(False)
        if pretrained_sam is not None:
            self.load_sam_checkpoint(pretrained_sam, prompt_from_sam=prompt_from_sam)
        if pretrained_vggish is not None:
            self.audio_encoder.audio_backbone.load_pretrained(pretrained_vggish)

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        frames: torch.Tensor,
        audio: torch.Tensor,
        *,
        frame_valid: torch.Tensor | None = None,
    ) -> AVSOutput:
        """See the class docstring for shapes."""
        b, t, height, width = self.check_inputs(frames, audio, frame_valid)
        n = b * t
        images = frames.reshape(n, *frames.shape[2:])
        log_mel = audio.reshape(n, *audio.shape[2:])
        computed: torch.Tensor | None = None  # indices of the frames run, None = all
        if frame_valid is not None and not bool(frame_valid.all()):
            computed = frame_valid.reshape(n).nonzero().squeeze(1)
            images, log_mel = images[computed], log_mel[computed]

        audio_embedding = self.audio_encoder(log_mel)  # [n', 128]
        image_embedding = self.image_encoder(self._resize_to_encoder(images), audio_embedding)
        low_res = self._decode(image_embedding)  # [n', 1, 4h, 4w]
        logits = self._upsample(low_res, (height, width))

        def per_frame(values: torch.Tensor) -> torch.Tensor:
            if computed is not None:
                values = values.new_zeros((n, *values.shape[1:])).index_copy(0, computed, values)
            return values.reshape(b, t, *values.shape[1:])

        return AVSOutput(
            logits=per_frame(logits),
            aux={
                "visual_pooled": per_frame(image_embedding.mean(dim=(2, 3))),
                "audio_embedding": per_frame(audio_embedding),
            },
        )

    def _resize_to_encoder(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> ``[N, 3, S, S]`` with S = ``img_size`` (identity if already S)."""
        size = self.config.img_size
        if images.shape[-2:] == (size, size):
            return images
        return F.interpolate(images, (size, size), mode="bilinear", align_corners=False, antialias=True)

    def _decode(self, image_embedding: torch.Tensor) -> torch.Tensor:
        """``[N, D, h, w]`` -> low-res logits of mask token 0 ``[N, 1, 4h, 4w]`` (models/sam.py
        ``SAM.forward``: empty sparse prompts, ``no_mask_embed`` as the dense prompt)."""
        n, dim, h, w = image_embedding.shape
        sparse = image_embedding.new_zeros((n, 0, dim))
        dense = self.no_mask_embed.weight.reshape(1, dim, 1, 1)
        image_pe = self.pe_layer((h, w)).unsqueeze(0)
        masks, _ = self.mask_decoder(image_embedding, image_pe, sparse, dense, multimask_output=False)
        return masks

    def _upsample(self, low_res: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """models/sam.py ``postprocess_masks``: bilinear (align_corners=False) to ``img_size``,
        crop to the un-padded input (a no-op here: the input is resized, not padded, to
        ``img_size``), then bilinear to ``size``. ``[N, 1, h', w'] -> [N, 1, *size]``."""
        side = self.config.img_size
        masks = F.interpolate(low_res, (side, side), mode="bilinear", align_corners=False)
        if size != (side, side):
            masks = F.interpolate(masks, size, mode="bilinear", align_corners=False)
        return masks

    # ------------------------------------------------------------------ weights

    def load_official(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load a SAMA-AVS checkpoint (``model_epoch_best.pth``: the full ``model.state_dict()``)
        strictly: ``image_encoder.*`` (with ``prompt_generator``), ``mask_decoder.*``,
        ``audio_encoder.audio_backbone.*``, ``pe_layer.positional_encoding_gaussian_matrix``,
        ``no_mask_embed.weight``. A leading ``module.`` is stripped.

        Raises:
            KeyError: an unknown or a missing key (named).
            ValueError: a shape mismatch (key and both shapes named).
        """
        load_state_dict_strict(self, strip_module_prefix(state_dict), source="SAMA-AVS checkpoint")

    def load_sam(self, state_dict: Mapping[str, torch.Tensor], *, prompt_from_sam: bool = True) -> None:
        """Initialise from an official SAM checkpoint (``sam_vit_{h,l,b}_*.pth``).

        Loads every ``image_encoder.*`` and ``mask_decoder.*`` tensor (all required; the adapters
        keep their init). SAM's ``prompt_encoder`` point/box/mask tensors are dropped (one
        ``logging`` info line with the count).

        ``prompt_from_sam=True`` (default) also copies ``prompt_encoder.no_mask_embed`` and
        ``prompt_encoder.pe_layer`` into SAMA's top-level ``no_mask_embed`` / ``pe_layer``, so the
        pretrained decoder starts with the positional encoding and "no prompt" embedding it was
        trained with. The original instead loads SAM with ``strict=False`` into a model whose
        copies sit at the top level, so both stay randomly initialised (and the Gaussian matrix,
        a buffer, stays random for the whole training). Pass ``prompt_from_sam=False`` to
        reproduce that. Trained SAMA checkpoints carry their own values either way
        (:meth:`load_official`).

        Raises:
            KeyError: an unknown key or a missing encoder/decoder key (named).
            ValueError: a shape mismatch (key and both shapes named).
        """
        incoming = strip_module_prefix(state_dict)
        if prompt_from_sam:
            incoming = {_SAM_PROMPT_TENSORS.get(k, k): v for k, v in incoming.items()}
        # What a SAM checkpoint does not provide keeps its current values.
        not_in_sam = ("image_encoder.prompt_generator.", "audio_encoder.")
        if not prompt_from_sam:
            not_in_sam += tuple(_SAM_PROMPT_TENSORS.values())
        load_state_dict_strict(
            self,
            incoming,
            source="SAM checkpoint",
            ignore=lambda k: k.startswith(_SAM_PROMPT_ENCODER),
            keep=lambda k: k.startswith(not_in_sam),
        )

    def load_sam_checkpoint(self, path: str | Path, *, prompt_from_sam: bool = True) -> None:
        """:meth:`load_sam` from a local ``sam_vit_*.pth`` file."""
        self.load_sam(read_checkpoint(path), prompt_from_sam=prompt_from_sam)


_CONFIG_FIELDS = {f.name for f in fields(SAMAConfig)}


def _sama_config(dataset: str, preset: str, sam_variant: str, overrides: dict[str, Any]) -> SAMAConfig:
    """The sizes of a checked ``dataset`` / ``preset`` / ``sam_variant`` choice with ``overrides``."""
    if dataset not in DATASETS:
        raise ValueError(
            f"SAMA-AVS: unknown dataset {dataset!r}; expected one of {DATASETS} (the original "
            "code has no AVSS model or recipe)"
        )
    check_preset(preset)
    if sam_variant not in SAM_VIT_SIZES:
        raise ValueError(
            f"SAMA-AVS: unknown sam_variant {sam_variant!r}; expected one of {sorted(SAM_VIT_SIZES)}"
        )
    unknown = set(overrides) - _CONFIG_FIELDS
    if unknown:
        raise TypeError(f"SAMA-AVS: unknown option(s) {sorted(unknown)}; options: {sorted(_CONFIG_FIELDS)}")
    if preset == "tiny":
        config = TINY_CONFIG
    else:
        size = SAM_VIT_SIZES[sam_variant]
        config = SAMAConfig(
            embed_dim=size.embed_dim,
            depth=size.depth,
            num_heads=size.num_heads,
            global_attn_indexes=size.global_attn_indexes,
        )
    overrides = dict(overrides)
    if "global_attn_indexes" in overrides:
        overrides["global_attn_indexes"] = tuple(overrides["global_attn_indexes"])
    return replace(config, **overrides)


# The former factory name: the class takes the same keyword config.
build_sama_avs = SAMAAVS
