"""Read Qt binary resource files (``.rcc``, format versions 1-3) without Qt.

GCompris ships its activities' pictures and recordings as Qt resources; the quickstart dataset
(:mod:`openavs_st.data.quickstart`) reads its photographs and recordings from them. The layout is the
one Qt's resource compiler writes (qtbase ``src/tools/rcc/rcc.cpp``, ``RCCResourceLibrary::output``
and ``writeDataBlobs``/``writeDataNames``/``writeDataStructure``) and ``QResourceRoot`` reads
(qtbase ``src/corelib/io/qresource.cpp``). All integers are big-endian::

    header   "qres", u32 version, u32 tree offset, u32 data offset, u32 names offset
             (version >= 3: u32 overall flags)
    tree     fixed-size entries, entry 0 = the root directory; 14 bytes (version 1) or 22 bytes
             (version >= 2: a trailing u64 modification time in ms):
                 u32 name offset, u16 flags,
                 directory (flags & 0x02): u32 child count, u32 index of the first child
                 file:                     u16 territory, u16 language, u32 data offset
    names    at names offset + name offset: u16 length, u32 hash, then length UTF-16BE code units
    data     at data offset + entry data offset: u32 size, then size bytes;
             flags & 0x01: zlib in qCompress form (u32 uncompressed size, then a zlib stream)
             flags & 0x04: a zstd frame (needs the ``zstandard`` module)

Usage::

    files = read_rcc("explore_farm_animals.rcc")     # {"/gcompris/src/.../cow.webp": b"RIFF...", ...}
    archive = RccArchive("explore_farm_animals.rcc")  # lazy: archive.paths(), archive.read(path)
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RccArchive", "RccEntry", "RccError", "read_rcc"]

MAGIC = b"qres"
FLAG_COMPRESSED = 0x01  # zlib, qCompress form
FLAG_DIRECTORY = 0x02
FLAG_COMPRESSED_ZSTD = 0x04
SUPPORTED_VERSIONS = (1, 2, 3)


class RccError(ValueError):
    """A Qt resource file that cannot be read; the message names the file."""


@dataclass(frozen=True)
class RccEntry:
    """One file inside a resource: its path, flags, locale and where its data block starts."""

    path: str
    flags: int
    territory: int
    language: int
    data_offset: int  # absolute offset of the block's u32 size in the file

    @property
    def compression(self) -> str:
        if self.flags & FLAG_COMPRESSED_ZSTD:
            return "zstd"
        if self.flags & FLAG_COMPRESSED:
            return "zlib"
        return "none"


class RccArchive:
    """The file tree of a ``.rcc`` file, read once; file contents are sliced and decompressed on demand.

    Args:
        path: the ``.rcc`` file.

    Raises:
        RccError: naming the file, on a bad magic, an unsupported version, or offsets/lengths that point
            outside the file (truncated or corrupt data).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._data = self.path.read_bytes()
        except OSError as exc:
            raise RccError(f"cannot read Qt resource file {self.path}: {exc}") from exc
        data = self._data
        if len(data) < 4 or data[:4] != MAGIC:
            raise RccError(f"{self.path}: not a Qt binary resource file (magic {data[:4]!r}, expected {MAGIC!r})")
        if len(data) < 20:
            raise RccError(f"{self.path}: truncated header ({len(data)} bytes)")
        self.version, self._tree, self._blobs, self._names = struct.unpack_from(">IIII", data, 4)
        if self.version not in SUPPORTED_VERSIONS:
            raise RccError(f"{self.path}: unsupported format version {self.version} (reads {SUPPORTED_VERSIONS})")
        self.flags = 0
        if self.version >= 3:
            if len(data) < 24:
                raise RccError(f"{self.path}: truncated header ({len(data)} bytes)")
            (self.flags,) = struct.unpack_from(">I", data, 20)
        self._entry_size = 14 if self.version == 1 else 22
        for what, offset in (("tree", self._tree), ("data", self._blobs), ("names", self._names)):
            if offset > len(data):
                raise RccError(f"{self.path}: {what} offset {offset} is past the end of the file ({len(data)} bytes)")
        self.entries: dict[str, RccEntry] = {}
        self._walk()

    # ------------------------------------------------------------------------------------ parsing

    def _unpack(self, fmt: str, offset: int, what: str) -> tuple[int, ...]:
        size = struct.calcsize(fmt)
        if offset < 0 or offset + size > len(self._data):
            raise RccError(
                f"{self.path}: truncated or corrupt: {what} at byte {offset} runs past the end of the file "
                f"({len(self._data)} bytes)"
            )
        return struct.unpack_from(fmt, self._data, offset)

    def _entry(self, index: int) -> tuple[int, int, int, int, int]:
        """(name offset, flags, a, b, c) of tree entry ``index``: directory a=count, b=first child;
        file a=territory, b=language, c=data offset."""
        offset = self._tree + index * self._entry_size
        name_offset, flags = self._unpack(">IH", offset, f"tree entry {index}")
        if flags & FLAG_DIRECTORY:
            count, first = self._unpack(">II", offset + 6, f"tree entry {index}")
            return name_offset, flags, count, first, 0
        territory, language, data_offset = self._unpack(">HHI", offset + 6, f"tree entry {index}")
        return name_offset, flags, territory, language, data_offset

    def _name(self, name_offset: int) -> str:
        offset = self._names + name_offset
        (length,) = self._unpack(">H", offset, "name length")
        start = offset + 6  # u16 length, u32 hash
        end = start + 2 * length
        if end > len(self._data):
            raise RccError(f"{self.path}: truncated or corrupt: name at byte {offset} runs past the end of the file")
        return self._data[start:end].decode("utf-16-be", errors="replace")

    def _walk(self) -> None:
        _, flags, count, first, _ = self._entry(0)
        if not flags & FLAG_DIRECTORY:
            raise RccError(f"{self.path}: corrupt: the root tree entry is not a directory")
        stack = [("", count, first)]
        seen: set[int] = {0}
        while stack:
            prefix, count, first = stack.pop()
            for index in range(first, first + count):
                if index in seen:
                    raise RccError(f"{self.path}: corrupt: tree entry {index} is reached twice (a cycle)")
                seen.add(index)
                name_offset, flags, a, b, c = self._entry(index)
                path = f"{prefix}/{self._name(name_offset)}"
                if flags & FLAG_DIRECTORY:
                    stack.append((path, a, b))
                else:
                    self.entries[path] = RccEntry(path, flags, a, b, self._blobs + c)

    # ------------------------------------------------------------------------------------- access

    def paths(self) -> list[str]:
        """Every file path inside, sorted (e.g. ``/gcompris/src/.../cow.webp``)."""
        return sorted(self.entries)

    def find(self, name: str) -> str:
        """The one path that is ``name`` or ends with ``/name``; :class:`KeyError` naming the file if none."""
        if name in self.entries:
            return name
        hits = [p for p in self.entries if p.endswith("/" + name.lstrip("/"))]
        if len(hits) != 1:
            what = "no entry" if not hits else f"{len(hits)} entries"
            raise KeyError(f"{self.path}: {what} named {name!r}")
        return hits[0]

    def read(self, path: str) -> bytes:
        """The (decompressed) contents of the file at ``path``."""
        try:
            entry = self.entries[path]
        except KeyError:
            raise KeyError(f"{self.path}: no entry {path!r}") from None
        (size,) = self._unpack(">I", entry.data_offset, f"data size of {path}")
        start = entry.data_offset + 4
        if start + size > len(self._data):
            raise RccError(
                f"{self.path}: truncated: {path} needs {size} bytes at byte {start}, the file has {len(self._data)}"
            )
        blob = self._data[start : start + size]
        if entry.flags & FLAG_COMPRESSED_ZSTD:
            return self._unzstd(blob, path)
        if entry.flags & FLAG_COMPRESSED:
            return self._unzlib(blob, path)
        return blob

    def read_all(self) -> dict[str, bytes]:
        return {p: self.read(p) for p in self.paths()}

    def _unzlib(self, blob: bytes, path: str) -> bytes:
        if len(blob) < 4:
            raise RccError(f"{self.path}: truncated zlib data of {path}")
        (expected,) = struct.unpack_from(">I", blob, 0)
        try:
            out = zlib.decompress(blob[4:])
        except zlib.error as exc:
            raise RccError(f"{self.path}: corrupt zlib data of {path}: {exc}") from exc
        if len(out) != expected:
            raise RccError(f"{self.path}: {path} decompressed to {len(out)} bytes, its header says {expected}")
        return out

    def _unzstd(self, blob: bytes, path: str) -> bytes:
        try:
            import zstandard
        except ImportError:
            raise RccError(
                f"{self.path}: {path} is zstd-compressed; install the 'zstandard' module to read it"
            ) from None
        try:
            return zstandard.ZstdDecompressor().decompress(blob, max_output_size=1 << 31)
        except zstandard.ZstdError as exc:
            raise RccError(f"{self.path}: corrupt zstd data of {path}: {exc}") from exc

    def __contains__(self, path: object) -> bool:
        return path in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"RccArchive({str(self.path)!r}, version={self.version}, files={len(self)})"


def read_rcc(path: str | os.PathLike[str]) -> dict[str, bytes]:
    """Every file inside the Qt resource file ``path``: path inside (``/a/b.png``) -> decompressed bytes."""
    return RccArchive(path).read_all()
