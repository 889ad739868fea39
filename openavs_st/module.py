"""``AVSLitModule``: trains any backbone with its original recipe.

The backbone (a plain ``nn.Module``, an :class:`backbones.AVSBackbone` built from its config)
carries its recipe per dataset: optimizer, learning rate, weight decay, schedule, epochs, loss terms
and weights, frozen-backbone epochs and the original test batch (the group size of the
AVSBench-exact F-score). Every recipe value can be overridden (``recipe_overrides``). Frames
without ground truth contribute no loss: the loss weight of a frame is ``has_label &
frame_valid``, so S4 trains on frame 1 only, as the original.

A backbone with K > 1 output classes (the ``avss`` recipe: TPAVI's and AVSegFormer's 71-class heads)
trains on class-index targets and is evaluated with the AVSBench-semantic metrics
(:mod:`openavs_st.metrics_avss`: ``miou_avss``, ``f_avss``) instead of the binary ones.

Robust training (AVSBench-Robust): with ``lambda_sim > 0`` a classifier-guided similarity head
projects the VGGish audio embedding to the width of the pooled last-stage visual feature, takes
their cosine similarity per frame, and is trained with BCE(sigmoid(cos), 1 for positive pairs,
0 for negative-audio pairs) added with weight ``lambda_sim``.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backbones.base import AVSOutput, Recipe
from backbones.losses import LOSS_TERMS
from openavs_st.config import backbone_name, build_backbone
from openavs_st.data.avsbench import AVSS_NUM_CLASSES
from openavs_st.metrics import FalsePositiveRate, FScore, MaskIoU, g_f, g_fpr, g_miou
from openavs_st.metrics_avss import SemanticFScore, SemanticMIoU


class SimilarityHead(nn.Module):
    """Audio-visual cosine similarity per frame (AVSBench-Robust's ``CosineModule``, generalised).

    ``forward(audio_embedding [B,T,D_a], visual_pooled [B,T,D_v]) -> cos [B,T]``.
    """

    def __init__(self, audio_dim: int, visual_dim: int) -> None:
        super().__init__()
        self.audio_proj = nn.Linear(audio_dim, visual_dim)

    def forward(self, audio_embedding: torch.Tensor, visual_pooled: torch.Tensor) -> torch.Tensor:
        return F.cosine_similarity(self.audio_proj(audio_embedding), visual_pooled, dim=-1)


def similarity_loss(cos: torch.Tensor, negative: torch.Tensor, frame_valid: torch.Tensor) -> torch.Tensor:
    """BCE(sigmoid(cos), label) with label 1 for positive pairs, 0 for negative ones, over valid frames."""
    label = (1 - negative.float())[:, None].expand_as(cos)
    loss = F.binary_cross_entropy(torch.sigmoid(cos), label, reduction="none")
    weight = frame_valid.float()
    return (loss * weight).sum() / weight.sum().clamp(min=1.0)


class AVSLitModule(L.LightningModule):
    """Lightning wrapper around one backbone and its recipe.

    Args:
        backbone: the backbone's config: ``{"_target_": "backbones.tpavi.TPAVI", **cfg}`` (a
            ``configs/backbone/*.yaml`` node, built with Hydra's ``instantiate``) or the name of a
            registered backbone, ``{"name": "tpavi", **cfg}``; ``dataset`` is added to the call.
        dataset: recipe key (``"s4"``, ``"ms3"``, ``"avss"``).
        recipe_overrides: recipe fields to replace (e.g. ``{"lr": 1e-4, "epochs": 3}``).
        lambda_sim: weight of the robust similarity loss (0 = no similarity head).
        robust_test_kinds: negative kinds evaluated by ``trainer.test`` after the positive test set,
            in the order of the extra test dataloaders (empty = positives only).
    """

    def __init__(
        self,
        backbone: dict[str, Any],
        dataset: str = "s4",
        recipe_overrides: dict[str, Any] | None = None,
        lambda_sim: float = 0.0,
        robust_test_kinds: tuple[str, ...] | list[str] = (),
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = build_backbone(backbone, dataset=dataset)
        self.backbone_name = backbone_name(self.net)
        self.recipe: Recipe = self.net.recipe(dataset).override(**(recipe_overrides or {}))
        unknown = set(self.recipe.loss_terms) - set(LOSS_TERMS)
        if unknown:
            raise KeyError(f"recipe loss terms {sorted(unknown)} are not in backbones.losses; known: {sorted(LOSS_TERMS)}")
        self.lambda_sim = float(lambda_sim)
        self.similarity = None
        if self.lambda_sim > 0:
            if self.net.pooled_visual_dim is None:
                raise ValueError(
                    f"backbone {self.backbone_name!r} declares no pooled_visual_dim (it returns no "
                    "aux['visual_pooled']), so the robust similarity head cannot be trained: set robust.lambda_sim=0"
                )
            self.similarity = SimilarityHead(self.net.audio_embedding_dim, self.net.pooled_visual_dim)
        self.robust_test_kinds = tuple(robust_test_kinds)
        # K of the logits: the backbone's num_classes (TPAVI, AVSegFormer), else 71 for the AVSS recipe.
        self.num_classes = int(getattr(self.net, "num_classes", AVSS_NUM_CLASSES if dataset == "avss" else 1))
        if self.semantic and self.robust_test_kinds:
            raise ValueError("test.robust=true scores binary masks (FPR, G-mIoU); it is not defined for the "
                             f"{self.num_classes}-class AVSS head: set test.robust=false")
        self.val_metrics = self._metric_set()
        self.test_metrics = nn.ModuleList([self._metric_set() for _ in range(1 + len(self.robust_test_kinds))])
        self._robust_results: dict[str, float] = {}

    @property
    def semantic(self) -> bool:
        """Whether the backbone predicts K > 1 classes (targets are class-index maps)."""
        return self.num_classes > 1

    def _metric_set(self) -> nn.ModuleDict:
        r = self.recipe
        if self.semantic:
            return nn.ModuleDict({"miou": SemanticMIoU(self.num_classes), "f": SemanticFScore(self.num_classes)})
        return nn.ModuleDict(
            {
                "miou": MaskIoU(),
                "f_group": FScore(mode="avsbench", group_size=r.test_batch_frames, from_logits=r.fscore_from_logits),
                "f_pooled": FScore(mode="pooled", from_logits=r.fscore_from_logits),
                "fpr": FalsePositiveRate(),
            }
        )

    # ------------------------------------------------------------------------------ forward / loss
    def forward(self, frames: torch.Tensor, audio: torch.Tensor, frame_valid: torch.Tensor | None = None) -> AVSOutput:
        return self.net(frames, audio, frame_valid=frame_valid)

    def _frame_valid(self, batch: dict[str, Any]) -> torch.Tensor | None:
        valid = batch["frame_valid"]
        return None if bool(valid.all()) else valid

    def compute_loss(self, out: AVSOutput, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        weight = (batch["has_label"] & batch["frame_valid"]).float()
        terms = {}
        for name, w in self.recipe.loss_terms.items():
            if w:
                terms[name] = w * LOSS_TERMS[name](out, batch["masks"], weight)
        if self.similarity is not None:
            cos = self.similarity(out.aux["audio_embedding"], out.aux["visual_pooled"])
            terms["similarity"] = self.lambda_sim * similarity_loss(cos, batch["negative"], batch["frame_valid"])
        return sum(terms.values()), terms

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        out = self(batch["frames"], batch["audio"], self._frame_valid(batch))
        loss, terms = self.compute_loss(out, batch)
        bs = batch["frames"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs, sync_dist=True)
        for name, value in terms.items():
            self.log(f"train/loss_{name}", value, batch_size=bs, sync_dist=True)
        return loss

    # ------------------------------------------------------------------------------- evaluation
    def _evaluate(self, metrics: nn.ModuleDict, batch: dict[str, Any]) -> AVSOutput:
        out = self(batch["frames"], batch["audio"], self._frame_valid(batch))
        logits = out.logits[:, :, :1] if out.logits.shape[2] == 1 else out.logits
        valid = batch["has_label"] & batch["frame_valid"]
        masks = batch["masks"]
        if self.semantic:
            # Padding frames (v1s/v1m) are scored as the official AVSS test does (module docstring there).
            for metric in metrics.values():
                metric.update(logits, masks, valid, padded=~batch["frame_valid"])
            return out
        metrics["miou"].update(logits, masks, valid)
        metrics["f_group"].update(logits, masks, valid)
        metrics["f_pooled"].update(logits, masks, valid)
        metrics["fpr"].update(logits, valid=batch["frame_valid"])
        return out

    def _log_metrics(self, stage: str, metrics: nn.ModuleDict) -> dict[str, float]:
        values = {}
        for key, metric in metrics.items():
            value = metric.compute()
            values[metric.name] = float(value)
            self.log(f"{stage}/{metric.name}", value, sync_dist=False)
            metric.reset()
        return values

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(self.val_metrics, batch)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val", self.val_metrics)

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(self.test_metrics[dataloader_idx], batch)

    def on_test_epoch_end(self) -> None:
        positive = self._log_metrics("test", self.test_metrics[0])
        results = {f"test/{k}": v for k, v in positive.items()}
        if self.robust_test_kinds:
            negatives = {}
            for kind, metrics in zip(self.robust_test_kinds, self.test_metrics[1:]):
                negatives[kind] = self._log_metrics(f"test_{kind}", metrics)
                results.update({f"test_{kind}/{k}": v for k, v in negatives[kind].items()})
            # Negatives keep the original GT masks for mIoU/F (the AVSBench-Robust paper, §6.3), so the
            # negative mIoU/F measure how much of the positive masks is still predicted.
            miou_key = self.test_metrics[0]["miou"].name
            f_key = self.test_metrics[0]["f_group"].name
            miou_n = float(np.mean([v[miou_key] for v in negatives.values()]))
            f_n = float(np.mean([v[f_key] for v in negatives.values()]))
            robust = {
                "g_miou": g_miou(positive[miou_key], miou_n),
                "g_f": g_f(positive[f_key], f_n),
                "g_fpr": g_fpr([v["fpr"] for v in negatives.values()]),
            }
            for k, v in robust.items():
                self.log(f"test_robust/{k}", v)
                results[f"test_robust/{k}"] = v
        self._robust_results = results

    @property
    def test_results(self) -> dict[str, float]:
        """Every test value of the last ``trainer.test`` by logged name."""
        return dict(self._robust_results)

    # ------------------------------------------------------------------------------ optimisation
    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the recipe ever trains: those with a gradient now, plus the backbone's
        :meth:`~backbones.AVSBackbone.visual_parameters` while they are frozen for the first epochs
        (they have no gradient then, so the optimizer skips them)."""
        visual = {id(p) for p in self.net.visual_parameters()}
        return [p for p in self.parameters() if p.requires_grad or id(p) in visual]

    def configure_optimizers(self) -> Any:
        r = self.recipe
        params = self.trainable_parameters()
        if r.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=r.lr, weight_decay=r.weight_decay)
        elif r.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=r.lr, weight_decay=r.weight_decay)
        else:
            raise ValueError(f"recipe optimizer {r.optimizer!r} is not supported (adam, adamw)")
        if r.scheduler == "constant":
            return opt
        if r.scheduler == "cosine":
            # SAMA-AVS anneals over its whole run (T_max = epoch_max), so T_max follows the recipe's
            # (possibly overridden) number of epochs.
            args = {k: v for k, v in r.scheduler_args.items() if k not in ("T_max", "interval")}
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=r.epochs, **args)
            interval = r.scheduler_args.get("interval", "epoch")
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": interval}}
        raise ValueError(f"recipe scheduler {r.scheduler!r} is not supported (constant, cosine)")

    def on_train_epoch_start(self) -> None:
        self.net.freeze_visual(self.current_epoch < self.recipe.frozen_backbone_epochs)

    # ---------------------------------------------------------------------- exact resume support
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Plain tensors and lists only, so the checkpoint loads with torch.load(weights_only=True).
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "python": list(random.getstate()),
        }
        checkpoint["openavs"] = {"backbone": self.backbone_name, "recipe": self.recipe.__dict__}
        trainer = self._trainer
        if trainer is not None and not trainer.sanity_checking:
            # This epoch's validation values, so an export of any checkpoint (last.ckpt too) has its metrics.
            checkpoint["openavs"]["val_metrics"] = {
                k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")
            }
        logger = self.logger
        run = getattr(getattr(logger, "experiment", None), "id", None) if logger is not None else None
        if isinstance(run, str):
            checkpoint["openavs"]["wandb_run_id"] = run

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states")
        if states:
            torch.set_rng_state(states["torch"])
            kind, keys, pos, has_gauss, cached = states["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
            version, internal, gauss = states["python"]
            random.setstate((version, tuple(internal), gauss))
