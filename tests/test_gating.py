"""Silent-second gating (``pseudolabel.gating``): RMS levels against hand-computed dBFS values, the energy
gate, the CLAP similarity gate against the similarity computed with transformers directly (tiny random
CLAP), the decision record and mask gating, and errors on bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pseudolabel.components import GATE, ROLES, build
from pseudolabel.gating import FLOOR_DB, EnergyClapGate, GateDecision, rms_dbfs

SR = 16000


def four_seconds() -> np.ndarray:
    """A 0.5-amplitude 440 Hz sine (440 whole periods), a 0.01 offset, +-0.001 alternating, digital silence."""
    t = np.arange(SR) / SR
    return np.concatenate([
        0.5 * np.sin(2 * np.pi * 440 * t),
        np.full(SR, 0.01),
        np.where(np.arange(SR) % 2 == 0, 0.001, -0.001),
        np.zeros(SR),
    ]).astype(np.float32)


def test_rms_dbfs_matches_hand_computed_levels() -> None:
    levels = rms_dbfs(four_seconds().reshape(4, SR))
    # 0.5 / sqrt(2) RMS -> 20 log10(0.35355) = -9.031 dB; 0.01 -> -40 dB; 0.001 -> -60 dB; zero -> the floor
    expected = [20 * math.log10(0.5 / math.sqrt(2)), -40.0, -60.0, FLOOR_DB]
    np.testing.assert_allclose(levels, expected, atol=1e-3)
    assert levels[0] == pytest.approx(-9.0309, abs=1e-3)


def test_energy_gate_silences_quiet_seconds_for_every_category() -> None:
    gate = EnergyClapGate(silence_db=-50, min_similarity=None)
    assert gate.lazy is None and not gate.uses_similarity  # energy only: no CLAP
    # 4.5 s of audio, 6 frames: second 4 is half silence, second 5 lies past the end (zero-padded).
    wave = np.concatenate([four_seconds(), 0.2 * np.ones(SR // 2, dtype=np.float32)])
    decision = gate.decide(wave, SR, 6, ["dog", "guitar"])
    assert decision.sounding.shape == (6, 2) and decision.energy_db.shape == (6,)
    assert decision.sounding[:, 0].tolist() == [True, True, False, False, True, False]
    assert (decision.sounding[:, 0] == decision.sounding[:, 1]).all()
    assert decision.energy_db[4] == pytest.approx(20 * math.log10(0.2 * math.sqrt(0.5)), abs=1e-3)
    assert decision.energy_db[5] == FLOOR_DB
    assert np.isnan(decision.similarity).all()
    assert decision.sounding_categories(1) == ["dog", "guitar"] and decision.sounding_categories(2) == []

    # The threshold moves with silence_db: at -70 dB the -60 dB second sounds.
    assert EnergyClapGate(silence_db=-70, min_similarity=None).decide(wave, SR, 6, ["dog"]).sounding[2, 0]


def test_apply_empties_masks_where_the_category_is_silent_and_to_dict_is_json() -> None:
    sounding = np.array([[True, False], [True, True], [False, False]])
    decision = GateDecision(["dog", "cat"], sounding, np.array([-10.0, -20.0, FLOOR_DB]),
                            np.array([[0.3, -0.1], [0.2, 0.25], [np.nan, np.nan]]), settings={"silence_db": -50.0})
    masks = {"dog": np.ones((3, 4, 5), dtype=bool), "cat": np.full((3, 4, 5), 255, dtype=np.uint8)}
    gated = decision.apply(masks)
    assert [bool(m.any()) for m in gated["dog"]] == [True, True, False]
    assert [int(m.max()) for m in gated["cat"]] == [0, 255, 0] and gated["cat"].dtype == np.uint8
    assert masks["dog"].all()  # the inputs are untouched
    record = json.loads(json.dumps(decision.to_dict()))
    assert record["categories"] == ["dog", "cat"] and record["silence_db"] == -50.0
    assert record["sounding"] == sounding.tolist()
    assert record["similarity"][2] == [None, None] and record["similarity"][0] == [0.3, -0.1]
    assert record["energy_db"] == [-10.0, -20.0, FLOOR_DB]
    with pytest.raises(KeyError, match="'bird' was not gated"):
        decision.apply({"bird": np.ones((3, 4, 5))})
    with pytest.raises(ValueError, match=r"expected \[T=3, H, W\]"):
        decision.apply({"dog": np.ones((2, 4, 5))})


def test_clap_similarity_matches_transformers_and_thresholds_apply() -> None:
    import torch

    from openavs_st.data.audio import resample

    categories = ["dog", "guitar", "man"]
    gate = EnergyClapGate(config={}, silence_db=-50, min_similarity=0.0, template="the sound of a {}")
    wave = four_seconds()
    decision = gate.decide(wave, SR, 4, categories)

    # The cosine similarity computed with transformers' ClapModel directly, for the two loud seconds.
    processor, model = gate.lazy.processor, gate.lazy.model
    rate = processor.feature_extractor.sampling_rate
    seconds = [resample(wave[t * SR : (t + 1) * SR], SR, rate) for t in (0, 1)]
    with torch.inference_mode():
        audio = model.get_audio_features(**processor.feature_extractor(seconds, sampling_rate=rate,
                                                                        return_tensors="pt")).pooler_output
        tokens = processor.tokenizer([f"the sound of a {c}" for c in categories], padding=True, return_tensors="pt")
        text = model.get_text_features(**tokens).pooler_output
    expected = torch.nn.functional.normalize(audio, dim=-1) @ torch.nn.functional.normalize(text, dim=-1).T
    np.testing.assert_allclose(decision.similarity[:2], expected.numpy(), atol=1e-5)
    assert np.isnan(decision.similarity[2:]).all()  # below the energy gate: not computed
    np.testing.assert_array_equal(decision.sounding[:2], decision.similarity[:2] >= 0.0)
    assert not decision.sounding[2:].any()

    # min_similarity above every score silences everything; max_gap=0 keeps each loud second's best category.
    top = float(np.nanmax(decision.similarity))
    strict = EnergyClapGate(config={}, min_similarity=min(1.0, top + 1e-3), template="the sound of a {}")
    assert not strict.decide(wave, SR, 4, categories).sounding.any()
    best = EnergyClapGate(config={}, min_similarity=None, max_gap=0.0, template="the sound of a {}")
    picked = best.decide(wave, SR, 4, categories)
    assert picked.sounding[:2].sum(axis=1).tolist() == [1, 1]
    assert picked.sounding[:2].argmax(axis=1).tolist() == np.argmax(decision.similarity[:2], axis=1).tolist()
    assert gate.provenance()["model"] == "random-init" and gate.provenance()["template"] == "the sound of a {}"


def test_gate_role_builds_from_config_and_refuses_bad_input() -> None:
    assert "gate" in ROLES and "energy_clap" in GATE.names()
    gate = build("gate", {"name": "energy_clap", "silence_db": -40, "min_similarity": None})
    assert isinstance(gate, EnergyClapGate) and gate.silence_db == -40.0
    with pytest.raises(ValueError, match="silence_db"):
        EnergyClapGate(silence_db="loud")
    with pytest.raises(ValueError, match=r"silence_db is an RMS level in dBFS, at most 0 .*got 20: .*every second"):
        build("gate", {"name": "energy_clap", "silence_db": 20})
    assert EnergyClapGate(silence_db=0, min_similarity=None).silence_db == 0.0
    with pytest.raises(ValueError, match="min_similarity"):
        EnergyClapGate(min_similarity=2.0)
    with pytest.raises(ValueError, match="exactly one"):
        EnergyClapGate(template="no slot")
    gate = EnergyClapGate(min_similarity=None)
    with pytest.raises(TypeError, match="single string"):
        gate.decide(np.zeros(SR, np.float32), SR, 1, "dog")
    with pytest.raises(ValueError, match="repeat"):
        gate.decide(np.zeros(SR, np.float32), SR, 1, ["dog", "dog"])
    with pytest.raises(ValueError, match="mono"):
        gate.decide(np.zeros((SR, 2), np.float32), SR, 1, ["dog"])
    with pytest.raises(ValueError, match="num_frames"):
        gate.decide(np.zeros(SR, np.float32), SR, 0, ["dog"])
    assert gate.decide(np.zeros(SR, np.float32), SR, 2, []).sounding.shape == (2, 0)
