"""The quickstart dataset: the Qt resource reader, the hand-drawn polygons, scene composition and the
S4-layout build (read back with the AVSBench reader). Uses the real GCompris and ovos files from the asset
cache (``$OPENAVS_CACHE``); skipped where they cannot be fetched."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import struct
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageDraw

from openavs_st.data.avsbench import S4Reader
from openavs_st.data.quickstart import build_quickstart, main, scene_seed
from openavs_st.data.quickstart_scenes import (
    ANIMALS,
    GCOMPRIS_RCC,
    POLYGONS_FILE,
    Placement,
    compose,
    load_material,
    load_polygons,
    make_scene,
    polygon_mask,
    read_sources,
)
from openavs_st.data.rcc import RccArchive, RccError, read_rcc

FARM = "/gcompris/src/activities/explore_farm_animals/"


@pytest.fixture(scope="module")
def gcompris_root() -> Path:
    from openavs_st import assets

    try:
        return assets.fetch("gcompris")
    except assets.AssetError as exc:
        pytest.skip(f"gcompris-qt-data not available: {exc}")


@pytest.fixture(scope="module")
def material(gcompris_root):
    from openavs_st import assets

    try:
        return load_material()
    except assets.AssetError as exc:
        pytest.skip(f"quickstart material not available: {exc}")


# -------------------------------------------------------------------------------------------- rcc


def test_rcc_reads_the_real_gcompris_resource(gcompris_root):
    path = gcompris_root / GCOMPRIS_RCC
    archive = RccArchive(path)
    assert archive.version == 3 and len(archive) == 37
    cow = archive.read(FARM + "resource/animals/cow.webp")
    assert cow[:4] == b"RIFF" and cow[8:12] == b"WEBP"
    assert archive.read(archive.find("chickens.ogg"))[:4] == b"OggS"
    assert archive.entries[FARM + "resource/animals/cow.webp"].compression == "none"
    qml = FARM + "ExploreLevels.qml"  # stored zlib-compressed
    assert archive.entries[qml].compression == "zlib"
    assert b"import QtQuick" in archive.read(qml)
    files = read_rcc(path)
    assert set(files) == set(archive.paths()) and files[qml] == archive.read(qml)
    with Image.open(io.BytesIO(cow)) as img:
        assert img.size == (1024, 768)


# A version-2 resource written out by hand: /a/x.txt = "hello" (stored), /a/z.bin = "ab" * 8 (zlib,
# qCompress form). Offsets: header 20 bytes, data at 20 (29 bytes), names at 49 (40 bytes), tree at 89
# (4 entries of 22 bytes), 177 bytes in all.
ZLIB_AB8 = b"x\x9cKLJD\x81\x003\xd8\x06\x19"  # zlib.compress(b"ab" * 8)
HANDMADE_V2 = b"".join([
    b"qres", struct.pack(">IIII", 2, 89, 20, 49),
    # data: x.txt at 0, z.bin at 9
    struct.pack(">I", 5), b"hello",
    struct.pack(">II", 16, 16), ZLIB_AB8,
    # names: "a" at 0, "x.txt" at 8, "z.bin" at 24 (u16 length, u32 hash, UTF-16BE)
    struct.pack(">HI", 1, 0x61), "a".encode("utf-16-be"),
    struct.pack(">HI", 5, 0), "x.txt".encode("utf-16-be"),
    struct.pack(">HI", 5, 0), "z.bin".encode("utf-16-be"),
    # tree: root (1 child from entry 1), a (2 children from entry 2), x.txt, z.bin; each + u64 mtime
    struct.pack(">IHIIQ", 0, 0x02, 1, 1, 0),
    struct.pack(">IHIIQ", 0, 0x02, 2, 2, 0),
    struct.pack(">IHHHIQ", 8, 0x00, 0, 0, 0, 0),
    struct.pack(">IHHHIQ", 24, 0x01, 0, 0, 9, 0),
])


def test_rcc_reads_a_hand_made_resource(tmp_path):
    assert len(HANDMADE_V2) == 177 and zlib.decompress(ZLIB_AB8) == b"ab" * 8
    path = tmp_path / "tiny.rcc"
    path.write_bytes(HANDMADE_V2)
    assert read_rcc(path) == {"/a/x.txt": b"hello", "/a/z.bin": b"ab" * 8}
    archive = RccArchive(path)
    assert archive.version == 2 and archive.find("z.bin") == "/a/z.bin"
    assert archive.entries["/a/z.bin"].compression == "zlib"


def _to_version(data: bytes, version: int) -> bytes:
    """The hand-made resource re-laid as version 1 (14-byte entries, no mtime) or 3 (flags word)."""
    body, tree = data[20:89], [data[89 + 22 * i : 89 + 22 * i + 22] for i in range(4)]
    if version == 1:
        return b"qres" + struct.pack(">IIII", 1, 89, 20, 49) + body + b"".join(e[:14] for e in tree)
    return b"qres" + struct.pack(">IIIII", 3, 93, 24, 53, 0x01) + body + b"".join(tree)


@pytest.mark.parametrize("version", [1, 3])
def test_rcc_versions_1_and_3(tmp_path, version):
    path = tmp_path / f"v{version}.rcc"
    path.write_bytes(_to_version(HANDMADE_V2, version))
    archive = RccArchive(path)
    assert archive.version == version
    assert archive.read_all() == {"/a/x.txt": b"hello", "/a/z.bin": b"ab" * 8}


def test_rcc_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.rcc"
    bad.write_bytes(b"RIFF" + HANDMADE_V2[4:])
    with pytest.raises(RccError, match=r"bad\.rcc.*magic"):
        RccArchive(bad)
    cut = tmp_path / "cut.rcc"
    cut.write_bytes(HANDMADE_V2[:120])  # the tree is cut short
    with pytest.raises(RccError, match=r"cut\.rcc.*truncated"):
        RccArchive(cut)
    short_data = tmp_path / "short.rcc"  # x.txt claims 500 bytes
    short_data.write_bytes(HANDMADE_V2[:20] + struct.pack(">I", 500) + HANDMADE_V2[24:])
    with pytest.raises(RccError, match=r"short\.rcc.*truncated.*x\.txt"):
        RccArchive(short_data).read("/a/x.txt")
    zstd = tmp_path / "zstd.rcc"  # flag z.bin as zstd
    zstd.write_bytes(HANDMADE_V2[:-22] + struct.pack(">IHHHIQ", 24, 0x04, 0, 0, 9, 0))
    try:
        import zstandard  # noqa: F401
    except ImportError:
        with pytest.raises(RccError, match=r"zstd\.rcc.*zstandard"):
            RccArchive(zstd).read("/a/z.bin")
    else:
        with pytest.raises(RccError, match=r"zstd\.rcc.*corrupt zstd"):
            RccArchive(zstd).read("/a/z.bin")


# --------------------------------------------------------------------------------------- polygons


def test_polygons_file_is_complete_and_sensible():
    doc = json.loads(POLYGONS_FILE.read_text())
    assert sorted(doc["animals"]) == sorted(ANIMALS)
    annotations = load_polygons()
    for animal, entry in annotations.items():
        width, height = entry["size"]
        assert width == 1024 and 600 < height < 1000 and entry["note"]
        points = sum(len(p) for p in entry["polygons"])
        assert 12 <= points <= 200, animal
        for poly in entry["polygons"]:
            assert poly.shape[0] >= 3 and poly.min() >= 0 and poly.max() <= 1
            assert not np.allclose(poly[0], poly[-1])  # closed implicitly, not by repeating a point
        mask = polygon_mask([p * [width, height] for p in entry["polygons"]], height, width)
        assert 0.08 < mask.mean() < 0.75, (animal, mask.mean())
        # Our rasteriser agrees with PIL's on the real outlines.
        ref = Image.new("L", (width, height), 0)
        for poly in entry["polygons"]:
            ImageDraw.Draw(ref).polygon([(x * width - 0.5, y * height - 0.5) for x, y in poly], fill=1)
        ref_mask = np.asarray(ref, dtype=bool)
        assert (mask & ref_mask).sum() / (mask | ref_mask).sum() > 0.98, animal


def test_polygon_mask_by_hand():
    square = np.array([[1, 1], [4, 1], [4, 3], [1, 3]], dtype=float)  # pixel centres 1.5..3.5 x 1.5..2.5
    expected = np.zeros((5, 6), dtype=bool)
    expected[1:3, 1:4] = True
    assert np.array_equal(polygon_mask([square], 5, 6), expected)
    # two polygons: union, even where they overlap
    assert polygon_mask([square, square + 0.0], 5, 6).sum() == 6


# ----------------------------------------------------------------------------------------- scenes


def test_scene_mask_is_the_transformed_polygon():
    photos = {"cat": np.full((10, 20, 3), 200, np.uint8), "dog": np.full((10, 10, 3), 50, np.uint8)}
    polygons = {"cat": [np.array([[0.25, 0.2], [0.75, 0.2], [0.75, 0.8], [0.25, 0.8]])],
                "dog": [np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])]}
    background = np.zeros((30, 60, 3), np.uint8)
    # cat photo scaled 2x (40 x 20) at left 10, top 5: polygon x 10+10..10+30, y 5+4..5+16
    cat = Placement("cat", left=10, top=5, width=40, height=20)
    canvas, masks = compose(photos, polygons, [cat], (60, 30), background)
    expected = np.zeros((30, 60), bool)
    expected[9:21, 20:40] = True
    assert np.array_equal(masks["cat"], expected)
    assert (canvas[5:25, 10:50] == 200).all() and canvas[:5].max() == 0
    # a dog photo pasted on top at left 35 hides the cat's columns 35..
    dog = Placement("dog", left=35, top=0, width=10, height=10)
    _, masks = compose(photos, polygons, [cat, dog], (60, 30), background)
    occluded = expected.copy()
    occluded[:10, 35:45] = False
    assert np.array_equal(masks["cat"], occluded) and masks["dog"][:10, 35:45].all()


def test_real_scene_masks_follow_the_sounding_animal(material):
    rng = scene_seed(3, "test", 0)
    scene = make_scene(rng, material, "qs_x", "test", "gcompris", main="cow", size=(192, 128),
                       switch_prob=0.5, neg_seconds=0.0)
    _, by_animal = compose(material.photos, material.polygons, scene.placements, (192, 128),
                           np.zeros((128, 192, 3), np.uint8))
    assert scene.seconds[0].sounding == "cow"
    for t, second in enumerate(scene.seconds):
        assert second.kind == "animal"
        assert np.array_equal(scene.masks[t], by_animal[second.sounding])
        assert scene.masks[t].any()
    cow = next(p for p in scene.placements if p.animal == "cow")
    inside = np.zeros((128, 192), bool)
    inside[cow.top : cow.top + cow.height, cow.left : cow.left + cow.width] = True
    assert not (scene.masks[0] & ~inside).any()
    assert scene.audio.shape == (5 * 16000,) and np.abs(scene.audio).max() <= 1.0


# ------------------------------------------------------------------------------------------- build

TINY = {"train": 2, "val": 1, "test": 2, "negatives": 3, "videos": 1, "size": (160, 96), "neg_seconds": 0.3}


def test_crop_keeps_every_silhouette_pixel(material):
    """Cutting a photo to its silhouette's box (+ margin) moves the polygons with it: the mask drawn on the
    cut photo is the cut of the mask drawn on the whole photo, and nothing of the animal is cut away."""
    from openavs_st.data.quickstart_scenes import crop_to_silhouettes, polygon_mask

    cropped = crop_to_silhouettes(material, 0.1)
    for animal, photo in material.photos.items():
        h, w = photo.shape[:2]
        full = polygon_mask([poly * [w, h] for poly in material.polygons[animal]], h, w)
        small = cropped.photos[animal]
        ch, cw = small.shape[:2]
        cut = polygon_mask([poly * [cw, ch] for poly in cropped.polygons[animal]], ch, cw)
        assert ch < h or cw < w or animal == "horse"  # a herd may fill its photo
        assert abs(int(cut.sum()) - int(full.sum())) <= 0.01 * full.sum() + 50, animal
        # the same animal pixels: their colour sums agree (rasterisation differs by at most ~1 %)
        colours_full = photo[full].astype(np.float64).sum(axis=0)
        colours_cut = small[cut].astype(np.float64).sum(axis=0)
        np.testing.assert_allclose(colours_cut, colours_full, rtol=0.02)
    with pytest.raises(ValueError, match="margin"):
        crop_to_silhouettes(material, -0.1)


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _decoded(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    with av.open(str(path)) as container:
        audio = np.concatenate([f.to_ndarray().ravel() for f in container.decode(audio=0)])
    return frames, audio


@pytest.fixture(scope="module")
def tiny(material, tmp_path_factory):
    return build_quickstart(tmp_path_factory.mktemp("qs") / "tiny", seed=5, material=material, **TINY)


def test_tiny_build_reads_with_the_s4_reader(tiny):
    rows = list(csv.DictReader(tiny.seconds_csv.open()))
    assert len(rows) == 5 * (2 + 1 + 2 + 3)
    for split, count in (("train", 2), ("val", 1), ("test", 2)):
        reader = S4Reader(tiny.positives, split)
        assert len(reader) == count
        for clip in reader:
            assert clip.frames.shape == (5, 96, 160, 3) and clip.log_mel.shape == (5, 1, 96, 64)
            assert clip.meta["category"] in ANIMALS
            labelled = [t for t in range(5) if clip.has_label[t]]
            assert labelled == ([0] if split == "train" else list(range(5)))
            for t in labelled:  # the mask is empty exactly on the negative seconds
                row = next(r for r in rows if r["clip"] == clip.id and r["second"] == str(t + 1))
                assert bool(clip.masks[t].any()) == (row["negative"] == "0")
                assert (row["sounding"] == clip.meta["category"]) or t > 0
    negatives = S4Reader(tiny.negatives, "test")
    assert len(negatives) == 3
    test_frames = S4Reader(tiny.positives, "test")[0].frames
    for k, clip in enumerate(negatives):
        assert clip.meta["category"] == "negative" and clip.has_label.all() and not clip.masks.any()
        if k == 0:  # negative clip k shows test clip k's picture
            assert np.array_equal(clip.frames, test_frames)
    kinds = {r["kind"] for r in rows if r["dataset"] == "negatives"}
    assert kinds <= {"silence", "noise", "offscreen"} and all(r["sounding"] == "" for r in rows if r["negative"] == "1")


def test_tiny_build_video_has_video_and_audio(tiny):
    assert [p.name for p in tiny.videos] == ["qs_test_000.mp4"]
    with av.open(str(tiny.videos[0])) as container:
        assert container.streams.video and container.streams.audio
        assert container.streams.audio[0].codec_context.name == "aac"
        assert container.duration / 1e6 >= 4.9


def test_build_is_cached_and_deterministic(tiny, material, tmp_path):
    again = build_quickstart(tiny.root, seed=5, material=material, **TINY)
    assert not again.built
    copy = build_quickstart(tmp_path / "copy", seed=5, material=material, **TINY)
    assert copy.built
    ours, theirs = _tree_digest(tiny.root), _tree_digest(copy.root)
    ours.pop("params.json"), theirs.pop("params.json")
    # The mp4 is compared by its decoded content (an encoder's container bytes may differ between runs).
    video = "videos/qs_test_000.mp4"
    ours.pop(video), theirs.pop(video)
    a, b = _decoded(tiny.root / video), _decoded(copy.root / video)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert ours == theirs, sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
    other = build_quickstart(tmp_path / "other", seed=6, material=material, **TINY)
    assert _tree_digest(other.root)["seconds.csv"] != ours["seconds.csv"]
    # a different parameter rebuilds in place
    rebuilt = build_quickstart(tmp_path / "copy", seed=5, material=material, **{**TINY, "videos": 0})
    assert rebuilt.built and not (rebuilt.root / "videos").exists()
    with pytest.raises(FileExistsError, match="not an earlier quickstart build"):
        (tmp_path / "busy").mkdir()
        (tmp_path / "busy" / "mine.txt").write_text("x")
        build_quickstart(tmp_path / "busy", material=material, **TINY)


def test_cli_with_a_folder_holding_the_rcc(gcompris_root, tmp_path, capsys):
    folder = tmp_path / "gc"
    folder.mkdir()
    (folder / "explore_farm_animals.rcc").symlink_to(gcompris_root / GCOMPRIS_RCC)
    assert read_sources(gcompris_dir=folder).digest == read_sources().digest
    code = main([f"out={tmp_path / 'cli'}", "train=1", "val=0", "test=1", "negatives=1", "videos=0", "size=96x64",
                 f"--gcompris-dir={folder}"])
    assert code == 0
    out = capsys.readouterr().out
    assert "positives (S4, data.root)" in out and (tmp_path / "cli" / "positives" / "Single-source").is_dir()
    assert main(["out=x", "bogus=1"]) == 2
