"""BEATs (``pseudolabel.alm.beats``): the full model's key layout against the original definition's key list
(``tests/data/beats_keys.json``), strict loading, the original checkpoint format through ``from_pretrained``
(``weights_only=True``, label_dict ids -> AudioSet names, Silence dropped), the Kaldi fbank front end against
hand-computed values, and the registered ``beats`` tagger on a real wave."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest

from pseudolabel.alm import create_alm, split_seconds
from pseudolabel.alm.beats import (
    FULL_CONFIG,
    TINY_CONFIG,
    BEATs,
    beats_config,
    kaldi_fbank,
)
from pseudolabel.components import ComponentLoadError, load_all

torch = pytest.importorskip("torch")

KEYS = json.loads((Path(__file__).parent / "data" / "beats_keys.json").read_text())
SR = 16000


def tiny(seed: int = 0, **overrides) -> BEATs:
    torch.manual_seed(seed)
    return BEATs({**TINY_CONFIG, **overrides}).eval()


def test_full_model_has_exactly_the_original_keys_and_shapes() -> None:
    assert beats_config(KEYS["cfg"]) == FULL_CONFIG  # the checkpoint's cfg is our full config
    with torch.device("meta"):
        model = BEATs(KEYS["cfg"])
    ours = {key: list(value.shape) for key, value in model.state_dict().items()}
    assert ours == KEYS["keys"]
    assert len(ours) == 252
    # one relative position table, shared by the 12 layers as in the original
    tables = {id(layer.self_attn.relative_attention_bias) for layer in model.encoder.layers}
    assert len(tables) == 1
    assert sum(p.numel() for p in model.parameters()) == 90_717_055


def test_tiny_state_dict_loads_strictly_and_a_renamed_or_reshaped_key_is_named(tmp_path: Path) -> None:
    source = tiny(0)
    state = source.state_dict()
    path = tmp_path / "ckpt.pt"
    torch.save({"cfg": dict(source.cfg), "model": state}, path)
    target = BEATs.from_pretrained(path)
    fbank = kaldi_fbank([np.random.default_rng(0).uniform(-0.5, 0.5, SR)])
    with torch.inference_mode():
        torch.testing.assert_close(target(fbank), source(fbank))

    renamed = dict(state)
    renamed["encoder.layers.1.fc1.weights"] = renamed.pop("encoder.layers.1.fc1.weight")
    torch.save({"cfg": dict(source.cfg), "model": renamed}, path)
    with pytest.raises(KeyError, match=r"ckpt.pt: unexpected key\(s\) encoder.layers.1.fc1.weights"):
        BEATs.from_pretrained(path)
    del renamed["encoder.layers.1.fc1.weights"]
    torch.save({"cfg": dict(source.cfg), "model": renamed}, path)
    with pytest.raises(KeyError, match=r"ckpt.pt: missing key\(s\) encoder.layers.1.fc1.weight"):
        BEATs.from_pretrained(path)
    reshaped = dict(state)
    reshaped["predictor.weight"] = torch.zeros(10, 32)
    torch.save({"cfg": dict(source.cfg), "model": reshaped}, path)
    with pytest.raises(ValueError, match=r"shape mismatch for 'predictor.weight': checkpoint \(10, 32\), model \(527, 32\)"):
        BEATs.from_pretrained(path)


def test_kaldi_fbank_matches_hand_computed_values() -> None:
    # A constant wave is all DC: removed per frame, every mel energy is at the floor log(float32 eps).
    fbank = kaldi_fbank([np.full(SR, 0.3, dtype=np.float32)])
    assert fbank.shape == (1, 1 + (SR - 400) // 160, 128)  # 98 frames of 25 ms every 10 ms
    floor = (math.log(np.finfo(np.float32).eps) - 15.41663) / (2 * 6.55582)
    torch.testing.assert_close(fbank, torch.full_like(fbank, floor))
    # A 1 kHz tone peaks in the mel bin whose Kaldi centre (1127 ln(1 + f / 700), 129 steps from 20 Hz to
    # 8 kHz) is nearest 1 kHz.
    mel = lambda f: 1127 * math.log(1 + f / 700)  # noqa: E731
    step = (mel(8000) - mel(20)) / 129
    centres = [700 * (math.exp((mel(20) + (k + 1) * step) / 1127) - 1) for k in range(128)]
    expected = int(np.argmin([abs(c - 1000) for c in centres]))
    tone = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(SR) / SR)
    assert kaldi_fbank([tone])[0].mean(0).argmax().item() == expected
    with pytest.raises(ValueError, match="at least 2800"):
        kaldi_fbank([np.zeros(1000)])


def write_checkpoint(path: Path, model: BEATs, label_dict: dict[int, str]) -> None:
    cfg = {key: model.cfg[key] for key in TINY_CONFIG}
    torch.save({"cfg": cfg, "model": model.state_dict(), "label_dict": label_dict}, path)


def test_checkpoint_file_loads_with_its_labels_and_tags_a_real_wave(tmp_path: Path) -> None:
    from pseudolabel.alm.beats import audioset_names

    names = audioset_names()
    ids = list(names)[::-1]  # BEATs' output order is its own: here the shipped order reversed
    model = tiny(0)
    silence = ids.index("/m/028v0c")
    with torch.no_grad():  # make Silence, then Dog, the strongest outputs
        model.predictor.bias[silence] = 8.0
        model.predictor.bias[ids.index("/m/0bt9lr")] = 6.0
    path = tmp_path / "BEATs_tiny.pt"
    write_checkpoint(path, model, dict(enumerate(ids)))

    loaded = BEATs.from_pretrained(path)
    assert loaded.label_ids == ids and loaded.labels[silence] == "Silence" and loaded.labels[0] == names[ids[0]]
    t = np.arange(3 * SR) / SR
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) * (t < 2)).astype(np.float32)  # 2 s of tone, 1 s of silence
    seconds = split_seconds(wave, SR, 3)
    np.testing.assert_allclose(loaded.tag_waves(seconds), model.tag_waves(seconds), atol=1e-6)

    tagger = create_alm("beats", model=str(path), top_k=3, separator="; ")
    scores = tagger.scores(seconds, SR)  # per second: [T, 527]
    assert scores.shape == (3, 527) and ((scores >= 0) & (scores <= 1)).all()
    clip = tagger.scores([wave], SR)  # per clip: the whole wave at once
    assert clip.shape == (1, 527)
    texts = tagger.describe(seconds, SR)
    assert len(texts) == 3 and all(text[0].split("; ")[0] == "Dog" for text in texts)  # Silence dropped
    assert all(len(text[0].split("; ")) == 3 for text in texts)
    tags = tagger.tag(wave, SR, num_frames=3)  # (label, score) per clip and per second
    assert [label for label, _ in tags["clip"]] == tagger.top_labels(clip[0])
    assert tags["clip"][0][1] == pytest.approx(float(clip[0][ids.index("/m/0bt9lr")]))
    assert [[score for _, score in second] for second in tags["seconds"]] == [
        pytest.approx(sorted(np.delete(row, silence), reverse=True)[:3]) for row in scores
    ]
    kept = create_alm("beats", model=str(path), top_k=2, exclude=[])
    assert kept.describe(seconds[:1], SR)[0][0].startswith("Silence, Dog")
    # 48 kHz input is resampled to 16 kHz
    assert tagger.scores([np.repeat(seconds[0], 3)], 48000).shape == (1, 527)


def test_bad_checkpoints_are_refused_with_the_file_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        BEATs.from_pretrained(tmp_path / "nope.pt")
    pickled = tmp_path / "namespace.pt"
    torch.save({"cfg": argparse.Namespace(encoder_layers=2), "model": {}}, pickled)
    with pytest.raises(ValueError, match=r"BEATs checkpoint .*namespace.pt cannot be read as a weights-only torch "
                                         r"checkpoint \(.*argparse.Namespace") as unsafe:
        BEATs.from_pretrained(pickled)
    assert "add_safe_globals" not in str(unsafe.value) and "set to `False" not in str(unsafe.value)
    bare = tmp_path / "bare.pt"
    state = tiny().state_dict()
    torch.save(state, bare)
    with pytest.raises(ValueError) as info:
        BEATs.from_pretrained(bare)
    # a bare state dict is named as such, with at most 5 of its keys
    message = str(info.value)
    assert message.startswith(f"{bare}: a bare state dict (") and "{'cfg', 'model', 'label_dict'}" in message
    assert sum(repr(key) in message for key in state) == 5 and f"... ({len(state)} keys)" in message
    torch.save({"weights": state, "epoch": 3}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other.pt: a BEATs checkpoint is a dict with 'cfg', 'model' .*found "
                                         r"\['epoch', 'weights'\]"):
        BEATs.from_pretrained(tmp_path / "other.pt")
    # through the component: the hint names the local checkpoint, not a Hub id (BEATs reads local files only)
    tagger = create_alm("beats", model=str(bare))
    tagger.config_key = "labeler.alm.beats"
    with pytest.raises(ComponentLoadError) as info:
        load_all([tagger])
    message = str(info.value)
    assert "a bare state dict" in message and "Hub" not in message
    assert message.endswith("set labeler.alm.beats.model= to the downloaded BEATs checkpoint (a .pt file, or a folder holding one)")
    short = tmp_path / "short.pt"
    write_checkpoint(short, tiny(), {0: "/m/09x0r"})
    with pytest.raises(ValueError, match=r"short.pt: label_dict has no id for outputs \[1, 2"):
        BEATs.from_pretrained(short)
    with pytest.raises(ValueError, match="encoder_layers must be a positive integer"):
        BEATs({**TINY_CONFIG, "encoder_layers": 0})


def test_tiny_random_tagger_builds_offline() -> None:
    tagger = create_alm("beats", config={}, top_k=5, separator="; ")
    assert tagger.provenance()["model"] == "random-init" and len(tagger.labels) == 527
    texts = tagger.describe(split_seconds(np.random.default_rng(0).uniform(-0.1, 0.1, 2 * SR), SR, 2), SR)
    assert len(texts) == 2 and all(len(t[0].split("; ")) == 5 and "Silence" not in t[0] for t in texts)
