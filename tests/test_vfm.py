"""Grounder and segmenters of the OpenAVS labeler (``pseudolabel.vfm``), offline with tiny random models:
GroundingDINO boxes in each image's pixels and phrase labels, caption format, no model call without
phrases or boxes, per-box masks OR-ed into one mask per image, local-directory and checkpoint
loading, the registries, and import isolation (no torch/transformers at import, Hydra left alone)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pseudolabel import vfm
from pseudolabel.vfm.grounding_dino import (
    GroundingDinoGrounder,
    format_caption,
    phrase_spans,
    threshold_keyword,
)

# sam2's modules call torch.jit.script at import time
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from tiny_vision import tiny_grounding_dino, tiny_sam2  # noqa: E402

HAS_SAM2 = importlib.util.find_spec("sam2") is not None
REPO_ROOT = Path(__file__).resolve().parents[1]

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "a", "dog", "cat", "man", "guitar", "playing", "car"]
MODEL_SIZE = 128  # input size of the tiny SAM models

# A tiny hiera-t: small trunk and neck channels, one memory-attention layer, 128-px input.
TINY_SAM2_OVERRIDES = [
    "model.image_encoder.trunk.embed_dim=8",
    "model.image_encoder.trunk.stages=[1,1,2,1]",
    "model.image_encoder.trunk.global_att_blocks=[3]",
    "model.image_encoder.trunk.window_spec=[4,4,4,4]",
    "model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[2,2]",
    "model.image_encoder.neck.backbone_channel_list=[64,32,16,8]",
    "model.memory_attention.num_layers=1",
]
TINY_SAM2_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (60, 90, 3), dtype=np.uint8), rng.integers(0, 256, (100, 70, 3), dtype=np.uint8)]


# --- tiny models -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dino_parts() -> tuple[object, object]:
    """A tiny GroundingDINO config (0.9M parameters) and its processor with a 13-word vocabulary."""
    return tiny_grounding_dino(VOCAB)


def _sam_parts() -> tuple[object, object]:
    config = transformers.SamConfig(
        vision_config=dict(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            global_attn_indexes=[1],
            mlp_dim=64,
            image_size=MODEL_SIZE,
            output_channels=32,
            num_pos_feats=16,
            window_size=4,
        ),
        prompt_encoder_config=dict(hidden_size=32, image_size=MODEL_SIZE, image_embedding_size=MODEL_SIZE // 16),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
    )
    image_processor = transformers.SamImageProcessor(
        size={"longest_edge": MODEL_SIZE},
        pad_size={"height": MODEL_SIZE, "width": MODEL_SIZE},
        mask_size={"longest_edge": MODEL_SIZE // 4},
        mask_pad_size={"height": MODEL_SIZE // 4, "width": MODEL_SIZE // 4},
    )
    return config, transformers.SamProcessor(image_processor=image_processor)


def _sam2_parts() -> tuple[object, object]:
    return tiny_sam2(MODEL_SIZE)


SEGMENTERS = ["sam", "sam2", pytest.param("sam2_official", marks=pytest.mark.skipif(not HAS_SAM2, reason="no sam2"))]


def _make_segmenter(name: str, **kwargs: object) -> vfm.Segmenter:
    """A fresh tiny segmenter with random weights (seeded), not loaded yet."""
    torch.manual_seed(0)
    if name == "sam2_official":
        return vfm.create_segmenter(
            name, checkpoint=None, model_config=TINY_SAM2_CONFIG, image_size=MODEL_SIZE, overrides=TINY_SAM2_OVERRIDES
        )
    config, processor = {"sam": _sam_parts, "sam2": _sam2_parts}[name]()
    return vfm.create_segmenter(name, config=config, processor=processor, **kwargs)


@pytest.fixture(scope="module", params=SEGMENTERS)
def loaded_segmenter(request: pytest.FixtureRequest) -> vfm.Segmenter:
    return _make_segmenter(request.param)


# --- caption format --------------------------------------------------------------------------------


def test_caption_is_lower_case_phrases_each_ending_with_a_period() -> None:
    assert format_caption(["Dog", "  Man  playing GUITAR. ", "dog", "", "."]) == "dog. man playing guitar."
    phrases = vfm.clean_phrases(["Dog", "Man playing guitar", "car"])
    caption = format_caption(phrases)
    assert [caption[start:end] for start, end in phrase_spans(phrases)] == phrases
    with pytest.raises(TypeError, match="list of strings"):
        vfm.clean_phrases("dog")


def test_threshold_keyword_follows_the_post_processing_signature(dino_parts: tuple[object, object]) -> None:
    _, processor = dino_parts
    assert threshold_keyword(processor) == "threshold"  # transformers 5.x

    class OldProcessor:  # the transformers < 4.55 signature
        def post_process_grounded_object_detection(
            self, outputs, input_ids, box_threshold=0.25, text_threshold=0.25, target_sizes=None
        ):
            raise AssertionError("not called")

    assert threshold_keyword(OldProcessor()) == "box_threshold"


# --- grounder --------------------------------------------------------------------------------------


def test_grounder_boxes_are_in_each_images_pixels_with_phrase_labels(dino_parts: tuple[object, object]) -> None:
    config, processor = dino_parts
    torch.manual_seed(0)
    grounder = GroundingDinoGrounder.from_config(config, processor, box_threshold=0.0, text_threshold=0.0, batch_size=2)
    images = [*_images(), _images()[0][:20]]
    phrases = [["Dog", "cat"], ["a man", "guitar."], []]
    detections = grounder.detect(images, phrases)
    assert len(detections) == 3 and len(detections[2]) == 0

    # Hand computation from the raw outputs: every query is kept at threshold 0; its box is
    # cxcywh (normalised) -> xyxy times [W, H, W, H], clipped; its label is the phrase holding its
    # most probable token (tokens: [CLS] dog . cat . [SEP] / [CLS] a man . guitar . [SEP]).
    network = grounder.lazy.model
    phrase_tokens = [{"dog": [1], "cat": [3]}, {"a man": [1, 2], "guitar": [4]}]
    for image, detection, tokens in zip(images, detections, phrase_tokens):
        height, width = image.shape[:2]
        inputs = processor(images=[Image.fromarray(image)], text=[format_caption(list(tokens))], return_tensors="pt")
        with torch.no_grad():
            outputs = network(**inputs)
        probs = outputs.logits[0].sigmoid()
        center_x, center_y, box_w, box_h = outputs.pred_boxes[0].unbind(-1)
        expected = torch.stack(
            [
                ((center_x - box_w / 2) * width).clamp(0, width),
                ((center_y - box_h / 2) * height).clamp(0, height),
                ((center_x + box_w / 2) * width).clamp(0, width),
                ((center_y + box_h / 2) * height).clamp(0, height),
            ],
            dim=-1,
        )
        assert detection.boxes.shape == (config.num_queries, 4) and detection.boxes.dtype == np.float32
        np.testing.assert_allclose(detection.boxes, expected.numpy(), atol=1e-3)
        np.testing.assert_allclose(detection.scores, probs.max(-1).values.numpy(), atol=1e-5)
        assert (detection.boxes[:, [0, 2]] <= width).all() and (detection.boxes[:, [1, 3]] <= height).all()
        assert (detection.boxes >= 0).all()
        names = list(tokens)
        best = torch.stack([probs[:, ids].max(-1).values for ids in tokens.values()]).argmax(0)
        assert detection.labels == [names[i] for i in best.tolist()]
        assert set(detection.labels) <= set(names)

    # A box threshold keeps exactly the queries whose best token probability passes it.
    threshold = float(np.median(detections[0].scores))
    torch.manual_seed(0)  # the same random weights as `grounder`
    strict = GroundingDinoGrounder.from_config(config, processor, box_threshold=threshold, text_threshold=0.0)
    kept = strict.detect(images[:1], phrases[:1])[0]
    assert len(kept) == int((detections[0].scores > threshold).sum()) > 0
    assert (kept.scores > threshold).all()
    assert kept.to_dict()["labels"] == kept.labels


def test_grounder_batches_match_one_image_at_a_time(dino_parts: tuple[object, object]) -> None:
    config, processor = dino_parts
    rng = np.random.default_rng(1)
    images = [*_images(), rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)]  # two sizes
    phrases = [["dog", "cat"], ["man"], ["a man", "guitar", "car"]]
    runs = []
    for batch_size in (1, 3):
        torch.manual_seed(0)  # the model is built on the first detect: same weights for both
        grounder = GroundingDinoGrounder.from_config(config, processor, box_threshold=0.1, batch_size=batch_size)
        runs.append(grounder.detect(images, phrases))
    for single, batched in zip(*runs):
        np.testing.assert_allclose(batched.boxes, single.boxes, atol=1e-3)
        np.testing.assert_allclose(batched.scores, single.scores, atol=1e-5)
        assert batched.labels == single.labels


def test_grounder_truncates_a_caption_longer_than_its_text_slots(
    dino_parts: tuple[object, object], caplog: pytest.LogCaptureFixture
) -> None:
    # Several untranslated descriptions easily pass GroundingDINO's 256 text tokens; transformers' model
    # raises a shape error on them unless the caption is cut to max_text_len, as IDEA's model does.
    config, processor = dino_parts
    torch.manual_seed(0)
    grounder = GroundingDinoGrounder.from_config(config, processor, box_threshold=0.0)
    long = " ".join(["a dog playing guitar"] * 70)  # 280 tokens
    with caplog.at_level("WARNING", logger="pseudolabel.vfm.grounding_dino"):
        (detection,) = grounder.detect([_images()[0]], [[long, "cat"]])
    assert len(detection) == config.num_queries and set(detection.labels) == {long}
    assert "phrases ['cat'] are ignored" in caplog.text


def test_grounder_without_phrases_makes_no_model_call(dino_parts: tuple[object, object]) -> None:
    config, processor = dino_parts
    grounder = vfm.create_grounder("grounding_dino", config=config, processor=processor)
    detections = grounder.detect(_images(), [[], [" ", "."]])
    assert [len(d) for d in detections] == [0, 0]
    assert detections[0].boxes.shape == (0, 4) and detections[0].scores.shape == (0,)
    assert not grounder.loaded


def test_grounder_rejects_bad_input(dino_parts: tuple[object, object]) -> None:
    config, processor = dino_parts
    grounder = vfm.create_grounder("grounding_dino", config=config, processor=processor)
    images = _images()
    with pytest.raises(ValueError, match="2 images but 1 phrase lists"):
        grounder.detect(images, [["dog"]])
    with pytest.raises(ValueError, match=r"images\[1\] must be an \[H, W, 3\] uint8"):
        grounder.detect([images[0], images[1].astype(np.float32)], [["dog"], ["cat"]])
    with pytest.raises(TypeError, match="list of strings"):
        grounder.detect(images, ["dog", "cat"])
    with pytest.raises(ValueError, match="box_threshold"):
        vfm.create_grounder("grounding_dino", box_threshold=1.5)
    with pytest.raises(ValueError, match="either model"):
        vfm.create_grounder(
            "grounding_dino", model="IDEA-Research/grounding-dino-tiny", config=config, processor=processor
        )
    assert not grounder.loaded


def test_grounder_loads_a_local_directory(dino_parts: tuple[object, object], tmp_path: Path) -> None:
    config, processor = dino_parts
    torch.manual_seed(1)
    built = GroundingDinoGrounder.from_config(config, processor, box_threshold=0.0)
    network = built.lazy.model
    network.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = GroundingDinoGrounder.from_pretrained(str(tmp_path), box_threshold=0.0)
    images, phrases = _images(), [["dog"], ["man", "cat"]]
    for expected, found in zip(built.detect(images, phrases), loaded.detect(images, phrases)):
        np.testing.assert_allclose(found.boxes, expected.boxes, atol=1e-4)
        assert found.labels == expected.labels


# --- segmenters ------------------------------------------------------------------------------------

BOX_A = [4, 4, 40, 30]
BOX_B = [30, 20, 88, 58]
BOX_C = [10, 30, 60, 95]


def test_segment_gives_the_or_of_per_box_masks_at_each_images_size(loaded_segmenter: vfm.Segmenter) -> None:
    small, tall = _images()
    masks = loaded_segmenter.segment([small, tall], [np.array([BOX_A, BOX_B]), np.array([BOX_C])])
    assert [m.shape for m in masks] == [small.shape[:2], tall.shape[:2]]
    assert all(m.dtype == np.bool_ for m in masks)

    mask_a, mask_b = loaded_segmenter.segment([small, small], [np.array([BOX_A]), np.array([BOX_B])])
    (mask_c,) = loaded_segmenter.segment([tall], [np.array([BOX_C])])
    assert (mask_a != mask_b).any()  # the OR below is not trivially one of the two
    np.testing.assert_array_equal(masks[0], mask_a | mask_b)
    np.testing.assert_array_equal(masks[1], mask_c)

    per_box = loaded_segmenter.segment_boxes([small], [np.array([BOX_A, BOX_B])])[0]
    assert per_box.masks.shape == (2, *small.shape[:2]) and per_box.scores.shape == (2,)
    np.testing.assert_array_equal(per_box.masks[0], mask_a)
    np.testing.assert_array_equal(per_box.masks[1], mask_b)


@pytest.mark.parametrize("name", SEGMENTERS)
def test_segment_without_boxes_gives_empty_masks_and_no_model_call(name: str) -> None:
    segmenter = _make_segmenter(name)
    small, tall = _images()
    masks = segmenter.segment([small, tall], [np.zeros((0, 4)), []])
    assert [m.shape for m in masks] == [small.shape[:2], tall.shape[:2]]
    assert not any(m.any() for m in masks)
    assert not segmenter.loaded
    with pytest.raises(ValueError, match=r"boxes\[1\] must be \[N, 4\]"):
        segmenter.segment([small, tall], [np.array([BOX_A]), np.array([1.0, 2.0, 3.0])])
    with pytest.raises(ValueError, match=r"boxes\[0\] must be xyxy"):
        segmenter.segment([small], [np.array([[40, 4, 4, 30]])])
    with pytest.raises(ValueError, match="2 images but 1 box arrays"):
        segmenter.segment([small, tall], [np.array([BOX_A])])
    assert not segmenter.loaded


@pytest.mark.parametrize("name", ["sam", "sam2"])
def test_transformers_segmenter_loads_a_local_directory(name: str, tmp_path: Path) -> None:
    built = _make_segmenter(name)
    network, processor = built.lazy.model, built.lazy.processor
    network.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = vfm.create_segmenter(name, model=str(tmp_path))
    images, boxes = _images(), [np.array([BOX_A, BOX_B]), np.array([BOX_C])]
    for expected, found in zip(built.segment_boxes(images, boxes), loaded.segment_boxes(images, boxes)):
        np.testing.assert_array_equal(found.masks, expected.masks)
        np.testing.assert_allclose(found.scores, expected.scores, atol=1e-6)


def test_segmenter_runs_in_the_requested_dtype() -> None:
    segmenter = _make_segmenter("sam2", dtype="bfloat16")
    small, _ = _images()
    (mask,) = segmenter.segment([small], [np.array([BOX_A])])
    network = segmenter.lazy.model
    assert next(network.parameters()).dtype == torch.bfloat16
    assert mask.shape == small.shape[:2] and mask.dtype == np.bool_
    with pytest.raises(ValueError, match="dtype must be one of"):
        vfm.create_segmenter("sam2", dtype="float64")


# --- registries and imports ------------------------------------------------------------------------


def test_unknown_backend_names_list_the_available_ones() -> None:
    assert {"cam", "grounding_dino"} <= set(vfm.available_grounders())
    assert {"grabcut", "sam", "sam2", "sam2_official"} <= set(vfm.available_segmenters())
    with pytest.raises(KeyError, match=r"unknown grounder 'owlvit'; available: \[.*'grounding_dino'"):
        vfm.create_grounder("owlvit")
    with pytest.raises(KeyError, match=r"unknown segmenter 'sam9'; available: \[.*'sam2_official'"):
        vfm.create_segmenter("sam9")


def test_importing_vfm_imports_no_heavy_module() -> None:
    code = (
        "import sys; from pseudolabel import vfm; vfm.available_grounders(); vfm.available_segmenters(); "
        "print(sorted(m for m in ('torch', 'transformers', 'sam2', 'hydra', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- sam2_official ---------------------------------------------------------------------------------


def test_sam2_official_without_the_package_says_how_to_install_it() -> None:
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        sys.modules["sam2"] = None  # as if the package were not installed
        from pseudolabel import vfm
        segmenter = vfm.create_segmenter("sam2_official", checkpoint=None)
        try:
            segmenter.segment([np.zeros((8, 8, 3), np.uint8)], [np.array([[1, 1, 5, 5]])])
        except ImportError as exc:
            print(exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 'pip install -e ".[sam2]"' in out.stdout and "SAM2_BUILD_CUDA=0" in out.stdout


@pytest.mark.skipif(not HAS_SAM2, reason="the sam2 package is not installed")
def test_sam2_official_leaves_hydra_global_state_alone(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text("answer: 42\n")
    code = textwrap.dedent(
        f"""
        import numpy as np
        from hydra import compose, initialize_config_dir
        from hydra.core.global_hydra import GlobalHydra
        from pseudolabel import vfm
        from pseudolabel.vfm.sam2_official import import_sam2

        # 1. No Hydra yet: importing sam2 must not leave its own Hydra instance behind.
        import_sam2()
        print("initialized after import:", GlobalHydra.instance().is_initialized())
        # 2. Inside a Hydra app: building must not need (or change) the app's config search path.
        with initialize_config_dir(config_dir={str(tmp_path)!r}, version_base="1.3"):
            segmenter = vfm.create_segmenter(
                "sam2_official", checkpoint=None, model_config={TINY_SAM2_CONFIG!r}, image_size={MODEL_SIZE},
                overrides={TINY_SAM2_OVERRIDES!r})
            (mask,) = segmenter.segment([np.zeros((40, 50, 3), np.uint8)], [np.array([[5, 5, 30, 30]])])
            print("app config:", compose("app").answer, mask.shape)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "initialized after import: False" in out.stdout
    assert "app config: 42 (40, 50)" in out.stdout


@pytest.mark.skipif(not HAS_SAM2, reason="the sam2 package is not installed")
def test_sam2_official_loads_metas_checkpoint_layout_strictly(tmp_path: Path) -> None:
    built = _make_segmenter("sam2_official")
    images, boxes = _images(), [np.array([BOX_A, BOX_B]), np.array([BOX_C])]
    expected = built.segment(images, boxes)
    state = built.predictor.model.state_dict()
    checkpoint = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": state}, checkpoint)  # the layout of Meta's released .pt files

    def load(path: Path) -> vfm.Segmenter:
        return vfm.segmenter.create(
            "sam2_official",
            checkpoint=path,
            model_config=TINY_SAM2_CONFIG,
            image_size=MODEL_SIZE,
            overrides=TINY_SAM2_OVERRIDES,
        )

    for found, wanted in zip(load(checkpoint).segment(images, boxes), expected):
        np.testing.assert_array_equal(found, wanted)

    from fractions import Fraction

    torch.save({"model": state, "x": Fraction(1, 2)}, tmp_path / "pickled.pt")
    with pytest.raises(ValueError, match=r"pickled.pt cannot be read as a weights-only torch checkpoint \(.*Fraction") as unsafe:
        load(tmp_path / "pickled.pt").segment(images, boxes)
    assert "set to `False" not in str(unsafe.value)
    torch.save(state, tmp_path / "bare.pt")
    with pytest.raises(KeyError, match="bare.pt is not a SAM 2 checkpoint: it has no 'model' entry"):
        load(tmp_path / "bare.pt").segment(images, boxes)
    partial = dict(state)
    partial.pop(next(iter(partial)))
    torch.save({"model": partial}, tmp_path / "partial.pt")
    with pytest.raises(KeyError, match=r"partial.pt: missing key\(s\) "):
        load(tmp_path / "partial.pt").segment(images, boxes)
    with pytest.raises(FileNotFoundError, match="missing.pt does not exist"):
        load(tmp_path / "missing.pt").segment(images, boxes)
    with pytest.raises(FileNotFoundError, match=r"packaged model configs: \[.*sam2.1_hiera_t.yaml"):
        vfm.create_segmenter("sam2_official", checkpoint=None, model_config="sam9.yaml").segment(images, boxes)
