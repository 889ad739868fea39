"""``python -m pseudolabel labeler=openavs_lite input=... output=...``: build a pseudo-label store.

Options are Hydra overrides of ``configs/pseudolabel/run.yaml`` and the chosen preset: ``labeler/<role>=NAME``
swaps a component (``labeler/alm=[qwen2_5_omni,clap]``, ``labeler/segmenter=sam``, ``llm=none`` for
``labeler/llm=none``), ``labeler.<role>.<option>=...`` tunes one (``labeler.grounder.model=/models/gdino``).
``--list`` prints every registered component by role, ``--cfg`` prints the resolved config and exits,
``--help`` prints this text.
The resolved config (secrets scrubbed) is saved in the store as ``pseudolabel_config.yaml``
(``pseudolabel_config.shard-i-of-n.yaml`` for a shard) and the summary as ``summary.json``
(``summary.shard-i-of-n.json``). Exit status: 0 when the job ran to the end (clips that failed are
recorded with their reason in the manifest and counted in the summary), 2 for a configuration error or a
store whose shard another run is writing (one writer per shard manifest; the message names the holder).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

from pseudolabel.cli import CLIError, compose, error_line, resolved, split_flags

log = logging.getLogger("pseudolabel")


def parse_shard(value: Any) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(value))
    if not match:
        raise CLIError(f"shard must look like i/n (e.g. shard=0/4), got {value!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise CLIError(f"shard={value}: need 0 <= i < n")
    return index, count


def input_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The ``open_source`` config of the run's ``input`` string and its option groups."""
    value = str(cfg["input"])
    if value == "avsbench" or (value in ("data", "dataset")):
        return {"kind": "avsbench", "split": cfg.get("split") or "test"}
    if value == "unpaired":
        return {"kind": "unpaired", **(cfg.get("unpaired") or {})}
    return {"kind": "videos", "path": value, **(cfg.get("video") or {})}


def _suffix(shard: tuple[int, int]) -> str:
    return "" if shard[1] == 1 else f".shard-{shard[0]}-of-{shard[1]}"


def _atomic_text(writer: Any, name: str, text: str) -> None:
    """Write a file into the store root: atomically, secrets scrubbed, under the writer's temporary-file tag
    (so the next open of the store sweeps what a kill left)."""
    writer.write_text(name, text)


def print_summary(summary: dict[str, Any], stream: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="pseudo-labeling summary")
    table.add_column("")
    table.add_column("this run", justify="right")
    table.add_column("whole store", justify="right")
    run, store = summary["run"], summary["store"]
    rows = [
        ("clips ok", "clips_ok", "{}"),
        ("clips failed", "clips_failed", "{}"),
        ("frames labeled", "frames", "{}"),
        ("empty-mask frames", "empty_mask_frames", "{}"),
        ("mean mask area", "mean_mask_area", "{:.4f}"),
        ("LLM calls", "llm_calls", "{}"),
        ("LLM cache hits", "llm_cache_hits", "{}"),
        ("LLM tokens", "llm_tokens", "{}"),
        ("LLM cost (USD)", "llm_cost_usd", "{:.6f}"),
        ("clips with every LLM answer unusable", "llm_fallback_clips", "{}"),
    ]
    for label, key, fmt in rows:
        table.add_row(label, fmt.format(run[key]), fmt.format(store[key]))
    table.add_row("clips skipped (done before)", str(run["clips_skipped"]), "")
    table.add_row("frames / s", f"{run['frames_per_second']:.2f}", "")
    Console(file=stream or sys.stderr).print(table)


def print_components(args: list[str], stream: Any = None) -> None:
    """Every registered component by role, with its one-line description and config file.

    Component configs found on the config search path (including ``hydra.searchpath=[...]`` among
    ``args``) are imported first, so plug-ins outside this repository are listed too.
    """
    from pseudolabel.cli import import_config_targets
    from pseudolabel.components import ROLES

    import_config_targets(args)
    out = stream or sys.stdout
    for role in ROLES.values():
        print(f"{role.key}: {role.title}  (labeler/{role.key}=NAME)", file=out)
        described = role.registry.describe()
        if not described:
            print("  (none registered)", file=out)
        width = max((len(name) for name in described), default=0)
        for name, text in described.items():
            print(f"  {name.ljust(width)}  {text}", file=out)


def run(cfg_node: Any) -> dict[str, Any]:
    """Label a store from a composed config; returns the summary (also written to the store)."""
    from omegaconf import OmegaConf

    from openavs_st.data.sources import open_source
    from openavs_st.data.store import (
        StoreWriter,
        load_records,
        scrub_secrets,
        shard_of,
        summarize,
    )
    from pseudolabel.components import ComponentConfigError, ComponentLoadError
    from pseudolabel.labelers import build_labeler
    from pseudolabel.runner import run_labeler

    cfg = resolved(cfg_node)
    shard = parse_shard(cfg.get("shard") or "0/1")
    output = Path(str(cfg["output"])).expanduser()
    labeler_cfg = dict(cfg["labeler"])
    try:
        source = open_source(input_config(cfg), cfg.get("data"))
    except (ValueError, FileNotFoundError) as exc:
        raise CLIError(str(exc)) from None
    try:
        labeler = build_labeler(labeler_cfg)
    except ComponentConfigError as exc:
        raise CLIError(f"labeler config: {exc}") from None
    # The config hash identifies the labeling settings (not where the clips come from or go to).
    hashed = {k: v for k, v in labeler_cfg.items() if k not in ("llm", "vlm_cache_dir")}
    hashed["llm"] = {k: v for k, v in (labeler_cfg.get("llm") or {}).items() if k not in ("cache_dir", "concurrency")}
    options = dict(
        labeler=str(labeler_cfg.get("name", "openavs")),
        config=hashed,
        shard=shard,
        image_format=str(cfg.get("image_format") or "png"),
        retry_failed=bool(cfg.get("retry_failed", True)),
        max_side=(cfg.get("store") or {}).get("max_side"),
        class_names=getattr(labeler, "class_names", None),
    )
    # Models load before anything is written, so a model that is not on disk stops the job with exit 2 and
    # an untouched store; a store with nothing left to do loads none.
    if output.exists():
        check_resume(output, options)  # before the writer touches the store
    try:
        writer = StoreWriter(output, **options) if output.exists() else None
    except ValueError as exc:  # e.g. the store's label2idx.json lists other classes than labeler.semantic
        raise CLIError(f"output={output}: {exc}") from None
    if writer is not None:
        pending = writer.pending(source.ids)
    else:
        pending = [clip_id for clip_id in source.ids if shard_of(clip_id, shard[1]) == shard[0]]
    if pending:
        try:
            labeler.load_models()
        except ComponentLoadError as exc:
            raise CLIError(str(exc)) from None
    writer = writer or StoreWriter(output, **options)
    saved = scrub_secrets({**cfg, "labeler": labeler_cfg, "input_source": source.describe()})
    _atomic_text(writer, f"pseudolabel_config{_suffix(shard)}.yaml", OmegaConf.to_yaml(OmegaConf.create(saved)))
    pipeline = cfg.get("pipeline") or {}
    stats = run_labeler(
        labeler,
        source,
        writer,
        overlap=bool(pipeline.get("overlap", True)),
        max_in_flight=int(pipeline.get("max_in_flight", 16)),
        frame_batch=int(pipeline.get("frame_batch", 16)),
        progress=bool(cfg.get("progress", True)),
        limit=cfg.get("limit"),
    )
    summary = {
        "labeler": labeler.name,
        "config_hash": writer.config_hash,
        "shard": list(shard),
        "input": source.describe(),
        "run": stats.to_dict(),
        "store": summarize(load_records(output).values()),
    }
    _atomic_text(writer, f"summary{_suffix(shard)}.json", json.dumps(scrub_secrets(summary), indent=2) + "\n")
    writer.close()
    return summary


def check_resume(output: Path, options: dict[str, Any]) -> None:
    """A run resuming the store ``output`` with the writer ``options``: refuse to mix class-map and binary-only
    clips in it (a semantic read needs every clip's class maps), and warn about clips labelled with other
    settings, which are kept."""
    from collections import Counter

    from openavs_st.data.store import config_hash, is_ok, load_records

    done = [rec for rec in load_records(output).values() if is_ok(rec)]
    with_classes = sum("classes" in rec for rec in done)
    if options["class_names"] is None and with_classes:
        raise CLIError(
            f"output={output} holds class maps ({with_classes} clips labelled with labeler.semantic): label it "
            "with the same labeler.semantic, or into a new store"
        )
    if options["class_names"] is not None and with_classes < len(done):
        raise CLIError(
            f"output={output} holds {len(done) - with_classes} clips with binary masks only: labeler.semantic "
            "needs a store of its own (a new output=)"
        )
    this = (options["labeler"], config_hash(options["config"]))
    other = Counter((rec.get("labeler"), rec.get("config_hash")) for rec in done)
    other.pop(this, None)
    if other:
        settings = ", ".join(f"{count} by {name} ({digest})" for (name, digest), count in other.most_common(3))
        log.warning("output=%s: %d clips were labelled with other settings (%s) and are kept as they are; label "
                    "into a new store to use only this run's settings", output, sum(other.values()), settings)


def main(argv: list[str] | None = None) -> int:
    args, flags = split_flags(argv)
    if "--help" in flags or "-h" in args:
        print(__doc__)
        return 0
    if "--list" in flags:
        try:
            print_components(args)
        except CLIError as exc:
            print(error_line(exc), file=sys.stderr)
            return 2
        return 0
    from openavs_st.data.redact import install_log_scrubbing
    from openavs_st.data.store_lock import StoreLockedError

    install_log_scrubbing()  # no log line shows a secret (httpx logs request URLs with their password)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        cfg = compose("run", args)
        if "--cfg" in flags:
            from omegaconf import OmegaConf

            from openavs_st.data.store import scrub_secrets

            print(OmegaConf.to_yaml(OmegaConf.create(scrub_secrets(resolved(cfg)))))
            return 0
        summary = run(cfg)
    except (CLIError, StoreLockedError) as exc:  # a store another run is writing: refused, nothing touched
        print(error_line(exc), file=sys.stderr)
        return 2
    print_summary(summary)
    run_counts = summary["run"]
    if run_counts["clips_failed"] and not run_counts["clips_ok"]:  # e.g. an endpoint down, a wrong model
        print(f"error: every clip of this run failed ({run_counts['clips_failed']}); the reasons are the manifest's "
              "failed records, and a rerun retries them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
