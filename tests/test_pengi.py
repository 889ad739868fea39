"""Pengi (``pseudolabel.alm.pengi``): the original key layout, offline tiny builds, audio preparation, batched
beam search, text clean-up and the ``pengi`` ALM component.

The full-size layouts ``tests/data/official_keys/pengi_{base,base_no_text_enc}.tsv`` were written from the
original model definition (see ``make_pengi_keys.py`` there); the tiny model checks the loader on its own
layout at test speed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from official_layouts import random_state_dict, read_layout

from pseudolabel import alm
from pseudolabel.alm.pengi import PENGI_PROMPTS, Pengi, PengiDescriber
from pseudolabel.alm.pengi.decode import cap_repetition, clean_text
from pseudolabel.alm.pengi.htsat import slaney_mel
from pseudolabel.alm.pengi.model import PengiConfig, PengiModel, prepare_audio
from pseudolabel.components import ComponentConfigError


def tone(seconds: float, sample_rate: int, freq: float) -> np.ndarray:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny models run op by op: one thread avoids waiting on a busy second core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def describer() -> PengiDescriber:
    return alm.create_alm("pengi", config={}, batch_size=15)


# --- the original key layout ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["base", "base_no_text_enc"])
def test_full_size_model_has_the_original_layout(variant: str) -> None:
    from transformers import CLIPTextConfig, GPT2Config

    with torch.device("meta"):  # gpt2 and the clip-vit-base-patch16 text tower, shapes only
        model = PengiModel(PengiConfig.named(variant), GPT2Config(), CLIPTextConfig(projection_dim=512))
    expected = read_layout(f"pengi_{variant}.tsv")
    ours = model.expected_keys()
    assert sorted(set(expected) - set(ours)) == [] and sorted(set(ours) - set(expected)) == []
    assert {key: shape for key, shape in ours.items()} == expected


def tiny_model(text_encoder: bool = True) -> Pengi:
    torch.manual_seed(0)
    return Pengi.tiny(text_encoder=text_encoder)


@pytest.mark.parametrize("text_encoder", [True, False])
def test_original_layout_loads_strictly_and_a_renamed_key_is_named(text_encoder: bool) -> None:
    target = tiny_model(text_encoder).model
    layout = target.expected_keys()
    state = random_state_dict(layout, seed=1)
    target.load_original_state_dict(state)
    loaded = target.state_dict()
    name = "caption_decoder.audio_project.prefix_const"
    assert torch.equal(loaded[name], state[name])
    assert torch.equal(loaded["audio_encoder.base.htsat.logmel_extractor.melW"],
                       state["audio_encoder.base.htsat.logmel_extractor.melW"])  # fmt: skip
    # a DataParallel save (module. prefix) loads too
    target.load_original_state_dict({f"module.{key}": value for key, value in state.items()})

    old = "caption_decoder.text_project.transformer.layers.0.attn.project.weight"
    renamed = {(old.replace("project.weight", "proj.weight") if key == old else key): v for key, v in state.items()}
    with pytest.raises(KeyError, match=r"missing keys \(1\).*attn\.project\.weight.*unexpected keys \(1\).*attn\.proj\.weight"):
        target.load_original_state_dict(renamed, source="renamed.pth")
    wrong = dict(state, **{old: torch.zeros(3, 3)})
    with pytest.raises(ValueError, match=rf"{old} has shape \(3, 3\)"):
        target.load_original_state_dict(wrong)


def save_user_files(pengi: Pengi, root: Path) -> dict[str, Path]:
    """What a user has: the checkpoint (original {'model': ...} layout) and the gpt2 / clip directories."""
    state = {key: value.clone() for key, value in pengi.model.state_dict().items()}
    torch.save({"model": state, "epoch": 3}, root / "base.pth")
    pengi.model.gpt.config.save_pretrained(root / "gpt2")
    pengi.dec_tokenizer.save_pretrained(root / "gpt2")
    pengi.model.caption_encoder.base.config.save_pretrained(root / "clip")
    pengi.enc_tokenizer.save_pretrained(root / "clip")
    return {"weights": root / "base.pth", "gpt2": root / "gpt2", "clip": root / "clip"}


def test_from_pretrained_reads_a_checkpoint_and_local_dirs_offline(tmp_path: Path) -> None:
    from pseudolabel.alm.pengi import TINY_PENGI

    built = tiny_model()
    files = save_user_files(built, tmp_path)
    sizes = {**TINY_PENGI["pengi"], "htsat": TINY_PENGI["htsat"]}
    loaded = Pengi.from_pretrained("base", weights=files["weights"], gpt2=files["gpt2"], clip=files["clip"], sizes=sizes)
    clip = [tone(1.0, 16000, 440.0)]
    assert loaded.describe(clip, 16000) == built.describe(clip, 16000)


def test_missing_weights_name_the_key_the_file_and_where_they_come_from(tmp_path: Path) -> None:
    with pytest.raises(ComponentConfigError, match=r"set weights: .*base\.pth.*Zenodo.*8387083"):
        PengiDescriber()
    missing = tmp_path / "base.pth"
    with pytest.raises(ComponentConfigError, match=rf"weights: {missing} does not exist.*labeler\.alm\.pengi\.weights.*8387083"):
        PengiDescriber(weights=missing)
    with pytest.raises(FileNotFoundError, match=rf"{missing} does not exist.*8387083"):
        Pengi.from_pretrained(weights=missing, gpt2=tmp_path, clip=tmp_path)


def test_checkpoint_files_are_read_weights_only_and_bad_ones_named(tmp_path: Path) -> None:
    import argparse

    from pseudolabel.alm.pengi.model import read_checkpoint

    state = {"a.weight": torch.ones(2)}
    torch.save({"model": state, "args": argparse.Namespace(lr=1e-4)}, tmp_path / "with_args.pth")
    assert torch.equal(read_checkpoint(tmp_path / "with_args.pth")["a.weight"], state["a.weight"])
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"text\.pth cannot be read as a weights-only torch checkpoint"):
        read_checkpoint(tmp_path / "text.pth")
    torch.save({"model": {"a.weight": [1, 2]}}, tmp_path / "lists.pth")
    with pytest.raises(ValueError, match=r"lists\.pth holds no state dict"):
        read_checkpoint(tmp_path / "lists.pth")
    # a pickled class: torch's reason is kept, its advice to retry with weights_only=False is not
    from fractions import Fraction

    torch.save({"model": state, "x": Fraction(1, 2)}, tmp_path / "pickled.pth")
    with pytest.raises(ValueError) as info:
        read_checkpoint(tmp_path / "pickled.pth")
    message = str(info.value)
    assert "pickled.pth cannot be read as a weights-only torch checkpoint" in message
    assert "fractions.Fraction was not an allowed global" in message and "\n" not in message
    assert "weights_only` set to `False" not in message and "add_safe_globals" not in message
    assert "set to `False" not in str(pytest.raises(ValueError, read_checkpoint, tmp_path / "text.pth").value)


def test_a_missing_gpt2_config_names_labeler_alm_pengi_gpt2_not_weights(tmp_path: Path) -> None:
    from pseudolabel.components import ComponentLoadError, load_all

    files = save_user_files(tiny_model(), tmp_path)  # a readable checkpoint: the gpt2 / clip folder is what fails
    missing = str(tmp_path / "nothing")
    for option, given in (("gpt2", {"gpt2": missing}), ("clip", {"gpt2": str(files["gpt2"]), "clip": missing})):
        describer = PengiDescriber(weights=files["weights"], **given)
        describer.config_key = "labeler.alm.pengi"
        with pytest.raises(ComponentLoadError) as info:
            load_all([describer])
        message = str(info.value)
        assert f"labeler.alm.pengi: could not load its {option} (FileNotFoundError: Pengi {option}=" in message
        assert f"set labeler.alm.pengi.{option}= to a local directory" in message
        assert "pengi.weights" not in message and "\n" not in message


# --- audio ---------------------------------------------------------------------------------------------


def test_prepare_audio_tiles_short_clips_and_crops_long_ones_deterministically() -> None:
    rate = 100
    short = np.arange(100, dtype=np.float32)  # 1 s -> seven copies
    np.testing.assert_array_equal(prepare_audio(short, rate, target_rate=rate), np.tile(short, 7))
    odd = np.arange(300, dtype=np.float32)  # 3 s -> 3 s + 3 s + the first 1 s
    np.testing.assert_array_equal(prepare_audio(odd, rate, target_rate=rate), np.concatenate([odd, odd, odd[:100]]))
    long = np.arange(900, dtype=np.float32)  # 9 s -> the middle 7 s
    np.testing.assert_array_equal(prepare_audio(long, rate, target_rate=rate), long[100:800])
    seeded = prepare_audio(long, rate, target_rate=rate, crop=5)
    np.testing.assert_array_equal(seeded, prepare_audio(long, rate, target_rate=rate, crop=5))
    assert seeded.shape == (700,) and seeded[0] in range(200) and np.all(np.diff(seeded) == 1)
    stereo = np.stack([np.ones(700, np.float32), 3 * np.ones(700, np.float32)])
    np.testing.assert_array_equal(prepare_audio(stereo, rate, target_rate=rate), np.full(700, 2.0, np.float32))
    concat = prepare_audio(stereo, rate, target_rate=rate, downmix="concat")  # the original's reshape(-1): 14 s
    np.testing.assert_array_equal(concat, np.concatenate([np.ones(350), 3 * np.ones(350)]))
    with pytest.raises(ValueError, match="crop must be"):
        prepare_audio(long, rate, target_rate=rate, crop="random")


def test_slaney_mel_filters_have_unit_area_and_peak_at_their_centres() -> None:
    sr, n_fft = 32000, 1024
    weights = slaney_mel(sr, n_fft, 64, 50.0, 14000.0)
    assert weights.shape == (64, 513) and (weights >= 0).all()
    bin_hz = sr / n_fft
    widths = (weights > 0).sum(axis=1)
    areas = weights.sum(axis=1) * bin_hz  # Slaney normalisation: each triangle has area 1 (in Hz)
    np.testing.assert_allclose(areas[widths > 12], 1.0, rtol=0.05)
    peaks = weights.argmax(axis=1)
    assert np.all(np.diff(peaks) >= 0) and peaks[-1] * bin_hz < 14000


# --- generation ----------------------------------------------------------------------------------------


def test_tiny_pengi_describes_a_1s_and_a_9s_clip_and_repeats_itself(describer: PengiDescriber) -> None:
    one = [tone(1.0, 16000, 440.0)]
    nine = [np.concatenate([tone(4.0, 16000, 300.0), tone(5.0, 16000, 900.0)])]
    for clip in (one, nine):
        texts = describer.describe(clip, 16000)
        assert len(texts) == 1 and len(texts[0]) == len(PENGI_PROMPTS)
        assert all(isinstance(text, str) and "<|endoftext|>" not in text for text in texts[0])
    beams = describer.pengi.generate(nine * 3, 16000, list(PENGI_PROMPTS))
    assert all(1 <= len(b.tokens[0]) <= 30 and len(b.tokens) == 3 for b in beams)
    assert all(b.scores == sorted(b.scores, reverse=True) for b in beams)
    again = alm.create_alm("pengi", config={})  # a fresh build with the same seed
    assert again.describe(nine, 16000) == describer.describe(nine, 16000) == describer.describe(nine, 16000)


def test_batched_describe_equals_one_call_per_pair(describer: PengiDescriber) -> None:
    segments = [tone(1.0, 16000, freq) for freq in (110.0, 440.0, 1000.0, 2500.0, 5000.0)]
    batched = describer.describe(segments, 16000)
    single = [[describer.describe([segment], 16000, [prompt])[0][0] for prompt in PENGI_PROMPTS] for segment in segments]
    assert batched == single and len(batched) == 5 and all(len(row) == 3 for row in batched)
    assert len({text for row in batched for text in row}) > 1  # the texts depend on the input


def original_beam_search(gpt, embed: torch.Tensor, beam: int, max_len: int, stop: int) -> tuple[list, list]:
    """microsoft/Pengi wrapper.py _generate_beam for one prefix [1, L, D], re-run without a cache: the oracle."""
    tokens = scores = None
    lengths = torch.ones(beam)
    stopped = torch.zeros(beam, dtype=torch.bool)
    generated = embed
    for _ in range(max_len):
        logits = gpt(inputs_embeds=generated).logits[:, -1, :].log_softmax(-1)
        if scores is None:
            scores, next_tokens = logits.topk(beam, -1)
            generated = generated.expand(beam, *generated.shape[1:])
            next_tokens, scores = next_tokens.permute(1, 0), scores.squeeze(0)
            tokens = next_tokens
        else:
            logits[stopped] = -float("inf")
            logits[stopped, 0] = 0
            total = scores[:, None] + logits
            lengths[~stopped] += 1
            average, next_tokens = (total / lengths[:, None]).view(-1).topk(beam, -1)
            source = next_tokens // total.shape[1]
            lengths, next_tokens = lengths[source], (next_tokens % total.shape[1]).unsqueeze(1)
            tokens = torch.cat((tokens[source], next_tokens), dim=1)
            generated, scores, stopped = generated[source], average * lengths, stopped[source]
        generated = torch.cat((generated, gpt.transformer.wte(next_tokens.squeeze(1))[:, None]), dim=1)
        stopped = stopped | next_tokens.eq(stop).squeeze(1)
        if stopped.all():
            break
    final = scores / lengths
    order = final.argsort(descending=True, stable=True)
    return [tokens[i, : int(lengths[i])].tolist() for i in order], [float(final[i]) for i in order]


def test_batched_beam_search_follows_the_original_algorithm_per_prefix() -> None:
    from pseudolabel.alm.pengi.decode import beam_search

    pengi = tiny_model()
    gpt = pengi.model.gpt
    torch.manual_seed(3)
    prefixes = torch.randn(4, 6, gpt.config.n_embd)
    with torch.inference_mode():
        # a stop token the search meets (the 3rd token of one best beam), so beams finish at different steps
        stop = beam_search(gpt, prefixes[:1], beam=3, max_len=12, stop=(pengi.stop_ids[0],))[0].tokens[0][2]
        batched = beam_search(gpt, prefixes, beam=3, max_len=12, stop=(stop,))
        for row, beams in enumerate(batched):
            tokens, scores = original_beam_search(gpt, prefixes[row : row + 1], 3, 12, stop)
            assert beams.tokens == tokens
            np.testing.assert_allclose(beams.scores, scores, rtol=1e-5)
    assert any(len(t) < 12 for b in batched for t in b.tokens)  # some beams stopped early


def test_no_text_encoder_variant_generates_and_stereo_is_averaged() -> None:
    pengi = tiny_model(text_encoder=False)
    left, right = tone(1.0, 16000, 440.0), tone(1.0, 16000, 1500.0)
    texts = pengi.describe([np.stack([left, right])], 16000)
    assert len(texts[0]) == 3 and all(isinstance(t, str) for t in texts[0])
    assert texts == pengi.describe([(left + right) / 2], 16000)
    with pytest.raises(ValueError, match="downmix must be one of"):
        Pengi(pengi.model, pengi.dec_tokenizer, pengi.enc_tokenizer, downmix="left")
    with pytest.raises(ValueError, match="crop must be 'center' or an int seed, got 'random'"):
        alm.create_alm("pengi", config={}, crop="random")  # before any model is built


def test_text_is_cut_at_end_of_text_and_runaway_repetition_is_capped() -> None:
    assert clean_text(" a dog barks <|endoftext|> and more") == "a dog barks"
    assert clean_text("dog dog dog dog barking") == "dog dog barking"
    assert clean_text("a car passes a car passes a car passes a car passes by") == "a car passes a car passes by"
    assert cap_repetition(["x", "y", "x", "y", "x"]) == ["x", "y", "x", "y", "x"]  # no run longer than 2 of "x y"
    assert clean_text("dog dog dog", max_repeats=1) == "dog"


def test_registered_with_the_three_pengi_prompts() -> None:
    assert "pengi" in alm.available()
    describer = alm.create_alm("pengi", config={})
    assert describer.prompts == ("generate audio caption", "generate metadata", "this is a sound of")
    record = describer.provenance()
    assert record["backend"] == "pengi" and record["beam"] == 3 and record["max_len"] == 30
    assert not describer.lazy.loaded
