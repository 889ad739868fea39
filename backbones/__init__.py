"""Supervised AVS backbones (TPAVI, AVSegFormer, SAMA-AVS) behind one interface and registry."""

from backbones.base import AVSBackbone, AVSOutput, Recipe, available, create, register

list = available  # noqa: A001 - ``backbones.list()`` is the documented spelling

__all__ = ["AVSBackbone", "AVSOutput", "Recipe", "available", "create", "list", "register"]
