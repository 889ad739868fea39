"""AVSS semantic training and evaluation: the AVSBench-semantic metrics (hand-computed case and an
independent re-statement of the official evaluation), the 71-class data path, and tiny training runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from openavs_st.config import ConfigError, compose
from openavs_st.metrics_avss import SemanticFScore, SemanticMIoU, frame_class_scores

REPO = Path(__file__).resolve().parents[1]
FAST = ["trainer=cpu", "logger=none", "trainer.enable_progress_bar=false", "data.num_workers=0", "data.input_size=64"]

# Two frames of 2x3 pixels, classes 0 (background), 1, 2.
TARGET = torch.tensor([[[0, 0, 1], [0, 1, 1]], [[2, 2, 0], [0, 0, 0]]])
PRED = torch.tensor([[[0, 1, 1], [0, 0, 1]], [[2, 0, 0], [0, 0, 1]]])


def test_hand_computed_case() -> None:
    # Frame 1: class 0 predicted at 3 px, labelled at 3, both at 2 -> IoU 2/4 = 0.5, P = R = 2/3, F = 2/3.
    #          class 1 likewise: predicted 3, labelled 3, both 2 -> IoU 0.5, F 2/3. Class 2 absent (not counted).
    # Frame 2: class 0 predicted 4, labelled 4, both 3 -> IoU 3/5 = 0.6, P = R = 3/4, F = 0.75.
    #          class 1 predicted 1, labelled 0 -> IoU 0, F 0, but counted (union > 0).
    #          class 2 predicted 1, labelled 2, both 1 -> IoU 1/2, P = 1, R = 1/2, F = 1.3*0.5/(0.3+0.5) = 0.8125.
    # Per class over the frames where it appears:
    #   IoU: c0 (0.5+0.6)/2 = 0.55, c1 (0.5+0)/2 = 0.25, c2 0.5 -> mIoU (3 classes) = 1.3/3
    #   F:   c0 (2/3+0.75)/2 = 17/24, c1 (2/3+0)/2 = 1/3, c2 0.8125 -> F = (17/24 + 1/3 + 13/16)/3 = 89/144
    # With a 4th class never seen it counts 0: mIoU = 1.3/4 = 0.325, F = (89/48)/4 = 89/192.
    iou, f, appears = frame_class_scores(PRED, TARGET, 3)
    assert appears.tolist() == [[True, True, False], [True, True, True]]
    assert iou.flatten().tolist() == pytest.approx([0.5, 0.5, 0.0, 0.6, 0.0, 0.5])
    assert f.flatten().tolist() == pytest.approx([2 / 3, 2 / 3, 0.0, 0.75, 0.0, 0.8125])
    for k, miou, fscore in ((3, 1.3 / 3, 89 / 144), (4, 0.325, 89 / 192)):
        m, s = SemanticMIoU(k), SemanticFScore(k)
        m.update(PRED, TARGET)
        s.update(PRED, TARGET)
        assert float(m.compute()) == pytest.approx(miou)
        assert float(s.compute()) == pytest.approx(fscore)
        assert m.name == "miou_avss" and s.name == "f_avss"
    # Logits give the same as their argmax; split batches the same as one.
    logits = torch.nn.functional.one_hot(PRED, 3).permute(0, 3, 1, 2).float() * 5.0
    m = SemanticMIoU(3)
    m.update(logits[:1], TARGET[:1])
    m.update(logits[1:], TARGET[1:])
    assert float(m.compute()) == pytest.approx(1.3 / 3)


def test_padding_frames_score_as_the_original() -> None:
    # A third, padding frame (all-background label): the original zeroes its logits, so it predicts
    # background everywhere -> class 0 gets one more frame with IoU 1: c0 (0.5+0.6+1)/3 = 0.7,
    # mIoU = (0.7+0.25+0.5)/3 = 1.45/3, whatever the model output there.
    pred = torch.cat([PRED, torch.ones(1, 2, 3, dtype=torch.long)])
    target = torch.cat([TARGET, torch.zeros(1, 2, 3, dtype=torch.long)])
    valid = torch.tensor([True, True, False])
    official, skipped = SemanticMIoU(3), SemanticMIoU(3, score_padding=False)
    for metric in (official, skipped):
        metric.update(pred, target, valid, padded=~valid)
    assert float(official.compute()) == pytest.approx(1.45 / 3)
    assert float(skipped.compute()) == pytest.approx(1.3 / 3)
    with pytest.raises(ValueError, match="outside"):
        SemanticMIoU(3).update(PRED, TARGET + 1)


def official_avss(logits: np.ndarray, target: np.ndarray, nclass: int) -> tuple[float, float]:
    """The official AVSS evaluation re-stated in numpy from its description (AVSBench
    avs_scripts/avss/utils/compute_color_metrics.py + avss/test.py): argmax + 1 and label + 1, the
    intersection keeps the prediction where it equals the label (0 elsewhere); per frame, histograms of
    nclass bins over [1, nclass] (0 falls outside); IoU = inter / (eps + union) in float32; F with
    beta2 = 0.3, NaN -> 0; sums per class over frames and a count of frames with union > 0; finally
    sum / count per class, NaN -> 0, mean over all classes."""
    predict = logits.argmax(1).astype(np.float32) + 1
    label = target.astype(np.float32) + 1
    intersection = predict * (predict == label)
    ious = np.zeros(nclass, np.float32)
    fs = np.zeros(nclass, np.float32)
    count = np.zeros(nclass, np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(label.shape[0]):
            hist = [np.histogram(x, bins=nclass, range=(1, nclass))[0].astype(np.float32)
                    for x in (intersection[i], predict[i], label[i])]
            inter, pred_area, lab_area = hist
            union = pred_area + lab_area - inter
            ious += inter / (np.float32(2.220446049250313e-16) + union)
            count[union > 0] += 1
            p, r = inter / pred_area, inter / lab_area
            f = 1.3 * p * r / (0.3 * p + r)
            fs += np.nan_to_num(f, nan=0.0)
        miou = np.nan_to_num(ious / count, nan=0.0).mean()
        fscore = np.nan_to_num(fs / count, nan=0.0).mean()
    return float(miou), float(fscore)


@pytest.mark.parametrize("nclass", [4, 71])
def test_matches_a_restatement_of_the_official_evaluation(nclass: int) -> None:
    rng = np.random.default_rng(nclass)
    frames, size = 24, 16
    # Labels: background plus a few classes per frame; logits: noise, nudged toward the label.
    target = np.zeros((frames, size, size), np.int64)
    for i in range(frames):
        for c in rng.choice(np.arange(1, min(nclass, 9)), size=2, replace=False):
            y, x = rng.integers(0, size - 6, 2)
            target[i, y : y + rng.integers(3, 7), x : x + rng.integers(3, 7)] = c
    logits = rng.normal(size=(frames, nclass, size, size)).astype(np.float32)
    logits += 3.0 * np.eye(nclass, dtype=np.float32)[target].transpose(0, 3, 1, 2)
    expected = official_avss(logits, target, nclass)
    m, f = SemanticMIoU(nclass), SemanticFScore(nclass)
    for chunk in np.array_split(np.arange(frames), 5):  # batching does not matter
        m.update(torch.from_numpy(logits[chunk]), torch.from_numpy(target[chunk]))
        f.update(torch.from_numpy(logits[chunk]), torch.from_numpy(target[chunk]))
    assert 0.02 < expected[0] < 0.98 and 0.02 < expected[1] < 0.98, expected
    assert float(m.compute()) == pytest.approx(expected[0], abs=1e-5)
    assert float(f.compute()) == pytest.approx(expected[1], abs=1e-5)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from openavs_st.data.synthetic import write_synthetic

    root = tmp_path_factory.mktemp("avss_synth")
    write_synthetic(root, ("avss",), splits={"train": 12, "val": 6, "test": 6}, size=64, seed=0)
    return root


def test_datamodule_gives_class_index_maps(synth: Path) -> None:
    from openavs_st.datamodule import AVSDataModule

    dm = AVSDataModule({"name": "avsbench_avss", "root": str(synth)}, input_size=32, batch_size=12, num_workers=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))  # the 12 train clips: 4 each of v1s, v1m, v2
    assert batch["masks"].dtype == torch.int64 and batch["masks"].shape == (12, 10, 32, 32)
    assert set(batch["masks"].unique().tolist()) <= {0, 1, 2, 3} and batch["masks"].max() > 1
    # v1s/v1m: 5 real frames + 5 padding; train ground truth on frame 1 (v1s), 5 (v1m), 10 (v2) frames.
    assert sorted(batch["frame_valid"].sum(1).tolist()) == [5] * 8 + [10] * 4
    assert sorted(batch["has_label"].sum(1).tolist()) == [1] * 4 + [5] * 4 + [10] * 4
    # Train frames are short-side resized and centre-cropped, as the original loader.
    assert dm.datasets["train"].transform is not dm.datasets["val"].transform
    with pytest.raises(ConfigError, match="binary"):
        AVSDataModule({"name": "avsbench_avss", "root": str(synth)},
                      {"name": "avsbench_avss_binary", "root": str(synth)}, num_workers=0)


def test_fast_dev_run_avsegformer_avss_cli(synth: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "train.py", "experiment=avsegformer_avss", "backbone.preset=tiny", f"data.root={synth}",
           "trainer.fast_dev_run=true", *FAST, f"hydra.run.dir={tmp_path / 'r'}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_short_tpavi_avss_run_metrics_and_export(synth: Path, tmp_path: Path) -> None:
    from openavs_st import load_model
    from openavs_st.training import train

    cfg = compose(["experiment=tpavi_avss", "backbone.preset=tiny", f"data.root={synth}",
                   f"paths.log_dir={tmp_path / 'logs'}", f"paths.output_dir={tmp_path / 'run'}", *FAST,
                   "trainer.max_epochs=2", "trainer.limit_train_batches=2", "recipe.lr=1e-3"])
    assert cfg.callbacks.model_checkpoint.monitor == "val/miou_avss"
    (tmp_path / "run").mkdir()
    metrics = train(cfg)
    for key in ("val/miou_avss", "val/f_avss", "test/miou_avss", "test/f_avss"):
        assert 0.0 <= metrics[key] <= 1.0, (key, metrics)
    assert metrics["val/best_epoch"] in (0.0, 1.0)
    assert "val/miou_avsbench" not in metrics
    net = load_model(tmp_path / "run" / "export")
    out = net(torch.zeros(1, 10, 3, 64, 64), torch.zeros(1, 10, 1, 96, 64))
    assert out.logits.shape == (1, 10, 71, 64, 64)
    # A binary recipe on class-index masks is refused before training.
    bad = compose(["experiment=tpavi_avss", "backbone.preset=tiny", f"data.root={synth}", "data.recipe=ms3",
                   f"paths.log_dir={tmp_path / 'logs'}", f"paths.output_dir={tmp_path / 'bad'}", *FAST])
    (tmp_path / "bad").mkdir()
    with pytest.raises(ConfigError, match="class-index"):
        train(bad)


def test_overlay_panel_paints_classes_in_the_avss_palette() -> None:
    from openavs_st.callbacks import class_overlay_panel
    from openavs_st.data.avsbench import avss_palette

    rgb = np.full((2, 2, 3), 100, np.uint8)
    gt = np.array([[0, 1], [2, 0]])
    pred = np.array([[3, 0], [0, 0]])
    panel = class_overlay_panel(rgb, gt, pred, alpha=1.0)
    assert panel.shape == (2, 6, 3)
    palette = avss_palette()
    assert (panel[:, :2] == 100).all()  # the frame
    assert (panel[0, 3] == palette[1]).all() and (panel[1, 2] == palette[2]).all() and (panel[0, 2] == 100).all()
    assert (panel[0, 4] == palette[3]).all() and (panel[1, 5] == 100).all()
