"""The one registry mechanism of openavs-st: every pluggable part (backbone, clip source, audio model, LLM
translator, grounder, segmenter ...) is a class registered by name in the registry of its role.

Modelled on timm's ``register_model`` / ``create_model`` / ``list_models``
(huggingface/pytorch-image-models, ``timm/models/_registry.py``)::

    BACKBONES = Registry("backbone", builtin=("backbones",))

    @BACKBONES.register("tpavi")
    class TPAVI(AVSBackbone):
        '''TPAVI (Zhou et al., ECCV 2022): ...'''   # the first line is the description --list prints

    BACKBONES.create("tpavi", preset="tiny")       # by name, from keyword config
    BACKBONES.names()                              # ['avsegformer', 'sama_avs', 'tpavi']
    BACKBONES.describe()                           # {'tpavi': 'TPAVI (Zhou et al., ECCV 2022): ...', ...}

Config files build the same classes with Hydra's ``_target_`` (the class path); a class outside this
repository registers itself when its module is imported, which ``_target_`` does, so a plug-in is one
Python file and one yaml. The built-in modules of a role are imported on the first lookup: every public
module (not ``base``, not ``_private``) of the packages named in ``builtin``; such modules must stay cheap
to import (torch and transformers models load on first use, not at import).

This module imports only the standard library, so ``backbones``, ``pseudolabel`` and ``openavs_st`` can all
use it without importing each other.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownComponentError(KeyError):
    """A name that no class of the role is registered under; the message lists the choices."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def first_line(text: str | None) -> str:
    """The first non-empty line of a docstring, stripped ("" for none)."""
    for line in (text or "").strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


class Registry(Generic[T]):
    """Classes of one role by name.

    Args:
        role: what the classes are (``backbone``, ``grounder`` ...), used in messages and listings.
        builtin: packages (every public module is imported) or modules whose import registers the
            built-in classes; imported on the first lookup.
        base: optional class every registered class must subclass (checked at registration).
    """

    def __init__(self, role: str, *, builtin: Sequence[str] = (), base: type | None = None) -> None:
        self.role = role
        self.builtin = tuple(builtin)
        self.base = base
        self._classes: dict[str, type[T]] = {}
        self._descriptions: dict[str, str] = {}
        self._imported = False
        self._lock = threading.RLock()

    # -- registration

    def register(self, name: str, *, description: str | None = None) -> Callable[[type[T]], type[T]]:
        """Class decorator: register the class under ``name`` and set its ``name`` attribute.

        ``description`` (one line for listings) defaults to the first line of the class docstring.
        Registering a second class under a taken name is an error; re-registering the same class (a
        module imported twice under two names) is not.
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{self.role} name must be a non-empty string, got {name!r}")

        def deco(cls: type[T]) -> type[T]:
            if self.base is not None and not (isinstance(cls, type) and issubclass(cls, self.base)):
                raise TypeError(f"{self.role} {name!r}: {cls!r} must subclass {self.base.__name__}")
            with self._lock:
                taken = self._classes.get(name)
                if taken is not None and _qualname(taken) != _qualname(cls):
                    raise ValueError(f"{self.role} {name!r} is registered twice: {_qualname(taken)} and {_qualname(cls)}")
                cls.name = name  # type: ignore[attr-defined]
                self._classes[name] = cls
                self._descriptions[name] = description or first_line(cls.__doc__)
            return cls

        return deco

    # -- lookup

    def import_builtin(self) -> None:
        """Import the built-in modules (once); their decorators fill the registry."""
        if self._imported:
            return
        with self._lock:
            if self._imported:
                return
            for name in self.builtin:
                module = importlib.import_module(name)
                if hasattr(module, "__path__"):  # a package: every public module of it
                    for info in pkgutil.iter_modules(module.__path__):
                        if info.name != "base" and not info.name.startswith("_"):
                            importlib.import_module(f"{name}.{info.name}")
            self._imported = True

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``; an error listing the choices otherwise."""
        self.import_builtin()
        try:
            return self._classes[name]
        except KeyError:
            raise UnknownComponentError(f"unknown {self.role} {name!r}; available: {self.names()}") from None

    def create(self, name: str, /, **cfg: Any) -> T:
        """An instance of the class registered as ``name``, built from keyword config."""
        return self.get(name)(**cfg)  # type: ignore[call-arg]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self.import_builtin()
        return sorted(self._classes)

    def describe(self) -> dict[str, str]:
        """Name -> one-line description, sorted by name."""
        self.import_builtin()
        return {name: self._descriptions[name] for name in sorted(self._classes)}

    def name_of(self, cls: type) -> str | None:
        """The name a class is registered under (None if it is not)."""
        for name, registered in self._classes.items():
            if registered is cls:
                return name
        return None

    def __contains__(self, name: object) -> bool:
        self.import_builtin()
        return name in self._classes

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.role!r}, {self.names()})"


def _qualname(cls: Any) -> str:
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', repr(cls))}"


def accepted_keywords(cls: Callable[..., Any]) -> set[str] | None:
    """Keyword names ``cls(...)`` accepts (None when it takes ``**kwargs``)."""
    parameters = inspect.signature(cls).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
