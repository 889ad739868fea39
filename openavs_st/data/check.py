"""Check a dataset before a long job: counts per split and every missing or corrupt file.

    python -m openavs_st.data.check data=avsbench_s4 data.root=/data/avsbench_data
    python -m openavs_st.data.check data=avsbench_ms3 data.root=... data.audio=pkl data.allow_pickle=true

Exit status 0 when every file is present and decodes, 1 when something is wrong, 2 on a
configuration error. Frames and masks are fully decoded, wav files are decoded, pickles are only
checked for presence (they are not unpickled here).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig
from tqdm import tqdm

from openavs_st.data.avsbench import SPLITS, AVSBenchReader, open_reader, verify_image
from openavs_st.data.clip import ClipError
from openavs_st.data.configs import ConfigError, compose, data_root
from openavs_st.data.sources import (
    AUDIO_SUFFIXES,
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    reader_options,
)


@dataclass
class SplitReport:
    split: str
    clips: int = 0
    files: int = 0
    problems: list[tuple[Path, str]] = field(default_factory=list)


def verify_file(path: Path) -> str | None:
    """``None`` if the file is present and decodes, else what is wrong with it."""
    if not path.is_file():
        return "missing"
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return verify_image(path)
    if suffix in AUDIO_SUFFIXES or suffix in VIDEO_SUFFIXES:
        from openavs_st.data.audio import load_audio

        try:
            wave, _ = load_audio(path)
        except ClipError as exc:
            return f"corrupt ({exc})"
        return "empty audio" if wave.size == 0 else None
    if path.stat().st_size == 0:
        return "empty file"
    return None


def check_reader(reader: AVSBenchReader, *, progress: bool = True) -> SplitReport:
    report = SplitReport(reader.split, clips=len(reader))
    for rec in tqdm(reader.records, desc=f"{reader.name}/{reader.split}", disable=not progress, file=sys.stderr):
        for path in reader.expected_files(rec):
            report.files += 1
            problem = verify_file(path)
            if problem is not None:
                report.problems.append((path, problem))
    return report


def check_dataset(cfg: DictConfig, splits: tuple[str, ...] = SPLITS, *, progress: bool = True) -> list[SplitReport]:
    """Check every split of the dataset described by ``cfg.data``."""
    root = data_root(cfg)
    kwargs = reader_options(cfg.data)
    return [check_reader(open_reader(cfg.data.name, root, split, **kwargs), progress=progress) for split in splits]


def format_reports(name: str, reports: list[SplitReport]) -> str:
    lines = [f"{name}:"]
    for r in reports:
        lines.append(f"  {r.split:<5} {r.clips:>6} clips  {r.files:>7} files  {len(r.problems)} problem(s)")
    for r in reports:
        for path, problem in r.problems:
            lines.append(f"  {problem}: {path}")
    total = sum(len(r.problems) for r in reports)
    lines.append("  all files present and readable" if total == 0 else f"  {total} problem(s) found")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    splits = SPLITS
    for a in list(args):
        if a.startswith("splits="):
            splits = tuple(s for s in a.split("=", 1)[1].split(",") if s)
            args.remove(a)
    try:
        cfg = compose(args)
        reports = check_dataset(cfg, splits)
    except (ConfigError, ClipError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_reports(cfg.data.name, reports))
    return 1 if any(r.problems for r in reports) else 0


if __name__ == "__main__":
    raise SystemExit(main())
