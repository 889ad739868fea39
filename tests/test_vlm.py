"""Image describers (``pseudolabel.vlm``): input checks, the registry, and both backends on tiny random
models built offline. Random weights produce arbitrary text, so the checks are on structure (one string per
image and prompt, batching), on what reaches the model (prompt, system prompt, image-token counts computed by
hand from Qwen2-VL's resizing rule), and on the model shared with the Qwen2.5-Omni audio describer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pseudolabel import alm, vlm
from pseudolabel.alm.qwen2_5_omni import QWEN_OMNI_SYSTEM_PROMPT

REPO_ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [vlm.IMAGE_PROMPT, "What could be making a sound?"]


def random_image(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def qwen_vl() -> vlm.GenerativeImageDescriber:
    return vlm.create_vlm("qwen2_5_vl", config={}, max_new_tokens=3, batch_size=4)


@pytest.fixture(scope="module")
def qwen_omni() -> vlm.GenerativeImageDescriber:
    return vlm.create_vlm("qwen2_5_omni", config={}, max_new_tokens=3)


def test_importing_vlm_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import json, sys\n"
        "import pseudolabel.vlm as vlm\n"
        "names = vlm.available()\n"
        "print(json.dumps([names, [m for m in ('torch', 'transformers') if m in sys.modules]]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True, timeout=120
    )
    names, heavy = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"qwen2_5_omni", "qwen2_5_vl"} <= set(names)
    assert heavy == []


def test_registry_names_the_available_backends_for_an_unknown_one() -> None:
    with pytest.raises(KeyError, match="unknown image model 'llava'.*qwen2_5_omni.*qwen2_5_vl"):
        vlm.create_vlm("llava")


@pytest.mark.parametrize(
    ("images", "prompts", "error", "message"),
    [
        ([random_image(8, 8, 0), np.zeros((8, 8, 3), np.float32)], None, TypeError, r"images\[1\].*float32"),
        ([np.zeros((8, 8), np.uint8)], None, ValueError, r"images\[0\].*\[H, W, 3\]"),
        ([np.zeros((8, 8, 4), np.uint8)], None, ValueError, r"images\[0\].*\[H, W, 3\]"),
        ([np.zeros((0, 8, 3), np.uint8)], None, ValueError, r"images\[0\] is empty"),
        (random_image(8, 8, 0), None, TypeError, "single array"),
        ([random_image(8, 8, 0)], vlm.IMAGE_PROMPT, TypeError, "single string"),
    ],
)
def test_bad_input_fails_before_any_model_loads(images, prompts, error: type, message: str) -> None:
    describer = vlm.create_vlm("qwen2_5_vl")  # the real Hub id: loading it here would fail offline
    with pytest.raises(error, match=message):
        describer.describe(images, prompts)
    assert not describer.chat.lazy.loaded


def test_qwen_vl_gives_one_text_per_image_and_prompt(qwen_vl: vlm.GenerativeImageDescriber) -> None:
    images = [random_image(64, 80, 0), random_image(100, 60, 1), random_image(224, 224, 2)]
    texts = qwen_vl.describe(images, PROMPTS)
    assert len(texts) == 3 and all(len(row) == 2 for row in texts)
    assert all(isinstance(text, str) for row in texts for text in row)
    assert qwen_vl.describe([]) == []


def test_qwen_vl_passes_the_image_and_prompt(qwen_vl: vlm.GenerativeImageDescriber) -> None:
    inputs = qwen_vl.model_inputs([random_image(64, 80, 0), random_image(224, 224, 1)], PROMPTS)
    # Qwen2-VL smart_resize rounds each side to a multiple of 28 (64x80 -> 56x84, 224 stays), 14-px patches,
    # 2x2 patches per token: (4 * 6) / 4 = 6 and (16 * 16) / 4 = 64 image tokens.
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 6], [1, 16, 16]]
    tokenizer = qwen_vl.chat.lazy.processor.tokenizer
    for row, (prompt, tokens) in enumerate(zip(PROMPTS, [6, 64])):
        text = tokenizer.decode(inputs["input_ids"][row])
        assert text.count("<|image_pad|>") == tokens
        assert text.index("<|vision_end|>") < text.index(prompt)  # image first, then the prompt
        assert "<|im_start|>system" not in text  # no system prompt unless asked for


def test_qwen_vl_batching_does_not_change_the_texts(qwen_vl: vlm.GenerativeImageDescriber) -> None:
    images = [random_image(64, 80, 0), random_image(100, 60, 1)]
    one_at_a_time = vlm.create_vlm("qwen2_5_vl", config={}, max_new_tokens=3, batch_size=1)
    assert one_at_a_time.chat.lazy.model is qwen_vl.chat.lazy.model
    assert one_at_a_time.describe(images, PROMPTS) == qwen_vl.describe(images, PROMPTS)


def test_qwen_omni_describes_images_with_the_qwen_system_prompt(qwen_omni: vlm.GenerativeImageDescriber) -> None:
    images = [random_image(56, 56, 0), random_image(64, 80, 1)]
    texts = qwen_omni.describe(images)
    assert len(texts) == 2 and all(len(row) == 1 and isinstance(row[0], str) for row in texts)
    inputs = qwen_omni.model_inputs(images[:1], ["Who is there?"])
    text = qwen_omni.chat.lazy.processor.tokenizer.decode(inputs["input_ids"][0])
    assert QWEN_OMNI_SYSTEM_PROMPT in text
    assert text.count("<|IMAGE|>") == 4  # 56x56: 4x4 patches, 2x2 per token
    assert text.index("<|vision_eos|>") < text.index("Who is there?")


def test_qwen_omni_image_and_audio_describers_share_one_thinker(qwen_omni: vlm.GenerativeImageDescriber) -> None:
    audio = alm.create_alm("qwen2_5_omni", config={}, max_new_tokens=3)
    assert audio.chat.lazy.model is qwen_omni.chat.lazy.model
    other_seed = alm.create_alm("qwen2_5_omni", config={}, seed=1)
    assert other_seed.chat.lazy.model is not qwen_omni.chat.lazy.model


def test_qwen_vl_loads_a_saved_local_directory(qwen_vl: vlm.GenerativeImageDescriber, tmp_path: Path) -> None:
    import torch

    qwen_vl.chat.lazy.processor.save_pretrained(tmp_path)
    qwen_vl.chat.lazy.model.save_pretrained(tmp_path)
    loaded = vlm.create_vlm("qwen2_5_vl", model=str(tmp_path), max_new_tokens=3)
    images = [random_image(64, 80, 0)]
    assert loaded.describe(images, PROMPTS) == qwen_vl.describe(images, PROMPTS)
    ours, theirs = qwen_vl.chat.lazy.model.state_dict(), loaded.chat.lazy.model.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[key], theirs[key]) for key in ours)
