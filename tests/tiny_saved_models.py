"""Tiny random models saved with ``save_pretrained`` into local directories, as a user's ``model:`` path: the
steps the pipeline tests' ``models`` fixtures share (seed torch first for reproducible weights)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tiny_vision import tiny_grounding_dino

# GroundingDINO's vocabulary in the pipeline tests: the phrases they ground plus BERT's specials.
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "a", "dog", "cat", "man", "guitar", "circle", "square"]


def save_component(component: Any, directory: Path) -> Path:
    """``directory`` holding a component's loaded processor and model (``component.lazy``)."""
    component.lazy.processor.save_pretrained(directory)
    component.lazy.model.save_pretrained(directory)
    return directory


def save_ast_tagger(directory: Path, tags: Sequence[str], *, top_k: int) -> Path:
    """A random AST tagger over ``tags`` (alm ``ast``)."""
    from pseudolabel import alm

    return save_component(alm.create_alm("ast", config={"id2label": dict(enumerate(tags))}, top_k=top_k), directory)


def save_grounding_dino(directory: Path, words: Sequence[str] = WORDS) -> Path:
    """A random GroundingDINO over ``words``, reading images at 96-128 px (its smallest feature map stays
    above 1x1)."""
    import transformers

    config, processor = tiny_grounding_dino(list(words), num_queries=6, shortest_edge=96, longest_edge=128)
    transformers.GroundingDinoForObjectDetection(config).save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
