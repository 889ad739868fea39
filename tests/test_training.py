"""Self-training end to end on the synthetic fixture: every backbone runs, a tiny TPAVI learns,
a killed run resumes exactly, W&B logs offline without leaking secrets, negatives cut false positives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra.utils import get_class

from backbones import BACKBONES
from openavs_st.config import ConfigError, compose
from openavs_st.data.synthetic import write_synthetic
from openavs_st.training import train

REPO = Path(__file__).resolve().parents[1]
FAST = ["trainer=cpu", "logger=none", "export.enabled=false", "trainer.enable_progress_bar=false"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_synthetic(root, ("s4",), splits={"train": 48, "val": 8, "test": 8}, size=64, seed=0)
    return root


def run(tmp: Path, synth: Path, *overrides: str) -> dict[str, float]:
    cfg = compose(
        [
            "data=synthetic",
            f"data.root={synth}",
            f"paths.log_dir={tmp / 'logs'}",
            f"paths.output_dir={tmp / 'run'}",
            *FAST,
            *overrides,
        ]
    )
    (tmp / "run").mkdir(parents=True, exist_ok=True)
    return train(cfg)


@pytest.mark.parametrize("backbone", ["tpavi", "avsegformer", "sama_avs"])
def test_fast_dev_run_every_backbone(backbone: str, synth: Path, tmp_path: Path) -> None:
    metrics = run(tmp_path, synth, f"backbone={backbone}", "backbone.preset=tiny", "trainer.fast_dev_run=true")
    assert "val/miou_avsbench" in metrics and 0.0 <= metrics["val/miou_avsbench"] <= 1.0


def test_cli_fast_dev_run_and_missing_root(synth: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "train.py", "backbone=tpavi", "backbone.preset=tiny", "data=synthetic",
           f"data.root={synth}", "trainer.fast_dev_run=true", "logger=none", f"hydra.run.dir={tmp_path / 'r'}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k != "OPENAVS_DATA_DIR"}
    t0 = time.monotonic()
    bad = subprocess.run([sys.executable, "train.py", "data=avsbench_ms3", f"hydra.run.dir={tmp_path / 'b'}"],
                         cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert bad.returncode != 0 and "data.root" in bad.stderr
    assert time.monotonic() - t0 < 120  # fails before building anything heavy


@pytest.fixture(scope="module")
def plain_run(synth: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    """A short real run of a tiny TPAVI, evaluated on positives and every negative kind."""
    tmp = tmp_path_factory.mktemp("plain")
    return run(tmp, synth, "backbone=tpavi", "backbone.preset=tiny", "trainer.max_epochs=6", "recipe.lr=1e-3",
               "test.robust=true")


def trivial_miou(synth: Path, fill: float) -> float:
    """Test-split mIoU of a predictor that says `fill` (logit) everywhere."""
    from openavs_st.data.avsbench import S4Reader
    from openavs_st.metrics import MaskIoU

    metric = MaskIoU()
    for clip in S4Reader(synth, "test"):
        masks = torch.from_numpy(clip.masks).float()
        metric.update(torch.full_like(masks, fill), masks)
    return float(metric.compute())


def test_tiny_tpavi_learns(plain_run: dict[str, float], synth: Path) -> None:
    miou = plain_run["test/miou_avsbench"]
    all_bg, all_fg = trivial_miou(synth, -10.0), trivial_miou(synth, 10.0)
    assert all_bg < 0.01 and all_fg < 0.15
    assert miou > all_fg + 0.1 and miou > all_bg + 0.1, (miou, all_fg, all_bg)
    assert 0.0 < plain_run["test/f_avsbench"] <= 1.0 and 0.0 < plain_run["test/f_pooled"] <= 1.0


def test_negatives_cut_false_positives(plain_run: dict[str, float], synth: Path, tmp_path: Path) -> None:
    robust = run(tmp_path, synth, "backbone=tpavi", "backbone.preset=tiny", "trainer.max_epochs=15",
                 "recipe.lr=3e-3", "test.robust=true", "robust.negative_ratio=0.3", "robust.lambda_sim=0.5")
    for kind in ("silence", "noise"):
        before, after = plain_run[f"test_{kind}/fpr"], robust[f"test_{kind}/fpr"]
        assert after < 0.5 * before, (kind, before, after)
    # ... by listening, not by going blind: positives are still segmented (no collapse to empty masks).
    assert robust["test/miou_avsbench"] > trivial_miou(synth, 10.0) + 0.1, robust["test/miou_avsbench"]
    for key in ("test_robust/g_miou", "test_robust/g_f", "test_robust/g_fpr"):
        assert key in robust and 0.0 <= robust[key] <= 1.0


def test_training_negatives_are_empty_on_the_supervised_frames_only(synth: Path) -> None:
    """S4 train supervises frame 1: a mixed-in negative clip gets an empty target on that frame only
    (as AVSBench-Robust's empty_GT.png), so it weighs in the loss like a positive clip; off-screen
    audio is another category's clip of the same split."""
    import numpy as np

    from openavs_st.data.avsbench import S4Reader
    from openavs_st.data.transforms import ClipTransform
    from openavs_st.datamodule import ClipDataset

    clips = S4Reader(synth, "train")
    data = ClipDataset(clips, ClipTransform(64), negative_ratio=0.2, negative_kinds=("offscreen", "silence"), seed=3)
    n = len(clips)
    assert len(data) == n + round(n * 0.2 / 0.8)  # negatives are 20% of the items
    categories = clips.categories()
    negatives = [data[i] for i in range(n, len(data))]
    assert {item["negative_kind"] for item in negatives} == {"offscreen", "silence"}
    for index, item in zip(range(n, len(data)), negatives):
        clip_index = data.items[index][0]
        assert item["negative"] == 1 and float(item["masks"].abs().sum()) == 0.0
        assert item["has_label"].tolist() == [True, False, False, False, False]
        assert torch.equal(item["has_label"], data[clip_index]["has_label"])
        if item["negative_kind"] == "offscreen":
            partners = [j for j in range(n) if np.array_equal(clips.log_mel_of(j), item["audio"].numpy())]
            assert partners and all(categories[j] != categories[clip_index] for j in partners)


def test_pseudo_store_needs_eval_source(tmp_path: Path, synth: Path) -> None:
    with pytest.raises(ConfigError, match="data.root"):
        run(tmp_path, synth, "data=pseudo", "data.root=???")


def test_missing_data_root_fails_before_the_model_is_built(tmp_path: Path, synth: Path) -> None:
    """The backbone names a weight file that does not exist: building it would fail with that file's
    error, so getting the data.root message proves the data config is checked first."""
    missing_weights = f"backbone.pretrained_vggish={tmp_path / 'missing_vggish.pth'}"
    with pytest.raises(ConfigError, match=r"data\.root is not set for data\.name=avsbench_ms3"):
        run(tmp_path, synth, "data=avsbench_ms3", "data.root=null", "backbone.preset=tiny", missing_weights)
    with pytest.raises(ConfigError, match=r"data\.eval\.root is not set"):
        run(tmp_path, synth, "data=pseudo", f"data.root={synth}", "data.eval.root=null", "backbone.preset=tiny",
            missing_weights)
    with pytest.raises(ConfigError, match=r"data\.name=avsbench_v3 cannot be loaded .* avsbench_avss_binary"):
        run(tmp_path, synth, "data=avsbench_s4", "data.name=avsbench_v3", f"data.root={synth}", "backbone.preset=tiny")


def test_train_false_tests_and_exports_the_given_checkpoint(synth: Path, tmp_path: Path) -> None:
    common = ["backbone=tpavi", "backbone.preset=tiny", "recipe.lr=1e-2", "trainer.limit_train_batches=2",
              "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0"]
    fitted = run(tmp_path / "a", synth, *common, "trainer.max_epochs=1")
    ckpt = tmp_path / "a" / "run" / "checkpoints" / "epoch_000.ckpt"
    assert ckpt.is_file()
    evaluated = run(tmp_path / "b", synth, *common, "train=false", f"ckpt_path={ckpt}",
                    "export.enabled=true")
    for key in ("test/miou_avsbench", "test/f_avsbench", "test/fpr"):
        assert evaluated[key] == pytest.approx(fitted[key], abs=1e-9), key
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    from safetensors.torch import load_file

    exported = load_file(str(tmp_path / "b" / "run" / "export" / "model.safetensors"))
    assert exported.keys() == state.keys()
    assert all(torch.equal(exported[k], state[k]) for k in state)


TRAIN_CMD = [
    sys.executable, "train.py", "backbone=tpavi", "backbone.preset=tiny", "data=synthetic", "trainer=cpu",
    "logger=csv", "export.enabled=false", "test.run=false", "trainer.max_epochs=3", "trainer.deterministic=true",
    "trainer.limit_train_batches=3", "trainer.limit_val_batches=1", "trainer.enable_progress_bar=false",
]


def final_state(run_dir: Path) -> tuple[int, dict[str, torch.Tensor]]:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return (ckpt["epoch"], ckpt["global_step"]), ckpt["state_dict"]


def test_kill_and_resume_matches_uninterrupted_run(synth: Path, tmp_path: Path) -> None:
    common = [*TRAIN_CMD, f"data.root={synth}", f"paths.log_dir={tmp_path / 'logs'}"]
    subprocess.run([*common, f"hydra.run.dir={tmp_path / 'a'}"], cwd=REPO, check=True, capture_output=True, timeout=900)

    killed_dir = tmp_path / "b"
    proc = subprocess.Popen([*common, f"hydra.run.dir={killed_dir}"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = killed_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 600
    killed_epoch = None
    while time.monotonic() < deadline and proc.poll() is None:
        if last.is_file():
            try:
                killed_epoch = torch.load(last, map_location="cpu", weights_only=True)["epoch"]
            except Exception:  # noqa: BLE001 - still being written
                killed_epoch = None
            if killed_epoch is not None:
                os.kill(proc.pid, signal.SIGKILL)
                break
        time.sleep(0.02)
    proc.wait()
    assert killed_epoch is not None and killed_epoch < 2, "the run was not killed after its first epoch"

    subprocess.run([*common, f"hydra.run.dir={killed_dir}", "ckpt_path=last"], cwd=REPO, check=True,
                   capture_output=True, timeout=900)
    epoch_a, state_a = final_state(tmp_path / "a")
    epoch_b, state_b = final_state(killed_dir)
    # last.ckpt of the final epoch: epoch index 2 of max_epochs=3, 3 batches per epoch
    assert epoch_a == epoch_b == (2, 9)
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


def test_wandb_offline_logs_metrics_and_overlays_without_the_key(synth: Path, tmp_path: Path, monkeypatch) -> None:
    key = "sk-fakekey-0123456789abcdef0123456789abcdef"
    monkeypatch.setenv("WANDB_API_KEY", key)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb_data"))  # artifact staging, also scanned
    cfg_overrides = ["logger=wandb", "backbone=tpavi", "backbone.preset=tiny", "trainer.max_epochs=1",
                     "trainer.limit_train_batches=2", "callbacks.overlays.num_clips=2", "test.run=false",
                     "export.enabled=true", "logger.wandb.log_model=true"]
    overrides = [o for o in FAST if not o.startswith(("logger=", "export."))] + cfg_overrides
    cfg = compose(["data=synthetic", f"data.root={synth}", f"paths.log_dir={tmp_path / 'logs'}",
                   f"paths.output_dir={tmp_path / 'run'}", *overrides])
    (tmp_path / "run").mkdir()
    train(cfg)
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("*.wandb")), "no offline run file"
    images = list(runs[0].rglob("media/images/**/*.png"))
    assert images, "no overlay images logged"
    assert (tmp_path / "run" / "export" / "model.safetensors").is_file()
    run_id = runs[0].name.rsplit("-", 1)[-1]
    # wandb's service process may still be writing the run file when wandb.finish() has returned.
    deadline = time.monotonic() + 60
    while f"model-{run_id}".encode() not in next(runs[0].glob("*.wandb")).read_bytes():
        assert time.monotonic() < deadline, "export not logged as a W&B artifact"
        time.sleep(0.5)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


def test_ddp_on_two_cpu_processes_one_output_dir_and_synced_metrics(synth: Path, tmp_path: Path) -> None:
    """`trainer=ddp` (gloo on the CPU): both ranks write into one run folder, and the test metrics
    logged by the run equal a single-process evaluation of the exported model on the whole split."""
    import json

    from openavs_st.inference import run_inference

    run_dir = tmp_path / "runs" / "ddp"
    cmd = [sys.executable, "train.py", "backbone=tpavi", "backbone.preset=tiny", "data=synthetic",
           f"data.root={synth}", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
           "trainer.sync_batchnorm=false", "logger=csv", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
           "trainer.enable_progress_bar=false", f"paths.log_dir={tmp_path / 'logs'}", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["ddp"]
    assert (run_dir / "config_resolved.yaml").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    logged = json.loads((run_dir / "export" / "metrics.json").read_text())

    out = tmp_path / "single"
    cfg = compose([f"model={run_dir / 'export'}", "data=synthetic", f"data.root={synth}", "split=test",
                   f"out={out}", "overlay=false", "progress=false"], config_name="infer")
    single = run_inference(cfg)["metrics"]
    for key in ("test/miou_avsbench", "test/fpr"):
        assert logged[key] == pytest.approx(single[key], abs=1e-5), key


@pytest.mark.parametrize("preset", sorted(p.stem for p in (REPO / "configs" / "experiment").glob("*.yaml")))
def test_experiment_presets_compose_to_their_backbone_and_data(preset: str, tmp_path: Path) -> None:
    """Each preset names `<backbone>_<data>` (or a prefix before it) and composes to exactly that."""
    cfg = compose([f"experiment={preset}", f"paths.data_dir={tmp_path}", f"data.root={tmp_path}"])
    assert cfg.task_name == preset
    assert BACKBONES.name_of(get_class(cfg.backbone._target_)) in preset
    data_tag = {"avsbench_s4": "_s4", "avsbench_ms3": "_ms3", "avsbench_avss_binary": "_avss_binary",
                "avsbench_avss": "_avss", "pseudo": "_s4"}
    assert data_tag[cfg.data.name] in preset
    if preset.startswith("openavs_st_"):
        assert cfg.data.name == "pseudo" and cfg.data.eval.name == "avsbench_s4"
    if preset.startswith("robust_"):
        assert cfg.robust.negative_ratio > 0 and cfg.robust.lambda_sim > 0 and cfg.test.robust


def test_reported_validation_metrics_are_those_of_the_best_epoch(synth: Path, tmp_path: Path) -> None:
    """metrics.json / the model card pair the tested (best) checkpoint with its own epoch's val/*."""
    import csv
    import json

    overrides = [o for o in FAST if not o.startswith(("logger=", "export."))]
    cfg = compose(["data=synthetic", f"data.root={synth}", f"paths.log_dir={tmp_path / 'logs'}",
                   f"paths.output_dir={tmp_path / 'run'}", *overrides, "logger=csv", "backbone=tpavi",
                   "backbone.preset=tiny", "trainer.max_epochs=4", "recipe.lr=1e-3", "test.run=false"])
    (tmp_path / "run").mkdir()
    metrics = train(cfg)
    with (tmp_path / "run" / "csv" / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/miou_avsbench")]
    assert len(rows) == 4
    values = [float(r["val/miou_avsbench"]) for r in rows]
    best = values.index(max(values))  # the first of equals, as ModelCheckpoint keeps it
    assert metrics["val/best_epoch"] == int(rows[best]["epoch"])
    assert metrics["val/miou_avsbench"] == pytest.approx(values[best])
    assert metrics["val/fpr"] == pytest.approx(float(rows[best]["val/fpr"]))
    exported = json.loads((tmp_path / "run" / "export" / "metrics.json").read_text())
    assert exported["val/best_epoch"] == metrics["val/best_epoch"]
