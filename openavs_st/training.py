"""Glue behind ``python train.py``: build the module, data, logger and trainer from the config, fit,
test the best checkpoint, export.

Kept out of ``train.py`` so tests can import every piece.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger
from omegaconf import DictConfig, OmegaConf

from openavs_st.config import ConfigError
from openavs_st.data.store import scrub_secrets
from openavs_st.datamodule import AVSDataModule, SourceSpec
from openavs_st.module import AVSLitModule

log = logging.getLogger(__name__)

# data.name -> the recipe a dataset trains with by default
DEFAULT_RECIPE = {
    "avsbench_s4": "s4",
    "avsbench_ms3": "ms3",
    "avsbench_avss_binary": "ms3",
    "pseudo": "s4",
    "synthetic": "s4",
}


def plain(cfg: Any) -> Any:
    """A resolved plain-Python copy of a config node (dicts/lists), or the value itself."""
    if isinstance(cfg, DictConfig) or OmegaConf.is_list(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def source_spec(node: DictConfig, what: str) -> SourceSpec:
    """The data source of a config node (``data`` or ``data.eval``): see :meth:`SourceSpec.from_config`."""
    return SourceSpec.from_config(node, what)


def recipe_dataset(cfg: DictConfig) -> str:
    name = cfg.data.get("recipe") or DEFAULT_RECIPE.get(cfg.data.name)
    if name is None:
        raise ConfigError(f"data.recipe is not set and data.name={cfg.data.name} has no default recipe")
    return str(name)


def robust_kinds(cfg: DictConfig) -> tuple[str, ...]:
    test = cfg.get("test") or {}
    return tuple(test.get("kinds", ())) if test.get("robust", False) else ()


def build_module(cfg: DictConfig) -> AVSLitModule:
    """The Lightning module for ``cfg.backbone`` with the recipe of the dataset being trained."""
    robust = cfg.get("robust") or {}
    return AVSLitModule(
        backbone=plain(cfg.backbone),
        dataset=recipe_dataset(cfg),
        recipe_overrides={k: v for k, v in (plain(cfg.get("recipe")) or {}).items() if v is not None},
        lambda_sim=float(robust.get("lambda_sim", 0.0)),
        robust_test_kinds=robust_kinds(cfg),
    )


def check_data(cfg: DictConfig) -> None:
    """Fail early, before any model is built, when ``data.root`` (or ``data.eval.root``) is unset or
    missing: the error names the key to set."""
    source_spec(cfg.data, "data")
    eval_node = cfg.data.get("eval")
    if eval_node:
        source_spec(eval_node, "data.eval")


def build_datamodule(cfg: DictConfig, module: AVSLitModule) -> AVSDataModule:
    """Data for ``module``: batch size and input size from its recipe unless the config sets them."""
    d, recipe = cfg.data, module.recipe
    eval_node = d.get("eval")
    robust = cfg.get("robust") or {}
    eval_batch = d.get("eval_batch_size") or max(1, recipe.test_batch_frames // recipe.num_frames)
    return AVSDataModule(
        source_spec(d, "data"),
        source_spec(eval_node, "data.eval") if eval_node else None,
        input_size=int(d.get("input_size") or recipe.input_size),
        batch_size=int(d.get("batch_size") or recipe.batch_size),
        eval_batch_size=int(eval_batch),
        num_workers=int(d.get("num_workers", 4)),
        pin_memory=bool(d.get("pin_memory", True)),
        persistent_workers=bool(d.get("persistent_workers", True)),
        augment=bool(d.get("augment", False)),
        negative_ratio=float(robust.get("negative_ratio", 0.0)),
        negative_kinds=tuple(robust.get("kinds", ("silence", "noise", "offscreen"))),
        robust_test_kinds=robust_kinds(cfg),
        seed=int(cfg.seed),
    )


def find_last_checkpoint(output_dir: Path, runs_dir: Path) -> Path | None:
    """``last.ckpt`` of this output dir, else the newest one among earlier runs of the task."""
    own = output_dir / "checkpoints" / "last.ckpt"
    if own.is_file():
        return own
    found = sorted(runs_dir.glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def resolve_resume(cfg: DictConfig, output_dir: Path) -> tuple[Path | None, Path]:
    """(checkpoint to resume from, output dir to use). ``ckpt_path=last`` continues the newest run
    of this task in its own folder, so checkpoints, logs and the W&B run stay together."""
    ckpt = cfg.get("ckpt_path")
    if ckpt in (None, ""):
        return None, output_dir
    if ckpt == "last":
        found = find_last_checkpoint(output_dir, output_dir.parent)
        if found is None:
            raise ConfigError(f"ckpt_path=last: no checkpoints/last.ckpt under {output_dir} or {output_dir.parent}/*")
        return found, found.parent.parent
    path = Path(str(ckpt)).expanduser()
    if not path.is_file():
        raise ConfigError(f"ckpt_path={path} does not exist")
    return path, output_dir


def checkpoint_info(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a checkpoint we cannot inspect just loses the run id
        log.warning("could not read run metadata from %s: %s", path, exc)
        return {}
    return dict(ckpt.get("openavs", {}))


def wandb_mode() -> str:
    """``online`` when the user is logged in (netrc) or ``WANDB_API_KEY`` is set, else ``offline``;
    an explicit ``WANDB_MODE`` wins."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    import netrc

    try:
        auth = netrc.netrc().authenticators("api.wandb.ai")
    except (FileNotFoundError, netrc.NetrcParseError):
        auth = None
    return "online" if auth else "offline"


def build_loggers(cfg: DictConfig, output_dir: Path, run_id: str | None) -> list[Logger]:
    node = cfg.get("logger") or {}
    loggers: list[Logger] = []
    if "wandb" in node:
        from lightning.pytorch.loggers import WandbLogger

        w = plain(node.wandb)
        mode = wandb_mode()
        if mode == "offline":
            log.warning(
                "W&B: not logged in, logging offline to %s; upload later with `wandb sync %s/wandb/offline-run-*`",
                output_dir, output_dir,
            )
        loggers.append(
            WandbLogger(
                project=w.get("project", "openavs-st"),
                entity=w.get("entity"),
                group=w.get("group"),
                tags=list(w.get("tags") or []),
                save_dir=str(output_dir),
                id=run_id,
                resume="allow" if run_id else None,
                offline=mode == "offline",
                mode="disabled" if mode == "disabled" else None,
                log_model=False,
            )
        )
    if "csv" in node:
        loggers.append(CSVLogger(save_dir=str(output_dir), name=node.csv.get("name", "csv"), version=""))
    for lg in loggers:
        lg.log_hyperparams(scrub_secrets(plain(cfg)))
    return loggers


def log_export_artifact(cfg: DictConfig, loggers: list[Logger], export_dir: Path) -> None:
    """Upload the export folder as a W&B model artifact when ``logger.wandb.log_model=true``."""
    node = (cfg.get("logger") or {}).get("wandb")
    if not node or not node.get("log_model", False):
        return
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger":
            import wandb

            run = lg.experiment
            artifact = wandb.Artifact(name=f"model-{run.id}", type="model")
            artifact.add_dir(str(export_dir))
            run.log_artifact(artifact)


def build_callbacks(cfg: DictConfig, output_dir: Path, loggers: list[Logger]) -> list[Callback]:
    from openavs_st.callbacks import BestValidationMetrics, ValidationOverlays

    node = cfg.get("callbacks") or {}
    callbacks: list[Callback] = []
    ck = plain(node.get("model_checkpoint")) if node.get("model_checkpoint") else None
    if ck is not None:
        ckpt_dir = str(output_dir / "checkpoints")
        # Best checkpoint(s) on the monitored validation metric.
        callbacks.append(
            ModelCheckpoint(
                dirpath=ckpt_dir,
                filename="epoch_{epoch:03d}",
                monitor=ck.get("monitor", "val/miou_avsbench"),
                mode=ck.get("mode", "max"),
                save_top_k=ck.get("save_top_k", 1),
                auto_insert_metric_name=False,
            )
        )
        # The val/* values of that best epoch, for metrics.json and the model card.
        callbacks.append(BestValidationMetrics(ck.get("monitor", "val/miou_avsbench"), ck.get("mode", "max")))
        if ck.get("save_last", True):
            # last.ckpt after every epoch, for ckpt_path=last. Lightning's own save_last only writes
            # it when a top-k checkpoint was written, so a run whose metric stops improving would
            # resume from a stale epoch.
            callbacks.append(
                ModelCheckpoint(
                    dirpath=ckpt_dir,
                    filename="last",
                    monitor=None,
                    save_top_k=1,
                    enable_version_counter=False,
                )
            )
    overlays = node.get("overlays")
    if overlays and any(type(lg).__name__ == "WandbLogger" for lg in loggers):
        callbacks.append(ValidationOverlays(num_clips=int(overlays.get("num_clips", 4))))
    return callbacks


def build_trainer(cfg: DictConfig, module: AVSLitModule, output_dir: Path, loggers, callbacks) -> L.Trainer:
    args = {k: v for k, v in plain(cfg.trainer).items() if k != "_target_"}
    if args.get("max_epochs") is None:
        args["max_epochs"] = module.recipe.epochs
    args["default_root_dir"] = str(output_dir)
    if not callbacks or not any(isinstance(c, ModelCheckpoint) for c in callbacks):
        args.setdefault("enable_checkpointing", False)
    return L.Trainer(logger=loggers or False, callbacks=callbacks, **args)


def output_dir_of(cfg: DictConfig) -> Path:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(str(cfg.paths.output_dir))


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, test the best checkpoint, export. Returns the final metrics by logged name."""
    L.seed_everything(int(cfg.seed), workers=True)
    output_dir = output_dir_of(cfg)
    ckpt_path, resume_dir = resolve_resume(cfg, output_dir)
    trained = bool(cfg.get("train", True))
    if trained:  # a resumed fit continues in its run folder; train=false writes into its own
        output_dir = resume_dir
    check_data(cfg)  # a missing data root fails before the (possibly large) model is built
    module = build_module(cfg)
    datamodule = build_datamodule(cfg, module)
    info = checkpoint_info(ckpt_path)
    loggers = build_loggers(cfg, output_dir, info.get("wandb_run_id"))
    callbacks = build_callbacks(cfg, output_dir, loggers)
    trainer = build_trainer(cfg, module, output_dir, loggers, callbacks)
    OmegaConf.save(OmegaConf.create(scrub_secrets(plain(cfg))), output_dir / "config_resolved.yaml")
    try:
        metrics: dict[str, float] = {}
        if not trained and ckpt_path is not None:
            # train=false ckpt_path=...: test and export that checkpoint, not freshly built weights.
            state = torch.load(ckpt_path, map_location="cpu", weights_only=True)["state_dict"]
            module.load_state_dict(state, strict=True)
        if trained:
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)
            from openavs_st.callbacks import BestValidationMetrics

            best_val = next((c.metrics for c in callbacks if isinstance(c, BestValidationMetrics)), None)
            # The best epoch's validation values (its weights are tested and exported), else the last's.
            metrics.update(best_val or {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")})
        test = cfg.get("test") or {}
        if test.get("run", True) and not trainer.fast_dev_run:
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback and trained else ""
            trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
            metrics.update(module.test_results)
        export = cfg.get("export") or {}
        if export.get("enabled", True) and trainer.is_global_zero and not trainer.fast_dev_run:
            from openavs_st.export import export_module

            export_dir = output_dir / "export"
            export_module(module, export_dir, cfg=cfg, metrics=metrics, onnx=bool(export.get("onnx", False)))
            log_export_artifact(cfg, loggers, export_dir)
        return metrics
    finally:
        if any(type(lg).__name__ == "WandbLogger" for lg in loggers):
            import wandb

            wandb.finish()
