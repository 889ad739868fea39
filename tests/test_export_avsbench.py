"""pseudolabel.export_avsbench: a store written in the official AVSBench layouts, read back by our readers and by
a re-statement of the original S4/MS3 loaders (github.com/OpenNLPLab/AVSBench avs_scripts/avs_s4/dataloader.py,
avs_scripts/avs_ms3/dataloader.py)."""

from __future__ import annotations

import csv
import json
import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from openavs_st.data.audio import log_mel_examples
from openavs_st.data.avsbench import AVSSReader, MS3Reader, S4Reader, read_binary_mask
from openavs_st.data.clip import Clip
from openavs_st.data.store import PseudoLabelStore, StoreWriter
from openavs_st.data.synthetic import write_synthetic
from pseudolabel.export_avsbench import MARKER, ExportError, export_store, main

SECRET = "sk-exportsecret0123456789abcdef"


def _masks(clip: Clip, seed: int) -> np.ndarray:
    """A pseudo-label for every frame: the ground truth where there is one, else a random box."""
    rng = np.random.default_rng(seed)
    masks = np.zeros(clip.frames.shape[:3], dtype=bool)
    for t in range(clip.num_frames):
        if clip.has_label is not None and clip.has_label[t] and clip.masks[t].any():
            masks[t] = clip.masks[t] > 0
        else:
            y, x = rng.integers(0, clip.size[0] // 2, size=2)
            masks[t, y : y + 8, x : x + 8] = True
    return masks


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Synthetic S4/MS3/AVSS data and a store built from each (S4 with a 10-frame, a 3-frame and a
    category-less clip; AVSS stored as jpg with its padding frames marked invalid)."""
    root = tmp_path_factory.mktemp("export")
    synth = root / "synth"
    write_synthetic(synth, splits={"train": 2, "val": 1, "test": 1}, size=32, seed=3)
    stores = {}
    s4 = [c for split in ("train", "test") for c in S4Reader(synth, split)]
    with StoreWriter(root / "store_s4", labeler="test_lite", config={"llm": {"api_key": SECRET}}) as w:
        for i, clip in enumerate(s4):
            w.write(clip, _masks(clip, i))
        long = Clip("long", np.concatenate([s4[0].frames, s4[1].frames]),
                    np.concatenate([s4[0].waveform, s4[1].waveform]), 16000, meta={})  # no category
        w.write(long, np.concatenate([_masks(s4[0], 10), _masks(s4[1], 11)]))
        w.write(Clip("short", s4[0].frames[:3], s4[0].waveform[: 3 * 16000], 16000, meta={"category": "dog"}),
                _masks(s4[0], 12)[:3])
        w.write_text("pseudolabel_config.yaml", f"labeler:\n  name: test_lite\n  llm:\n    api_key: {SECRET}\n")
    stores["s4"] = root / "store_s4"
    with StoreWriter(root / "store_ms3", labeler="test_ms3") as w:
        for i, clip in enumerate(MS3Reader(synth, "train")):
            w.write(clip, _masks(clip, 20 + i))
    stores["ms3"] = root / "store_ms3"
    with StoreWriter(root / "store_avss", labeler="test_avss", image_format="jpg") as w:
        avss = [c for split in ("train", "val", "test") for c in AVSSReader(synth, split, binary=True)]
        for i, clip in enumerate(avss):
            info = [{"t": t, "valid": bool(v), "mask_area": 0.0} for t, v in enumerate(clip.frame_valid)]
            w.write(clip, _masks(clip, 30 + i) & clip.frame_valid[:, None, None], {"frames_info": info})
    stores["avss"] = root / "store_avss"
    return {"root": root, **stores}


def _store_clips(store: Path) -> dict[str, Clip]:
    return {c.id: c for c in PseudoLabelStore(store)}


def _expected(store_clips: dict[str, Clip], name: str, length: int) -> tuple[Clip, slice]:
    cid, _, start = name.partition("@")
    begin = int(start or 0)
    return store_clips[cid], slice(begin, begin + length)


def _window_log_mel(clip: Clip, span: slice, pad: str, frames: int) -> np.ndarray:
    sr = clip.sample_rate
    return log_mel_examples(clip.waveform[span.start * sr : span.stop * sr], sr, frames, pad=pad)


# ---------------------------------------------------------------------------------------------- round trips


def test_s4_round_trip_through_our_reader(data: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "s4"
    marker = export_store(data["s4"], out, "s4", resize="none")
    store = _store_clips(data["s4"])
    reader = S4Reader(out, "train")
    # 3 clips of 5 frames whole, the 10-frame clip as two windows, the 3-frame clip skipped
    assert sorted(reader.ids) == sorted([*(c for c in store if c not in ("long", "short")), "long@0", "long@5"])
    assert marker["skipped"] == {"short": "3 frames; layout s4 needs at least 5 (clip_length=window)"}
    for i, rec in enumerate(reader.records):
        got = reader[i]
        clip, span = _expected(store, rec.id, 5)
        np.testing.assert_array_equal(got.frames, clip.frames[span])
        np.testing.assert_array_equal(got.masks[0], clip.masks[span][0])  # the train loader reads _1 only ...
        for k in range(1, 6):  # ... and every frame has its pseudo-label
            path = out / "Single-source/s4_data/gt_masks/train" / rec.category / rec.id / f"{rec.id}_{k}.png"
            np.testing.assert_array_equal(read_binary_mask(path, threshold=127), clip.masks[span][k - 1])
        if clip.num_frames == 5:
            np.testing.assert_array_equal(got.log_mel, clip.log_mel)
            assert rec.category == clip.meta["category"]
        else:
            np.testing.assert_allclose(got.log_mel, _window_log_mel(clip, span, "repeat", 5), atol=1e-5)
            assert rec.category == "unknown"
    assert not list(out.rglob("*.pkl"))
    assert not list(tmp_path.glob(".*"))  # no partial folder left behind


def test_s4_default_resize_is_avsbench_224(data: dict[str, Path], tmp_path: Path) -> None:
    export_store(data["s4"], tmp_path / "s4", "s4", clip_length="skip")
    store = _store_clips(data["s4"])
    reader = S4Reader(tmp_path / "s4", "train")
    assert "long@0" not in reader.ids and len(reader) == 3  # clip_length=skip: exactly 5 frames only
    got = reader[0]
    clip = store[reader.ids[0]]
    assert got.frames.shape == (5, 224, 224, 3)
    want = np.stack([cv2.resize(f, (224, 224), interpolation=cv2.INTER_LINEAR) for f in clip.frames])
    np.testing.assert_array_equal(got.frames, want)
    np.testing.assert_array_equal(got.masks[0], cv2.resize(clip.masks[0], (224, 224), interpolation=cv2.INTER_NEAREST))


def test_ms3_round_trip_through_our_reader(data: dict[str, Path], tmp_path: Path) -> None:
    export_store(data["ms3"], tmp_path / "ms3", "ms3", resize="none")
    store = _store_clips(data["ms3"])
    reader = MS3Reader(tmp_path / "ms3", "train")
    assert sorted(reader.ids) == sorted(store)
    for i, cid in enumerate(reader.ids):
        got, clip = reader[i], store[cid]
        np.testing.assert_array_equal(got.frames, clip.frames)
        np.testing.assert_array_equal(got.masks, clip.masks)
        np.testing.assert_array_equal(got.log_mel, clip.log_mel)


def test_avss_round_trip_through_our_reader(data: dict[str, Path], tmp_path: Path) -> None:
    export_store(data["avss"], tmp_path / "avss", "avss", avss_class=7)
    store = _store_clips(data["avss"])
    reader = AVSSReader(tmp_path / "avss", "train")
    assert sorted(reader.ids) == sorted(store)
    for i, rec in enumerate(reader.records):
        got, clip = reader[i], store[rec.id]
        real = 5 if rec.label == "v1m" else 10  # padding frames (valid false) are dropped, 5-frame clips are v1m
        assert rec.label == ("v2" if clip.meta["label"] == "v2" else "v1m")
        np.testing.assert_array_equal(got.frames[:real], clip.frames[:real])  # jpg frames copied byte for byte
        np.testing.assert_array_equal(got.masks[:real], clip.masks[:real] * 7)
        assert got.has_label[:real].all() and not got.frame_valid[real:].any()
        # a whole clip (padding frames aside) keeps its wav: the features are the store's audio's
        np.testing.assert_array_equal(got.log_mel, log_mel_examples(clip.waveform, clip.sample_rate, 10, pad="zeros"))
    assert {r.label for r in reader.records} == {"v1m", "v2"}
    names = json.loads((tmp_path / "avss/AVSBench-semantic/label2idx.json").read_text())
    assert len(names) == 71 and names["background"] == 0


# ------------------------------------------------------------------------- the original loaders, re-stated


def _original_rows(csv_path: Path, split: str) -> list[list[str]]:
    """``pd.read_csv(...)`` then ``df_all[df_all['split'] == split]``: rows by position, split by name."""
    with csv_path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    i_split = rows[0].index("split")
    return [r for r in rows[1:] if r[i_split] == split]


def _unpickle_log_mel(path: Path) -> np.ndarray:
    with path.open("rb") as fr:  # load_audio_lm: pickle.load(fr).detach(); this test opted in to pickles
        mel = pickle.load(fr).detach()
    assert str(mel.dtype) == "torch.float32"
    return mel.numpy()


def _load_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0  # ToTensor (HWC here)


def test_original_s4_loader_reads_every_exported_clip(data: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "s4"
    export_store(data["s4"], out, "s4", write_pickles=True)
    base = out / "Single-source"
    dir_img, dir_mask = base / "s4_data/visual_frames", base / "s4_data/gt_masks"
    dir_lm = base / "s4_data/audio_log_mel"
    rows = _original_rows(base / "s4_meta_data.csv", "train")
    assert len(rows) == 5  # 3 clips + the 10-frame clip as 2 windows
    reader = S4Reader(out, "train", audio="wav")
    for index, row in enumerate(rows):
        video_name, category = row[0], row[2]  # df_one_video[0], df_one_video[2]
        imgs = [_load_rgb(dir_img / "train" / category / video_name / f"{video_name}_{k}.png") for k in range(1, 6)]
        mask_num = 1  # split == 'train'
        masks = [np.asarray(Image.open(dir_mask / "train" / category / video_name / f"{video_name}_{k}.png")
                            .convert("1"), dtype=np.float32) for k in range(1, mask_num + 1)]
        mel = _unpickle_log_mel(dir_lm / "train" / category / f"{video_name}.pkl")
        assert np.stack(imgs).shape == (5, 224, 224, 3)
        assert np.stack(masks).shape == (1, 224, 224) and set(np.unique(masks)) <= {0.0, 1.0}
        assert mel.shape == (5, 1, 96, 64)
        np.testing.assert_array_equal(mel, reader[reader.ids.index(video_name)].log_mel)  # pkl == wav features
    pkl_reader = S4Reader(out, "train", audio="pkl", allow_pickle=True)
    np.testing.assert_array_equal(pkl_reader[0].log_mel, reader[0].log_mel)


def test_original_ms3_loader_reads_every_exported_clip(data: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "ms3"
    export_store(data["ms3"], out, "ms3", write_pickles=True)
    base = out / "Multi-sources"
    dir_img, dir_mask = base / "ms3_data/visual_frames", base / "ms3_data/gt_masks"
    dir_lm = base / "ms3_data/audio_log_mel"
    rows = _original_rows(base / "ms3_meta_data.csv", "train")
    store = _store_clips(data["ms3"])
    assert len(rows) == len(store)
    for row in rows:
        video_name = row[0]
        imgs = [_load_rgb(dir_img / video_name / f"{video_name}.mp4_{k}.png") for k in range(1, 6)]
        # mode 'P' + ToTensor: the palette index / 255, so the PNG must hold 0/255
        masks = np.stack([np.asarray(Image.open(dir_mask / "train" / video_name / f"{video_name}_{k}.png")
                                     .convert("P"), dtype=np.float32) / 255.0 for k in range(1, 6)])
        mel = _unpickle_log_mel(dir_lm / "train" / f"{video_name}.pkl")
        assert np.stack(imgs).shape == (5, 224, 224, 3) and mel.shape == (5, 1, 96, 64)
        assert set(np.unique(masks)) <= {0.0, 1.0} and masks.shape == (5, 224, 224)
        want = np.stack([cv2.resize(m, (224, 224), interpolation=cv2.INTER_NEAREST) for m in store[video_name].masks])
        np.testing.assert_array_equal(masks, want)


def test_original_avss_loader_lists_frames_and_labels(data: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "avss"
    export_store(data["avss"], out, "avss")
    base = out / "AVSBench-semantic"
    with (base / "metadata.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:  # color_dataloader.py: df_one_video['uid'], df_one_video['label']
        d = base / row["label"] / row["uid"]
        frames = sorted(os.listdir(d / "frames"))
        labels = sorted(p for p in os.listdir(d / "labels_rgb") if p.endswith(".png"))
        assert len(frames) == len(labels) == (10 if row["label"] == "v2" else 5)
        assert (d / "audio.wav").is_file()
        rgb = np.asarray(Image.open(d / "labels_rgb/0.png").convert("RGB"))
        assert {tuple(c) for c in rgb.reshape(-1, 3)} <= {(0, 0, 0), (128, 0, 0)}  # class 1 in the palette


# ------------------------------------------------------------------------------------ pickles, marker, errors


def test_pickles_only_on_request(data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    export_store(data["ms3"], tmp_path / "no", "ms3")
    assert not list((tmp_path / "no").rglob("*.pkl"))
    capsys.readouterr()
    assert main([f"store={data['ms3']}", f"out={tmp_path / 'yes'}", "layout=ms3", "write_pickles=true"]) == 0
    assert "exporting ms3: 100%|" in capsys.readouterr().err  # the CLI's progress bar
    pkls = list((tmp_path / "yes").rglob("*.pkl"))
    assert len(pkls) == len(_store_clips(data["ms3"]))
    assert _unpickle_log_mel(pkls[0]).shape == (5, 1, 96, 64)
    with pytest.raises(ExportError, match="AVSS layout has no audio_log_mel"):
        export_store(data["avss"], tmp_path / "avss", "avss", write_pickles=True)


def test_marker_names_labeler_and_scrubs_secrets(data: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "s4"
    export_store(data["s4"], out, "s4")
    marker = json.loads((out / MARKER).read_text())
    assert marker["pseudo_labels"] is True and marker["labelers"] == ["test_lite"]
    # the store's config file, parsed when it is valid YAML (here the scrubbed `api_key: ***` is not: kept as text)
    assert "name: test_lite" in marker["labeler_config"]["pseudolabel_config.yaml"]
    assert SECRET not in (out / MARKER).read_text()
    assert marker["items_exported"] == 5 and list(marker["skipped"]) == ["short"]
    # an earlier export is replaced whole; a rerun leaves no temporary folder
    (out / "Single-source" / "stale.txt").write_text("old")
    export_store(data["s4"], out, "s4")
    assert not (out / "Single-source" / "stale.txt").exists() and (out / MARKER).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s4"]
    # but not when the folder holds anything else: refused, nothing deleted
    (out / "my_model.ckpt").write_text("keep me")
    with pytest.raises(ExportError, match=r"holds an earlier export but also \['my_model.ckpt'\]"):
        export_store(data["s4"], out, "ms3")
    assert (out / "my_model.ckpt").read_text() == "keep me" and (out / "Single-source").is_dir()


def test_errors_name_the_problem(data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "no_store"
    assert main([f"store={missing}", f"out={tmp_path / 'o'}", "layout=s4"]) == 2
    assert str(missing) in capsys.readouterr().err
    assert main([f"store={data['s4']}", f"out={tmp_path / 'o'}", "layout=avs5"]) == 2
    assert "layout='avs5'" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("x")
    assert main([f"store={data['s4']}", f"out={busy}", "layout=s4"]) == 2
    err = capsys.readouterr().err
    assert str(busy) in err and "not empty" in err
    assert main([f"store={data['s4']}", "layout=s4"]) == 2
    assert "out" in capsys.readouterr().err
    assert main([f"store={data['s4']}", f"out={tmp_path / 'o'}", "layout=s4", "jpeg_quality=abc"]) == 2
    assert "error: jpeg_quality must be an integer >= 1, got 'abc'" in capsys.readouterr().err
    assert main([f"store={data['s4']}", f"out={tmp_path / 'o'}", "layout=s4", "jpeg_quality=[1"]) == 2
    assert "error: argument 'jpeg_quality=[1': " in capsys.readouterr().err  # Hydra's grammar error names it
    # a mistyped option holding a key: Hydra's message repeats the value, the error line does not
    assert main([f"store={data['s4']}", f"out={tmp_path / 'o'}", "layout=s4", f"apikey={SECRET}"]) == 2
    err = capsys.readouterr().err
    assert "Could not override 'apikey'" in err and SECRET not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    # a clip whose mask file is gone: named with what to do, and nothing is written
    import shutil

    broken = tmp_path / "broken_store"
    shutil.copytree(data["ms3"], broken)
    first = sorted(p for p in (broken / "masks").iterdir())[0]
    next(first.iterdir()).unlink()
    assert main([f"store={broken}", f"out={tmp_path / 'o'}", "layout=ms3"]) == 2
    err = capsys.readouterr().err
    assert f"clip {first.name!r} cannot be read" in err and "Relabel it" in err
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.partial"))
