"""Shared fixtures. Nothing here reaches the network: model hubs are forced offline."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic dataset in all three AVSBench layouts (read-only: copy it before damaging it)."""
    from openavs_st.data.synthetic import write_synthetic

    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic(root, splits={"train": 3, "val": 2, "test": 2}, size=32, seed=0, pickles=True)
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real Lightning checkpoint of tiny TPAVI at 64x64 after one training step on synthetic S4,
    laid out as a training run: ``<run>/checkpoints/last.ckpt`` + ``<run>/config_resolved.yaml``."""
    import lightning as L
    from omegaconf import OmegaConf

    from openavs_st.data.synthetic import write_synthetic
    from openavs_st.datamodule import AVSDataModule, SourceSpec
    from openavs_st.module import AVSLitModule

    run = tmp_path_factory.mktemp("run")
    data_root = write_synthetic(run / "data", ("s4",), splits={"train": 2, "val": 1, "test": 1}, size=64)["s4"]
    L.seed_everything(0)
    module = AVSLitModule(backbone={"name": "tpavi", "preset": "tiny"}, dataset="s4")
    datamodule = AVSDataModule(
        SourceSpec("avsbench_s4", str(data_root)), input_size=64, batch_size=2, num_workers=0,
        pin_memory=False, persistent_workers=False,
    )
    trainer = L.Trainer(
        max_steps=1, limit_val_batches=0, num_sanity_val_steps=0, accelerator="cpu", logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    with warnings.catch_warnings():  # VGGish is frozen in eval mode on purpose
        warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode at the start of training")
        trainer.fit(module, datamodule=datamodule)
    checkpoint = run / "checkpoints" / "last.ckpt"
    trainer.save_checkpoint(checkpoint)
    data = {"name": "avsbench_s4", "root": str(data_root), "input_size": 64}
    OmegaConf.save(OmegaConf.create({"data": data, "seed": 0}), run / "config_resolved.yaml")
    return checkpoint
