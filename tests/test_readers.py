"""The AVSBench readers on real files in the official layouts, and the data check tool."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from openavs_st.data.avsbench import (
    AVSSReader,
    MS3Reader,
    S4Reader,
    avss_palette,
    avss_palette_image,
    colour_to_index,
    open_reader,
)
from openavs_st.data.check import main as check_main
from openavs_st.data.clip import Clip, ClipError
from openavs_st.data.synthetic import AVSS_CLASS_OF, SHAPES, TONES_HZ

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_s4_train_has_frame1_masks_only_and_val_all(synthetic_root: Path) -> None:
    train = S4Reader(synthetic_root, "train")  # parent folder is accepted
    assert len(train) == 3 and train.root.name == "Single-source"
    clip = train[0]
    assert isinstance(clip, Clip)
    assert clip.frames.shape == (5, 32, 32, 3) and clip.frames.dtype == np.uint8
    assert clip.has_label.tolist() == [True, False, False, False, False]
    assert clip.masks[1:].sum() == 0 and clip.masks[0].sum() > 0
    assert set(np.unique(clip.masks[0])) <= {0, 1}
    assert clip.log_mel.shape == (5, 1, 96, 64) and np.isfinite(clip.log_mel).all()
    assert clip.sample_rate == 16000 and clip.waveform.shape == (5 * 16000,)
    assert clip.meta["category"] in SHAPES and clip.meta["split"] == "train"
    val = S4Reader(synthetic_root / "Single-source", "val")
    assert len(val) == 2 and val[1].has_label.all()


def test_s4_sounding_shape_matches_audio_tone(synthetic_root: Path) -> None:
    """The fixture's mask is the shape whose tone is in the audio (so it can be learned)."""
    clip = S4Reader(synthetic_root, "test")[0]
    second = clip.waveform[:16000]
    peak_hz = np.fft.rfftfreq(second.size, 1 / 16000)[np.argmax(np.abs(np.fft.rfft(second)))]
    assert peak_hz == pytest.approx(TONES_HZ[clip.meta["category"]], abs=2)


def test_ms3_reads_mp4_infix_frames_and_all_masks(synthetic_root: Path) -> None:
    reader = MS3Reader(synthetic_root, "train")
    frames = reader.frame_paths(reader.records[0])
    assert frames[0].name == f"{reader.records[0].id}.mp4_1.png"
    assert frames[0].parent.parent.name == "visual_frames"  # no split folder for frames
    clip = reader[0]
    assert clip.has_label.all() and clip.masks.shape == (5, 32, 32)
    assert clip.masks.max() == 1


def test_pickled_log_mels_need_opt_in(synthetic_root: Path) -> None:
    with pytest.raises(ValueError, match="allow_pickle"):
        S4Reader(synthetic_root, "val", audio="pkl")
    from_pkl = S4Reader(synthetic_root, "val", audio="pkl", allow_pickle=True)[0]
    from_wav = S4Reader(synthetic_root, "val")[0]
    assert from_pkl.waveform is None
    np.testing.assert_allclose(from_pkl.log_mel, from_wav.log_mel, atol=1e-5)


def test_avss_padding_flags_and_palette(synthetic_root: Path) -> None:
    train = AVSSReader(synthetic_root, "train")
    by_label = {r.label: i for i, r in enumerate(train.records)}
    assert set(by_label) == {"v1s", "v1m", "v2"}
    v1s = train[by_label["v1s"]]
    assert v1s.frames.shape[0] == 10
    assert v1s.frame_valid.tolist() == [True] * 5 + [False] * 5
    assert v1s.has_label.tolist() == [True] + [False] * 9
    assert v1s.frames[5:].max() == 0 and v1s.masks[5:].max() == 0
    assert v1s.meta["gt_temporal_mask_flag"] == [True] + [False] * 9
    # zero-padded (not repeated) audio examples past the 5 real seconds
    assert v1s.log_mel.shape == (10, 1, 96, 64) and np.all(v1s.log_mel[5:] == 0)
    v1m = train[by_label["v1m"]]
    assert v1m.has_label.tolist() == [True] * 5 + [False] * 5
    v2 = train[by_label["v2"]]
    assert v2.frame_valid.all() and v2.has_label.all()
    allowed = {0, *AVSS_CLASS_OF.values()}
    assert set(np.unique(v2.masks)) <= allowed and v2.masks.max() > 0
    binary = AVSSReader(synthetic_root, "train", binary=True)[by_label["v2"]]
    np.testing.assert_array_equal(binary.masks, np.minimum(v2.masks, 1))
    assert open_reader("avsbench_avss_binary", synthetic_root, "train").name == "avsbench_avss_binary"
    names = train.class_names()
    assert len(names) == 71 and names[0] == "background"


def test_avss_test_split_labels_all_real_frames(synthetic_root: Path) -> None:
    test = AVSSReader(synthetic_root, "test")
    for i, rec in enumerate(test.records):
        clip = test[i]
        expected = 10 if rec.label == "v2" else 5
        assert int(clip.has_label.sum()) == expected


def test_palette_matches_pascal_colour_map() -> None:
    pal = avss_palette()
    # First PASCAL VOC colours: background black, then (128,0,0), (0,128,0), (128,128,0), (0,0,128).
    assert pal[:5].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]
    assert len({tuple(c) for c in pal.tolist()}) == 71
    img = pal[np.array([[0, 5], [70, 3]])]
    img_unknown = img.copy()
    img_unknown[0, 1] = (1, 2, 3)
    np.testing.assert_array_equal(colour_to_index(img, pal), [[0, 5], [70, 3]])
    np.testing.assert_array_equal(colour_to_index(img_unknown, pal), [[0, 0], [70, 3]])
    # Beyond the first bit level, by hand with the VOC bit interleaving (bit k of each 3-bit group of the id
    # goes to bit 7 - group of channel k): 22 = 0b010_110 -> (0, 128+64, 128); 70 = 0b1_000_110 -> (32, 128, 128).
    assert pal[22].tolist() == [0, 192, 128] and pal[70].tolist() == [32, 128, 128]
    written = avss_palette_image(np.array([[0, 22], [70, 1]]))
    assert written.mode == "P"
    assert np.asarray(written.convert("RGB")).tolist() == [[[0, 0, 0], [0, 192, 128]], [[32, 128, 128], [128, 0, 0]]]


@pytest.fixture()
def damaged_s4(synthetic_root: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A copy of the S4 fixture with one val mask deleted and one test frame truncated."""
    root = tmp_path / "data"
    shutil.copytree(synthetic_root / "Single-source", root / "Single-source")
    val = S4Reader(root, "val")
    missing = val.mask_paths(val.records[0])[2]
    missing.unlink()
    test = S4Reader(root, "test")
    truncated = test.frame_paths(test.records[1])[3]
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    return root, missing, truncated


def test_check_names_missing_and_corrupt_files(damaged_s4, capsys) -> None:
    root, missing, truncated = damaged_s4
    status = check_main(["data=avsbench_s4", f"data.root={root}"])
    out = capsys.readouterr().out
    assert status == 1
    assert f"missing: {missing}" in out
    assert "corrupt" in out and str(truncated) in out
    assert "2 problem(s) found" in out
    assert f"{'train':<5} {3:>6} clips" in out


def test_readers_raise_naming_the_bad_file(damaged_s4) -> None:
    root, missing, truncated = damaged_s4
    with pytest.raises(ClipError, match=str(missing)):
        S4Reader(root, "val")[0]
    with pytest.raises(ClipError, match=str(truncated)):
        S4Reader(root, "test")[1]
    S4Reader(root, "test")[0]  # the intact clips still load


def test_check_clean_dataset_cli(synthetic_root: Path) -> None:
    """The documented command line, in a subprocess, on an intact dataset."""
    proc = subprocess.run(
        [sys.executable, "-m", "openavs_st.data.check", "data=avsbench_ms3", f"data.root={synthetic_root}"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "all files present and readable" in proc.stdout
    for split, n in (("train", 3), ("val", 2), ("test", 2)):
        assert f"{split:<5} {n:>6} clips" in proc.stdout


def test_check_reports_missing_root_key(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("OPENAVS_DATA_DIR", raising=False)
    assert check_main(["data=avsbench_avss"]) == 2
    assert "data.root" in capsys.readouterr().err
    assert check_main(["data=avsbench_s4", f"data.root={tmp_path}"]) == 2
    assert "s4_meta_data.csv" in capsys.readouterr().err


def test_bad_metadata_row_names_file(tmp_path: Path) -> None:
    base = tmp_path / "Multi-sources"
    base.mkdir()
    (base / "ms3_meta_data.csv").write_text("video_id,split\nabc\n")
    with pytest.raises(ClipError, match=r"ms3_meta_data\.csv: line 2"):
        MS3Reader(tmp_path, "train")
