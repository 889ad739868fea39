"""AL-Ref-SAM2 (appletea233/AL-Ref-SAM2): audio tags and a frame strip -> a multimodal LLM's sounding-object
categories and pivot frames -> GroundingDINO boxes (the LLM picks one) -> SAM 2 video propagation.

:class:`~pseudolabel.alrefsam2.labeler.ALRefSAM2Labeler` is the labeler (``labeler=alrefsam2``);
:mod:`~pseudolabel.alrefsam2.answers` holds the prompts and answer parsers, :mod:`~pseudolabel.alrefsam2.strip`
the frame strip, :mod:`~pseudolabel.alrefsam2.chat` the two multimodal LLM backends.
"""

from pseudolabel.alrefsam2.answers import (
    BoxChoice,
    References,
    parse_box_choice,
    parse_references,
)
from pseudolabel.alrefsam2.labeler import ALRefSAM2Labeler, avsbench_objects
from pseudolabel.alrefsam2.strip import draw_strip

__all__ = [
    "ALRefSAM2Labeler",
    "BoxChoice",
    "References",
    "avsbench_objects",
    "draw_strip",
    "parse_box_choice",
    "parse_references",
]
