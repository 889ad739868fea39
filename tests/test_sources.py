"""The one clip-source registry (``openavs_st.data.sources``): every kind through ``open_source``, the folder
rule, the errors (naming the file or key, listing the choices) and the one "root not set" message."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from openavs_st.data.avsbench import open_reader
from openavs_st.data.clip import Clip, ClipError
from openavs_st.data.configs import ConfigError, is_unset
from openavs_st.data.sources import (
    CLIP_SOURCES,
    VIDEO_SUFFIXES,
    AVSBenchSource,
    ClipSource,
    StoreSource,
    UnknownSourceError,
    UnpairedSource,
    VideoFolderSource,
    media_files,
    open_source,
)
from openavs_st.data.store import StoreWriter

KINDS = ("avsbench", "store", "synthetic", "unpaired", "videos")


def tone_video(path: Path, seconds: int = 2, size: int = 24, seed: int = 0) -> Path:
    from openavs_st.data.video import write_video

    rng = np.random.default_rng(seed)
    wave = (0.2 * np.sin(2 * np.pi * 440 * np.arange(seconds * 16000) / 16000)).astype(np.float32)
    return write_video(path, rng.integers(0, 255, (seconds * 5, size, size, 3), dtype=np.uint8), 5, (wave, 16000))


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    writer = StoreWriter(root, labeler="test")
    rng = np.random.default_rng(0)
    for cid, category in (("b", "dog"), ("a", "cat")):
        frames = rng.integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)
        wave = (0.1 * rng.standard_normal(3 * 16000)).astype(np.float32)
        writer.write(Clip(cid, frames, wave, 16000, meta={"category": category}), np.ones((3, 16, 16), bool))
    writer.write_failure("c", "boom")
    return root


# --- the registry --------------------------------------------------------------------------------------


def test_every_kind_is_registered_with_a_description() -> None:
    assert CLIP_SOURCES.names() == sorted(KINDS)
    for kind, description in CLIP_SOURCES.describe().items():
        cls = CLIP_SOURCES.get(kind)
        assert issubclass(cls, ClipSource) and cls.name == kind
        assert description and "`" not in description  # plain text for listings, no reST roles


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_implements_the_interface(kind: str) -> None:
    cls = CLIP_SOURCES.get(kind)
    for member in ("ids", "load", "class_names", "describe", "categories", "log_mel_of", "from_config"):
        assert hasattr(cls, member), member
    assert not getattr(cls, "__abstractmethods__", None)


def test_a_source_without_load_cannot_be_built() -> None:
    class NoLoad(ClipSource):
        def __init__(self) -> None:
            self._ids = []

    with pytest.raises(TypeError, match="load"):
        NoLoad()


def test_unknown_kind_and_dataset_list_the_choices() -> None:
    with pytest.raises(UnknownSourceError) as info:
        open_source({"kind": "nope"})
    message = str(info.value)
    assert "input.kind" in message and "'nope'" in message and all(kind in message for kind in KINDS)
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)  # caught either way
    with pytest.raises(UnknownSourceError, match=r"data\.name='nope' .*avsbench_s4.*pseudo.*synthetic"):
        open_source({"split": "test"}, {"name": "nope", "root": "/x"})
    with pytest.raises(ConfigError, match=r"input\.kind is not set"):
        open_source({})


def test_a_new_kind_is_one_class() -> None:
    @CLIP_SOURCES.register("_test_numbers")
    class Numbers(ClipSource):
        """Clips of a constant colour (a test source)."""

        def __init__(self, count: int = 2) -> None:
            self._ids = [f"n{i}" for i in range(count)]

        def load(self, clip_id: str) -> Clip:
            return Clip(clip_id, np.full((2, 4, 4, 3), int(clip_id[1:]), np.uint8), meta={"category": "n"})

    try:
        source = open_source({"kind": "_test_numbers", "count": 3})
        assert source.ids == ["n0", "n1", "n2"] and len(source) == 3 and source.kind == "_test_numbers"
        assert [clip.frames.max() for clip in source] == [0, 1, 2] and source[1].id == "n1"
        assert source.class_names(source[0]) == ["n"] and source.describe() == {"kind": "_test_numbers"}
    finally:
        CLIP_SOURCES._classes.pop("_test_numbers")
        CLIP_SOURCES._descriptions.pop("_test_numbers")


# --- root not set: one message wherever a dataset root is read ----------------------------------------


@pytest.mark.parametrize("value", [None, "", "???", "None"])
def test_one_root_not_set_error(value: str | None, tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from openavs_st.config import data_root
    from openavs_st.datamodule import SourceSpec
    from openavs_st.training import source_spec

    assert is_unset(value)
    expected = re.escape("data.root is not set for data.name=avsbench_ms3: pass data.root=")
    node = {"name": "avsbench_ms3", "root": value}
    callers = [
        lambda: open_source({"kind": "avsbench", "split": "test"}, node),
        lambda: open_source({"split": "test"}, node),
        lambda: SourceSpec.from_config(node),
        lambda: source_spec(OmegaConf.create(node), "data"),
        lambda: data_root(OmegaConf.create({"data": node})),
    ]
    for call in callers:
        with pytest.raises(ConfigError, match=expected):
            call()
    with pytest.raises(ConfigError, match=r"data\.eval\.root is not set for data\.eval\.name=avsbench_s4"):
        SourceSpec.from_config({"name": "avsbench_s4", "root": value}, "data.eval")
    with pytest.raises(ConfigError, match=r"data\.root is not set for data\.name=pseudo: pass data\.root=/path/to/store"):
        open_source({"split": "train"}, {"name": "pseudo", "root": value})
    missing = tmp_path / "absent"
    with pytest.raises(ConfigError, match=re.escape(f"data.root={missing} does not exist (data.name=avsbench_s4)")):
        open_source({"kind": "avsbench"}, {"name": "avsbench_s4", "root": str(missing)})


# --- avsbench and synthetic --------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["avsbench_s4", "avsbench_ms3", "avsbench_avss", "avsbench_avss_binary"])
def test_avsbench_split_through_the_registry(dataset: str, synthetic_root: Path) -> None:
    data = {"name": dataset, "root": str(synthetic_root), "audio": "wav", "allow_pickle": False}
    source = open_source({"kind": "avsbench", "split": "val"}, data)
    assert isinstance(source, AVSBenchSource) and open_source({"split": "val"}, data).ids == source.ids
    reader = open_reader(dataset, synthetic_root, "val")
    assert source.ids == reader.ids and len(source) == len(reader) == 2
    clip = source.load(source.ids[1])
    np.testing.assert_array_equal(clip.frames, reader[1].frames)
    np.testing.assert_array_equal(clip.masks, reader[1].masks)
    np.testing.assert_array_equal(source[1].log_mel, clip.log_mel)
    np.testing.assert_array_equal(source.log_mel_of(1), clip.log_mel)
    assert source.categories() == reader.categories()
    assert source.describe() == {"kind": "avsbench", "dataset": dataset, "root": str(reader.root), "split": "val"}
    if dataset == "avsbench_ms3":  # MS3 has no clip-level category
        with pytest.raises(ClipError, match="no clip-level class name"):
            source.class_names(clip)
    else:  # S4: the category; AVSS: the classes in the (semantic) ground truth
        assert source.class_names(clip)
    with pytest.raises(ClipError, match="no clip 'nope'"):
        source.load("nope")


def test_avsbench_config_errors_name_the_key(synthetic_root: Path) -> None:
    with pytest.raises(ConfigError, match="data=avsbench_s4"):
        open_source({"kind": "avsbench", "split": "test"}, None)
    with pytest.raises(ConfigError, match=r"data\.name=pseudo is not an AVSBench dataset"):
        open_source({"kind": "avsbench"}, {"name": "pseudo", "root": str(synthetic_root)})
    with pytest.raises(ValueError, match="allow_pickle"):
        open_source({"kind": "avsbench"}, {"name": "avsbench_s4", "root": str(synthetic_root), "audio": "pkl"})
    only_v2 = open_source({"split": "train"}, {"name": "avsbench_avss", "root": str(synthetic_root), "subsets": ["v2"]})
    assert {only_v2.reader.records[i].label for i in range(len(only_v2))} == {"v2"}


def test_synthetic_is_written_on_first_use(tmp_path: Path) -> None:
    source = open_source({"split": "val"}, {"name": "synthetic", "root": str(tmp_path / "synth")})
    assert source.kind == "synthetic" and len(source) == 8 and source[0].frames.shape == (5, 64, 64, 3)
    assert (tmp_path / "synth" / "Single-source" / "s4_meta_data.csv").is_file()


# --- videos ------------------------------------------------------------------------------------------


def test_the_folder_rule(tmp_path: Path) -> None:
    for name in ("b/clip2.MP4", "a/deeper/clip1.mkv", "clip0.webm", ".hidden/x.mp4", "._clip3.mp4", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = media_files(tmp_path, VIDEO_SUFFIXES, what="video files", key="input")
    assert found == {
        "clip1": tmp_path / "a" / "deeper" / "clip1.mkv",  # sub-folders included, in path order
        "clip2": tmp_path / "b" / "clip2.MP4",  # any case
        "clip0": tmp_path / "clip0.webm",
    }  # hidden files and folders and other suffixes left out
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "clip0.avi").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"input=.*: two video files map to the clip id 'clip0': .*clip0\.avi and .*clip0\.webm"):
        media_files(tmp_path, VIDEO_SUFFIXES, what="video files", key="input")
    with pytest.raises(ConfigError, match=r"input=.*empty holds no video files \(looked for \.mp4"):
        (tmp_path / "empty").mkdir()
        media_files(tmp_path / "empty", VIDEO_SUFFIXES, what="video files", key="input")
    with pytest.raises(ConfigError, match=r"input=.*notes\.txt is not a folder of video files, nor a video file"):
        media_files(tmp_path / "notes.txt", VIDEO_SUFFIXES, what="video files", key="input", single="a video file")


def test_videos_through_the_registry(tmp_path: Path) -> None:
    tone_video(tmp_path / "dog" / "v1.mp4", seconds=2)
    tone_video(tmp_path / "v0.mp4", seconds=3, seed=1)
    source = open_source({"kind": "videos", "path": str(tmp_path), "num_frames": None, "size": [16, 20],
                          "missing_audio": None, "category_from_folder": True})
    assert isinstance(source, VideoFolderSource) and source.ids == ["v1", "v0"] and len(source) == 2
    assert source.categories() == ["dog", None]
    clip = source.load("v1")
    assert clip.frames.shape == (2, 16, 20, 3) and clip.log_mel.shape == (2, 1, 96, 64)
    assert clip.meta["category"] == "dog" and source.class_names(clip) == ["dog"]
    assert source[1].num_frames == 3 and source.log_mel_of(1).shape == (3, 1, 96, 64)
    assert source.describe() == {"kind": "videos", "path": str(tmp_path), "num_frames": None}
    single = open_source({"kind": "videos", "path": str(tmp_path / "v0.mp4"), "num_frames": 4})
    assert single.ids == ["v0"] and single[0].num_frames == 4
    with pytest.raises(ClipError, match=r"clip 'v0' has no clip-level class name"):
        single.class_names(single[0])
    missing = tmp_path / "none"
    with pytest.raises(ConfigError, match=re.escape(f"input={missing} does not exist: it is not a folder of video files")):
        open_source({"kind": "videos", "path": str(missing)})
    with pytest.raises(ConfigError, match="missing_audio must be"):
        open_source({"kind": "videos", "path": str(tmp_path), "missing_audio": "ignore"})
    with pytest.raises(ConfigError, match=r"input\.kind=videos needs a path"):
        open_source({"kind": "videos"})
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(3000))
    with pytest.raises(ClipError, match=r"broken\.mp4"):  # a corrupt file fails its own clip, at load
        open_source({"kind": "videos", "path": str(tmp_path)}).load("broken")


# --- unpaired -----------------------------------------------------------------------------------------


def test_unpaired_through_the_registry(tmp_path: Path) -> None:
    audio_dir, image_dir = tmp_path / "audio", tmp_path / "images"
    rng = np.random.default_rng(0)
    (audio_dir / "dogs").mkdir(parents=True)
    image_dir.mkdir()
    sf.write(audio_dir / "dogs" / "bark.wav", (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    sf.write(audio_dir / "hum.flac", (0.1 * rng.standard_normal(24000)).astype(np.float32), 16000)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(image_dir / f"img{i}.jpg")
    cfg = {"kind": "unpaired", "audio_dir": str(audio_dir), "image_dir": str(image_dir), "k": 2, "seed": 3,
           "num_frames": 2, "size": [8, 8], "category_from_folder": True}
    source = open_source(cfg)
    assert isinstance(source, UnpairedSource) and len(source) == 4 and source.ids == open_source(cfg).ids
    assert [clip_id.split("+")[0] for clip_id in source.ids] == ["bark", "bark", "hum", "hum"]
    assert source.categories() == ["dogs", "dogs", None, None]
    clip = source.load(source.ids[0])
    assert clip.frames.shape == (2, 8, 8, 3) and clip.log_mel.shape == (2, 1, 96, 64)
    assert clip.meta["pairing"]["k"] == 2 and clip.meta["category"] == "dogs"
    with pytest.raises(ConfigError, match=r"input\.k=4 but .* holds only 3 images"):
        open_source({**cfg, "k": 4})
    with pytest.raises(ConfigError, match=r"input\.audio_dir=.*nothing does not exist"):
        open_source({**cfg, "audio_dir": str(tmp_path / "nothing")})
    with pytest.raises(ConfigError, match=r"input\.image_dir=.* holds no images"):
        open_source({**cfg, "image_dir": str(audio_dir)})
    with pytest.raises(ConfigError, match=r"needs input\.audio_dir=\.\.\. and input\.image_dir"):
        open_source({"kind": "unpaired", "audio_dir": str(audio_dir)})


# --- a pseudo-label store --------------------------------------------------------------------------------


def test_store_through_the_registry(store_root: Path) -> None:
    source = open_source({"kind": "store", "path": str(store_root)})
    assert isinstance(source, StoreSource) and source.ids == ["a", "b"]  # ok clips, in id order
    assert open_source({"split": "train"}, {"name": "pseudo", "root": str(store_root)}).ids == ["a", "b"]
    clip = source.load("b")
    assert clip.meta["category"] == "dog" and clip.masks.shape == (3, 16, 16) and clip.log_mel.shape == (3, 1, 96, 64)
    assert source.categories() == ["cat", "dog"] and source.class_names(source[0]) == ["cat"]
    np.testing.assert_array_equal(source.log_mel_of(1), clip.log_mel)
    assert source.describe() == {"kind": "store", "path": str(store_root)}
    with pytest.raises(ClipError, match="no ok record of clip 'c'"):
        source.load("c")
    with pytest.raises(ClipError, match="not a pseudo-label store"):
        open_source({"kind": "store", "path": str(store_root / "frames")})
