"""Silent-second gating through the real labeler pipeline (``labeler/gate=energy_clap``): a clip with a tone
in seconds 1-3 and silence in seconds 4-5 gets empty masks in 4-5 and keeps, in 1-3, the masks the same
labeler gives without the gate. Tiny random GroundingDINO, SAM 2, CLAP and AST saved to local directories
(the real ``from_pretrained`` path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tiny_vision import tiny_grounding_dino, tiny_sam2

from openavs_st.data.sources import AVSBenchSource
from openavs_st.data.store import PseudoLabelStore, StoreWriter, load_records
from openavs_st.data.synthetic import write_synthetic
from pseudolabel.__main__ import main as label_main
from pseudolabel.gating import FLOOR_DB
from pseudolabel.openavs import OpenAVSLabeler
from pseudolabel.runner import run_labeler

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SR = 16000
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "a", "dog", "cat", "man", "circle", "square"]
TAGS = ["dog", "cat", "man"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from pseudolabel import alm
    from pseudolabel.gating import EnergyClapGate

    root = tmp_path_factory.mktemp("gate_models")
    torch.manual_seed(0)
    dino_config, dino_processor = tiny_grounding_dino(WORDS, num_queries=6, shortest_edge=96, longest_edge=128)
    transformers.GroundingDinoForObjectDetection(dino_config).save_pretrained(root / "dino")
    dino_processor.save_pretrained(root / "dino")
    sam2_config, sam2_processor = tiny_sam2(128)
    transformers.Sam2Model(sam2_config).save_pretrained(root / "sam2")
    sam2_processor.save_pretrained(root / "sam2")
    clap = EnergyClapGate(config={}).lazy
    clap.processor.save_pretrained(root / "clap")
    clap.model.save_pretrained(root / "clap")
    tagger = alm.create_alm("ast", config={"id2label": dict(enumerate(TAGS))}, top_k=1)
    tagger.lazy.processor.save_pretrained(root / "ast")
    tagger.lazy.model.save_pretrained(root / "ast")
    return {"dino": root / "dino", "sam2": root / "sam2", "clap": root / "clap", "ast": root / "ast"}


def clip_with_quiet_end(tmp_path: Path, quiet: float) -> Path:
    """A synthetic AVSBench S4 clip ('circle') whose audio is a 0.3-amplitude 440 Hz tone in seconds 1-3 and
    ``quiet``-amplitude noise (0: digital silence) in seconds 4-5."""
    root = write_synthetic(tmp_path / "data", ("s4",), splits={"test": 1}, size=40, seed=3)["s4"]
    (wav,) = root.rglob("*.wav")
    t = np.arange(3 * SR) / SR
    noise = np.random.default_rng(0).uniform(-1.0, 1.0, 2 * SR)
    sf.write(wav, np.concatenate([0.3 * np.sin(2 * np.pi * 440 * t), quiet * noise]), SR, subtype="PCM_16")
    return root


def test_cli_clip_label_gate_empties_the_silent_seconds_and_keeps_the_loud_ones(models, tmp_path: Path) -> None:
    root = clip_with_quiet_end(tmp_path, 0.0)
    common = ["labeler=clip_label", "input=avsbench", "data=avsbench_s4", f"data.root={root}", "split=test",
              f"labeler.grounder.model={models['dino']}", "labeler.grounder.box_threshold=0.0",
              "labeler.grounder.text_threshold=0.0", f"labeler.segmenter.model={models['sam2']}", "progress=false"]
    assert label_main([*common, f"output={tmp_path / 'plain'}"]) == 0
    gate = ["labeler/gate=energy_clap", f"labeler.gate.model={models['clap']}", "labeler.gate.silence_db=-50",
            "labeler.gate.min_similarity=-1.0"]
    assert label_main([*common, *gate, f"output={tmp_path / 'gated'}"]) == 0

    (plain,), (gated,) = PseudoLabelStore(tmp_path / "plain"), PseudoLabelStore(tmp_path / "gated")
    assert plain.masks[3:].any(axis=(1, 2)).all()  # without the gate the silent seconds have masks
    assert not gated.masks[3:].any()  # seconds 4-5: empty
    np.testing.assert_array_equal(gated.masks[:3], plain.masks[:3])  # seconds 1-3 keep their masks
    assert gated.masks[:3].any()

    rec = load_records(tmp_path / "gated")[gated.id]
    gate_rec = rec["gate"]
    assert gate_rec["categories"] == ["circle"] and gate_rec["silence_db"] == -50.0
    assert gate_rec["sounding"] == [[True]] * 3 + [[False]] * 2
    assert gate_rec["energy_db"][:3] == pytest.approx([20 * np.log10(0.3 / np.sqrt(2))] * 3, abs=0.01)
    assert gate_rec["energy_db"][3:] == [FLOOR_DB, FLOOR_DB]
    assert all(isinstance(row[0], float) for row in gate_rec["similarity"][:3])  # CLAP scored the loud seconds
    assert gate_rec["similarity"][3:] == [[None], [None]]
    info = rec["frames_info"]
    assert [f["phrases"] for f in info] == [["circle"]] * 3 + [[]] * 2
    assert [f["gated_phrases"] for f in info] == [[]] * 3 + [["circle"]] * 2
    assert rec["mask_area"][3:] == [0.0, 0.0] and "gate_s" in rec["timings"]
    assert "gate" not in load_records(tmp_path / "plain")[plain.id]


def test_openavs_mode_gate_drops_phrases_of_quiet_seconds_before_grounding(models, tmp_path: Path) -> None:
    # -70 dBFS noise is not digital silence: the tagger describes it and the passthrough makes it a phrase.
    root = clip_with_quiet_end(tmp_path, 10 ** (-70 / 20) * np.sqrt(3))
    cfg = {
        "name": "gated",
        "mode": "openavs",
        "alm": {"tags": {"name": "ast", "model": str(models["ast"]), "top_k": 1}},
        "llm": {"name": "none"},
        "grounder": {"name": "grounding_dino", "model": str(models["dino"]), "box_threshold": 0.0,
                     "text_threshold": 0.0},
        "segmenter": {"name": "sam2", "model": str(models["sam2"])},
    }
    source = AVSBenchSource("avsbench_s4", root, "test")
    plain = run_labeler(OpenAVSLabeler.from_config(cfg), source, StoreWriter(tmp_path / "plain", labeler="x"),
                        progress=False)
    labeler = OpenAVSLabeler.from_config({**cfg, "gate": {"name": "energy_clap", "min_similarity": None}})
    assert labeler.gate.silence_db == -50.0 and labeler.provenance()["gate"]["min_similarity"] is None
    gated = run_labeler(labeler, source, StoreWriter(tmp_path / "gated", labeler="x"), progress=False)
    assert plain.clips_ok == gated.clips_ok == 1

    (plain_clip,), (gated_clip,) = PseudoLabelStore(tmp_path / "plain"), PseudoLabelStore(tmp_path / "gated")
    plain_info = load_records(tmp_path / "plain")[plain_clip.id]["frames_info"]
    rec = load_records(tmp_path / "gated")[gated_clip.id]
    assert all(f["phrases"] for f in plain_info) and plain_clip.masks[3:].any()
    assert rec["gate"]["energy_db"][3:] == pytest.approx([-70.0, -70.0], abs=0.5)
    assert [f["phrases"] for f in rec["frames_info"][3:]] == [[], []]
    assert [f["gated_phrases"] for f in rec["frames_info"][3:]] == [plain_info[3]["phrases"], plain_info[4]["phrases"]]
    assert not gated_clip.masks[3:].any()
    np.testing.assert_array_equal(gated_clip.masks[:3], plain_clip.masks[:3])
