"""Training and export fail clearly and lose nothing, driving the real command lines on real files in a
temporary folder: configuration errors exit 2 with one line, corrupt checkpoints are named, a resumed CSV
run keeps its history in its own folder, no planted secret reaches any file a run writes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from openavs_st.data.synthetic import write_synthetic

REPO = Path(__file__).resolve().parents[1]
CHEAP = [
    "backbone=tpavi", "backbone.preset=tiny", "data=synthetic", "trainer=cpu", "export.enabled=false",
    "test.run=false", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
    "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false",
]


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_synthetic(root, ("s4",), splits={"train": 8, "val": 4, "test": 4}, size=64, seed=0)
    return root


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], check=False, cwd=cwd, capture_output=True, text=True, timeout=900,
                          env={**os.environ, **(env or {})})


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.mark.parametrize(
    "overrides",
    [
        ("data=synthetic", "backbone.preset=tyni"),  # unknown preset (the class refuses it)
        ("data=synthetic", "backbone=tpavii"),  # unknown group option (Hydra, while composing)
        ("data=synthetic", "trainer.no_such_key=1"),  # unknown key
        ("data=synthetic", "foo=["),  # override that does not parse
        ("data=pseudo",),  # root: ??? left unset
        ("data=avsbench_ms3",),  # no root at all
    ],
)
def test_configuration_errors_exit_2_with_one_line(overrides: tuple[str, ...], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENAVS_DATA_DIR"}
    proc = subprocess.run(
        [sys.executable, "train.py", "logger=none", *overrides, f"hydra.run.dir={tmp_path / 'run'}"],
        check=False, cwd=REPO, capture_output=True, text=True, timeout=900, env=env,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr


def test_typo_preset_names_the_choices(synth: Path, tmp_path: Path) -> None:
    proc = cli("train.py", *CHEAP, f"data.root={synth}", "logger=none", "backbone.preset=tyni",
               f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2 and "tyni" in proc.stderr and "tiny" in proc.stderr, proc.stderr[-3000:]


def test_worker_count_defaults_to_the_machine() -> None:
    from openavs_st.training import worker_count

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert worker_count(None) == cores
    assert worker_count(10_000) == cores
    assert worker_count(0) == 0 and worker_count(1) == 1


@pytest.fixture(scope="module")
def trained_run(synth: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A two-epoch CSV run through `python train.py` (its folder, its stdout+stderr)."""
    tmp = tmp_path_factory.mktemp("trained")
    run_dir = tmp / "logs" / "train" / "runs" / "first"
    proc = cli("train.py", *CHEAP, f"data.root={synth}", "logger=csv", "trainer.max_epochs=2",
               f"paths.log_dir={tmp / 'logs'}", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc.stdout + proc.stderr


def test_lightning_info_lines_are_printed_once(trained_run: tuple[Path, str]) -> None:
    _, output = trained_run
    seeds = [line for line in output.splitlines() if "Seed set to" in line]
    assert len(seeds) == 1, seeds


def test_export_of_last_ckpt_records_its_validation_metrics(trained_run: tuple[Path, str], tmp_path: Path) -> None:
    run_dir, _ = trained_run
    proc = cli("-m", "openavs_st.export", f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}", f"out={tmp_path / 'm'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert "val/miou_avsbench" in metrics and "val/f_avsbench" in metrics, metrics
    assert "None recorded" not in (tmp_path / "m" / "README.md").read_text()


def test_corrupt_checkpoint_is_named_everywhere(synth: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(b"PK\x03\x04" + os.urandom(4000))
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")  # never read: the checkpoint fails first
    runs = {
        "export": cli("-m", "openavs_st.export", f"ckpt={bad}", f"out={tmp_path / 'out'}"),
        "infer": cli("infer.py", f"checkpoint={bad}", f"input={video}", f"hydra.run.dir={tmp_path / 'i'}"),
        "train": cli("train.py", *CHEAP, f"data.root={synth}", "logger=none", f"ckpt_path={bad}",
                     f"hydra.run.dir={tmp_path / 't'}"),
    }
    for name, proc in runs.items():
        assert proc.returncode != 0, name
        text = proc.stdout + proc.stderr
        assert f"{bad}: corrupt or not a checkpoint" in proc.stderr, (name, text[-3000:])
        assert "weights_only" not in text and "Traceback" not in text, (name, text[-3000:])


def test_resumed_csv_run_keeps_every_epoch_and_leaves_no_stray_folder(synth: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    runs = logs / "train" / "runs"
    common = ["train.py", *CHEAP, f"data.root={synth}", "logger=csv", f"paths.log_dir={logs}"]
    first = cli(*common, "trainer.max_epochs=2", f"hydra.run.dir={runs / 'first'}")
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = cli(*common, "trainer.max_epochs=4", "ckpt_path=last", f"hydra.run.dir={runs / 'second'}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert sorted(p.name for p in runs.iterdir()) == ["first"], "the resumed run left a folder of its own"
    with (runs / "first" / "csv" / "metrics.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    val_epochs = sorted({int(float(r["epoch"])) for r in rows if r.get("val/miou_avsbench")})
    assert val_epochs == [0, 1, 2, 3], val_epochs
    assert (runs / "first" / ".hydra" / "resume_second" / "overrides.yaml").is_file()
    assert "Seed set to" in (runs / "first" / "train.log").read_text()


def test_no_planted_secret_reaches_any_file_a_run_writes(synth: Path, tmp_path: Path) -> None:
    env_secret = "sk-envplanted0123456789abcdef"
    override_secret = "sk-overrideplanted0123456789"
    url_password = "urlpassw0rdPlanted"
    run_dir = tmp_path / "run"
    proc = cli(
        "train.py", *CHEAP, f"data.root={synth}", "logger=[csv,wandb]", "trainer.max_epochs=1",
        "export.enabled=true", f"hydra.run.dir={run_dir}", f"paths.log_dir={tmp_path / 'logs'}",
        f"+notes.api_key={override_secret}", f"+notes.base_url=http://user:{url_password}@example.invalid/v1",
        "+notes.token=${oc.env:OPENAI_API_KEY}",
        env={"OPENAI_API_KEY": env_secret, "WANDB_MODE": "offline", "WANDB_DATA_DIR": str(tmp_path / "wandb_data"),
             "WANDB_DIR": str(tmp_path / "wandb_dir")},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((run_dir / "wandb").glob("offline-run-*/*.wandb")), "no W&B offline run"
    assert (run_dir / ".hydra" / "overrides.yaml").is_file()
    written = [p for p in tmp_path.rglob("*") if p.is_file() and synth not in p.parents]
    assert len(written) > 10
    for path in written:
        data = path.read_bytes()
        for secret in (env_secret, override_secret, url_password):
            assert secret.encode() not in data, (path, secret)
    for secret in (env_secret, override_secret, url_password):
        assert secret not in proc.stdout + proc.stderr, secret
