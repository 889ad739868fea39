"""Semantic pseudo-labels: phrases -> AVSS class ids (the labelers' one matching rule), class-index maps in the
store, a semantic store trained on with data=pseudo_avss, and exported to the AVSS layout with its class ids."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from offline_assets import lite0_checkpoint

from openavs_st.config import ConfigError, compose
from openavs_st.data.avsbench import AVSS_CLASSES, AVSSReader, read_label2idx
from openavs_st.data.clip import ClipError
from openavs_st.data.store import PseudoLabelStore, StoreWriter, load_records
from pseudolabel.semantic import ClassMapper

FAST = ["trainer=cpu", "logger=none", "trainer.enable_progress_bar=false", "data.num_workers=0", "data.input_size=64"]


def test_avss_classes_are_label2idx_order_and_the_shipped_vocabulary() -> None:
    assert len(AVSS_CLASSES) == 71 and AVSS_CLASSES[0] == "background"
    assert list(AVSS_CLASSES[1:]) == sorted(AVSS_CLASSES[1:])  # label2idx.json numbers the classes alphabetically
    assert (AVSS_CLASSES.index("emergency-car"), AVSS_CLASSES.index("helicopter"), AVSS_CLASSES.index("woman")) == (
        22, 35, 70)
    from pseudolabel.alm import load_vocabulary

    shipped = set(load_vocabulary("avsbench"))
    assert set(AVSS_CLASSES[1:]) <= shipped  # the ALM vocabulary lists the same 70 names


@pytest.mark.parametrize(
    ("phrase", "expected"),
    [
        # the 23 S4 categories that have an AVSS class (glockenspiel has none)
        ("baby_laughter", "baby"), ("female_singing", "woman"), ("male_speech", "man"), ("dog_barking", "dog"),
        ("cat_meowing", "cat"), ("lions_roaring", "lion"), ("horse_clip-clop", "horse"), ("coyote_howling", "wolf"),
        ("mynah_bird_singing", "bird"), ("playing_acoustic_guitar", "guitar"), ("playing_tabla", "tabla"),
        ("playing_violin", "violin"), ("playing_piano", "piano"), ("playing_ukulele", "ukulele"),
        ("helicopter", "helicopter"), ("race_car", "car"), ("driving_buses", "bus"), ("ambulance_siren", "emergency-car"),
        ("typing_on_computer_keyboard", "keyboard"), ("chainsawing_trees", "saw"), ("cap_gun_shooting", "gun"),
        ("lawn_mowing", "mower"),
        # free phrases: the longest match, ties to the object named last
        ("a man playing the violin", "violin"), ("police car", "emergency-car"), ("two barking dogs", "dog"),
        ("Vacuum-Cleaner", "vacuum-cleaner"), ("an electric guitar", "guitar"), ("frying-food", "frying-food"),
        # plurals, regular and irregular
        ("horses galloping", "horse"), ("wolves howling", "wolf"), ("chopping wood with axes", "axe"),
        ("geese honking", "goose"), ("two women singing", "woman"), ("noises of passing buses", "bus"),
    ],
)
def test_phrases_map_to_avss_classes(phrase: str, expected: str) -> None:
    assert ClassMapper("avss").class_id(phrase) == AVSS_CLASSES.index(expected)


def test_unknown_phrases_and_class_sets() -> None:
    mapper = ClassMapper("avss")
    assert mapper.class_id("playing_glockenspiel") == 0 and mapper.class_id("unicorn") == 0
    assert mapper.class_id("background") == 0  # never the background class
    with pytest.raises(ValueError, match="nope.json"):
        ClassMapper("nope.json")


def test_a_label2idx_file_is_a_class_set(tmp_path: Path) -> None:
    path = tmp_path / "label2idx.json"
    path.write_text(json.dumps({"background": 0, "red bus": 2, "drum": 1}))
    mapper = ClassMapper(path)
    assert mapper.names == ["background", "drum", "red bus"]
    assert mapper.class_id("a big red bus") == 2 and mapper.class_id("drums") == 1 and mapper.class_id("car") == 0
    path.write_text(json.dumps({"background": 0, "drum": 2}))
    with pytest.raises(ValueError, match="0..1"):
        ClassMapper(path)


def test_the_released_one_based_label2idx_reads_in_its_order(tmp_path: Path) -> None:
    # AVSBench-semantic's released label2idx.json numbers the classes 1..71 ("background": 1, "woman": 71)
    path = tmp_path / "label2idx.json"
    path.write_text(json.dumps({name: index + 1 for index, name in enumerate(AVSS_CLASSES)}))
    assert read_label2idx(path) == list(AVSS_CLASSES)
    assert ClassMapper(path).class_id("a horse neighing") == AVSS_CLASSES.index("horse") == 38 - 1
    path.write_text(json.dumps({"background": 2, "drum": 3}))
    with pytest.raises(ClipError, match=r"label2idx.json: the class indices must be 0..1 or 1..2"):
        read_label2idx(path)
    # not an object {name: index}: the message starts with the file and says what it found
    for content, found in (([1, 2, 3], "found a list"), ('"x"', "found a string"), ("{", "unreadable label2idx"),
                           ({"background": 0, "drum": "one"}, "integer indices, found 'drum': 'one'")):
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        with pytest.raises(ClipError) as info:
            read_label2idx(path)
        assert str(info.value).startswith(f"{path}: ") and found in str(info.value), str(info.value)
    path.write_text("[1, 2, 3]")
    assert str(pytest.raises(ClipError, read_label2idx, path).value) == (
        f"{path}: label2idx must be a JSON object {{name: index}}, found a list"
    )


def test_paint_lets_the_higher_scoring_box_win() -> None:
    masks = np.zeros((3, 4, 4), bool)
    masks[0, :2, :] = True  # class 5, score 0.9
    masks[1, 1:3, :] = True  # class 7, score 0.5: loses row 1 to class 5
    masks[2, 3, :] = True  # an unmatched phrase (class 0): background in the class map
    out = ClassMapper("avss").paint(masks, [5, 7, 0], [0.9, 0.5, 0.99])
    np.testing.assert_array_equal(out[:, 0], [5, 5, 7, 0])
    assert out.dtype == np.uint8


def test_store_keeps_class_maps_and_refuses_mixed_sets(tmp_path: Path) -> None:
    from openavs_st.data.clip import Clip

    rng = np.random.default_rng(0)
    clip = Clip("c", rng.integers(0, 255, (2, 8, 8, 3), dtype=np.uint8), None, None)
    classes = np.zeros((2, 8, 8), np.uint8)
    classes[0, :4] = 22
    classes[1, 4:] = 70
    with StoreWriter(tmp_path / "s", labeler="t", class_names=AVSS_CLASSES) as w:
        w.write(clip, classes > 0, classes=classes)
        with pytest.raises(ClipError, match="class ids must be in 0..70"):
            w.write(Clip("d", clip.frames, None, None), classes > 0, classes=classes + 71)
    assert read_label2idx(tmp_path / "s" / "label2idx.json") == list(AVSS_CLASSES)
    stale = tmp_path / "s" / "classes" / "c" / ".1.png.shard0of1.k1ll3d.tmp"  # what a killed writer leaves
    stale.write_bytes(b"half a png")
    with StoreWriter(tmp_path / "s", labeler="t", class_names=AVSS_CLASSES):
        assert not stale.exists()
    (got,) = PseudoLabelStore(tmp_path / "s", semantic=True)
    np.testing.assert_array_equal(got.masks, classes)
    (binary,) = PseudoLabelStore(tmp_path / "s")
    np.testing.assert_array_equal(binary.masks, (classes > 0).astype(np.uint8))
    with pytest.raises(ValueError, match="differ"):
        StoreWriter(tmp_path / "s", labeler="t", class_names=["background", "x"])
    with StoreWriter(tmp_path / "plain", labeler="t") as w:
        w.write(clip, classes > 0)
    with pytest.raises(ClipError, match="labeler.semantic"):
        PseudoLabelStore(tmp_path / "plain", semantic=True)
    # "auto" reads class maps from a semantic store and masks from a binary one
    assert PseudoLabelStore(tmp_path / "s", semantic="auto").semantic is True
    assert PseudoLabelStore(tmp_path / "plain", semantic="auto").semantic is False
    with pytest.raises(ValueError, match="semantic must be true, false or 'auto'"):
        PseudoLabelStore(tmp_path / "s", semantic="yes")


def test_train_refuses_a_semantic_read_of_a_binary_store_before_building_anything(tmp_path: Path) -> None:
    """``python train.py data=pseudo_avss`` on a store labelled without labeler.semantic: one ``error:`` line
    naming the fix, exit 2 (a configuration error), and no run folder, W&B run or checkpoint is made."""
    import subprocess
    import sys

    from openavs_st.data.clip import Clip

    rng = np.random.default_rng(0)
    with StoreWriter(tmp_path / "plain", labeler="t") as w:
        w.write(Clip("c", rng.integers(0, 255, (2, 8, 8, 3), dtype=np.uint8), None, None), np.ones((2, 8, 8), bool))
    run = tmp_path / "run"
    cmd = [sys.executable, "train.py", "experiment=avsegformer_avss", "backbone.preset=tiny", "data=pseudo_avss",
           f"data.root={tmp_path / 'plain'}", f"hydra.run.dir={run}", f"paths.log_dir={tmp_path / 'logs'}"]
    proc = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "WANDB_MODE": "offline"})
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert "a semantic read needs class maps" in line and "labeler.semantic=avss" in line and "plain" in line
    assert "Traceback" not in proc.stderr
    made = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if "plain" not in p.parts)
    assert not (tmp_path / "logs").exists() and not any("wandb" in m or m.endswith(".ckpt") for m in made), made


@pytest.fixture(scope="module")
def semantic_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The synthetic AVSS train split labelled by ``labeler=clip_label labeler.semantic=<its label2idx.json>``
    with the offline cam grounder + GrabCut (real EfficientNet-Lite0 weights): every shape class is asked for as
    a "dog", so boxes come out, and each box gets the class of the name it was asked for."""
    from openavs_st.data.synthetic import write_synthetic
    from pseudolabel.__main__ import main as label_main

    checkpoint = lite0_checkpoint()
    root = tmp_path_factory.mktemp("semantic")
    synth = root / "synth"
    label2idx = write_synthetic(synth, ("avss",), splits={"train": 3, "val": 2, "test": 2}, size=64, seed=1)["avss"]
    label2idx = label2idx / "label2idx.json"
    out = root / "store"
    args = ["labeler=clip_label", "input=avsbench", "data=avsbench_avss", f"data.root={synth}", "split=train",
            f"output={out}", "labeler/grounder=cam", "labeler/segmenter=grabcut",
            f"labeler.grounder.checkpoint={checkpoint}", "labeler.grounder.min_score=0.0", f"labeler.semantic={label2idx}",
            "+labeler.class_prompts.circle=dog", "+labeler.class_prompts.square=dog",
            "+labeler.class_prompts.triangle=dog", "progress=false"]
    assert label_main(args) == 0
    return {"synth": synth, "store": out, "label2idx": label2idx, "args": args}


def test_a_rerun_cannot_mix_class_map_and_binary_clips_in_a_store(
    semantic_store: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from openavs_st.data.clip import Clip
    from pseudolabel.__main__ import main as label_main

    store, args = semantic_store["store"], semantic_store["args"]
    before = sorted(p.relative_to(store).as_posix() for p in store.rglob("*"))
    assert label_main([a for a in args if not a.startswith("labeler.semantic=")]) == 2
    assert "holds class maps (3 clips labelled with labeler.semantic)" in capsys.readouterr().err
    plain = tmp_path / "plain"
    with StoreWriter(plain, labeler="t") as w:
        w.write(Clip("c", np.zeros((2, 8, 8, 3), np.uint8), None, None), np.ones((2, 8, 8), bool))
    assert label_main([f"output={plain}" if a.startswith("output=") else a for a in args]) == 2
    assert "holds 1 clips with binary masks only" in capsys.readouterr().err
    assert not (plain / "label2idx.json").exists()  # refused before the store was touched
    assert sorted(p.relative_to(store).as_posix() for p in store.rglob("*")) == before


def test_clip_label_writes_the_class_of_each_clips_names(semantic_store: dict[str, Path]) -> None:
    store, synth = semantic_store["store"], semantic_store["synth"]
    assert read_label2idx(store / "label2idx.json") == read_label2idx(semantic_store["label2idx"])
    truth = {c.id: c for c in AVSSReader(synth, "train")}
    labels = PseudoLabelStore(store, semantic=True, compute_log_mel=False)
    binary = {c.id: c for c in PseudoLabelStore(store, compute_log_mel=False)}
    records = load_records(store)
    assert len(labels) == len(truth) == 3
    painted = 0
    for clip in labels:
        present = set(np.unique(truth[clip.id].masks).tolist()) - {0}
        assert set(np.unique(clip.masks).tolist()) <= present | {0}
        # every class-map pixel is foreground of the binary mask; a clip of one class paints all of it
        assert not ((clip.masks > 0) & (binary[clip.id].masks == 0)).any()
        if len(present) == 1:
            np.testing.assert_array_equal(clip.masks > 0, binary[clip.id].masks > 0)
        for frame in records[clip.id]["frames_info"]:
            if frame["valid"]:
                assert set(frame["box_classes"]) <= present and len(frame["box_classes"]) == len(frame["box_labels"])
        painted += int((clip.masks > 0).sum())
    assert painted > 0


def test_semantic_store_trains_the_71_class_head(semantic_store: dict[str, Path], tmp_path: Path) -> None:
    from openavs_st.training import train

    base = ["experiment=tpavi_avss", "backbone.preset=tiny", "data=pseudo_avss", f"data.root={semantic_store['store']}",
            f"data.eval.root={semantic_store['synth']}", f"paths.log_dir={tmp_path / 'logs'}", *FAST]
    cfg = compose([*base, f"paths.output_dir={tmp_path / 'run'}", "trainer.max_epochs=1", "recipe.lr=1e-3"])
    assert cfg.callbacks.model_checkpoint.monitor == "val/miou_avss"
    (tmp_path / "run").mkdir()
    metrics = train(cfg)
    for key in ("val/miou_avss", "test/miou_avss", "test/f_avss"):
        assert 0.0 <= metrics[key] <= 1.0, (key, metrics)
    # a binary recipe on the semantic store, or a semantic read of it with a binary recipe, is refused
    bad = compose([*base, f"paths.output_dir={tmp_path / 'bad'}", "data.recipe=s4"])
    (tmp_path / "bad").mkdir()
    with pytest.raises(ConfigError, match="data.recipe=avss"):
        train(bad)


def test_semantic_store_exports_its_class_ids_to_the_avss_layout(semantic_store: dict[str, Path], tmp_path: Path) -> None:
    from pseudolabel.export_avsbench import ExportError, export_store

    marker = export_store(semantic_store["store"], tmp_path / "avss", "avss")
    assert marker["rules"]["semantic"] is True and marker["rules"]["avss_class"] is None
    exported = AVSSReader(tmp_path / "avss", "train")
    assert exported.class_names() == read_label2idx(semantic_store["label2idx"])
    store = {c.id: c for c in PseudoLabelStore(semantic_store["store"], semantic=True, compute_log_mel=False)}
    for rec, got in zip(exported.records, exported):
        clip = store[rec.id]
        real = int(clip.frame_valid.sum()) if clip.frame_valid is not None else clip.num_frames
        np.testing.assert_array_equal(got.masks[:real], clip.masks[:real])

    # label2idx=: the same classes numbered from 1 (as the released file) are accepted; another order is not
    names = read_label2idx(semantic_store["label2idx"])
    one_based = tmp_path / "one_based.json"
    one_based.write_text(json.dumps({name: index + 1 for index, name in enumerate(names)}))
    export_store(semantic_store["store"], tmp_path / "avss1", "avss", label2idx=one_based)
    assert AVSSReader(tmp_path / "avss1", "train").class_names() == names
    swapped = [names[0], names[2], names[1], *names[3:]]
    one_based.write_text(json.dumps({name: index + 1 for index, name in enumerate(swapped)}))
    with pytest.raises(ExportError, match=rf"names the classes differently .* id 1: {swapped[1]!r} vs {names[1]!r}"):
        export_store(semantic_store["store"], tmp_path / "avss2", "avss", label2idx=one_based)
