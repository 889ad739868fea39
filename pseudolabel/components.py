"""The component core of the labelers: roles, their registries and interfaces, the lazy model holder, and
building a component from its config.

A labeler is made of components, each playing one **role**:

======================  ============================================  ===================================
role (config group)     interface                                     built-in backends
======================  ============================================  ===================================
``alm``                 :class:`AudioModel`: audio -> text / tags     :mod:`pseudolabel.alm`
``vlm``                 :class:`ImageModel`: image -> text            :mod:`pseudolabel.vlm`
``llm``                 :class:`TextTranslator`: texts -> phrases     :mod:`pseudolabel.llm`
``grounder``            :class:`BoxGrounder`: phrases -> boxes        :mod:`pseudolabel.vfm`
``segmenter``           :class:`BoxSegmenter`: boxes -> masks         :mod:`pseudolabel.vfm`
``video_segmenter``     :class:`VideoSegmenter`: prompts -> masklets  :mod:`pseudolabel.vfm`
``gate``                :class:`SoundGate`: which category sounds     :mod:`pseudolabel.gating`
======================  ============================================  ===================================

Adding a component is one Python file and one yaml: decorate the class with its role's ``register``
(``@ALM.register("my_alm")``; the first docstring line is what ``python -m pseudolabel --list`` prints) and
write ``configs/pseudolabel/<role>/my_alm.yaml`` with ``_target_: package.module.Class`` and its options.
A yaml on another config path is found with ``hydra.searchpath=[file:///path/to/configs]``; Hydra's
``_target_`` imports the module, which registers the class.

Every model a component uses sits in a :class:`LazyModel` (or a :class:`Lazy` for other objects): loaded on
first use, from a Hub id or a local directory (``from_pretrained``; a downloaded model works offline), or
built with random weights from a tiny config (tests); :meth:`Component.load` loads them all now.

Nothing here imports torch or transformers at import time.
"""

from __future__ import annotations

import json
import logging
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np

from openavs_st.registry import Registry

log = logging.getLogger(__name__)

# The one name -> torch dtype spelling of every model a component loads ("auto": the checkpoint's own
# dtype for from_pretrained, float32 for random builds).
DTYPES = ("auto", "float32", "float16", "bfloat16")

T = TypeVar("T")


class ComponentConfigError(ValueError):
    """A component cannot be built or loaded from its config; the message names the config key to set."""


def check_dtype(dtype: str) -> str:
    """``dtype`` if it is one of :data:`DTYPES`, else a ValueError."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return dtype


def torch_dtype(dtype: str) -> Any:
    """The torch dtype of a :data:`DTYPES` name (``"auto"`` stays ``"auto"``)."""
    import torch

    check_dtype(dtype)
    return "auto" if dtype == "auto" else getattr(torch, dtype)


def fraction(value: Any, what: str) -> float:
    """``value`` as a float after checking it is in [0, 1) (``what`` names it in the error)."""
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{what} must be in [0, 1), got {value}")
    return float(value)


def positive_int(value: Any, what: str) -> int:
    """``value`` as an int after checking it is an integer >= 1 (``what`` names it in the error)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def config_number(value: Any, key: str, kind: type = int, minimum: float | None = None, default: Any = None) -> Any:
    """A config option ``key`` as ``kind`` (int or float; ``default`` when it is null), at least ``minimum`` if
    given, or a :class:`ComponentConfigError` naming the key."""
    value = default if value is None else value
    try:
        if isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        number = kind(value)
    except (TypeError, ValueError):
        number = None
    if number is None or (minimum is not None and number < minimum):
        floor = f" >= {minimum}" if minimum is not None else ""
        raise ComponentConfigError(f"{key} must be {'an integer' if kind is int else 'a number'}{floor}, got {value!r}")
    return number


# --- lazy holders ---------------------------------------------------------------------------------


class Lazy(Generic[T]):
    """A value built by ``build()`` on the first :meth:`get`, once, thread-safely."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the value has been built."""
        return self._value is not None

    def get(self) -> T:
        """The value, built now if needed."""
        with self._lock:
            if self._value is None:
                self._value = self._build()
            return self._value


class LoadedModel:
    """A processor and a model in eval mode on their device (weak-referenceable, for sharing)."""

    def __init__(self, processor: Any, model: Any) -> None:
        self.processor = processor
        self.model = model


_SHARED: weakref.WeakValueDictionary[tuple[str, ...], LoadedModel] = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()

LoadFn = Callable[[str, Any], tuple[Any, Any]]  # (id or directory, torch dtype or "auto") -> (processor, model)
BuildFn = Callable[[Any], tuple[Any, Any]]  # tiny config -> (processor, model), float32 random weights


def transformers_loader(model_class: str, processor_class: str) -> LoadFn:
    """A :data:`LoadFn` for ``transformers.<processor_class>`` / ``transformers.<model_class>``
    ``.from_pretrained(source)``."""

    def load(source: str, dtype: Any) -> tuple[Any, Any]:
        import transformers

        processor = getattr(transformers, processor_class).from_pretrained(source)
        return processor, getattr(transformers, model_class).from_pretrained(source, dtype=dtype)

    return load


def transformers_random(model_class: str, processor: Any) -> BuildFn:
    """A :data:`BuildFn` for ``transformers.<model_class>(config)`` used with a ready ``processor``."""
    if processor is None:
        raise ValueError(f"a {model_class} built from a config needs its processor (processor=...)")

    def build(config: Any) -> tuple[Any, Any]:
        import transformers

        return processor, getattr(transformers, model_class)(config)

    return build


def transformers_model(
    model_class: str,
    processor_class: str,
    model: str | Path | None,
    *,
    config: Any = None,
    processor: Any = None,
    device: str = "cpu",
    dtype: str = "float32",
) -> LazyModel:
    """A :class:`LazyModel` for ``transformers.<model_class>`` with its ``<processor_class>``: loaded from
    ``model`` (Hub id or local directory), or random weights from a config object plus a ready processor."""
    if (model is None) == (config is None):
        raise ValueError(f"give either model (a Hub id or local directory) or config, not {model=}, {config=}")
    if model is not None and processor is not None:
        raise ValueError(f"processor= is only for config=; {model!r} loads its own processor")
    return LazyModel(
        model_class,
        model,
        config=config,
        device=device,
        dtype=dtype,
        load_pretrained=transformers_loader(model_class, processor_class),
        build_random=None if config is None else transformers_random(model_class, processor),
    )


class LazyModel:
    """A (processor, model) pair loaded on first use; the one model holder of every backend.

    Args:
        family: what is loaded (``qwen2_5_omni_thinker``, ``Sam2Model`` ...); holders of one family with
            the same source, device and dtype share one loaded model (e.g. Qwen2.5-Omni as both the
            audio and the image describer of OpenAVS-Large).
        model: Hub id or local directory for ``from_pretrained`` (ignored when ``config`` is given).
        config: build a randomly initialised model instead: a mapping of tiny-config overrides (``{}``
            for the backend's tiny defaults) or a config object, passed to ``build_random``; no download.
        device: torch device (``cpu``, ``cuda``, ``cuda:1`` ...).
        dtype: one of :data:`DTYPES`.
        seed: seed of the random initialisation (``config`` builds only; the global RNG is left alone).
        load_pretrained: ``(source, torch dtype or "auto") -> (processor, model)``.
        build_random: ``(config) -> (processor, model)`` with float32 random weights.
    """

    def __init__(
        self,
        family: str,
        model: str | Path | None,
        *,
        config: Any = None,
        device: str = "cpu",
        dtype: str = "auto",
        seed: int = 0,
        load_pretrained: LoadFn,
        build_random: BuildFn | None = None,
    ) -> None:
        check_dtype(dtype)
        if config is None and (model is None or not str(model).strip()):
            raise ValueError(f"{family}: give a model id or local directory, or config= for a random tiny model")
        if config is not None and build_random is None:
            raise ValueError(f"{family}: this backend cannot build a random model from config=")
        self.family = family
        self.model_id = None if config is not None else str(model)
        self.config = dict(config) if isinstance(config, Mapping) else config
        self.device = str(device)
        self.dtype = dtype
        self.seed = int(seed)
        self._load_pretrained = load_pretrained
        self._build_random = build_random
        self._loaded: LoadedModel | None = None
        self._lock = threading.Lock()

    @property
    def source(self) -> str:
        """The model id / directory, or ``random-init`` for a ``config=`` build."""
        return self.model_id if self.model_id is not None else "random-init"

    @property
    def loaded(self) -> bool:
        """Whether the model has been loaded."""
        return self._loaded is not None

    def _key(self) -> tuple[str, ...] | None:
        if self.model_id is not None:
            source = self.model_id
        elif isinstance(self.config, Mapping):
            source = "config:" + json.dumps(self.config, sort_keys=True, default=str) + f":seed={self.seed}"
        else:
            return None  # a config object: not shared
        return (self.family, source, self.device, self.dtype)

    def get(self) -> LoadedModel:
        """The loaded (processor, model), loading or building it on the first call."""
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    key = self._key()
                    with _SHARED_LOCK:
                        loaded = None if key is None else _SHARED.get(key)
                        if loaded is None:
                            loaded = self._load()
                            if key is not None:
                                _SHARED[key] = loaded
                    self._loaded = loaded
        return self._loaded

    def _load(self) -> LoadedModel:
        import torch

        dtype = torch_dtype(self.dtype)
        if self.config is None:
            processor, model = self._load_pretrained(self.model_id, dtype)
        else:
            assert self._build_random is not None
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                processor, model = self._build_random(self.config)
            if dtype != "auto":
                model = model.to(dtype)
        return LoadedModel(processor, model.to(self.device).eval())

    @property
    def processor(self) -> Any:
        """The processor (loads the model on first use)."""
        return self.get().processor

    @property
    def model(self) -> Any:
        """The model (loaded on first use)."""
        return self.get().model

    def provenance(self) -> dict[str, Any]:
        """Where the weights come from and how they run."""
        record: dict[str, Any] = {"model": self.source, "device": self.device, "dtype": self.dtype}
        if isinstance(self.config, Mapping):
            record.update(config=self.config, seed=self.seed)
        return record

    def to_device(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """A processor output as a dict on the model's device, floating tensors cast to the model's dtype."""
        import torch

        model = self.model
        moved: dict[str, Any] = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                value = value.to(model.device, model.dtype) if value.is_floating_point() else value.to(model.device)
            moved[key] = value
        return moved


# --- the component base ------------------------------------------------------------------------------


def _holders(component: Any) -> list[Lazy[Any] | LazyModel]:
    """The lazy holders among a component's attributes (and one level down, e.g. ``self.chat.lazy``)."""
    found: list[Lazy[Any] | LazyModel] = []
    for value in vars(component).values():
        for candidate in (value, getattr(value, "lazy", None)):
            if isinstance(candidate, (Lazy, LazyModel)) and candidate not in found:
                found.append(candidate)
    return found


class Component:
    """What every backend of every role offers besides its role's method.

    - ``name``: the registered name (set by the registry's decorator);
    - :meth:`load`: load every model now (they load on first use otherwise), so a wrong model path stops
      a job before its first clip;
    - :attr:`loaded`: whether every model has been loaded;
    - :meth:`provenance`: JSON-serialisable settings that determine the outputs (recorded in the store).

    The default :meth:`load` and :attr:`loaded` find the component's :class:`LazyModel` / :class:`Lazy`
    attributes; a backend holding its model elsewhere overrides them.
    """

    name: ClassVar[str]
    source_key: ClassVar[str] = "model"  # the option that says where the weights are (named in load errors)
    # what that option takes, in load errors (SOURCE_HINT: "the downloaded weights (or a reachable Hub id)")
    source_hint: ClassVar[str | None] = None

    def load(self) -> None:
        """Load every model of the component now."""
        for holder in _holders(self):
            holder.get()

    @property
    def loaded(self) -> bool:
        """Whether every model of the component has been loaded."""
        return all(holder.loaded for holder in _holders(self))

    def provenance(self) -> dict[str, Any]:
        """Settings that determine the outputs."""
        return {"backend": getattr(self, "name", type(self).__name__)}

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in self.provenance().items() if key != "backend")
        return f"{type(self).__name__}({fields})"


# --- role interfaces ----------------------------------------------------------------------------------


@runtime_checkable
class AudioModel(Protocol):
    """``alm``: describes or tags one-second audio segments (``texts[segment][prompt]``)."""

    def load(self) -> None: ...

    def provenance(self) -> dict[str, Any]: ...

    def describe(
        self, segments: Sequence[np.ndarray], sample_rate: int, prompts: Sequence[str] | None = None
    ) -> list[list[str]]: ...


@runtime_checkable
class ImageModel(Protocol):
    """``vlm``: describes ``[H, W, 3]`` uint8 images (``texts[image][prompt]``)."""

    def load(self) -> None: ...

    def provenance(self) -> dict[str, Any]: ...

    def describe(self, images: Sequence[np.ndarray], prompts: Sequence[str] | None = None) -> list[list[str]]: ...


@runtime_checkable
class TextTranslator(Protocol):
    """``llm``: per-frame descriptions of a clip -> object phrases; one :meth:`session` per job (one
    client, one concurrency limit), ``translate`` for a single clip."""

    def load(self) -> None: ...

    def session(self) -> Any: ...

    def translate(self, clip: Any) -> Any: ...


@runtime_checkable
class BoxGrounder(Protocol):
    """``grounder``: per image, object phrases -> boxes (``Detections``)."""

    def load(self) -> None: ...

    def detect(self, images: Sequence[np.ndarray], phrases: Sequence[Sequence[str]]) -> list[Any]: ...


@runtime_checkable
class BoxSegmenter(Protocol):
    """``segmenter``: per image, ``[N, 4]`` xyxy boxes -> per-box masks (``BoxMasks``)."""

    def load(self) -> None: ...

    def segment_boxes(self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray]) -> list[Any]: ...


@runtime_checkable
class VideoSegmenter(Protocol):
    """``video_segmenter``: a prompt box on one frame of a clip -> one ``[T, H, W]`` bool mask per object,
    propagated over the clip's frames (``[T, H, W, 3]`` uint8). Backends (:mod:`pseudolabel.vfm.video`) also
    take ``labels=`` (the text of each prompt's object; a text tracker such as ``sam3_video`` needs it), and
    a text tracker offers ``track(frames, phrases) -> {phrase: [T, H, W] bool}``."""

    def load(self) -> None: ...

    def propagate(self, frames: np.ndarray, prompts: Sequence[tuple[int, np.ndarray]]) -> list[np.ndarray]: ...


@runtime_checkable
class SoundGate(Protocol):
    """``gate``: per second of a clip's audio and per object category, whether the category sounds
    (``GateDecision``: ``sounding [T, C]``, scores, ``apply`` to empty masks where it does not)."""

    def load(self) -> None: ...

    def provenance(self) -> dict[str, Any]: ...

    def decide(self, wave: np.ndarray, sample_rate: int, num_frames: int, categories: Sequence[str]) -> Any: ...


# --- roles and their registries -------------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    """One kind of component: its config group, interface and registry."""

    key: str  # config group: configs/pseudolabel/<key>/<name>.yaml, labeler.<key>
    title: str
    interface: type
    registry: Registry[Any]
    several: bool = False  # a labeler may hold several (a mapping name -> config)


ALM: Registry[Any] = Registry("audio model", builtin=("pseudolabel.alm",))
VLM: Registry[Any] = Registry("image model", builtin=("pseudolabel.vlm",))
LLM: Registry[Any] = Registry("LLM translator", builtin=("pseudolabel.llm",))
GROUNDER: Registry[Any] = Registry("grounder", builtin=("pseudolabel.vfm",))
SEGMENTER: Registry[Any] = Registry("segmenter", builtin=("pseudolabel.vfm",))
VIDEO_SEGMENTER: Registry[Any] = Registry("video segmenter", builtin=("pseudolabel.vfm",))
GATE: Registry[Any] = Registry("sound gate", builtin=("pseudolabel.gating",))

ROLES: dict[str, Role] = {
    role.key: role
    for role in (
        Role("alm", "audio models: audio -> text or tags", AudioModel, ALM, several=True),
        Role("vlm", "image models: image -> text", ImageModel, VLM),
        Role("llm", "LLM translators: descriptions -> object phrases", TextTranslator, LLM),
        Role("grounder", "grounders: phrases -> boxes", BoxGrounder, GROUNDER),
        Role("segmenter", "segmenters: boxes -> masks", BoxSegmenter, SEGMENTER),
        Role("video_segmenter", "video segmenters: prompts -> masks over a clip", VideoSegmenter, VIDEO_SEGMENTER),
        Role("gate", "sound gates: which category sounds in each second", SoundGate, GATE),
    )
}


def build(role: str, node: Mapping[str, Any], key: str | None = None) -> Any:
    """The component of ``role`` described by a config node.

    ``node`` is a mapping with ``_target_`` (the class path; built with Hydra's ``instantiate``) or with
    ``name`` (a registered name; built through the role's registry); the other keys are the
    constructor's keyword arguments. ``key`` (``labeler.alm.qwen`` ...) names the node in errors.
    """
    spec = ROLES[role]
    key = key or f"labeler.{role}"
    cfg = dict(node)
    if "_target_" in cfg:
        from hydra.errors import InstantiationException
        from hydra.utils import instantiate

        try:
            component = instantiate(cfg, _convert_="all")
        except InstantiationException as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            raise ComponentConfigError(f"{key}: {' '.join(str(cause).split())}") from None
    elif "name" in cfg:
        name = cfg.pop("name")
        try:
            component = spec.registry.create(str(name), **cfg)
        except KeyError as exc:
            raise ComponentConfigError(f"{key}: {exc}") from None
        except TypeError as exc:
            raise ComponentConfigError(f"{key}: {exc}") from None
    else:
        raise ComponentConfigError(
            f"{key} has neither _target_ nor name: choose a {spec.registry.role} with "
            f"labeler/{role}=NAME (one of {spec.registry.names()})"
        )
    try:
        component.config_key = key  # named in load errors (load_all)
    except AttributeError:  # a class with __slots__
        pass
    if not isinstance(component, spec.interface):
        missing = [m for m in _protocol_members(spec.interface) if not hasattr(component, m)]
        raise ComponentConfigError(
            f"{key}: {type(component).__name__} is not a {spec.registry.role}: it lacks {missing}"
        )
    return component


class ComponentLoadError(ComponentConfigError):
    """A component's model could not be loaded (not on disk, wrong id, no hub access)."""


SOURCE_HINT = "the downloaded weights (or a reachable Hub id)"  # what a source_key takes (load errors)


def load_all(components: Sequence[Any]) -> None:
    """Load every component's models now; the first that fails raises :class:`ComponentLoadError` naming
    its config key and source, in one line, and which key to set."""
    for component in components:
        try:
            component.load()
        except Exception as exc:  # noqa: BLE001 - reported in one line with the key to change
            key = getattr(component, "config_key", type(component).__name__)
            # The option that failed and what it takes: the exception's own source_key / source_hint when a
            # component reads more than one source (Pengi's gpt2 / clip), else the component's.
            option = getattr(exc, "source_key", None)
            hint = getattr(exc, "source_hint", None) or getattr(component, "source_hint", None) or SOURCE_HINT
            if option:
                what = f" its {option}"
            else:
                option = getattr(component, "source_key", "model")
                sources = [h.source for h in _holders(component) if isinstance(h, LazyModel)]
                what = f" {sources[0]!r}" if sources else ""
            first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise ComponentLoadError(
                f"{key}: could not load{what} ({type(exc).__name__}: {first}); set {key}.{option}= to {hint}"
            ) from None


def _protocol_members(protocol: type) -> list[str]:
    return sorted(
        name for name in vars(protocol) if not name.startswith("_") and callable(getattr(protocol, name, None))
    )


def named_nodes(node: Any, key: str) -> list[tuple[str, Mapping[str, Any]]]:
    """The entries of a role that allows several components (``labeler.alm``) as ``(key, node)`` pairs.

    The node maps names to configs; a ``null`` entry is dropped (``labeler.alm.qwen=null`` removes one),
    and so is an entry without ``_target_`` / ``name`` (settings a preset gives for a component the
    command line deselected, e.g. ``labeler/alm=[clap]`` on a preset that tunes ``qwen``), with a warning.
    """
    if not node:
        return []
    if not isinstance(node, Mapping):
        raise ComponentConfigError(f"{key} must map names to component configs, got {type(node).__name__}")
    pairs = []
    for name, value in node.items():
        if not value:
            continue
        if not isinstance(value, Mapping):
            raise ComponentConfigError(f"{key}.{name} must be a component config, got {value!r}")
        if "_target_" not in value and "name" not in value:
            log.warning("%s.%s has settings but no component (_target_): ignored", key, name)
            continue
        pairs.append((f"{key}.{name}", value))
    return pairs


def listing() -> dict[str, dict[str, str]]:
    """Role -> registered name -> one-line description, for ``python -m pseudolabel --list``."""
    return {role.key: role.registry.describe() for role in ROLES.values()}
