"""Glue behind ``python train.py``: validate the composed config, then train.

The Lightning module, data module, W&B tracking and export are the subject of the self-training
work; until they land, ``train`` validates the configuration (so a missing data root fails in the
first second with the key to set) and stops with a clear message.
"""

from __future__ import annotations

from omegaconf import DictConfig

from openavs_st.config import data_root


def train(cfg: DictConfig) -> None:
    data_root(cfg)
    raise SystemExit(
        "openavs-st: training is not available in this version yet "
        "(configuration and data root are valid; see README 'Status')"
    )
