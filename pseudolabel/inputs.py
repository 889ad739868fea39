"""Moved to :mod:`openavs_st.data.sources`, the one registry of clip sources; this module only re-exports
it until the labeler imports it from there."""

from openavs_st.data.sources import (  # noqa: F401 - re-exported
    AUDIO_SUFFIXES,
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    AVSBenchSource,
    ClipSource,
    Pairing,
    UnpairedSource,
    VideoFolderSource,
    open_source,
)

INPUT_KINDS = ("avsbench", "videos", "unpaired")
