"""AL-Ref-SAM2's two questions to the multimodal LLM and the parsing of their answers.

1. **Reference unification + pivot frame** (one request per clip): the frame strip and the audio tags;
   the answer names the sounding objects with the frame where each is clearest, ``['dog': 3]`` or
   ``['dog': 3, 'man': 1]``. :func:`parse_references` reads it as ``{category: frame}``:

   - the ``name: number`` pairs of the answer's LAST ``[...]`` or ``{...}`` block count (prose before it,
     ``Objects: 2. Answer: [...]``, does not), the name quoted (``'dog'``, ``"dog"``, so a JSON object
     ``{"dog": 3}`` too; an apostrophe inside a word stays, ``'man's voice'``) or a bare single word; the
     name is lower-cased and cut at its first ``,`` or ``;`` (as the original parser does,
     appletea233/AL-Ref-SAM2 ``avs/s4/gpt_cot_inference_stage_1.py``);
   - an answer without brackets: the pairs on its last line (``The sounding object is dog: 3``);
   - a block of field records (``{"category": "dog", "frame": 3}``, or a list of them): the name from its
     ``category``/``object``/``name``/``label``/``class`` field, the frame from ``frame``/``pivot_frame``/
     ``pivot`` (1 without one);
   - a frame outside ``1..num_frames`` is clamped into it; a name repeated keeps its first frame;
   - quoted names without any frame (``['dog']``) get frame 1; a name outside a closed category list is
     kept (the prompt asks for list names "wherever one fits");
   - anything else (``[]``, ``none``, prose, an empty answer) gives no category: empty masks.

   Every deviation is written to ``notes``.
2. **Pivot box** (one request per category with two or more candidate boxes): the strip with the numbered
   boxes on the pivot frame; :func:`parse_box_choice` takes the first integer inside the first ``[...]``,
   and box 1 (the grounder's best) when there is none or it is not a box id (the original's default).

The prompt texts are ``pseudolabel/llm/prompts/alrefsam2_reference.txt`` and ``alrefsam2_box.txt``
(``$name`` placeholders, :class:`string.Template`), our wording of the structure of the paper's figures.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pseudolabel.alrefsam2.strip import BOX_COLOURS, grid
from pseudolabel.llm.strategies import PROMPTS_DIR

REFERENCE_PROMPT = PROMPTS_DIR / "alrefsam2_reference.txt"
BOX_PROMPT = PROMPTS_DIR / "alrefsam2_box.txt"


def fill(template: str, where: str | Path, **values: object) -> str:
    """``template`` with its ``$name`` placeholders filled; a missing value names the file and placeholder."""
    try:
        return string.Template(template).substitute({k: str(v) for k, v in values.items()})
    except KeyError as exc:
        raise ValueError(f"prompt file {where}: no value for the placeholder ${exc.args[0]}") from None


def _rows(num_frames: int) -> str:
    rows, columns = grid(num_frames)
    return "" if rows == 1 else f", in two rows of {columns} (left to right, then the second row)"


def reference_prompt(
    template: str,
    *,
    num_frames: int,
    tags: Sequence[str],
    categories: Sequence[str] | None,
    several: bool,
    where: str | Path = REFERENCE_PROMPT,
) -> str:
    """The text of the reference question (the strip goes with it as an image)."""
    if categories:
        rule = " Choose each category from this list wherever one fits: " + ", ".join(f"'{c}'" for c in categories) + "."
        if "keyboard" in categories:
            rule += " In this list 'keyboard' means a computer keyboard for typing, not a musical keyboard."
    else:
        rule = " Name each with a short common noun of one or two words, such as 'dog' or 'guitar'."
    return fill(
        template,
        where,
        num_frames=num_frames,
        rows=_rows(num_frames),
        tags=", ".join(f"'{t}'" for t in tags) if tags else "(none)",
        objects="every object that makes a sound in the video" if several else "the one object that makes the sound in the video",
        category_rule=rule,
        several=", or ['category1': frame1, 'category2': frame2] for several objects" if several else "",
    )


def normalised_cxcywh(box: np.ndarray, height: int, width: int) -> tuple[float, float, float, float]:
    """An xyxy pixel box as (centre x, centre y, width, height), fractions of the frame, 3 decimals."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return (
        round((x0 + x1) / 2 / width, 3),
        round((y0 + y1) / 2 / height, 3),
        round((x1 - x0) / width, 3),
        round((y1 - y0) / height, 3),
    )


def box_prompt(
    template: str,
    *,
    num_frames: int,
    frame: int,
    category: str,
    boxes: np.ndarray,
    frame_hw: tuple[int, int],
    where: str | Path = BOX_PROMPT,
) -> str:
    """The text of the pivot-box question: ``frame`` is the pivot's number (1-based), ``boxes`` the
    ``[N, 4]`` xyxy candidates in the frame's pixels (N <= 3)."""
    lines = []
    for number, box in enumerate(boxes, start=1):
        cx, cy, w, h = normalised_cxcywh(box, *frame_hw)
        lines.append(
            f"box {number} ({BOX_COLOURS[number - 1][0]}): centre ({cx}, {cy}), width {w}, height {h}"
        )
    return fill(
        template,
        where,
        num_frames=num_frames,
        rows=_rows(num_frames),
        frame=frame,
        count=len(boxes),
        category=category,
        boxes="\n".join(lines),
    )


# --- parsing ------------------------------------------------------------------------------------------


@dataclass
class References:
    """A parsed reference answer: ``pivots`` maps each category to its pivot frame number (1-based)."""

    pivots: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# A quoted name may hold an apostrophe between letters ('man's voice'); an opening single quote never
# follows a letter, so the apostrophe of man's cannot open a name.
_SINGLE = r"(?<!\w)'((?:[^'\n]|(?<=\w)'(?=\w))*)'"
_DOUBLE = r'"([^"\n]*)"'
_NAME = rf"(?:{_SINGLE}|{_DOUBLE}|([A-Za-z][\w\-]*))"
_PAIR = re.compile(rf"""{_NAME}\s*:\s*['"]?(-?\d+)""")
_QUOTED = re.compile(rf"{_SINGLE}|{_DOUBLE}")
# a JSON-like record of fields: "key": "text" or "key": number
_FIELD = re.compile(rf"""(?:{_SINGLE}|{_DOUBLE})\s*:\s*(?:{_SINGLE}|{_DOUBLE}|(-?\d+))""")
_NAME_KEYS = ("category", "object", "name", "label", "class")
_FRAME_KEYS = ("frame", "pivot_frame", "pivot", "frame_number", "frame_id")


def _clean_name(name: str) -> str:
    first = re.split(r"[,;]", name.strip())[0]
    return " ".join(first.strip().strip(".").lower().split())


def last_block(text: str) -> str | None:
    """The inside of the answer's last top-level ``[...]`` or ``{...}`` block (brackets nested inside it
    included); an opening bracket never closed (a cut-off answer) runs to the end; None without one."""
    start, depth, last = None, 0, None
    for i, char in enumerate(text):
        if char in "[{":
            if depth == 0:
                start = i
            depth += 1
        elif char in "]}" and depth:
            depth -= 1
            if depth == 0:
                last, start = text[start + 1 : i], None
    if depth and start is not None:
        return text[start + 1 :]
    return last


def _records(block: str) -> list[tuple[str, int]] | None:
    """``(name, frame)`` of a block of field records (``{"category": "dog", "frame": 3}``, or a list of them);
    None when the block has no text-valued field (a ``{name: frame}`` map)."""
    records = []
    for part in re.findall(r"\{([^{}]*)\}", block) or [block]:
        fields: dict[str, str] = {}
        for key_s, key_d, text_s, text_d, number in _FIELD.findall(part):
            fields.setdefault((key_s or key_d).strip().lower(), number or text_s or text_d)
        records.append(fields)
    if not any(not v.lstrip("-").isdigit() for fields in records for v in fields.values()):
        return None
    pairs = []
    for fields in records:
        name = next((fields[k] for k in _NAME_KEYS if k in fields), None)
        frame = next((fields[k] for k in _FRAME_KEYS if k in fields and fields[k].lstrip("-").isdigit()), "1")
        if name is not None:
            pairs.append((_clean_name(name), int(frame)))
    return pairs


def parse_references(text: str, num_frames: int, categories: Sequence[str] | None = None) -> References:
    """``{category: pivot frame}`` from the reference answer (rules in the module docstring)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    out = References()
    allowed = {c.lower() for c in categories} if categories else None
    text = text or ""
    block = last_block(text)
    if block is None:  # no brackets: name: number pairs on the answer's last line only
        lines = [line for line in text.splitlines() if line.strip()]
        block = lines[-1] if lines else ""
        pairs = [(_clean_name(a or b or c), int(n)) for a, b, c, n in _PAIR.findall(block)]
    else:
        records = _records(block)
        if records is not None:
            pairs = records
            out.notes.append(f"fields read as category and frame: {pairs}")
        else:
            pairs = [(_clean_name(a or b or c), int(n)) for a, b, c, n in _PAIR.findall(block)]
            if not pairs:
                pairs = [(_clean_name(a or b), 1) for a, b in _QUOTED.findall(block)]
                if pairs:
                    out.notes.append(f"no frame numbers: frame 1 for {[name for name, _ in pairs]}")
    for name, frame in pairs:
        if not name:
            out.notes.append("an empty category name: skipped")
            continue
        if name in out.pivots:
            out.notes.append(f"{name!r} repeated: kept frame {out.pivots[name]}")
            continue
        if not 1 <= frame <= num_frames:
            clamped = min(max(frame, 1), num_frames)
            out.notes.append(f"{name!r}: frame {frame} is outside 1..{num_frames}, clamped to {clamped}")
            frame = clamped
        if allowed is not None and name not in allowed:
            out.notes.append(f"{name!r} is not in the category list: kept")
        out.pivots[name] = frame
    if not out.pivots:
        out.notes.append("no category named: empty masks")
    return out


@dataclass
class BoxChoice:
    """A parsed pivot-box answer: ``box`` is the chosen candidate's id (1-based)."""

    box: int
    notes: list[str] = field(default_factory=list)


def parse_box_choice(text: str, count: int) -> BoxChoice:
    """The chosen box id: the first integer inside the first ``[...]`` of the answer; 1 when there is
    none or it is not in ``1..count``."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    bracket = re.search(r"\[(.*?)\]", text or "", re.DOTALL)
    number = re.search(r"\d+", bracket.group(1)) if bracket else None
    if number is None:
        return BoxChoice(1, ["no [id] in the answer: box 1"])
    value = int(number.group(0))
    if not 1 <= value <= count:
        return BoxChoice(1, [f"box {value} is not one of 1..{count}: box 1"])
    return BoxChoice(value)
