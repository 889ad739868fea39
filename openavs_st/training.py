"""Glue behind ``python train.py``: build the module, data, logger and trainer from the config, fit,
test the best checkpoint, export.

Kept out of ``train.py`` so tests can import every piece.
"""

from __future__ import annotations

import copy
import csv
import logging
import os
import sys
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger as _LightningCSVLogger
from lightning.pytorch.loggers import Logger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter as _CSVWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from omegaconf import DictConfig, OmegaConf

from openavs_st.config import ConfigError
from openavs_st.data.audio_features import AUDIO_FEATURES
from openavs_st.data.redact import install_log_scrubbing, scrub_secrets, scrub_text
from openavs_st.datamodule import AVSDataModule, SourceSpec
from openavs_st.module import AVSLitModule

log = logging.getLogger(__name__)

# data.name -> the recipe a dataset trains with by default
DEFAULT_RECIPE = {
    "avsbench_s4": "s4",
    "avsbench_ms3": "ms3",
    "avsbench_avss": "avss",
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
    missing: the error names the key to set; a semantic read (``data=pseudo_avss``) of a store labelled
    without ``labeler.semantic`` fails here too, before the model, loggers and trainer are built."""
    check_store_classes(source_spec(cfg.data, "data"))
    eval_node = cfg.data.get("eval")
    if eval_node:
        source_spec(eval_node, "data.eval")


def check_store_classes(source: SourceSpec) -> None:
    """A :class:`ConfigError` when ``source`` reads a pseudo-label store's class maps (``data.semantic``) but the
    store has none (no ``label2idx.json``, or clips with binary masks only). Reads the manifests, no clip."""
    if source.name != "pseudo" or not source.classes:
        return
    from openavs_st.data.store import PseudoLabelStore

    # a folder that is not a store stays a ClipError (one line, exit 1) from here, as from the reader
    store = PseudoLabelStore(source.root, compute_log_mel=False, cache_log_mel=False, semantic=False)
    missing = store.class_maps_missing()
    if missing is not None:
        raise ConfigError(
            f"data.semantic=true (data=pseudo_avss): {missing}, or train a binary recipe on this one (data=pseudo)"
        )


def build_datamodule(cfg: DictConfig, module: AVSLitModule) -> AVSDataModule:
    """Data for ``module``: batch size and input size from its recipe unless the config sets them."""
    d, recipe = cfg.data, module.recipe
    eval_node = d.get("eval")
    robust = cfg.get("robust") or {}
    eval_batch = d.get("eval_batch_size") or max(1, recipe.test_batch_frames // recipe.num_frames)
    features = str(d.get("audio_features") or "log_mel")
    if features not in AUDIO_FEATURES:
        raise ConfigError(f"data.audio_features={features} is unknown; available: {AUDIO_FEATURES.names()}")
    dim = AUDIO_FEATURES.get(features).dim
    width = getattr(module.net, "audio_embedding_dim", None)
    # precomputed features are the backbone's audio embedding: the widths must agree (log-mels go through
    # the backbone's own audio encoder, whose input check names any mismatch)
    if dim is not None and width is not None and int(width) != dim:
        raise ConfigError(
            f"data.audio_features={features} gives {dim}-d features but the backbone reads {width}-d audio "
            f"embeddings: set backbone.audio_embedding_dim={dim}"
        )
    source = source_spec(d, "data")
    if source.semantic != module.semantic:
        raise ConfigError(
            f"data.name={source.name} has {'class-index' if source.semantic else 'binary'} masks but the "
            f"{module.recipe.dataset!r} recipe builds a {module.num_classes}-class head: "
            + (
                ("set data.recipe=avss (data=pseudo_avss does)" if source.name == "pseudo"
                 else "drop data.recipe (avsbench_avss trains the avss recipe)")
                if source.semantic
                else ("use a binary recipe, or data=pseudo_avss for a semantic store" if source.name == "pseudo"
                      else "use a binary recipe")
            )
        )
    return AVSDataModule(
        source,
        source_spec(eval_node, "data.eval") if eval_node else None,
        input_size=int(d.get("input_size") or recipe.input_size),
        batch_size=int(d.get("batch_size") or recipe.batch_size),
        eval_batch_size=int(eval_batch),
        num_workers=worker_count(d.get("num_workers")),
        pin_memory=bool(d.get("pin_memory", True)),
        persistent_workers=bool(d.get("persistent_workers", True)),
        augment=bool(d.get("augment", False)),
        negative_ratio=float(robust.get("negative_ratio", 0.0)),
        negative_kinds=tuple(robust.get("kinds", ("silence", "noise", "offscreen"))),
        robust_test_kinds=robust_kinds(cfg),
        seed=int(cfg.seed),
        audio_features=features,
    )


def worker_count(configured: Any) -> int:
    """Data-loading workers: ``data.num_workers`` (``null`` = one per CPU core), at most the cores this
    process may use, so a config written for a large machine does not oversubscribe a small one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    if configured is None:
        return cores
    return max(0, min(int(configured), cores))


def single_lightning_console() -> None:
    """Lightning's ``lightning`` logger has its own console handler and also propagates to the root logger
    (Hydra's console and ``train.log``), so every INFO line was printed twice: when the root logger has
    handlers, drop Lightning's own console handlers."""
    if not logging.getLogger().handlers:
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True


class CSVLogger(_LightningCSVLogger):
    """Lightning's ``CSVLogger`` that keeps the ``metrics.csv`` of the run it continues: a resumed run
    (``ckpt_path=last``) appends its rows to the earlier ones instead of deleting them."""

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return self._experiment


class _KeepingWriter(_CSVWriter):
    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):  # continue its header (sorted, as the writer keeps it)
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = sorted(next(csv.reader(file), []))


def scrub_run_files(output_dir: Path) -> None:
    """Rewrite the files Hydra wrote before the job ran (``.hydra/config.yaml``, ``overrides.yaml``,
    ``hydra.yaml``: the raw command line) through the secret policy (:func:`scrub_text`)."""
    for path in sorted((output_dir / ".hydra").glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        clean = scrub_text(text)
        if clean != text:
            path.write_text(clean, encoding="utf-8")


def adopt_new_folder(new: Path, into: Path) -> None:
    """A resumed run writes into the folder of the run it continues: the folder Hydra made for it is
    folded in (``.hydra/`` -> ``<into>/.hydra/resume_<name>/``, ``train.log`` appended to the run's and
    the log file handlers moved there) and removed when nothing else is in it."""
    if new.resolve() == into.resolve() or not new.is_dir():
        return
    if (new / ".hydra").is_dir():
        (into / ".hydra").mkdir(parents=True, exist_ok=True)
        (new / ".hydra").rename(into / ".hydra" / f"resume_{new.name}")
    old_log = new / "train.log"
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == new.resolve():
            handler.acquire()
            try:
                handler.close()
                target = into / Path(handler.baseFilename).name
                if Path(handler.baseFilename).is_file():
                    with target.open("ab") as dst:
                        dst.write(Path(handler.baseFilename).read_bytes())
                    Path(handler.baseFilename).unlink()
                handler.baseFilename, handler.mode = str(target.resolve()), "a"
            finally:
                handler.release()
    if old_log.is_file():
        with (into / old_log.name).open("ab") as dst:
            dst.write(old_log.read_bytes())
        old_log.unlink()
    try:
        new.rmdir()
    except OSError:
        log.warning("resumed into %s; %s holds other files and was kept", into, new)


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
    """The ``openavs`` record of the checkpoint to resume from (a corrupt file is a
    :class:`~openavs_st.export.CheckpointError` naming it, before Lightning tries to load it)."""
    if path is None:
        return {}
    from openavs_st.export import read_checkpoint

    return dict(read_checkpoint(path, mmap=True).get("openavs") or {})


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


def wandb_arguments(run_id: str | None, save_dir: str) -> dict[str, Any]:
    """What a ``WandbLogger`` gets besides its config: the run to resume, the mode, and
    ``log_model=False`` (the config's ``log_model`` means the export artifact, see
    :func:`log_export_artifact`; checkpoints are never uploaded)."""
    mode = wandb_mode()
    if mode == "offline":
        log.warning(
            "W&B: not logged in, logging offline to %s; upload later with `wandb sync %s/wandb/offline-run-*`",
            save_dir, save_dir,
        )
    return {
        "id": run_id,
        "resume": "allow" if run_id else None,
        "offline": mode == "offline",
        "mode": "disabled" if mode == "disabled" else None,
        "log_model": False,
    }


def build_loggers(cfg: DictConfig, run_id: str | None) -> list[Logger]:
    """Every ``logger.<key>`` node with a ``_target_`` (``configs/logger/*.yaml``), instantiated; each
    receives the resolved config without secrets as hyper-parameters."""
    from hydra.utils import get_class, instantiate
    from lightning.pytorch.loggers import WandbLogger

    loggers: list[Logger] = []
    for node in (cfg.get("logger") or {}).values():
        if not node or "_target_" not in node:
            continue
        is_wandb = issubclass(get_class(node._target_), WandbLogger)
        extra = wandb_arguments(run_id, str(node.get("save_dir"))) if is_wandb else {}
        loggers.append(instantiate(node, **extra, _convert_="all"))
    # W&B records the command line when its run starts (here, on the first log): it sees it scrubbed. The
    # real one is restored for what reads it later (DDP relaunches this script with it).
    argv = list(sys.argv)
    sys.argv[:] = [scrub_text(a) for a in argv]
    try:
        for lg in loggers:
            lg.log_hyperparams(scrub_secrets(plain(cfg)))
    finally:
        sys.argv[:] = argv
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


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    """Every ``callbacks.<key>`` node with a ``_target_`` (``configs/callbacks/default.yaml``: best and
    last checkpoints, the best epoch's validation values, W&B overlays), instantiated in order."""
    from hydra.utils import instantiate

    nodes = (cfg.get("callbacks") or {}).values()
    return [instantiate(node, _convert_="all") for node in nodes if node and "_target_" in node]


def build_trainer(
    cfg: DictConfig, module: AVSLitModule, loggers: list[Logger], callbacks: list[Callback]
) -> L.Trainer:
    """``cfg.trainer`` (a ``lightning.Trainer`` node) instantiated with the loggers and callbacks;
    ``max_epochs: null`` takes the recipe's epochs."""
    from hydra.utils import instantiate

    extra: dict[str, Any] = {}
    if cfg.trainer.get("max_epochs") is None:
        extra["max_epochs"] = module.recipe.epochs
    if "enable_checkpointing" not in cfg.trainer and not any(isinstance(c, ModelCheckpoint) for c in callbacks):
        extra["enable_checkpointing"] = False
    return instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks, **extra, _convert_="all")


def best_checkpoint(callbacks: list[Callback]) -> str:
    """The best checkpoint written by the monitoring ``ModelCheckpoint`` ("" if none)."""
    for callback in callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor:
            return callback.best_model_path
    return ""


def output_dir_of(cfg: DictConfig) -> Path:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(str(cfg.paths.output_dir))


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, test the best checkpoint, export. Returns the final metrics by logged name."""
    install_log_scrubbing()
    single_lightning_console()
    L.seed_everything(int(cfg.seed), workers=True)
    output_dir = output_dir_of(cfg)
    scrub_run_files(output_dir)
    ckpt_path, resume_dir = resolve_resume(cfg, output_dir)
    info = checkpoint_info(ckpt_path)  # a corrupt checkpoint fails before anything is built
    trained = bool(cfg.get("train", True))
    if trained:  # a resumed fit continues in its run folder; train=false writes into its own
        if ckpt_path is not None:
            adopt_new_folder(output_dir, resume_dir)
        output_dir = resume_dir
    check_data(cfg)  # a missing data root fails before the (possibly large) model is built
    # Loggers, checkpoints and the trainer write under ${paths.output_dir}: this run's folder, or the
    # folder of the run being resumed.
    cfg = copy.deepcopy(cfg)
    cfg.paths.output_dir = str(output_dir)
    module = build_module(cfg)
    datamodule = build_datamodule(cfg, module)
    loggers = build_loggers(cfg, info.get("wandb_run_id"))
    callbacks = build_callbacks(cfg)
    trainer = build_trainer(cfg, module, loggers, callbacks)
    OmegaConf.save(OmegaConf.create(scrub_secrets(plain(cfg))), output_dir / "config_resolved.yaml")
    try:
        metrics: dict[str, float] = {}
        if not trained and ckpt_path is not None:
            # train=false ckpt_path=...: test and export that checkpoint, not freshly built weights.
            from openavs_st.export import read_checkpoint

            state = read_checkpoint(ckpt_path)["state_dict"]
            module.load_state_dict(state, strict=True)
        if trained:
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)
            from openavs_st.callbacks import BestValidationMetrics

            best_val = next((c.metrics for c in callbacks if isinstance(c, BestValidationMetrics)), None)
            # The best epoch's validation values (its weights are tested and exported), else the last's.
            metrics.update(best_val or {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")})
        test = cfg.get("test") or {}
        if test.get("run", True) and not trainer.fast_dev_run:
            best = best_checkpoint(callbacks) if trained else ""
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
