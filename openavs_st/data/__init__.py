"""The Lightning-free data floor: the Clip type, the clip sources (:mod:`openavs_st.data.sources`), AVSBench
readers, audio and video front ends, transforms, and the pseudo-label store (:mod:`openavs_st.data.store`)."""

from openavs_st.data.avsbench import AVSSReader, MS3Reader, S4Reader, open_reader
from openavs_st.data.clip import Clip, ClipError
from openavs_st.data.transforms import ClipSample, ClipTransform


def read_video_clip(*args, **kwargs):  # noqa: ANN002, ANN003 - thin lazy re-export
    """See :func:`openavs_st.data.video.read_video_clip` (imported lazily: PyAV is heavy)."""
    from openavs_st.data.video import read_video_clip as impl

    return impl(*args, **kwargs)


__all__ = [
    "AVSSReader",
    "Clip",
    "ClipError",
    "ClipSample",
    "ClipTransform",
    "MS3Reader",
    "S4Reader",
    "open_reader",
    "read_video_clip",
]
