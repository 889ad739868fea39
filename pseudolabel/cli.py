"""Config composition shared by ``python -m pseudolabel`` and ``python -m pseudolabel.evaluate``.

The configs live in the repository's ``configs/`` folder (``configs/pseudolabel/run.yaml``,
``evaluate.yaml`` and the presets next to them) and are composed with Hydra's compose API (no
``@hydra.main``: no working-directory change, no logging takeover, and Hydra's global state is
released before any model loads, so the ``sam2`` package can set up its own; see
``shared/reference/pipeline.md`` §1). ``labeler=NAME`` on the command line selects the preset
``configs/pseudolabel/NAME.yaml`` (Hydra's own spelling of that choice is ``pseudolabel@labeler=NAME``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
ENTRY_CONFIGS = ("run", "evaluate")  # files in configs/pseudolabel/ that are not presets


class CLIError(ValueError):
    """A command-line / configuration problem; the message says what to change."""


def config_dir() -> Path:
    if not (CONFIG_DIR / "pseudolabel" / "run.yaml").is_file():
        raise CLIError(
            f"configs not found at {CONFIG_DIR}; install openavs-st from a checkout (pip install -e .) "
            "so the configs/ folder sits next to the pseudolabel package"
        )
    return CONFIG_DIR


def presets() -> list[str]:
    """Names of the labeler presets (``configs/pseudolabel/*.yaml`` minus the entry configs)."""
    folder = config_dir() / "pseudolabel"
    return sorted(p.stem for p in folder.glob("*.yaml") if p.stem not in ENTRY_CONFIGS)


def translate_overrides(args: list[str]) -> list[str]:
    """Command-line overrides with ``labeler=NAME`` spelled as Hydra wants it (and checked)."""
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key in ("labeler", "+labeler"):
            if value not in presets():
                raise CLIError(f"unknown labeler {value!r}; presets in {config_dir() / 'pseudolabel'}: {presets()}")
            arg = f"pseudolabel@labeler={value}"
        out.append(arg)
    return out


def compose(config_name: str, args: list[str]) -> DictConfig:
    """The composed config of ``configs/pseudolabel/<config_name>.yaml`` with command-line overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    overrides = translate_overrides(args)
    try:
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            cfg = hydra_compose(config_name=f"pseudolabel/{config_name}", overrides=overrides)
    except HydraException as exc:
        raise CLIError(str(exc)) from None
    with open_dict(cfg):
        # paths.output_dir is ${hydra:runtime.output_dir}, which only @hydra.main sets.
        if "paths" in cfg:
            cfg.paths.output_dir = cfg.get("output") or cfg.get("store") or "."
    return cfg


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """A plain, resolved copy; a ``???`` value is an error naming its key."""
    from omegaconf.errors import OmegaConfBaseException

    missing = sorted(key for key in cfg if OmegaConf.is_missing(cfg, key))
    if missing:
        raise CLIError(f"missing value(s) for {missing}: pass them on the command line, e.g. {missing[0]}=...")
    try:
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise CLIError(" ".join(str(exc).split())) from None


def split_flags(argv: list[str] | None) -> tuple[list[str], set[str]]:
    args = list(sys.argv[1:] if argv is None else argv)
    flags = {a for a in args if a.startswith("--")}
    return [a for a in args if not a.startswith("--")], flags
