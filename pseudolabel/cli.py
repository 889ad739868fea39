"""Config composition shared by ``python -m pseudolabel`` and ``python -m pseudolabel.evaluate``.

The configs live in the repository's ``configs/`` folder (``configs/pseudolabel/run.yaml``,
``evaluate.yaml`` and the presets next to them) and are composed with Hydra's compose API (no
``@hydra.main``: no working-directory change, no logging takeover, and Hydra's global state is
released before any model loads, so the ``sam2`` package, whose ``sam2/__init__.py`` initialises Hydra on
import, can set up its own). Shortcuts translated to Hydra's own spelling:

- ``labeler=NAME``: the preset ``configs/pseudolabel/NAME.yaml`` (``pseudolabel@labeler=NAME``);
- ``labeler/<role>=NAME``: the component ``configs/pseudolabel/<role>/NAME.yaml`` of that role
  (``pseudolabel/<role>@labeler.<role>=NAME``; ALMs take a list: ``labeler/alm=[qwen2_5_omni,clap]``);
- ``llm=NAME``: ``labeler/llm=NAME``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
ENTRY_CONFIGS = ("run", "evaluate", "export_avsbench")  # files in configs/pseudolabel/ that are not presets


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
    """Command-line overrides with the shortcuts (module docstring) spelled as Hydra wants them."""
    from pseudolabel.components import ROLES

    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+")
        if sep and key == "labeler":
            if value not in presets():
                raise CLIError(f"unknown labeler {value!r}; presets in {config_dir() / 'pseudolabel'}: {presets()}")
            arg = f"pseudolabel@labeler={value}"
        elif sep and key == "llm":
            arg = f"pseudolabel/llm@labeler.llm={value}"
        elif sep and key.startswith("labeler/"):
            role = key.removeprefix("labeler/")
            if role not in ROLES:
                raise CLIError(f"{key}: unknown role {role!r}; roles: {sorted(ROLES)}")
            arg = f"pseudolabel/{role}@labeler.{role}={value}"
        out.append(arg)
    return out


def search_dirs(args: list[str]) -> list[Path]:
    """The config folders: the repository's ``configs/`` and those of ``hydra.searchpath=[file://...]``."""
    folders = [config_dir()]
    for arg in args:
        key, _, value = arg.partition("=")
        if key.lstrip("+") == "hydra.searchpath":
            for entry in value.strip("[]").split(","):
                entry = entry.strip().strip("'\"")
                if entry.startswith("file://"):
                    folders.append(Path(entry.removeprefix("file://")))
    return folders


def import_config_targets(args: list[str]) -> None:
    """Import the ``_target_`` module of every component config on the search path, so that components
    defined outside this package register themselves (``--list`` shows them)."""
    import importlib

    from pseudolabel.components import ROLES

    for folder in search_dirs(args):
        for role in ROLES:
            for path in sorted((folder / "pseudolabel" / role).glob("*.yaml")):
                node = OmegaConf.load(path)
                nodes = [node] if "_target_" in node else [v for v in node.values() if isinstance(v, DictConfig)]
                for entry in nodes:
                    target = str(entry.get("_target_", ""))
                    module = target.rpartition(".")[0]
                    if not module:
                        continue
                    try:
                        importlib.import_module(module)
                    except ImportError as exc:
                        raise CLIError(f"{path}: cannot import _target_ {target!r}: {exc}") from None


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
        message = " ".join(str(exc).split())
        bad = _unparsable(overrides)
        if bad is not None and repr(bad) not in message:  # Hydra's grammar errors do not always name the argument
            message = f"argument {bad!r}: {message}"
        raise CLIError(message) from None
    with open_dict(cfg):
        # paths.output_dir is ${hydra:runtime.output_dir}, which only @hydra.main sets.
        if "paths" in cfg:
            cfg.paths.output_dir = cfg.get("output") or cfg.get("store") or "."
    return cfg


def _unparsable(overrides: list[str]) -> str | None:
    """The first override Hydra's grammar rejects, if any."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_overrides([override])
        except Exception:  # noqa: BLE001 - any parse error marks the argument
            return override
    return None


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """A plain, resolved copy; a ``???`` value is an error naming its key."""
    from omegaconf.errors import OmegaConfBaseException

    missing = sorted(key for key in cfg if OmegaConf.is_missing(cfg, key))
    if missing:
        raise CLIError(f"missing value(s) for {missing}: pass them on the command line, e.g. {missing[0]}=...")
    nested = missing_keys(cfg)
    if nested:
        raise CLIError(f"missing value(s) for {nested}: pass them on the command line, e.g. {nested[0]}=...")
    try:
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise CLIError(" ".join(str(exc).split())) from None


def missing_keys(node: Any, prefix: str = "") -> list[str]:
    """Dotted keys of every ``???`` value below ``node``."""
    found: list[str] = []
    if isinstance(node, DictConfig):
        for key in node:
            path = f"{prefix}{key}"
            if OmegaConf.is_missing(node, key):
                found.append(path)
            else:
                found.extend(missing_keys(node._get_node(key), f"{path}."))
    return found


def error_line(exc: BaseException) -> str:
    """The ``error:`` line a CLI prints for a user error: one line, secrets scrubbed (Hydra repeats a mistyped
    override, ``api_key=...`` or a URL with a password included, in its message)."""
    from openavs_st.data.redact import scrub_text

    return "error: " + scrub_text(" ".join(str(exc).split()))


def split_flags(argv: list[str] | None) -> tuple[list[str], set[str]]:
    args = list(sys.argv[1:] if argv is None else argv)
    flags = {a for a in args if a.startswith("--")}
    return [a for a in args if not a.startswith("--")], flags


def run_entry(config_name: str, argv: list[str] | None, doc: str | None, action: Callable[[dict[str, Any]], int]) -> int:
    """A small entry point (``python -m pseudolabel.evaluate`` ...): ``--help`` prints ``doc``; otherwise
    the entry config ``config_name`` composed from ``argv`` and resolved goes to ``action``. A bad config
    or input (``CLIError``, ``ClipError``, ``ValueError``, ``KeyError``, ``OSError``) prints one ``error:`` line
    (:func:`error_line`) and returns 2; Ctrl-C returns 130 (the entries write atomically)."""
    from openavs_st.data.clip import ClipError

    args, flags = split_flags(argv)
    if "--help" in flags or "-h" in args:
        print(doc)
        return 0
    try:
        return action(resolved(compose(config_name, args)))
    except (CLIError, ClipError, ValueError, KeyError, OSError) as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: python -m pseudolabel.{config_name} stopped; what it writes only appears when it "
              "finishes, so nothing half-written was left", file=sys.stderr)
        return 130
