"""Audio describers (audio -> text) for the OpenAVS labeler: one text per one-second segment and prompt.

    from pseudolabel import alm
    describer = alm.create_alm("qwen2_5_omni", device="cuda", dtype="bfloat16")
    segments = alm.split_seconds(clip.waveform, clip.sample_rate, num_frames=5)
    texts = describer.describe(segments, clip.sample_rate)   # texts[t] -> ["The audio features a dog ..."]

Backends: ``pengi`` (Pengi, the paper's ALM, from its original ``base.pth``; :mod:`pseudolabel.alm.pengi`),
``qwen2_5_omni`` (Qwen2.5-Omni Thinker), ``audio_flamingo3`` (Audio Flamingo 3), ``clap``
(zero-shot tags from a vocabulary: ``audioset``, ``vggsound``, ``avsbench`` or a text file), ``ast``
(AudioSet tagger), ``beats`` (AudioSet tagger from an original BEATs checkpoint file). Models load from a Hub id or local directory on first use; ``config=`` builds a
tiny random model offline. Importing this package imports neither torch nor transformers.
"""

from pseudolabel.alm.base import (
    SHIPPED_VOCABULARIES,
    AudioDescriber,
    AudioTagger,
    ChatModel,
    GenerativeAudioDescriber,
    available,
    create_alm,
    load_vocabulary,
    register,
    split_seconds,
)

__all__ = [
    "SHIPPED_VOCABULARIES",
    "AudioDescriber",
    "AudioTagger",
    "ChatModel",
    "GenerativeAudioDescriber",
    "available",
    "create_alm",
    "load_vocabulary",
    "register",
    "split_seconds",
]
