"""Audio describers (``pseudolabel.alm``): the one-second segmenter, input checks, the registry, the shipped
vocabularies, and every backend on a tiny random model built offline (tokenizer and processor included).

Random weights produce arbitrary text, so the generative backends are checked for structure (one string per
segment and prompt, batching), for what reaches the model (prompts, resampled audio, token counts computed
by hand from the processors' formulas), and the taggers against the model's own scores.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from openavs_st.data.audio import resample
from pseudolabel import alm
from pseudolabel.alm.qwen2_5_omni import AUDIO_PROMPT, QWEN_OMNI_SYSTEM_PROMPT

REPO_ROOT = Path(__file__).resolve().parents[1]
BACKENDS = {"qwen2_5_omni", "audio_flamingo3", "clap", "ast"}
VOCABULARY = ["Speech", "Dog", "Bark", "Silence", "Music", "Rain", "Engine", "Guitar"]


def noise(seconds: float, sample_rate: int, seed: int) -> np.ndarray:
    """Float32 white noise at 0.1 amplitude."""
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(round(seconds * sample_rate))).astype(np.float32)


def decoded_prompt(describer: alm.GenerativeAudioDescriber, inputs, row: int) -> str:
    """The text the model receives in row ``row`` (placeholders included)."""
    return describer.chat.lazy.processor.tokenizer.decode(inputs["input_ids"][row])


@pytest.fixture(scope="module")
def qwen() -> alm.GenerativeAudioDescriber:
    return alm.create_alm("qwen2_5_omni", config={}, max_new_tokens=3, batch_size=4)


@pytest.fixture(scope="module")
def flamingo() -> alm.GenerativeAudioDescriber:
    return alm.create_alm("audio_flamingo3", config={}, max_new_tokens=3)


@pytest.fixture(scope="module")
def vocabulary_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vocab") / "sounds.txt"
    path.write_text("# a test vocabulary\n" + "\n".join(VOCABULARY) + "\n\n")
    return path


@pytest.fixture(scope="module")
def clap(vocabulary_file: Path) -> alm.AudioTagger:
    return alm.create_alm("clap", config={}, vocabulary=vocabulary_file, top_k=3, threshold=0.0, batch_size=2)


@pytest.fixture(scope="module")
def ast_tagger() -> alm.AudioTagger:
    return alm.create_alm("ast", config={"id2label": dict(enumerate(VOCABULARY))}, top_k=3)


# --- no model ------------------------------------------------------------------------------------


def test_importing_alm_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import json, sys\n"
        "import pseudolabel.alm as alm\n"
        "names = alm.available()\n"
        "print(json.dumps([names, [m for m in ('torch', 'transformers') if m in sys.modules]]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True, timeout=120
    )
    names, heavy = json.loads(result.stdout.strip().splitlines()[-1])
    assert BACKENDS <= set(names)
    assert heavy == []


def test_split_seconds_pads_the_last_segment_and_drops_the_tail() -> None:
    wave = np.arange(10, dtype=np.float64)  # 2.5 s at 4 Hz
    segments = alm.split_seconds(wave, 4, 3)
    assert [segment.tolist() for segment in segments] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 0]]
    assert all(segment.dtype == np.float32 for segment in segments)
    assert [segment.tolist() for segment in alm.split_seconds(wave, 4, 4)][3] == [0, 0, 0, 0]
    assert [segment.tolist() for segment in alm.split_seconds(wave, 4, 2)] == [[0, 1, 2, 3], [4, 5, 6, 7]]


@pytest.mark.parametrize(
    ("wave", "sr", "num_frames", "message"),
    [
        (np.zeros((4, 2)), 4, 1, "mono"),
        (np.zeros(4), 0, 1, "sample_rate"),
        (np.zeros(4), 4, 0, "num_frames"),
    ],
)
def test_split_seconds_rejects_bad_input(wave: np.ndarray, sr: int, num_frames: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        alm.split_seconds(wave, sr, num_frames)


def test_registry_lists_backends_and_names_them_for_an_unknown_one() -> None:
    assert BACKENDS <= set(alm.available())
    with pytest.raises(KeyError, match="unknown audio model 'pengi2'.*audio_flamingo3.*qwen2_5_omni"):
        alm.create_alm("pengi2")


@pytest.mark.parametrize(
    ("segments", "sample_rate", "prompts", "error", "message"),
    [
        ([np.zeros(16, np.float32), np.zeros(16, np.int16)], 16000, None, TypeError, r"segments\[1\].*int16"),
        ([np.zeros((16, 2), np.float32)], 16000, None, ValueError, r"segments\[0\].*mono"),
        ([np.zeros(0, np.float32)], 16000, None, ValueError, r"segments\[0\] is empty"),
        ([np.array([0.0, np.nan], np.float32)], 16000, None, ValueError, r"segments\[0\].*NaN"),
        (np.zeros(16, np.float32), 16000, None, TypeError, "list of 1-D arrays"),
        ([np.zeros(16, np.float32)], 0, None, ValueError, "sample_rate"),
        ([np.zeros(16, np.float32)], 16000, "describe", TypeError, "single string"),
        ([np.zeros(16, np.float32)], 16000, [], ValueError, "empty"),
        ([np.zeros(16, np.float32)], 16000, ["ok", " "], ValueError, r"prompts\[1\]"),
    ],
)
def test_bad_describe_input_fails_before_any_model_loads(segments, sample_rate, prompts, error, message) -> None:
    describer = alm.create_alm("qwen2_5_omni")  # the real Hub id: loading it here would fail offline
    with pytest.raises(error, match=message):
        describer.describe(segments, sample_rate, prompts)
    assert not describer.chat.lazy.loaded


@pytest.mark.parametrize(
    ("name", "cfg", "error", "message"),
    [
        ("qwen2_5_omni", {"dtype": "float64"}, ValueError, "dtype"),
        ("audio_flamingo3", {"max_new_tokens": 0}, ValueError, "max_new_tokens"),
        ("ast", {"prompts": ["Describe"]}, TypeError, "prompts"),
        ("clap", {"prompts": ["a sound"]}, ValueError, "exactly one"),
        ("clap", {"vocabulary": "esc50"}, FileNotFoundError, "shipped vocabulary"),
        ("clap", {"threshold": 1.5}, ValueError, "threshold"),
        ("ast", {"top_k": 0}, ValueError, "top_k"),
        ("ast", {"model": None}, ValueError, "model id"),
    ],
)
def test_bad_config_is_refused_at_construction(name: str, cfg: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        alm.create_alm(name, **cfg)


def test_shipped_vocabularies_have_the_published_class_counts() -> None:
    audioset = alm.load_vocabulary("audioset")
    assert len(audioset) == 527 and len(set(audioset)) == 527
    # class_labels_indices.csv: index 0 is Speech, 137 Music, 500 Silence (/m/028v0c, dropped by AL-Ref-SAM2).
    assert (audioset[0], audioset[137], audioset[500]) == ("Speech", "Music", "Silence")
    assert audioset[1] == "Male speech, man speaking"
    vggsound = alm.load_vocabulary("vggsound")
    assert len(vggsound) == 309 and vggsound == sorted(vggsound)
    assert {"dog barking", "playing acoustic guitar", "lawn mowing"} <= set(vggsound)
    avsbench = alm.load_vocabulary("avsbench")
    assert len(avsbench) == 23 + 70 - 1  # 'helicopter' is both an S4 category and an AVSS class
    assert {"male speech", "playing ukulele", "emergency-car", "vacuum-cleaner", "woman"} <= set(avsbench)


def test_vocabulary_files_are_checked(tmp_path: Path) -> None:
    duplicated = tmp_path / "dup.txt"
    duplicated.write_text("# header\ndog\ncat\ndog\n")
    with pytest.raises(ValueError, match=r"dup\.txt.*'dog' at line/index 4 repeats line/index 2"):
        alm.load_vocabulary(duplicated)
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n\n")
    with pytest.raises(ValueError, match="holds no class names"):
        alm.load_vocabulary(empty)
    assert alm.load_vocabulary(["dog", " cat "]) == ["dog", "cat"]


# --- loading from a local directory ------------------------------------------------------------


def lazy_of(describer: alm.AudioDescriber) -> alm.LazyModel:
    return describer.chat.lazy if isinstance(describer, alm.GenerativeAudioDescriber) else describer.lazy


def assert_same_weights(first, second) -> None:
    import torch

    first_state, second_state = first.state_dict(), second.state_dict()
    assert first_state.keys() == second_state.keys()
    assert all(torch.equal(first_state[key], second_state[key]) for key in first_state)


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_each_backend_loads_a_saved_local_directory(name: str, tmp_path: Path) -> None:
    options = {"max_new_tokens": 3} if name in ("qwen2_5_omni", "audio_flamingo3") else {}
    built = alm.create_alm(name, config={}, **options)
    lazy_of(built).processor.save_pretrained(tmp_path)
    lazy_of(built).model.save_pretrained(tmp_path)
    loaded = alm.create_alm(name, model=str(tmp_path), **options)
    segments = [noise(1.0, 16000, seed) for seed in range(2)]
    assert loaded.describe(segments, 16000) == built.describe(segments, 16000)
    assert_same_weights(lazy_of(loaded).model, lazy_of(built).model)
    assert lazy_of(loaded).provenance()["model"] == str(tmp_path)


def test_qwen_omni_loads_the_thinker_from_the_original_full_checkpoint_layout(
    qwen: alm.GenerativeAudioDescriber, tmp_path: Path
) -> None:
    from safetensors.torch import save_file
    from transformers import Qwen2_5OmniConfig

    # Qwen/Qwen2.5-Omni-7B ships a Qwen2_5OmniConfig with a nested thinker_config and keys thinker.audio_tower.*,
    # thinker.visual.*, thinker.model.* (the language model) and thinker.lm_head.*.
    thinker = qwen.chat.lazy.model
    qwen.chat.lazy.processor.save_pretrained(tmp_path)
    Qwen2_5OmniConfig(thinker_config=thinker.config.to_dict()).save_pretrained(tmp_path)
    original_names = {
        "model.audio_tower.": "audio_tower.",
        "model.visual.": "visual.",
        "model.language_model.": "model.",
    }
    state = {}
    for key, tensor in thinker.state_dict().items():
        for ours, theirs in original_names.items():
            if key.startswith(ours):
                key = theirs + key[len(ours) :]
        state["thinker." + key] = tensor.contiguous()
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    loaded = alm.create_alm("qwen2_5_omni", model=str(tmp_path), max_new_tokens=3)
    assert_same_weights(loaded.chat.lazy.model, thinker)


# --- Qwen2.5-Omni (Thinker) ----------------------------------------------------------------------


def test_qwen_omni_gives_one_text_per_segment_and_prompt(qwen: alm.GenerativeAudioDescriber) -> None:
    segments = [noise(1.0, 44100, seed) for seed in range(3)]
    texts = qwen.describe(segments, 44100, prompts=[AUDIO_PROMPT, "What makes the sound?"])
    assert len(texts) == 3 and all(len(row) == 2 for row in texts)
    assert all(isinstance(text, str) for row in texts for text in row)
    assert qwen.describe([], 44100) == []
    assert len(qwen.describe(segments[:1], 44100)[0]) == 1  # the default prompt


def test_qwen_omni_resamples_to_the_processor_rate_and_passes_prompts(qwen: alm.GenerativeAudioDescriber) -> None:
    processor = qwen.chat.lazy.processor
    assert qwen.sample_rate == processor.feature_extractor.sampling_rate == 16000
    inputs = qwen.model_inputs([noise(1.0, 44100, 0), noise(0.5, 44100, 1)], 44100, ["first prompt", "second"])
    # Whisper features: one frame per 160 samples of 16 kHz audio (441 / 220 frames without resampling).
    assert inputs["feature_attention_mask"].sum(-1).tolist() == [100, 50]
    # Audio tokens: conv stride 2 then pool 2, (L - 1) // 2 + 1 then (L - 2) // 2 + 1: 100 -> 25, 50 -> 12.
    for row, (prompt, tokens) in enumerate([("first prompt", 25), ("second", 12)]):
        text = decoded_prompt(qwen, inputs, row)
        assert text.count("<|AUDIO|>") == tokens
        assert QWEN_OMNI_SYSTEM_PROMPT in text
        assert text.index("<|audio_eos|>") < text.index(prompt)  # audio first, then the prompt
    with pytest.raises(ValueError, match="2 segments but 1 prompts"):
        qwen.model_inputs([noise(1.0, 16000, 0)] * 2, 16000, ["one"])


def test_qwen_omni_batching_does_not_change_the_texts(qwen: alm.GenerativeAudioDescriber) -> None:
    segments = [noise(1.0, 16000, seed) for seed in range(3)]
    prompts = [AUDIO_PROMPT, "Name the sound source."]
    one_at_a_time = alm.create_alm("qwen2_5_omni", config={}, max_new_tokens=3, batch_size=1)
    assert one_at_a_time.chat.lazy.model is qwen.chat.lazy.model  # same config and seed: one shared model
    assert one_at_a_time.describe(segments, 16000, prompts) == qwen.describe(segments, 16000, prompts)


# --- Audio Flamingo 3 ----------------------------------------------------------------------------


def test_audio_flamingo3_describes_resampled_audio_with_the_prompt(flamingo: alm.GenerativeAudioDescriber) -> None:
    texts = flamingo.describe([noise(1.0, 48000, 0), noise(1.0, 48000, 1)], 48000)
    assert len(texts) == 2 and all(len(row) == 1 and isinstance(row[0], str) for row in texts)
    assert flamingo.sample_rate == 16000
    inputs = flamingo.model_inputs([noise(1.0, 48000, 0)], 48000, [AUDIO_PROMPT])
    assert inputs["input_features_mask"].sum(-1).tolist() == [100]
    text = decoded_prompt(flamingo, inputs, 0)
    assert text.count("<sound>") == 25  # (100 - 1) // 2 + 1 = 50 after the conv, (50 - 2) // 2 + 1 after pooling
    assert text.index(AUDIO_PROMPT) < text.index("<sound>")  # AF3's order: the prompt, then the audio
    assert flamingo.provenance()["decoding"] == "greedy"


# --- CLAP ----------------------------------------------------------------------------------------


def test_clap_scores_are_the_models_audio_text_softmax(clap: alm.AudioTagger) -> None:
    import torch

    segments = [noise(1.0, 48000, seed) for seed in range(3)]
    scores = clap.scores(segments, 48000)
    assert scores.shape == (3, len(VOCABULARY)) and clap.labels == VOCABULARY
    processor, model = clap.lazy.processor, clap.lazy.model
    texts = [f"This is a sound of {name}" for name in VOCABULARY]
    batch = processor(text=texts, audio=segments, sampling_rate=48000, return_tensors="pt", padding=True)
    with torch.inference_mode():
        expected = model(**batch).logits_per_audio.softmax(dim=-1).numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-6)


def test_clap_resamples_to_48k(clap: alm.AudioTagger) -> None:
    at_16k = noise(1.0, 16000, 7)
    np.testing.assert_allclose(
        clap.scores([at_16k], 16000), clap.scores([resample(at_16k, 16000, 48000)], 48000), rtol=1e-5, atol=1e-7
    )


def test_clap_text_is_the_top_k_of_the_scores_without_silence(clap: alm.AudioTagger) -> None:
    segments = [noise(1.0, 48000, seed) for seed in range(2)]
    templates = ["This is a sound of {}", "{}"]
    texts = clap.describe(segments, 48000, prompts=templates)
    silence = VOCABULARY.index("Silence")
    for column, template in enumerate(templates):
        scores = clap.scores(segments, 48000, prompt=template)
        for row, text in enumerate(texts):
            ranked = [index for index in np.argsort(-scores[row], kind="stable") if index != silence]
            assert text[column] == ", ".join(VOCABULARY[index] for index in ranked[:3])
            assert set(text[column].split(", ")) <= set(VOCABULARY) - {"Silence"}


def test_clap_threshold_and_exclude(vocabulary_file: Path, clap: alm.AudioTagger) -> None:
    segment = [noise(1.0, 48000, 3)]
    strict = alm.create_alm("clap", config={}, vocabulary=vocabulary_file, threshold=0.99)
    assert strict.describe(segment, 48000) == [[""]]  # 8 near-uniform classes: nothing reaches 0.99
    scores = clap.scores(segment, 48000)[0]
    best = VOCABULARY[int(np.argmax(scores))]
    no_best = alm.create_alm("clap", config={}, vocabulary=vocabulary_file, top_k=1, threshold=0.0, exclude=[best])
    assert no_best.describe(segment, 48000)[0][0] not in ("", best)
    unknown = alm.create_alm("clap", config={}, vocabulary=vocabulary_file, exclude=["Thunder"])
    with pytest.raises(ValueError, match="Thunder"):
        unknown.describe(segment, 48000)


# --- AST -----------------------------------------------------------------------------------------


def test_ast_returns_id2label_names_ranked_by_sigmoid(ast_tagger: alm.AudioTagger) -> None:
    import torch

    segments = [noise(1.0, 22050, seed) for seed in range(2)]
    texts = ast_tagger.describe(segments, 22050)
    assert ast_tagger.labels == VOCABULARY and ast_tagger.sample_rate == 16000
    features = ast_tagger.lazy.processor(
        [resample(segment, 22050, 16000) for segment in segments], sampling_rate=16000, return_tensors="pt"
    )
    with torch.inference_mode():
        probabilities = torch.sigmoid(ast_tagger.lazy.model(**features).logits).numpy()
    silence = VOCABULARY.index("Silence")
    for row, text in enumerate(texts):
        ranked = [index for index in np.argsort(-probabilities[row], kind="stable") if index != silence]
        assert text == [", ".join(VOCABULARY[index] for index in ranked[:3])]
    with pytest.raises(ValueError, match="takes no prompts"):
        ast_tagger.describe(segments, 22050, prompts=["Describe"])


def test_ast_tiny_build_uses_the_audioset_names() -> None:
    tagger = alm.create_alm("ast", config={})
    assert tagger.labels == alm.load_vocabulary("audioset")
    assert tagger.provenance()["model"] == "random-init"
