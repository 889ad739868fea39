"""LLM prompt translation: per-frame audio (and image) descriptions -> object phrases for the segmenter.

    from pseudolabel import llm
    translator = llm.create("openai", strategy="prompt_frame", cache_dir="cache/llm")
    clip = llm.ClipDescriptions.from_lists("clip0", audio=[["a dog barks", "dog", "barking"], ...])
    result = translator.translate(clip)   # result.phrases[t] -> ["dog"], result.record -> manifest

Backends: ``openai`` (OpenAI-compatible endpoints), ``hf`` (local transformers chat model), ``none``
(raw ALM text). Strategies and prompts: :mod:`pseudolabel.llm.strategies`, ``prompts/*.txt``.
Importing this package imports neither openai nor transformers.
"""

from pseudolabel.llm.base import (
    ChatReply,
    ChatTranslator,
    Completion,
    PassthroughTranslator,
    Translation,
    TranslationError,
    TranslationRecord,
    TranslationSession,
    Translator,
    available,
    create,
    register,
)
from pseudolabel.llm.cache import ResponseCache, request_key
from pseudolabel.llm.strategies import (
    NOTHING_SOUNDS,
    PROMPTS_DIR,
    STRATEGIES,
    ClipDescriptions,
    FrameDescriptions,
    Strategy,
    get_strategy,
    load_prompt,
    parse_answer_text,
)

__all__ = [
    "NOTHING_SOUNDS",
    "PROMPTS_DIR",
    "STRATEGIES",
    "ChatReply",
    "ChatTranslator",
    "ClipDescriptions",
    "Completion",
    "FrameDescriptions",
    "PassthroughTranslator",
    "ResponseCache",
    "Strategy",
    "Translation",
    "TranslationSession",
    "TranslationError",
    "TranslationRecord",
    "Translator",
    "available",
    "create",
    "get_strategy",
    "load_prompt",
    "parse_answer_text",
    "register",
    "request_key",
]
