"""The offline quickstart (``python -m openavs_st.quickstart``, ``make quickstart``): its scoring on hand-checked
cases, its argument errors, and (``slow``) one real run whose trained model must beat the baselines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from openavs_st.data.avsbench import open_reader
from openavs_st.data.quickstart import build_quickstart
from openavs_st.quickstart import (
    CENTRE_BOX,
    QuickstartError,
    baselines,
    parse_args,
    score,
    sounding_animals,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    return build_quickstart(tmp_path_factory.mktemp("qs") / "data", train=1, val=1, test=3, negatives=1, videos=0)


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """AVSBench's frame IoU: an empty prediction of an empty frame scores 1."""
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def test_scores_against_hand_computed_ious(tiny) -> None:
    reader = open_reader("avsbench_s4", tiny.positives, "test", audio="none")
    animals = sounding_animals(tiny.seconds_csv)
    assert sorted(animals) == list(reader.ids) and all(len(a) == 5 and all(a) for a in animals.values())
    gts = {cid: np.minimum(reader[i].masks, 1) for i, cid in enumerate(reader.ids)}

    perfect = score(gts, reader, animals)
    assert perfect["miou"] == pytest.approx(1.0) and set(perfect["per_animal"]) == {a for v in animals.values() for a in v}

    base = baselines(reader, animals)
    assert base["background"]["miou"] == pytest.approx(0.0)  # every test frame has a sounding animal
    expected, per_animal = [], {}
    for cid, gt in gts.items():
        _, h, w = gt.shape
        box = np.zeros((h, w), bool)
        box[int(CENTRE_BOX[0] * h) : int(CENTRE_BOX[1] * h), int(CENTRE_BOX[0] * w) : int(CENTRE_BOX[1] * w)] = True
        for t in range(gt.shape[0]):
            expected.append(iou(box, gt[t] > 0))
            per_animal.setdefault(animals[cid][t], []).append(expected[-1])
    assert base["centre_box"]["miou"] == pytest.approx(np.mean(expected), abs=1e-6)
    for animal, values in per_animal.items():
        assert base["centre_box"]["per_animal"][animal] == pytest.approx(np.mean(values), abs=1e-6)

    first = reader.ids[0]
    half = dict(gts)
    half[first] = np.zeros_like(gts[first])  # one clip missed entirely: its 5 frames score 0
    assert score(half, reader, animals)["miou"] == pytest.approx(1.0 - 5 / (5 * len(gts)))
    with pytest.raises(QuickstartError, match=first):
        score({**gts, first: gts[first][:, :10]}, reader, animals)


def test_arguments() -> None:
    options = parse_args(["out=/tmp/x", "train=4", "--epochs=2", "force=true"])
    assert options["out"] == "/tmp/x" and options["train"] == 4 and options["epochs"] == 2 and options["force"]
    with pytest.raises(QuickstartError, match="unknown argument 'trian=4'"):
        parse_args(["trian=4"])


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path: Path) -> None:
    """The README's first command on its default sizes: the pseudo-labels beat the centre box, the model
    trained on them (no ground truth) beats the all-background and centre-box baselines on held-out scenes
    whose recordings it never heard; every output the report names exists."""
    out = tmp_path / "qs"
    proc = subprocess.run([sys.executable, "-m", "openavs_st.quickstart", f"out={out}"], cwd=REPO,
                          capture_output=True, text=True, timeout=3600, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last == f"report: {out / 'report.json'}"
    report = json.loads((out / "report.json").read_text())
    for key in ("store_miou", "model_miou", "model_f", "baseline_background_miou", "baseline_centre_box_miou",
                "negatives_fpr", "wall_s", "per_animal"):
        assert report[key] is not None, key
    assert report["store_miou"] > report["baseline_centre_box_miou"], report
    assert report["model_miou"] > report["baseline_centre_box_miou"], report
    assert report["model_miou"] > report["baseline_background_miou"], report
    assert 0.0 <= report["negatives_fpr"] <= 1.0 and 0.0 <= report["model_f"] <= 1.0
    assert len(report["per_animal"]) >= 8
    assert report["translation_accuracy"] > 0.5  # measured 0.79: the phrase names the animal heard
    for path in report["paths"].values():
        assert Path(path).exists(), path
    assert (out / "infer_video" / "qs_test_000.mp4").is_file()
