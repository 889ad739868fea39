"""Supervised AVS backbones (TPAVI, AVSegFormer, SAMA-AVS) behind one interface and registry.

A backbone is one module with an :class:`AVSBackbone` subclass registered by name
(``@backbones.register("name")``); built-in ones live in this package and are found without a list.
"""

from backbones.base import BACKBONES, AVSBackbone, AVSOutput, Recipe, available, create, register
from openavs_st.registry import UnknownComponentError

list = available  # noqa: A001 - ``backbones.list()`` is the documented spelling
describe = BACKBONES.describe

__all__ = [
    "BACKBONES",
    "AVSBackbone",
    "AVSOutput",
    "Recipe",
    "UnknownComponentError",
    "available",
    "create",
    "describe",
    "list",
    "register",
]
