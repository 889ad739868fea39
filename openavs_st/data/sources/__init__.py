"""Where clips come from: one registry of clip sources, used by the labelers (``python -m pseudolabel``), the
training data (:class:`openavs_st.datamodule.AVSDataModule`) and ``infer.py``.

A source lists its clip ids up front (cheap: nothing is decoded) and loads one clip at a time, so a
corrupt file fails only its own clip and sharding or resuming can skip clips without reading them. It is
also a ``Sequence[Clip]`` (``source[i]`` loads ``source.ids[i]``), which is what the DataModule batches.

Kinds (:data:`CLIP_SOURCES`; ``CLIP_SOURCES.describe()`` lists them):

- ``avsbench``: an AVSBench split (``data=avsbench_s4 | avsbench_ms3 | avsbench_avss | avsbench_avss_binary``)
  through the readers of :mod:`openavs_st.data.avsbench`;
- ``videos``: a video file, or every video file under a folder, decoded by
  :func:`openavs_st.data.video.read_video_clip` (AVSBench's one frame per second);
- ``unpaired``: audio clips and images composed into clips, each audio with ``k`` seeded images (the
  OpenAVS paper's unpaired setting);
- ``store``: a pseudo-label store (:class:`openavs_st.data.store.PseudoLabelStore`, ``data=pseudo``);
- ``synthetic``: the synthetic S4-layout dataset, written under its root on first use (``data=synthetic``).

:func:`open_source` builds a source from an ``input`` config (``{"kind": "videos", "path": ...}``) and,
for the kinds that read a dataset, the ``data`` config of ``configs/data/``; without ``kind`` the dataset's
``name`` picks the kind. A kind is one module (``base`` holds the interface, the registry and
:func:`open_source`; ``avsbench``, ``videos``, ``unpaired`` and ``store`` the built-in kinds); a new kind is a
:class:`ClipSource` subclass decorated with ``@CLIP_SOURCES.register("name")`` (see
:mod:`openavs_st.registry`), in this package or in any module imported before :func:`open_source` runs.

Folders follow one rule (:func:`media_files`): every file under the folder, sub-folders included, whose
suffix (any case) is in the media kind's list (:data:`VIDEO_SUFFIXES`, :data:`AUDIO_SUFFIXES`,
:data:`IMAGE_SUFFIXES`), hidden files and folders (a name starting with ".") left out, in path order; the
file stem is the clip id, so two files with one stem are an error.
"""

from openavs_st.data.sources.avsbench import (
    AVSBENCH_DATASETS,
    AVSBenchSource,
    SyntheticSource,
    reader_options,
)
from openavs_st.data.sources.base import (
    AUDIO_SUFFIXES,
    CLIP_SOURCES,
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    ClipSource,
    UnknownSourceError,
    kind_of_dataset,
    media_files,
    open_source,
)
from openavs_st.data.sources.store import StoreSource
from openavs_st.data.sources.unpaired import Pairing, UnpairedSource
from openavs_st.data.sources.videos import VideoFolderSource

__all__ = [
    "AUDIO_SUFFIXES",
    "AVSBENCH_DATASETS",
    "CLIP_SOURCES",
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "AVSBenchSource",
    "ClipSource",
    "Pairing",
    "StoreSource",
    "SyntheticSource",
    "UnknownSourceError",
    "UnpairedSource",
    "VideoFolderSource",
    "kind_of_dataset",
    "media_files",
    "open_source",
    "reader_options",
]
