"""Locating and composing the Hydra configs outside ``@hydra.main`` (module CLIs and tests), and
building a backbone from its config node."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

# Config errors, the root check and compose live in the data floor (which imports nothing from here).
from openavs_st.data.configs import (  # noqa: F401 - re-exported
    CONFIG_DIR,
    ConfigError,
    compose,
    config_dir,
    data_root,
    require_root,
)

if TYPE_CHECKING:
    from backbones import AVSBackbone


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
        ConfigError: the ``_target_`` cannot be imported (the message says why).
        TypeError: the target did not build an :class:`~backbones.AVSBackbone`.
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from backbones import AVSBackbone

    target = backbone_spec(spec)
    try:
        net = instantiate(target, **kwargs, _convert_="all")
    except InstantiationException as exc:
        if not str(exc).startswith("Error locating target"):
            raise
        reason = " ".join(str(exc.__cause__ or exc).splitlines()[1:])
        raise ConfigError(
            f"backbone _target_ {target['_target_']} cannot be imported: {reason} (a backbone outside this "
            "repository needs its module on PYTHONPATH)"
        ) from exc
    if not isinstance(net, AVSBackbone):
        raise TypeError(f"backbone _target_ {target['_target_']} built a {type(net).__name__}, not an AVSBackbone")
    return net


def backbone_name(net: AVSBackbone) -> str:
    """The registered name of a backbone's class (its class name if it is not registered)."""
    from backbones import BACKBONES

    return BACKBONES.name_of(type(net)) or type(net).__name__
