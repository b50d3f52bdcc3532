"""GenEval's verdict on a list of detected objects, apart from any detector.

The rules are those of GenEval's ``evaluation/evaluate_images.py`` (djghosh13/geneval, MIT),
restated here so any detector can feed them: the miniature world's exact scorer today, a
Mask2Former + CLIP detector on real images later.

- Detections count when their score is above 0.3 (0.9 for counting prompts); per class the most
  confident 16 are kept, most confident first.
- Each include clause needs at least ``count`` objects of its class; the ``count`` most confident
  are the clause's objects. A colour clause needs all of them to have that colour. A position
  clause needs each of them to stand in the relation to every object of the clause it points
  at, which must itself have matched.
- An exclude clause fails the image when its class is found ``count`` times or more.
- Relations compare box centres after shrinking the offset by 0.1 x the summed box sizes on each
  axis; what remains must point mostly one way (its share of the offset's length above 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from schemas.geneval import Metadata

THRESHOLD = 0.3
COUNTING_THRESHOLD = 0.9
MAX_PER_CLASS = 16
POSITION_MARGIN = 0.1

Box = tuple[float, float, float, float]
"""(x1, y1, x2, y2) in pixels, y growing downwards."""


@dataclass(frozen=True)
class Detection:
    cls: str
    box: Box
    score: float
    color: str | None = None
    """The object's colour as the detector's colour classifier reads it (None: not classified)."""


@dataclass(frozen=True)
class Verdict:
    correct: bool
    reason: str
    """Empty when correct; else one line per failed clause, in GenEval's wording."""


def relative_position(box_a: Box, box_b: Box) -> set[str]:
    """Where A stands relative to B: a subset of {left of, right of, above, below}."""
    a, b = np.asarray(box_a, dtype=float), np.asarray(box_b, dtype=float)
    offset = (a[:2] + a[2:]) / 2 - (b[:2] + b[2:]) / 2
    dims = np.abs(a[2:] - a[:2]) + np.abs(b[2:] - b[:2])
    shrunk = np.maximum(np.abs(offset) - POSITION_MARGIN * dims, 0) * np.sign(offset)
    if np.all(np.abs(shrunk) < 1e-3):
        return set()
    dx, dy = shrunk / np.linalg.norm(offset)
    relations = set()
    if dx < -0.5:
        relations.add("left of")
    if dx > 0.5:
        relations.add("right of")
    if dy < -0.5:
        relations.add("above")
    if dy > 0.5:
        relations.add("below")
    return relations


def kept_by_class(detections: Sequence[Detection], tag: str) -> dict[str, list[Detection]]:
    """Confident detections per class, most confident first, at most MAX_PER_CLASS each."""
    threshold = COUNTING_THRESHOLD if tag == "counting" else THRESHOLD
    by_class: dict[str, list[Detection]] = {}
    for det in sorted(detections, key=lambda d: -d.score):
        if det.score > threshold and len(by_class.setdefault(det.cls, [])) < MAX_PER_CLASS:
            by_class[det.cls].append(det)
    return {cls: found for cls, found in by_class.items() if found}


def evaluate(detections: Sequence[Detection], metadata: Metadata) -> Verdict:
    objects = kept_by_class(detections, metadata.tag)
    reasons: list[str] = []
    matched_groups: list[list[Detection] | None] = []
    for clause in metadata.include:
        found = objects.get(clause.cls, [])[: clause.count]
        matched = len(found) >= clause.count
        if not matched:
            reasons.append(f"expected {clause.cls}>={clause.count}, found {len(found)}")
        if matched and clause.color is not None:
            colours = [d.color for d in found]
            if colours.count(clause.color) < clause.count:
                matched = False
                tally = ", ".join(f"{colours.count(c)} {c}" for c in dict.fromkeys(colours))
                reasons.append(
                    f"expected {clause.color} {clause.cls}>={clause.count}, "
                    f"found {colours.count(clause.color)} {clause.color}; and {tally}"
                )
        if matched and clause.position is not None:
            relation, target = clause.position
            targets = matched_groups[target]
            if targets is None:
                matched = False
                reasons.append(f"no target for {clause.cls} to be {relation}")
            else:
                for obj in found:
                    wrong = next(
                        (t for t in targets if relation not in relative_position(obj.box, t.box)), None
                    )
                    if wrong is not None:
                        matched = False
                        actual = " and ".join(sorted(relative_position(obj.box, wrong.box)))
                        reasons.append(
                            f"expected {clause.cls} {relation} target, found "
                            + (f"{actual} target" if actual else "no clear relation to target")
                        )
                        break
        matched_groups.append(found if matched else None)
    for clause in metadata.exclude:
        found_all = objects.get(clause.cls, [])
        if len(found_all) >= clause.count:
            reasons.append(f"expected {clause.cls}<{clause.count}, found {len(found_all)}")
    return Verdict(correct=not reasons, reason="\n".join(reasons))
