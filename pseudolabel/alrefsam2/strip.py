"""The frame strip AL-Ref-SAM2 shows its multimodal LLM: a clip's frames tiled left to right (two rows when
there are more than five), each numbered in a circle at its top-left corner; for the pivot-box question,
the candidate boxes drawn on the pivot frame with their ids (green, magenta, orange, as in
appletea233/AL-Ref-SAM2 ``avs/s4/gpt_cot_inference_stage_2.py``). Drawn with PIL.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Box colours by candidate id (1, 2, 3), with their names for the prompt.
BOX_COLOURS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("green", (0, 200, 0)),
    ("magenta", (255, 0, 255)),
    ("orange", (255, 165, 0)),
)
IMAGE_FORMATS = ("jpeg", "png")


def grid(count: int) -> tuple[int, int]:
    """``(rows, columns)`` of a strip of ``count`` frames: one row up to five frames, else two rows."""
    if count < 1:
        raise ValueError(f"a frame strip needs at least one frame, got {count}")
    if count <= 5:
        return 1, count
    return 2, math.ceil(count / 2)


@dataclass(frozen=True)
class StripLayout:
    """Where each frame sits in a strip: tile size, grid and the gap between tiles (pixels)."""

    count: int
    tile_h: int
    tile_w: int
    gap: int

    @property
    def rows(self) -> int:
        return grid(self.count)[0]

    @property
    def columns(self) -> int:
        return grid(self.count)[1]

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the strip image."""
        return (
            self.columns * self.tile_w + (self.columns - 1) * self.gap,
            self.rows * self.tile_h + (self.rows - 1) * self.gap,
        )

    def origin(self, index: int) -> tuple[int, int]:
        """``(x, y)`` of frame ``index``'s top-left corner (0-based, row-major)."""
        row, column = divmod(index, self.columns)
        return column * (self.tile_w + self.gap), row * (self.tile_h + self.gap)


def layout(count: int, frame_hw: tuple[int, int], frame_height: int | None, gap: int) -> StripLayout:
    """The layout of ``count`` frames of ``frame_hw`` pixels, each scaled to ``frame_height`` rows
    (aspect kept; None keeps the frames' size)."""
    height, width = int(frame_hw[0]), int(frame_hw[1])
    if frame_height is not None and frame_height != height:
        width = max(1, round(width * frame_height / height))
        height = int(frame_height)
    if gap < 0:
        raise ValueError(f"strip gap must be >= 0, got {gap}")
    return StripLayout(count, height, width, int(gap))


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def draw_strip(
    frames: Sequence[np.ndarray] | np.ndarray,
    *,
    frame_height: int | None = None,
    gap: int = 4,
    boxes: tuple[int, np.ndarray] | None = None,
) -> np.ndarray:
    """The strip of ``frames`` (``[H, W, 3]`` uint8 each, one size) as an ``[H', W', 3]`` uint8 image.

    Args:
        frames: the frames in time order; frame ``i`` is numbered ``i + 1``.
        frame_height: scale each frame to this height (None: keep the size).
        gap: white pixels between neighbouring frames.
        boxes: ``(index, [N, 4] xyxy boxes in the frame's pixels)``: draw the boxes (at most three) on
            frame ``index`` with ids 1..N in :data:`BOX_COLOURS`.
    """
    from PIL import Image, ImageDraw

    frames = [np.asarray(f) for f in frames]
    if not frames:
        raise ValueError("a frame strip needs at least one frame")
    shape = frames[0].shape
    for i, frame in enumerate(frames):
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame {i}: expected [H, W, 3] uint8, got {frame.shape} {frame.dtype}")
        if frame.shape != shape:
            raise ValueError(f"frame {i} is {frame.shape[:2]}, frame 0 is {shape[:2]}: a strip needs one size")
    plan = layout(len(frames), shape[:2], frame_height, gap)
    strip = Image.new("RGB", plan.size, (255, 255, 255))
    scale_x, scale_y = plan.tile_w / shape[1], plan.tile_h / shape[0]
    radius = max(5, round(0.08 * min(plan.tile_h, plan.tile_w)))
    font = _font(max(8, round(radius * 1.3)))
    for index, frame in enumerate(frames):
        tile = Image.fromarray(frame)
        if tile.size != (plan.tile_w, plan.tile_h):
            tile = tile.resize((plan.tile_w, plan.tile_h), Image.BILINEAR)
        draw = ImageDraw.Draw(tile)
        if boxes is not None and boxes[0] == index:
            width = max(1, round(min(plan.tile_h, plan.tile_w) / 100))
            for number, box in enumerate(np.asarray(boxes[1], dtype=np.float64)[: len(BOX_COLOURS)], start=1):
                colour = BOX_COLOURS[number - 1][1]
                x0, y0, x1, y1 = box[0] * scale_x, box[1] * scale_y, box[2] * scale_x, box[3] * scale_y
                draw.rectangle((x0, y0, x1, y1), outline=colour, width=width)
                # the id on a tag of the box's colour, inside its top-right corner (the frame number's
                # circle sits top-left)
                left, top, right, bottom = draw.textbbox((0, 0), str(number), font=font)
                tag_w, tag_h = right - left + 4, bottom - top + 4
                tx, ty = max(x0, x1 - tag_w), y0
                draw.rectangle((tx, ty, tx + tag_w, ty + tag_h), fill=colour)
                draw.text((tx + 2 - left, ty + 2 - top), str(number), fill=(0, 0, 0), font=font)
        centre = (radius + 2, radius + 2)
        draw.ellipse((centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius),
                     fill=(255, 255, 255), outline=(0, 0, 0))
        draw.text(centre, str(index + 1), fill=(0, 0, 0), font=font, anchor="mm")
        strip.paste(tile, plan.origin(index))
    return np.array(strip)  # a writable copy


def encode_image(image: np.ndarray, image_format: str = "jpeg", quality: int = 90) -> bytes:
    """``image`` as JPEG or PNG bytes (deterministic: the same image gives the same bytes)."""
    from PIL import Image

    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    buffer = io.BytesIO()
    if image_format == "jpeg":
        Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    else:
        Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(image: np.ndarray, image_format: str = "jpeg") -> str:
    """``image`` as a base64 data URL (an OpenAI ``image_url`` content part's ``url``)."""
    payload = base64.b64encode(encode_image(image, image_format)).decode("ascii")
    return f"data:image/{image_format};base64,{payload}"
