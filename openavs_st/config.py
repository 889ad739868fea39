"""Locating and composing the Hydra configs outside ``@hydra.main`` (module CLIs and tests), and
building a backbone from its config node."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

if TYPE_CHECKING:
    from backbones import AVSBackbone

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


def backbone_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A backbone config in its ``_target_`` form: ``{"_target_": "package.module.Class", **cfg}``.

    ``configs/backbone/<name>.yaml`` nodes have this form already. The name form
    ``{"name": "tpavi", **cfg}`` (checkpoints and export folders written before ``_target_``
    configs) is turned into it through the backbone registry; next to a ``_target_``, ``name`` is
    a label (export folders keep it for readers) and is dropped.

    Raises:
        ConfigError: neither ``_target_`` nor ``name`` is given.
        UnknownComponentError: ``name`` is not a registered backbone (the message lists them).
    """
    spec = dict(spec)
    name = spec.pop("name", None)
    if "_target_" in spec:
        return spec
    if name is None:
        raise ConfigError(
            "a backbone config needs _target_ (its class, e.g. backbones.tpavi.TPAVI) or the name of a "
            f"registered backbone; got keys {sorted(spec)}"
        )
    from backbones import BACKBONES

    cls = BACKBONES.get(str(name))
    return {"_target_": f"{cls.__module__}.{cls.__qualname__}", **spec}


def build_backbone(spec: Mapping[str, Any], **kwargs: Any) -> AVSBackbone:
    """The backbone of a config node (:func:`backbone_spec`), built with Hydra's ``instantiate``
    (nested ``_target_`` nodes included); ``kwargs`` (e.g. ``dataset``) are added to the call.

    Raises:
        TypeError: the target did not build an :class:`~backbones.AVSBackbone`.
    """
    from hydra.utils import instantiate

    from backbones import AVSBackbone

    target = backbone_spec(spec)
    net = instantiate(target, **kwargs, _convert_="all")
    if not isinstance(net, AVSBackbone):
        raise TypeError(f"backbone _target_ {target['_target_']} built a {type(net).__name__}, not an AVSBackbone")
    return net


def backbone_name(net: AVSBackbone) -> str:
    """The registered name of a backbone's class (its class name if it is not registered)."""
    from backbones import BACKBONES

    return BACKBONES.name_of(type(net)) or type(net).__name__
