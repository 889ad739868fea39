"""The ``videos`` clip source: a video file, or every video file under a folder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from openavs_st.data.clip import Clip
from openavs_st.data.configs import ConfigError, is_unset
from openavs_st.data.sources.base import (
    CLIP_SOURCES,
    VIDEO_SUFFIXES,
    ClipSource,
    media_files,
    size_hw,
)


@CLIP_SOURCES.register("videos")
class VideoFolderSource(ClipSource):
    """A video file, or every video file under a folder (sub-folders included); the clip id is the file stem.

    Args:
        path: the file or folder.
        num_frames: frames per clip (default: the whole seconds of each video).
        size: ``(H, W)`` to resize frames to (default: native).
        missing_audio: ``error`` (a video without sound fails) or ``silence``.
        category_from_folder: ``meta["category"]`` from the video's parent folder name (for ``clip_label`` on
            a folder sorted by class).
        key: the config key ``path`` came from, named in error messages.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        num_frames: int | None = None,
        size: Sequence[int] | None = None,
        missing_audio: str = "error",
        category_from_folder: bool = False,
        key: str = "input",
    ) -> None:
        if missing_audio not in ("error", "silence"):
            raise ConfigError(f"missing_audio must be 'error' or 'silence', got {missing_audio!r}")
        self.folder = Path(path).expanduser()
        self.files = media_files(self.folder, VIDEO_SUFFIXES, what="video files", key=key, single="a video file")
        self._ids = list(self.files)
        self.num_frames = num_frames
        self.size = size_hw(size)
        self.missing_audio = missing_audio
        self.category_from_folder = category_from_folder

    @classmethod
    def from_config(
        cls, input_cfg: Mapping[str, Any], data_cfg: Mapping[str, Any] | None, *, input_key: str, data_key: str
    ) -> ClipSource:
        path = input_cfg.get("path")
        if is_unset(path):
            raise ConfigError(f"{input_key}.kind=videos needs a path: {input_key}=/a/video.mp4 or /a/folder/of/videos")
        return cls(
            path,
            num_frames=input_cfg.get("num_frames"),
            size=input_cfg.get("size"),
            missing_audio=str(input_cfg.get("missing_audio") or "error"),
            category_from_folder=bool(input_cfg.get("category_from_folder", False)),
            key=input_key,
        )

    def _category(self, path: Path) -> str | None:
        return path.parent.name if self.category_from_folder and path.parent != self.folder else None

    def load(self, clip_id: str) -> Clip:
        from openavs_st.data.video import read_video_clip

        path = self.files[clip_id]
        clip = read_video_clip(
            path, num_frames=self.num_frames, size=self.size, missing_audio=self.missing_audio, clip_id=clip_id
        )
        category = self._category(path)
        if category is not None:
            clip.meta["category"] = category
        return clip

    def categories(self) -> list[str | None]:
        return [self._category(self.files[clip_id]) for clip_id in self._ids]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.folder), "num_frames": self.num_frames}
