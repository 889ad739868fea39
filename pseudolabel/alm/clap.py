"""``clap``: zero-shot audio tags from LAION CLAP (transformers ``ClapModel``) over a class vocabulary.

Each vocabulary name is put in a text template (the prompt; default ``"This is a sound of {}"``, the
template of LAION-AI/CLAP's zero-shot evaluation, ``src/laion_clap/training/train.py::evaluate_zeroshot``)
and embedded once; a segment's scores are the softmax over the vocabulary of
``exp(logit_scale_a) * cos(audio embedding, text embedding)``, the ``logits_per_audio`` of
``ClapModel.forward``. The text is the top-k names above the threshold, e.g. ``"Dog, Bark"``.

Input is the feature extractor's rate (48 kHz for the released checkpoints); a one-second segment is
repeat-padded to the model's 10 s by the feature extractor (``padding="repeatpad"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pseudolabel.alm.base import AudioTagger, load_vocabulary, register
from pseudolabel.components import LazyModel
from pseudolabel.tiny_models import byte_level_vocab, deep_merge

DEFAULT_MODEL = "laion/clap-htsat-unfused"
DEFAULT_TEMPLATE = "This is a sound of {}"
TEXT_BATCH = 256  # vocabulary names embedded per text-encoder call
# A 0.7M-parameter CLAP: audio hidden_size must be patch_embeds_hidden_size * 2 ** (stages - 1).
TINY_CLAP = {
    "text_config": {
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
    },
    "audio_config": {
        "hidden_size": 192,
        "patch_embeds_hidden_size": 24,
        "depths": [1, 1, 1, 1],
        "num_attention_heads": [1, 1, 1, 1],
    },
    "projection_dim": 16,
    # The default "fusion" truncation gives 4-channel input, which a non-fusion model rejects.
    "feature_extractor": {"truncation": "rand_trunc"},
}


def load_clap(source: str, dtype: Any) -> tuple[Any, Any]:
    """The CLAP processor and model from a Hub id or local directory."""
    from transformers import ClapModel, ClapProcessor

    return ClapProcessor.from_pretrained(source), ClapModel.from_pretrained(source, dtype=dtype)


def build_tiny_clap(config: dict[str, Any]) -> tuple[Any, Any]:
    """A random CLAP and a processor made offline (byte-level RoBERTa tokenizer without merges), from
    :data:`TINY_CLAP` updated with ``config`` (``ClapConfig`` fields plus ``feature_extractor``:
    ``ClapFeatureExtractor`` kwargs)."""
    from transformers import (
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapProcessor,
        RobertaTokenizer,
    )

    merged = deep_merge(TINY_CLAP, config)
    feature_extractor = ClapFeatureExtractor(**merged.pop("feature_extractor"))
    tokenizer = RobertaTokenizer(
        vocab=byte_level_vocab(["<s>", "<pad>", "</s>", "<unk>", "<mask>"], specials_first=True), merges=[]
    )
    merged["text_config"] = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        **merged["text_config"],
    }
    processor = ClapProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)
    return processor, ClapModel(ClapConfig(**merged))


def check_template(template: str) -> str:
    """``template`` after checking it has exactly one ``{}`` slot for the class name."""
    if template.count("{}") != 1:
        raise ValueError(
            f"a CLAP prompt is a text template with exactly one '{{}}' for the class name, got {template!r}"
        )
    return template


def text_embeddings(lazy: LazyModel, texts: Sequence[str]) -> Any:
    """L2-normalised CLAP text embeddings ``[len(texts), D]`` (torch, on the model's device), ``TEXT_BATCH``
    texts per text-encoder call; also used by the ``energy_clap`` gate (:mod:`pseudolabel.gating`)."""
    import torch

    loaded = lazy.get()
    texts = list(texts)
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(texts), TEXT_BATCH):
            tokens = loaded.processor.tokenizer(
                texts[start : start + TEXT_BATCH], padding=True, truncation=True, return_tensors="pt"
            ).to(loaded.model.device)
            chunks.append(loaded.model.get_text_features(**tokens).pooler_output)
    return torch.cat(chunks, dim=0)


def audio_embeddings(lazy: LazyModel, waves: Sequence[np.ndarray]) -> Any:
    """L2-normalised CLAP audio embeddings ``[len(waves), D]`` (torch) of waves at the feature extractor's
    rate (resample first); also used by the ``energy_clap`` gate."""
    import torch

    extractor = lazy.processor.feature_extractor
    features = extractor(list(waves), sampling_rate=extractor.sampling_rate, return_tensors="pt")
    with torch.inference_mode():
        return lazy.model.get_audio_features(**lazy.to_device(features)).pooler_output


@register("clap")
class ClapAudioTagger(AudioTagger):
    """Zero-shot CLAP tags: the vocabulary names whose text embeddings best match each segment.

    Prompts are text templates with one ``{}`` (one text per template).

    Args:
        model: Hub id or local directory (default ``laion/clap-htsat-unfused``; ``laion/larger_clap_general``
            also works).
        vocabulary: ``audioset`` (527 classes), ``vggsound`` (309), ``avsbench`` (92), a text file with one
            name per line, or a list of names.
        top_k: at most this many names per text.
        threshold: minimum softmax probability of a name.
        exclude: names never returned (default: ``Silence`` if the vocabulary has it).
        separator: joins the names of a text.
        config, device, dtype, seed: see :class:`~pseudolabel.components.LazyModel`.
        prompts, batch_size: see :class:`~pseudolabel.alm.base.AudioDescriber`.
    """

    default_prompts = (DEFAULT_TEMPLATE,)

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        *,
        vocabulary: str | Path | Sequence[str] = "audioset",
        top_k: int = 3,
        threshold: float = 0.1,
        exclude: Sequence[str] | None = None,
        separator: str = ", ",
        config: Mapping[str, Any] | None = None,
        device: str = "cpu",
        dtype: str = "auto",
        seed: int = 0,
        prompts: Sequence[str] | None = None,
        batch_size: int = 8,
    ) -> None:
        super().__init__(
            top_k=top_k, threshold=threshold, exclude=exclude, separator=separator, prompts=prompts, batch_size=batch_size
        )
        self.vocabulary_source = vocabulary if isinstance(vocabulary, (str, Path)) else "list"
        self._labels = load_vocabulary(vocabulary)
        self.lazy = LazyModel(
            "clap", model, config=config, device=device, dtype=dtype, seed=seed, load_pretrained=load_clap, build_random=build_tiny_clap
        )
        self._text_cache: dict[str, Any] = {}

    def _resolve_prompts(self, prompts: Sequence[str] | None, fallback: Sequence[str | None]) -> tuple[str | None, ...]:
        resolved = super()._resolve_prompts(prompts, fallback)
        return tuple(check_template(template) for template in resolved)

    @property
    def labels(self) -> list[str]:
        return list(self._labels)

    @property
    def sample_rate(self) -> int:
        return int(self.lazy.processor.feature_extractor.sampling_rate)

    def text_embeddings(self, template: str) -> Any:
        """L2-normalised text embeddings ``[len(labels), D]`` (torch, on the model's device) of every
        vocabulary name in ``template``; computed once per template."""
        template = check_template(template)
        if template not in self._text_cache:
            self._text_cache[template] = text_embeddings(self.lazy, [template.replace("{}", label) for label in self._labels])
        return self._text_cache[template]

    def audio_embeddings(self, waves: list[np.ndarray]) -> Any:
        """L2-normalised audio embeddings ``[len(waves), D]`` (torch) of waves at :attr:`sample_rate`."""
        return audio_embeddings(self.lazy, waves)

    def _scores(self, waves: list[np.ndarray], prompt: str | None) -> np.ndarray:
        import torch

        text = self.text_embeddings(prompt)
        audio = self.audio_embeddings(waves)
        with torch.inference_mode():
            logits = self.lazy.model.logit_scale_a.exp() * audio @ text.T
            return logits.float().softmax(dim=-1).cpu().numpy()

    def provenance(self) -> dict[str, Any]:
        return {
            **super().provenance(),
            **self.lazy.provenance(),
            "vocabulary": str(self.vocabulary_source),
            "num_labels": len(self._labels),
        }
