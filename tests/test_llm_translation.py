"""LLM translation without a server: strategies' user messages, the answer parser, the response cache,
the ``none`` and ``hf`` translators, the registry and input validation."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pseudolabel import llm
from pseudolabel.llm.cache import ResponseCache, request_key
from pseudolabel.llm.strategies import FrameAnswer, get_strategy

PER_FRAME = get_strategy("prompt_frame")
MODEL = get_strategy("model")


def parse(response: str, n_frames: int) -> tuple[list[tuple[str, ...]], list[str], tuple[str, ...]]:
    parsed = PER_FRAME.parse(response, n_frames)
    return [a.phrases for a in parsed.answers], [a.status for a in parsed.answers], parsed.notes


# --- parser ----------------------------------------------------------------------------------------


def test_parser_one_answer_tag_per_frame_with_several_objects() -> None:
    phrases, status, notes = parse(
        "<answer>Dog, man , DOG</answer>\n<answer> \"Car engine\"; wind.</answer>\n<answer>guitar</answer>", 3
    )
    assert phrases == [("dog", "man"), ("car engine", "wind"), ("guitar",)]
    assert status == ["ok", "ok", "ok"] and notes == ()


def test_parser_one_answer_block_with_one_line_per_frame() -> None:
    phrases, status, _ = parse("Here you go:\n<answer>\n1. dog\n2. cat, bird\n- piano\n</answer>", 3)
    assert phrases == [("dog",), ("cat", "bird"), ("piano",)]
    assert status == ["ok"] * 3


@pytest.mark.parametrize("nothing", ["none", "None.", "silence", "no sound", "Nothing", "", "  "])
def test_parser_nothing_sounds_gives_empty_phrases(nothing: str) -> None:
    phrases, status, _ = parse(f"<answer>dog</answer><answer>{nothing}</answer>", 2)
    assert phrases == [("dog",), ()]
    assert status == ["ok", "silent"]


def test_parser_drops_none_next_to_real_objects() -> None:
    assert parse("<answer>dog, none</answer>", 1)[0] == [("dog",)]


def test_parser_missing_lines_are_missing() -> None:
    phrases, status, _ = parse("<answer>dog</answer>\n<answer>cat</answer>", 4)
    assert phrases == [("dog",), ("cat",), (), ()]
    assert status == ["ok", "ok", "missing", "missing"]


def test_parser_extra_unlabelled_lines_make_every_frame_fall_back() -> None:
    # Four unlabelled answers for two frames: which line is which frame is unknown.
    phrases, status, notes = parse("<answer>dog\ncat\nbird\nfish</answer>", 2)
    assert phrases == [(), ()]
    assert status == ["malformed", "malformed"]
    assert notes == ("4 unlabelled answers for 2 frames: cannot tell which is which",)
    # Labelled lines stay unambiguous: the extra frame's answer is dropped with a note.
    phrases, status, notes = parse("<answer>frame 0: dog\nframe 1: cat\nframe 5: bird</answer>", 2)
    assert phrases == [("dog",), ("cat",)] and status == ["ok", "ok"]
    assert notes == ("ignored answer for frame 5 (clip has 2): 'bird'",)


def test_parser_aligns_labelled_answers_by_frame() -> None:
    phrases, status, _ = parse("<answer>frame 2: cat\nFrame 0: dog\n**Frame 1**: none</answer>", 3)
    assert phrases == [("dog",), (), ("cat",)] and status == ["ok", "silent", "ok"]

    phrases, _, notes = parse("<answer><frame1>Cat</frame1></answer><answer><frame2>dog</frame2></answer>", 2)
    assert phrases == [("cat",), ("dog",)] and notes == ("answer frame labels were 1-based",)

    phrases, status, notes = parse("<answer>frame 0: dog\nframe 5: cat</answer>", 3)
    assert phrases == [("dog",), (), ()] and status == ["ok", "missing", "missing"]
    assert notes == ("ignored answer for frame 5 (clip has 3): 'cat'",)


def test_parser_no_tag_and_unclosed_tag() -> None:
    phrases, status, notes = parse("dog\ncat", 2)
    assert status == ["missing", "missing"] and notes == ("no <answer> tag in response",)
    phrases, status, _ = parse("<answer>dog\n<answer>cat", 2)
    assert phrases == [("dog",), ("cat",)] and status == ["ok", "ok"]


def test_parser_malformed_answers() -> None:
    long_sentence = "the sound is most likely produced by the large brown dog in the yard"
    phrases, status, _ = parse(f"<answer>{long_sentence}</answer><answer><b>dog</b></answer><answer>dog</answer>", 3)
    assert status == ["malformed", "malformed", "ok"]
    assert phrases == [(), (), ("dog",)]
    assert llm.parse_answer_text("a b c d e f g h i", max_phrase_words=9).status == "ok"
    assert llm.parse_answer_text("a b c d e f g h i", max_phrase_words=8).status == "malformed"


def test_parser_model_strategy_uses_last_answer_for_every_frame() -> None:
    response = (
        "Image agent 0 shows a parrot; the word <answer> is a tag.\n"
        "Audio agent 1 hears speech.\n<answer>Woman, parrot</answer>"
    )
    parsed = MODEL.parse(response, 3)
    assert parsed.answers == (FrameAnswer(("woman", "parrot"), "ok"),) * 3
    assert parsed.notes == ("2 answer blocks; used the last",)
    assert MODEL.parse("<answer>none</answer>", 2).answers == (FrameAnswer((), "silent"),) * 2
    assert [a.status for a in MODEL.parse("I think a parrot.", 2).answers] == ["missing", "missing"]


# --- strategies ------------------------------------------------------------------------------------


def test_flat_strategies_translate_the_first_description() -> None:
    clip = llm.ClipDescriptions.from_lists("c", audio=[["Dog barking.", "dog"], ["cat  \n meows", "cat"]])
    for name in ("basic", "frame"):
        (request,) = get_strategy(name).build_requests(clip)
        assert request.frames == (0, 1)
        assert request.user_message == "<frame0>Dog barking.</frame0>\n<frame1>cat meows</frame1>"
        assert get_strategy(name).source_texts(clip.frames[1]) == ("cat  \n meows",)
    assert PER_FRAME.source_texts(clip.frames[1]) == ("cat  \n meows", "cat")


def test_strategy_prompt_files_exist_and_differ() -> None:
    texts = {name: llm.load_prompt(strategy.prompt_file) for name, strategy in llm.STRATEGIES.items()}
    assert sorted(texts) == ["basic", "frame", "model", "prompt", "prompt_frame"]
    assert len(set(texts.values())) == 5
    assert all("<answer>" in text and "</answer>" in text for text in texts.values())


def test_bad_input_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="clip 'c': no frames"):
        llm.ClipDescriptions("c", ())
    with pytest.raises(TypeError, match="audio descriptions must be a sequence"):
        llm.FrameDescriptions("a dog barks")
    with pytest.raises(TypeError, match="is int, not str"):
        llm.FrameDescriptions(("dog", 3))
    with pytest.raises(ValueError, match="2 frames of audio descriptions but 1 of image"):
        llm.ClipDescriptions.from_lists("c", audio=[["a"], ["b"]], image=[["x"]])
    empty_frame = llm.ClipDescriptions.from_lists("c", audio=[["a"], []])
    with pytest.raises(ValueError, match="clip 'c' frame 1: no audio description"):
        PER_FRAME.build_requests(empty_frame)
    with pytest.raises(KeyError, match="unknown LLM translation strategy 'fancy'"):
        get_strategy("fancy")
    with pytest.raises(FileNotFoundError, match="missing.txt does not exist"):
        llm.load_prompt(tmp_path / "missing.txt")
    (tmp_path / "blank.txt").write_text("\n")
    with pytest.raises(ValueError, match="blank.txt is empty"):
        llm.load_prompt(tmp_path / "blank.txt")


# --- cache -------------------------------------------------------------------------------------------


def test_cache_key_covers_model_messages_temperature_seed() -> None:
    messages = [{"role": "user", "content": "x"}]
    base = request_key("m", messages, 0.0, None, 100)
    assert base == request_key("m", [{"content": "x", "role": "user"}], 0, None, 100)
    variants = [
        request_key("m2", messages, 0.0, None, 100),
        request_key("m", [{"role": "user", "content": "y"}], 0.0, None, 100),
        request_key("m", messages, 0.7, None, 100),
        request_key("m", messages, 0.0, 1, 100),
        request_key("m", messages, 0.0, None, 200),
    ]
    assert len({base, *variants}) == 6 and all(len(k) == 64 for k in variants)


def test_cache_roundtrip_is_atomic_and_ignores_corrupt_entries(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    key = request_key("m", [], 0.0, None, 1)
    assert cache.get(key) is None
    entry = {"response": "<answer>dog</answer>", "prompt_tokens": 3, "completion_tokens": 1}
    cache.put(key, entry)
    assert cache.get(key) == {**entry, "key": key}
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [f"{key}.json"]
    cache.path(key).write_text('{"response": "trunc')
    assert cache.get(key) is None
    cache.path(key).write_text(json.dumps({"key": key, "answer": "no response field"}))
    assert cache.get(key) is None


# --- none backend, registry, sync wrappers ------------------------------------------------------------


def test_none_backend_passes_raw_text_through() -> None:
    translator = llm.create("none")
    clip = llm.ClipDescriptions.from_lists("c", audio=[["A dog barks.", "a dog barks", "Dog"], []])
    result = translator.translate(clip)
    assert result.phrases == [["a dog barks", "dog"], []]
    assert result.record.frame_status == ["raw", "raw"] and result.record.backend == "none"
    assert result.record.cost_usd == 0.0 and json.loads(json.dumps(result.record.to_dict()))["clip_id"] == "c"


def test_registry_and_config_errors() -> None:
    assert llm.available() == ["hf", "none", "openai"]
    with pytest.raises(KeyError, match="unknown LLM translator 'gpt'.*available"):
        llm.create("gpt")
    with pytest.raises(ValueError, match="price of 'gpt-4o-mini' must be"):
        llm.create("openai", prices={"gpt-4o-mini": [0.15]})
    with pytest.raises(ValueError, match="concurrency must be >= 1"):
        llm.create("openai", concurrency=0)
    with pytest.raises(ValueError, match="model_scope must be 'frame' or 'clip'"):
        llm.create("openai", model_scope="video")
    with pytest.raises(TypeError, match="takes no 'concurrency'"):
        llm.create("hf", model="x", concurrency=4)


def test_sync_wrapper_refuses_a_running_loop() -> None:
    clip = llm.ClipDescriptions.from_lists("c", audio=[["dog"]])

    async def main() -> None:
        with pytest.raises(RuntimeError, match="await translate_many_async"):
            llm.create("none").translate(clip)
        assert (await llm.create("none").translate_async(clip)).phrases == [["dog"]]

    asyncio.run(main())


def test_importing_the_package_stays_light() -> None:
    code = (
        "import sys, pseudolabel.llm as m; m.available(); "
        "heavy = [n for n in ('openai', 'transformers', 'torch', 'lightning') if n in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- hf backend -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 1-layer Llama with a byte-level tokenizer and a chat template, saved to a directory."""
    import torch
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Tokenizer

    vocab = {char: index for index, char in enumerate(sorted(ByteLevel.alphabet()))}
    for special in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        vocab[special] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=[], unk_token=None, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    config = LlamaConfig(
        vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=4096, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny_chat_llm")
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_hf_backend_runs_end_to_end_and_falls_back(tiny_chat_model: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_chat_model, model_dir)
    clip = llm.ClipDescriptions.from_lists("c", audio=[["A dog barks.", "dog"], ["rain", "wind"]])
    translator = llm.create("hf", model=str(model_dir), max_tokens=12, cache_dir=tmp_path / "cache")

    result = translator.translate(clip)

    record = result.record
    assert record.backend == "hf" and len(record.raw_responses) == 1
    assert record.completion_tokens == 12  # the max_tokens budget: a greedy random model never stops early here
    assert record.prompt_tokens > len(translator.system_prompt)  # byte-level: >= one token per byte
    assert record.cost_usd is None  # a local model has no price entry
    for t, status in enumerate(record.frame_status):  # whatever it produced, each frame is resolved
        assert status in ("ok", "silent", "fallback:missing", "fallback:malformed")
        if status.startswith("fallback"):
            assert result.phrases[t] == [["a dog barks", "dog"], ["rain", "wind"]][t]

    # A random model's answer does not parse for every frame: it is never cached, so a rerun asks again.
    assert any(status.startswith("fallback") for status in record.frame_status)
    assert not list((tmp_path / "cache").rglob("*.json"))
    again = llm.create("hf", model=str(model_dir), max_tokens=12, cache_dir=tmp_path / "cache").translate(clip)
    assert not again.record.cache_hit and again.record.raw_responses == record.raw_responses


def test_hf_backend_model_strategy_and_sampling(tiny_chat_model: Path) -> None:
    clip = llm.ClipDescriptions.from_lists("c", audio=[["dog"], ["cat"]], image=[["a dog"], ["a cat"]])
    translator = llm.create(
        "hf", model=str(tiny_chat_model), strategy="model", model_scope="frame", max_tokens=4, temperature=0.8, seed=3, dtype="float32"
    )
    first, second = translator.translate_many([clip, clip])
    assert len(first.record.raw_responses) == 2  # model_scope="frame": one request per frame
    assert first.record.raw_responses == second.record.raw_responses  # seeded sampling is repeatable
    assert 2 <= first.record.completion_tokens <= 8
