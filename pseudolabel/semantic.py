"""Semantic pseudo-labels: a class id per mask, so ``data=pseudo_avss`` trains the 71-class heads.

A labeler with ``semantic`` set maps each box's phrase to a class of a closed set with the labelers' one
phrase-matching rule (:mod:`pseudolabel.phrase_match`: our synonym families, then whole class names, then
last words) and paints every frame's class-index map from its box masks. ``semantic`` is

- ``avss``: AVSBench-semantic's 71 classes (:data:`openavs_st.data.avsbench.AVSS_CLASSES`, index 0 =
  background), with the synonym families below (ours: "ambulance" -> ``emergency-car``, "lawn mower" ->
  ``mower``, "female singing" -> ``woman`` ...), or
- the path of a ``label2idx.json`` (``{name: index}``, index 0 = background): any closed set, matched by
  its names alone.

``clip_label`` maps the clip's class name (its category) rather than the phrase it asks the grounder for.
A phrase that names no class of the set is painted as background and recorded with class 0: the binary mask
keeps it, the class map does not guess. Where masks of different classes overlap the higher-scoring box wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pseudolabel.phrase_match import PhraseMatcher

# Our synonym families for the AVSS classes (words a description or an S4 category uses for the object).
# Classes not listed are matched by their own name ("violin", "erhu", ...).
AVSS_FAMILIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "emergency-car": (("ambulance", "police car", "fire truck", "fire engine", "siren", "emergency vehicle"),
                      ("emergency-car",)),
    "man": (("man", "men", "male", "gentleman", "guy"), ("man",)),
    "woman": (("woman", "women", "female", "lady"), ("woman",)),
    "baby": (("baby", "infant", "toddler"), ("baby",)),
    "mower": (("lawn mower", "lawnmower", "mower", "mowing"), ("mower",)),
    "saw": (("saw", "chainsaw", "chain saw", "chainsawing"), ("saw",)),
    "gun": (("gun", "pistol", "rifle", "shotgun", "cap gun"), ("gun",)),
    "keyboard": (("keyboard", "typing", "computer keyboard"), ("keyboard",)),
    "vacuum-cleaner": (("vacuum", "vacuum cleaner", "hoover"), ("vacuum-cleaner",)),
    "hair-dryer": (("hair dryer", "hairdryer", "blow dryer", "hair drier"), ("hair-dryer",)),
    "frying-food": (("frying", "fried food", "frying pan", "sizzling"), ("frying-food",)),
    "missile-rocket": (("missile", "rocket"), ("missile-rocket",)),
    "airplane": (("airplane", "plane", "aeroplane", "aircraft", "jet"), ("airplane",)),
    "motorcycle": (("motorcycle", "motorbike", "moped", "scooter"), ("motorcycle",)),
    "car": (("car", "automobile", "race car", "racing car"), ("car",)),
    "bus": (("bus", "buses", "coach"), ("bus",)),
    "drum": (("drum", "drum kit", "percussion"), ("drum",)),
    "bird": (("bird", "songbird", "mynah"), ("bird",)),
    "hen": (("hen", "chicken", "rooster"), ("hen",)),
    "clipper": (("clipper", "hair clipper", "trimmer"), ("clipper",)),
    "utv": (("utv", "atv", "quad bike", "off-road vehicle"), ("utv",)),
    "wolf": (("wolf", "coyote"), ("wolf",)),
    "horse": (("horse", "pony"), ("horse",)),
    "train": (("train", "locomotive"), ("train",)),
    "truck": (("truck", "lorry"), ("truck",)),
    "sorna": (("sorna", "suona"), ("sorna",)),
}

BUILTIN_SETS = ("avss",)


class ClassMapper:
    """Phrases -> class ids of one closed set, and box masks -> a class-index map.

    Args:
        class_set: ``avss`` or the path of a ``label2idx.json`` (see the module docstring).
    """

    def __init__(self, class_set: str | Path) -> None:
        from openavs_st.data.avsbench import AVSS_CLASSES, read_label2idx
        from openavs_st.data.clip import ClipError

        self.class_set = str(class_set)
        if self.class_set in BUILTIN_SETS:
            names, families = list(AVSS_CLASSES), AVSS_FAMILIES
        else:
            path = Path(self.class_set).expanduser()
            try:
                names = read_label2idx(path)
            except ClipError as exc:
                raise ValueError(
                    f"labeler.semantic={self.class_set}: neither a built-in class set {list(BUILTIN_SETS)} nor a "
                    f"readable label2idx.json ({exc})"
                ) from None
            families = {}
        if len(names) < 2 or len(names) > 256:
            raise ValueError(f"labeler.semantic={self.class_set}: {len(names)} classes; expected 2..256 (0 = background)")
        self.names = names
        self._matcher = PhraseMatcher(names, families, skip=(0,))
        self._ids: dict[str, int] = {}  # phrase -> class id: boxes repeat their phrases frame after frame

    def class_id(self, phrase: str) -> int:
        """The class ``phrase`` names (0 when it names none)."""
        phrase = str(phrase)
        if phrase not in self._ids:
            found = self._matcher.best(phrase)
            self._ids[phrase] = 0 if found is None else int(found)
        return self._ids[phrase]

    def paint(self, masks: np.ndarray, class_ids: Sequence[int], scores: Sequence[float] | None = None) -> np.ndarray:
        """The ``[H, W]`` uint8 class-index map of ``masks [N, H, W]`` with ``class_ids [N]``: boxes painted in
        ascending score order, so the higher-scoring box wins where masks of different classes overlap."""
        masks = np.asarray(masks, dtype=bool)
        if masks.ndim != 3 or len(masks) != len(class_ids):
            raise ValueError(f"paint: {len(class_ids)} class ids for masks of shape {masks.shape}")
        out = np.zeros(masks.shape[1:], dtype=np.uint8)
        order = np.argsort(np.asarray(scores if scores is not None else np.zeros(len(masks)), float), kind="stable")
        for k in order:
            if class_ids[k]:
                out[masks[k]] = np.uint8(class_ids[k])
        return out

    def describe(self) -> dict[str, Any]:
        """The class set as recorded (its name or path and its size)."""
        return {"class_set": self.class_set, "num_classes": len(self.names)}
