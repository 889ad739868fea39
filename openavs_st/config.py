"""Locating and composing the Hydra configs outside ``@hydra.main`` (module CLIs and tests), and
building a backbone from its config node."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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


def config_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the configuration is wrong": :class:`ConfigError`, an unknown component name,
    Hydra's composition/override/instantiation errors and OmegaConf's (a missing ``???`` value, an unknown
    key, a failed interpolation)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from openavs_st.registry import UnknownComponentError

    return (ConfigError, UnknownComponentError, HydraException, OmegaConfBaseException)


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` (and of its cause, for Hydra's "Error in call to target") on one line; a list
    under a ``...:`` line (Hydra's available options) is joined with commas, its search path left out."""
    text = str(exc).split("\nConfig search path", 1)[0]
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {cause}"
    parts: list[str] = []
    listing = False
    for raw in text.splitlines():
        line = " ".join(raw.split())
        if not line:
            listing = False
        elif listing and raw[:1].isspace():
            parts[-1] += (" " if parts[-1].endswith(":") else ", ") + line
        else:
            parts.append(line)
            listing = line.endswith(":")
    return "; ".join(p.rstrip(":") for p in parts) or type(exc).__name__


@contextmanager
def cli_errors(extra: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """A configuration error (:func:`config_error_types`) inside the block prints one ``error: ...`` line
    and exits 2; an error in ``extra`` prints one line and exits 1; anything else keeps its traceback."""
    import sys

    try:
        yield
    except config_error_types() as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    except extra as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        raise SystemExit(1) from None


def run_hydra_cli(main: Any) -> None:
    """Run a ``@hydra.main`` entry point whose job body runs under :func:`cli_errors`: the configuration
    errors Hydra raises while composing (unknown group option, bad override, unknown key) print one
    ``error: ...`` line and exit 2 as well."""
    import os

    # Hydra prints its own errors and exits 1; with HYDRA_FULL_ERROR it raises them, so they land here.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    with cli_errors():
        main()
