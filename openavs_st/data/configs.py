"""What the data floor needs of the configuration: :class:`ConfigError`, the one check of a root folder
key (:func:`require_root`), and composing the Hydra configs (``configs/`` next to the package) outside
``@hydra.main``, for module CLIs such as ``python -m openavs_st.data.check`` and for tests.

``openavs_st.config`` re-exports these names; they live here so that ``openavs_st.data`` imports nothing
from the layers above it. Hydra and OmegaConf are imported only when a config is composed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omegaconf import DictConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
# Values that mean "not given": null, empty, Hydra's mandatory marker, and "None" from a command line.
UNSET_VALUES = ("", "???", "None")
# Where a dataset root may come from besides its own key (configs/paths/default.yaml).
DATA_DIR_HINT = "or paths.data_dir=..., or set the OPENAVS_DATA_DIR environment variable"


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message names the key to set."""


def is_unset(value: Any) -> bool:
    """True for a value that was not given: ``None``, ``""``, ``"???"`` or ``"None"``."""
    return value is None or (isinstance(value, str) and value.strip() in UNSET_VALUES)


def require_root(
    value: Any,
    *,
    key: str,
    owner: str,
    must_exist: bool = True,
    example: str = "/path/to/dataset",
    hint: str | None = DATA_DIR_HINT,
) -> Path:
    """The folder a root key holds (``~`` expanded); a :class:`ConfigError` naming the key otherwise.

    Args:
        value: the key's value.
        key: the key, as the user sets it (``data.root``, ``data.eval.root`` ...).
        owner: what needs the root, for the message (``data.name=avsbench_s4``).
        must_exist: also fail when the path does not exist.
        example: the placeholder in "pass key=...".
        hint: other ways to set it, appended to the "not set" message.
    """
    if is_unset(value):
        also = f" ({hint})" if hint else ""
        raise ConfigError(f"{key} is not set for {owner}: pass {key}={example}{also}")
    path = Path(str(value)).expanduser()
    if must_exist and not path.exists():
        raise ConfigError(f"{key}={path} does not exist ({owner})")
    return path


def data_root(cfg: DictConfig) -> Path:
    """``data.root`` of a composed config, which must exist (see :func:`require_root`)."""
    return require_root(cfg.data.get("root"), key="data.root", owner=f"data.name={cfg.data.get('name')}")


def config_dir() -> Path:
    """The ``configs/`` folder of the checkout (a :class:`ConfigError` if it is not there)."""
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
