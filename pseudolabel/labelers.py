"""The labeler registry: which labeler class a preset's ``mode`` builds.

``openavs`` and ``clip_label`` build :class:`~pseudolabel.openavs.OpenAVSLabeler`, ``alrefsam2``
:class:`~pseudolabel.alrefsam2.ALRefSAM2Labeler`. A labeler class has ``from_config(cfg)`` and the stages of
:class:`pseudolabel.runner.Labeler`; a new one registers with ``@LABELERS.register("mode")``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openavs_st.registry import Registry, UnknownComponentError
from pseudolabel.components import ComponentConfigError

LABELERS: Registry[Any] = Registry("labeler", builtin=("pseudolabel.openavs", "pseudolabel.alrefsam2"))


def build_labeler(cfg: Mapping[str, Any]) -> Any:
    """The labeler of a resolved preset config (``labeler.mode``, default ``openavs``)."""
    mode = str(cfg.get("mode", "openavs"))
    try:
        cls = LABELERS.get(mode)
    except UnknownComponentError:
        raise ComponentConfigError(f"labeler.mode={mode!r} is no labeler; one of {LABELERS.names()}") from None
    return cls.from_config(cfg)


def _register_openavs() -> None:
    from pseudolabel.openavs import MODES, OpenAVSLabeler

    for mode in MODES:
        LABELERS.register(mode)(OpenAVSLabeler)


_register_openavs()
