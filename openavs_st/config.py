"""Locating and composing the Hydra configs outside ``@hydra.main`` (module CLIs and tests)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message names the key to set."""


def config_dir() -> Path:
    if not (CONFIG_DIR / "train.yaml").is_file():
        raise ConfigError(
            f"configs not found at {CONFIG_DIR}; install openavs-st from a checkout "
            "(pip install -e .) so the configs/ folder sits next to the package"
        )
    return CONFIG_DIR


def compose(overrides: list[str], config_name: str = "train") -> DictConfig:
    """The composed config for ``overrides`` (``key=value`` strings), as the entry points see it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=overrides)


def data_root(cfg: DictConfig) -> Path:
    """``data.root`` as a path, or a :class:`ConfigError` saying which key to set."""
    root = cfg.data.get("root")
    if root in (None, "", "???", "None"):
        raise ConfigError(
            f"data.root is not set for data={cfg.data.name}: pass data.root=/path/to/dataset "
            "(or paths.data_dir=..., or set the OPENAVS_DATA_DIR environment variable)"
        )
    path = Path(str(root)).expanduser()
    if not path.exists():
        raise ConfigError(f"data.root={path} does not exist (data={cfg.data.name})")
    return path
