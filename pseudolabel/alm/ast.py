"""``ast``: the Audio Spectrogram Transformer fine-tuned on AudioSet as a tagger
(transformers ``ASTForAudioClassification``).

AST is trained multi-label (binary cross-entropy), so a label's score is ``sigmoid(logit)``; label names
come from the model config's ``id2label`` (the 527 AudioSet display names for the released checkpoint).
Defaults follow AL-Ref-SAM2's use of its AudioSet tagger (``avs/*/beats.py``): the Silence class is
dropped and the top 5 labels kept, with no threshold. Input is 16 kHz (the feature extractor's rate).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pseudolabel.alm.base import AudioTagger, load_vocabulary, register
from pseudolabel.components import LazyModel
from pseudolabel.tiny_models import deep_merge

DEFAULT_MODEL = "MIT/ast-finetuned-audioset-10-10-0.4593"
# A 0.03M-parameter AST over 32 mel bins x 128 frames (1.28 s); labels: the shipped AudioSet names.
TINY_AST = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "num_mel_bins": 32,
    "max_length": 128,
    "feature_extractor": {},
}


def load_ast(source: str, dtype: Any) -> tuple[Any, Any]:
    """The AST feature extractor and classifier from a Hub id or local directory."""
    from transformers import ASTFeatureExtractor, ASTForAudioClassification

    return ASTFeatureExtractor.from_pretrained(source), ASTForAudioClassification.from_pretrained(source, dtype=dtype)


def build_tiny_ast(config: dict[str, Any]) -> tuple[Any, Any]:
    """A random AST classifier and its feature extractor, from :data:`TINY_AST` updated with ``config``
    (``ASTConfig`` fields, e.g. ``id2label``, plus ``feature_extractor``: ``ASTFeatureExtractor`` kwargs;
    its mel bins and length follow the model's). Without ``id2label`` the labels are the 527 AudioSet names."""
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    merged = deep_merge(TINY_AST, config)
    feature_extractor_kwargs = merged.pop("feature_extractor")
    if "id2label" not in merged:
        merged["id2label"] = dict(enumerate(load_vocabulary("audioset")))
    model_config = ASTConfig(**merged)
    feature_extractor = ASTFeatureExtractor(
        **{"num_mel_bins": model_config.num_mel_bins, "max_length": model_config.max_length, **feature_extractor_kwargs}
    )
    return feature_extractor, ASTForAudioClassification(model_config)


@register("ast")
class ASTAudioTagger(AudioTagger):
    """AudioSet tags from AST: the top-k ``id2label`` names by sigmoid score. Takes no prompts.

    Args:
        model: Hub id or local directory (default ``MIT/ast-finetuned-audioset-10-10-0.4593``).
        top_k: at most this many labels per text (AL-Ref-SAM2 keeps 5).
        threshold: minimum sigmoid score of a label (0: plain top-k).
        exclude: labels never returned (default: ``Silence`` if the model has it).
        separator: joins the labels of a text.
        config, device, dtype, seed: see :class:`~pseudolabel.components.LazyModel`.
        batch_size: see :class:`~pseudolabel.alm.base.AudioDescriber`.
    """

    takes_prompts = False

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        *,
        top_k: int = 5,
        threshold: float = 0.0,
        exclude: Sequence[str] | None = None,
        separator: str = ", ",
        batch_size: int = 8,
        config: Mapping[str, Any] | None = None,
        device: str = "cpu",
        dtype: str = "auto",
        seed: int = 0,
    ) -> None:
        super().__init__(top_k=top_k, threshold=threshold, exclude=exclude, separator=separator, batch_size=batch_size)
        self.lazy = LazyModel(
            "ast", model, config=config, device=device, dtype=dtype, seed=seed, load_pretrained=load_ast, build_random=build_tiny_ast
        )

    @property
    def labels(self) -> list[str]:
        id2label = self.lazy.model.config.id2label
        return [id2label[index] for index in range(len(id2label))]

    @property
    def sample_rate(self) -> int:
        # The "processor" of an AST is its feature extractor.
        return int(self.lazy.processor.sampling_rate)

    def _scores(self, waves: list[np.ndarray], prompt: str | None) -> np.ndarray:
        import torch

        features = self.lazy.processor(waves, sampling_rate=self.sample_rate, return_tensors="pt")
        with torch.inference_mode():
            logits = self.lazy.model(**self.lazy.to_device(features)).logits
        return torch.sigmoid(logits.float()).cpu().numpy()

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), **self.lazy.provenance()}
