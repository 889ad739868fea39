"""Results of deterministic computations kept by the bytes of their inputs (least recently used out)."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import numpy as np


class Memo:
    """Results of a deterministic computation, keyed by the bytes of its inputs (least recently used first
    out). Frames of a clip often repeat (a still picture, a static camera) and a clip's audio is heard every
    epoch: a repeat costs a hash, not a model call (the CAM grounder, GrabCut, YAMNet audio features)."""

    def __init__(self, size: int = 256) -> None:
        self.size = int(size)
        self._items: OrderedDict[bytes, Any] = OrderedDict()

    @staticmethod
    def key(*parts: Any) -> bytes:
        digest = hashlib.sha1()
        for part in parts:
            if isinstance(part, np.ndarray):
                digest.update(repr((part.shape, part.dtype.str)).encode())
                digest.update(np.ascontiguousarray(part).tobytes())
            else:
                digest.update(repr(part).encode())
            digest.update(b"|")
        return digest.digest()

    def get(self, key: bytes) -> Any:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: bytes, value: Any) -> None:
        if self.size <= 0:
            return
        self._items[key] = value
        while len(self._items) > self.size:
            self._items.popitem(last=False)
