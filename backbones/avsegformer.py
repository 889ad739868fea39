"""AVSegFormer (Gao et al., AAAI 2024) behind the openavs-st backbone interface.

Facts from github.com/vvvb-github/AVSegFormer at commit 7083cb6:
``model/AVSegFormer.py`` (the wrapper: frozen VGGish, ``audio_proj``, backbone frozen at
construction, AVSS temporal mask), ``model/head/AVSegHead.py`` and ``model/utils/*.py`` (the head,
:mod:`backbones.avsegformer_parts`), ``config/{s4,ms3,avss}/AVSegFormer_pvt2_*.py`` and
``scripts/{s4,ms3,avss}/{train,loss}.py`` (the recipes). The model is applied per frame: the B*T
frames of a batch are independent.

Checkpoint layout (``model.module.state_dict()``, 1413 tensors with PVT-v2-B5): ``backbone.*``
(official whai362 PVT names, or ``B2_ResNet`` names), ``vggish.*``, ``head.*``, ``audio_proj.*``.
The original head also builds ``fpn`` and ``attn_fc`` but never calls them; they are not built
here and their checkpoint keys are dropped on load.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from backbones.avsegformer_parts import AVSegHead, AVSegHeadConfig
from backbones.base import AVSBackbone, AVSOutput, Recipe, register
from backbones.encoders import (
    VISUAL_ENCODERS,
    build_visual_encoder,
    check_preset,
    load_state_dict_strict,
    strip_module_prefix,
)
from backbones.encoders.pvt import convert_official_pvt_keys
from backbones.encoders.resnet import convert_b2_resnet_keys
from backbones.encoders.vggish import EMBEDDING_DIM, VGGish

DATASETS = ("s4", "ms3", "avss")
# Output channels: binary masks for S4/MS3, 70 classes + background for AVSS
# (config/avss/AVSegFormer_pvt2_avss.py ``num_classes=71``).
NUM_CLASSES = {"s4": 1, "ms3": 1, "avss": 71}

# Same code paths as "full" with fewer layers and channels. GroupNorm(32) needs embed_dim % 32 == 0;
# 64 keeps 2 channels per group, so even a 1x1 stage-4 map (32x32 input) normalises.
TINY_HEAD = dict(
    embed_dim=64,
    num_queries=16,
    encoder_layers=2,
    decoder_layers=2,
    generator_layers=2,
    ffn_dim=64,
    generator_ffn_dim=64,
    mask_mlp_dim=64,
    fc_dims=(16, 8),
)

# Original head modules that are built but never called (AVSegHead.fpn, AVSegHead.attn_fc).
UNUSED_HEAD_PREFIXES = ("head.fpn.", "head.attn_fc.")


# Values shared by the three recipes.
_COMMON_RECIPE: dict[str, Any] = dict(
    optimizer="adamw",  # config/*/AVSegFormer_pvt2_*.py: optimizer=dict(type='AdamW', lr=2e-5)
    lr=2e-5,  # same configs
    weight_decay=0.01,  # not set in the configs: torch.optim.AdamW default
    scheduler="constant",  # scripts/*/train.py: no scheduler
    seed=123,  # scripts/*/train.py: FixSeed = 123
)

RECIPES: dict[str, Recipe] = {
    "s4": Recipe(
        dataset="s4",
        **_COMMON_RECIPE,
        epochs=30,  # config/s4/AVSegFormer_pvt2_s4.py: process.train_epochs
        frozen_backbone_epochs=5,  # same config: process.freeze_epochs
        batch_size=2,  # same config: dataset.train.batch_size (clips)
        input_size=512,  # dataloader/s4_dataset.py: Resize((512, 512)) on frames and masks
        eval_size=512,  # metrics on the 512 masks (README numbers, "PVTv2*" in the paper)
        # scripts/s4/loss.py: loss_type='dice' (iou_loss weight 1.0) + mix_loss weight 0.1
        loss_terms={"dice": 1.0, "mix_dice": 0.1},
        gt_frames="first",  # scripts/s4/loss.py: frames 0, 5, 10, ... (train GT = frame 1)
        test_batch_frames=10,  # config dataset.test.batch_size 2 clips x 5 frames
        num_frames=5,  # config T=5
    ),
    "ms3": Recipe(
        dataset="ms3",
        **_COMMON_RECIPE,
        epochs=60,  # config/ms3/AVSegFormer_pvt2_ms3.py: process.train_epochs
        frozen_backbone_epochs=10,  # same config: process.freeze_epochs
        batch_size=2,  # same config: dataset.train.batch_size
        input_size=512,  # dataloader/ms3_dataset.py: Resize((512, 512))
        eval_size=512,
        loss_terms={"dice": 1.0, "mix_dice": 0.1},  # scripts/ms3/loss.py, all 5 frames
        gt_frames="all",
        test_batch_frames=10,  # config dataset.test.batch_size 2 clips x 5 frames
        num_frames=5,  # config T=5
    ),
    "avss": Recipe(
        dataset="avss",
        **_COMMON_RECIPE,
        epochs=30,  # config/avss/AVSegFormer_pvt2_avss.py: process.train_epochs
        frozen_backbone_epochs=0,  # same config: process.freeze_epochs
        batch_size=4,  # same config: dataset.train.batch_size
        input_size=224,  # same config: crop_size=224 (train center crop, val/test resize)
        eval_size=224,
        # scripts/avss/loss.py: CE weighted by gt_temporal_mask_flag (iou_loss 1.0) + Dice of the
        # channel-mean mask feature against GT > 0 (mix_loss 0.1)
        loss_terms={"avss_ce": 1.0, "mix_dice": 0.1},
        gt_frames="temporal_flag",
        test_batch_frames=40,  # config dataset.test.batch_size 4 clips x 10 frames
        num_frames=10,  # config T=10
        # same config: process.start_eval_epoch=10, eval_interval=2
        notes="original validation: from epoch 10, every 2 epochs",
    ),
}


@register("avsegformer")
class AVSegFormer(AVSBackbone):
    """AVSegFormer (Gao et al., AAAI 2024): PVT-v2-B5 or ResNet-50 with an audio-queried transformer head.

    Per-frame visual backbone + frozen VGGish + ``AVSegHead``.
    ``forward(frames [B,T,3,H,W], audio [B,T,1,96,64], *, frame_valid [B,T] | None)`` returns
    logits ``[B,T,K,H,W]`` (H, W multiples of 4) and ``aux``:

    - ``mask_feature`` ``[B,T,E,H/4,W/4]``: the mask feature after the audio channel gate (the
      mix-Dice loss input),
    - ``visual_pooled`` ``[B,T,C4]``: global average of the stage-4 backbone map,
    - ``audio_embedding`` ``[B,T,128]``: VGGish output,
    - ``audio_token`` ``[B,T,E]``: after ``audio_proj``.

    ``frame_valid`` (AVSS ``vid_temporal_mask_flag``) multiplies the backbone maps, the logits and
    the mask feature, as ``AVSegFormer.mul_temporal_mask`` does; ``None`` = all frames valid.

    Random weights unless local weight paths are given; never downloads.

    Args:
        dataset: ``"s4"`` | ``"ms3"`` (K=1) or ``"avss"`` (K=71); picks the head and the recipe
            (and whether the backbone starts frozen).
        preset: ``"full"`` (original sizes) or ``"tiny"`` (same code, small; for tests).
        visual_encoder: ``"pvt_v2_b5"`` or ``"resnet50"``.
        pretrained_visual: ImageNet weights for the backbone: ``pvt_v2_b5.pth`` (official PVT
            names) or torchvision ``resnet50-19c8e357.pth``.
        pretrained_vggish: ``vggish-10086976.pth``.
        head_options: head sizes, any :class:`~backbones.avsegformer_parts.AVSegHeadConfig` field
            except ``in_channels``/``num_classes`` (e.g. ``num_queries=100``).
    """

    recipes = RECIPES
    tiny_config = {"preset": "tiny"}

    def __init__(
        self,
        *,
        dataset: str = "s4",
        preset: str = "full",
        visual_encoder: str = "pvt_v2_b5",
        pretrained_visual: str | Path | None = None,
        pretrained_vggish: str | Path | None = None,
        **head_options: Any,
    ) -> None:
        super().__init__()
        head_config = _head_config(dataset, preset, visual_encoder, head_options)
        self.dataset = dataset
        self.num_classes = head_config.num_classes  # K of the logits (71 for AVSS)
        self.visual_encoder = visual_encoder
        self.backbone = build_visual_encoder(visual_encoder, preset)
        # width of aux["visual_pooled"] (the robustness similarity head projects audio to it)
        self.pooled_visual_dim = int(self.backbone.out_channels[-1])
        self.vggish = VGGish(tiny=preset == "tiny")
        self.head = AVSegHead(replace(head_config, in_channels=tuple(self.backbone.out_channels)))
        self.audio_proj = nn.Linear(EMBEDDING_DIM, head_config.embed_dim)
        # model/AVSegFormer.py calls freeze_backbone(True) at construction and the train scripts
        # unfreeze at epoch ``freeze_epochs``; with 0 frozen epochs (AVSS) it is trainable at once.
        self.freeze_visual(self.recipe(dataset).frozen_backbone_epochs > 0)
        if pretrained_visual is not None:
            self.backbone.load_pretrained(pretrained_visual)
        if pretrained_vggish is not None:
            self.vggish.load_pretrained(pretrained_vggish)

    def visual_parameters(self) -> Iterator[nn.Parameter]:
        """The visual backbone's parameters (frozen for the recipe's ``frozen_backbone_epochs``)."""
        return self.backbone.parameters()

    def forward(
        self,
        frames: torch.Tensor,
        audio: torch.Tensor,
        *,
        frame_valid: torch.Tensor | None = None,
    ) -> AVSOutput:
        b, t, h, w = self.check_inputs(frames, audio, frame_valid)
        if h % 4 or w % 4:
            raise ValueError(
                f"AVSegFormer: frame height and width must be multiples of 4 (the head upsamples the "
                f"stride-4 map by 4), got {h}x{w}"
            )
        audio_embedding = self.vggish(audio.flatten(0, 1))  # [BT, 128], frozen, no grad
        audio_token = self.audio_proj(audio_embedding).unsqueeze(1)  # [BT, 1, E]
        feats = self.backbone(frames.flatten(0, 1))
        valid = None
        if frame_valid is not None:
            valid = frame_valid.reshape(-1, 1, 1, 1).to(frames.dtype)
            feats = [f * valid for f in feats]
        logits, mask_feature = self.head(feats, audio_token)
        if valid is not None:
            logits = logits * valid
            mask_feature = mask_feature * valid
        return AVSOutput(
            logits=logits.unflatten(0, (b, t)),
            aux={
                "mask_feature": mask_feature.unflatten(0, (b, t)),
                "visual_pooled": feats[-1].mean(dim=(2, 3)).unflatten(0, (b, t)),
                "audio_embedding": audio_embedding.unflatten(0, (b, t)),
                "audio_token": audio_token.squeeze(1).unflatten(0, (b, t)),
            },
        )

    def load_official(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load an original AVSegFormer checkpoint (``model.module.state_dict()``) strictly.

        ``backbone.*`` is translated from official PVT-v2 (or ``B2_ResNet``) names; ``vggish.*``,
        ``head.*`` and ``audio_proj.*`` map 1:1. ``head.fpn.*``/``head.attn_fc.*`` (unused in the
        original) are dropped with one info log line. Raises ``KeyError`` naming an unknown or
        missing key and ``ValueError`` naming a key whose shape differs (with both shapes).
        """
        source = "official AVSegFormer checkpoint"
        mapped: dict[str, torch.Tensor] = {}
        backbone: dict[str, torch.Tensor] = {}
        for key, value in strip_module_prefix(state_dict).items():
            if key.startswith("backbone."):
                backbone[key[len("backbone.") :]] = value
            else:
                mapped[key] = value
        try:
            if self.visual_encoder == "pvt_v2_b5":
                backbone = convert_official_pvt_keys(backbone)
            else:
                backbone = convert_b2_resnet_keys(backbone)
        except KeyError as exc:
            raise KeyError(f"{source}: under 'backbone.': {exc.args[0]}") from None
        mapped.update({f"backbone.{k}": v for k, v in backbone.items()})
        load_state_dict_strict(
            self, mapped, source=source, ignore=lambda k: k.startswith(UNUSED_HEAD_PREFIXES)
        )


_HEAD_FIELDS = {f.name for f in fields(AVSegHeadConfig)} - {"in_channels", "num_classes"}


def _head_config(dataset: str, preset: str, visual_encoder: str, options: dict[str, Any]) -> AVSegHeadConfig:
    """The head configuration of a checked ``dataset`` / ``preset`` / ``visual_encoder`` choice."""
    if dataset not in DATASETS:
        raise ValueError(f"AVSegFormer: unknown dataset {dataset!r}; expected one of {DATASETS}")
    if visual_encoder not in VISUAL_ENCODERS:
        raise ValueError(
            f"AVSegFormer: unknown visual_encoder {visual_encoder!r}; "
            f"expected one of {VISUAL_ENCODERS}"
        )
    check_preset(preset)
    unknown = set(options) - _HEAD_FIELDS
    if unknown:
        raise TypeError(
            f"AVSegFormer: unknown option(s) {sorted(unknown)}; "
            f"head options: {sorted(_HEAD_FIELDS)}"
        )
    head_values = {**(TINY_HEAD if preset == "tiny" else {}), **options}
    if "fc_dims" in head_values:
        head_values["fc_dims"] = tuple(head_values["fc_dims"])
    return AVSegHeadConfig(num_classes=NUM_CLASSES[dataset], **head_values)


# The former factory name: the class takes the same keyword config.
build_avsegformer = AVSegFormer
