"""Text -> boxes -> masks: grounders (phrases -> boxes) and segmenters (boxes -> masks).

    from pseudolabel import vfm
    grounder = vfm.create_grounder("grounding_dino", model="IDEA-Research/grounding-dino-tiny", device="cuda")
    segmenter = vfm.create_segmenter("sam2", model="facebook/sam2.1-hiera-large", device="cuda")
    detections = grounder.detect(frames, [["dog"], ["dog", "man"]])       # boxes xyxy in pixels
    masks = segmenter.segment(frames, [d.boxes for d in detections])    # one [H, W] bool per frame

Grounders: ``grounding_dino`` (transformers), ``cam`` (EfficientNet-Lite0 class-activation maps, offline),
``sam3`` (SAM 3: instance boxes with their masks). Segmenters: ``sam2`` and ``sam`` (transformers),
``sam2_official`` (Meta's ``sam2`` package, extra ``.[sam2]``), ``grabcut`` (OpenCV, seeded by ``cam``'s maps
when given), ``grounder_masks`` (the masks ``sam3`` returns). Video segmenters (:mod:`pseudolabel.vfm.video`:
a box on one frame -> masks over the clip): ``sam2_video`` (transformers), ``sam2_official_video`` (Meta's
package), ``sam3_video`` (text phrases tracked, ``track``). Models load on first use from a Hub
id or a local directory; ``from_config`` builds a random-weight model for tests. Importing this
package imports neither torch nor transformers nor sam2.
"""

from pseudolabel.vfm.base import (
    BoxMasks,
    Detections,
    Grounder,
    Segmenter,
    available_grounders,
    available_segmenters,
    clean_phrases,
    create_grounder,
    create_segmenter,
    grounder,
    segmenter,
)

__all__ = [
    "BoxMasks",
    "Detections",
    "Grounder",
    "Segmenter",
    "available_grounders",
    "available_segmenters",
    "clean_phrases",
    "create_grounder",
    "create_segmenter",
    "grounder",
    "segmenter",
]
