"""GenEval's rules on hand-made detections: every tag, and the edges where a verdict turns."""

from __future__ import annotations

from actors.scorers.rules import Detection, evaluate, relative_position
from schemas.geneval import Metadata


def det(
    cls: str, x: float, y: float, size: float = 8, score: float = 1.0, color: str | None = None
) -> Detection:
    return Detection(cls=cls, box=(x, y, x + size, y + size), score=score, color=color)


def meta(row: dict) -> Metadata:
    return Metadata.parse(row)


SINGLE = meta(
    {"tag": "single_object", "include": [{"class": "circle", "count": 1}], "prompt": "a photo of a circle"}
)
TWO = meta(
    {
        "tag": "two_object",
        "include": [{"class": "circle", "count": 1}, {"class": "square", "count": 1}],
        "prompt": "a photo of a circle and a square",
    }
)
THREE = meta(
    {
        "tag": "counting",
        "include": [{"class": "square", "count": 3}],
        "exclude": [{"class": "square", "count": 4}],
        "prompt": "a photo of three squares",
    }
)
RED_CIRCLE = meta(
    {
        "tag": "colors",
        "include": [{"class": "circle", "count": 1, "color": "red"}],
        "prompt": "a photo of a red circle",
    }
)
LEFT = meta(
    {
        "tag": "position",
        "include": [
            {"class": "square", "count": 1},
            {"class": "circle", "count": 1, "position": ["left of", 0]},
        ],
        "prompt": "a photo of a circle left of a square",
    }
)
ATTR = meta(
    {
        "tag": "color_attr",
        "include": [
            {"class": "circle", "count": 1, "color": "red"},
            {"class": "square", "count": 1, "color": "blue"},
        ],
        "prompt": "a photo of a red circle and a blue square",
    }
)


def test_single_object_needs_a_confident_detection() -> None:
    assert evaluate([det("circle", 0, 0)], SINGLE).correct
    assert evaluate([det("circle", 0, 0), det("square", 20, 20)], SINGLE).correct  # extra objects are fine
    missing = evaluate([det("square", 0, 0)], SINGLE)
    assert not missing.correct and missing.reason == "expected circle>=1, found 0"
    assert not evaluate([det("circle", 0, 0, score=0.3)], SINGLE).correct  # threshold is strict: > 0.3
    assert evaluate([det("circle", 0, 0, score=0.31)], SINGLE).correct


def test_two_objects_need_both_classes() -> None:
    assert evaluate([det("square", 20, 0), det("circle", 0, 0)], TWO).correct
    verdict = evaluate([det("circle", 0, 0), det("circle", 20, 0)], TWO)
    assert not verdict.correct and verdict.reason == "expected square>=1, found 0"


def test_counting_uses_the_exclude_clause_and_the_high_threshold() -> None:
    three = [det("square", x, 0) for x in (0, 10, 20)]
    assert evaluate(three, THREE).correct
    four = evaluate([*three, det("square", 0, 20)], THREE)
    assert not four.correct and four.reason == "expected square<4, found 4"
    two = evaluate(three[:2], THREE)
    assert not two.correct and two.reason == "expected square>=3, found 2"
    # a fourth, unsure square is ignored when counting (0.9), so three confident ones still pass
    assert evaluate([*three, det("square", 0, 20, score=0.85)], THREE).correct
    # ... and an unsure third one does not count either
    assert not evaluate([*three[:2], det("square", 20, 0, score=0.85)], THREE).correct


def test_at_most_sixteen_per_class_are_kept() -> None:
    many = [det("square", x, y, size=2) for x in range(0, 40, 4) for y in range(0, 8, 4)]
    assert len(many) == 20
    verdict = evaluate(many, THREE)
    assert verdict.reason == "expected square<4, found 16"


def test_colour_is_checked_on_the_most_confident_objects() -> None:
    assert evaluate([det("circle", 0, 0, color="red")], RED_CIRCLE).correct
    blue = evaluate([det("circle", 0, 0, color="blue")], RED_CIRCLE)
    assert not blue.correct and blue.reason == "expected red circle>=1, found 0 red; and 1 blue"
    # a red circle exists, but the most confident circle is blue: GenEval checks that one
    ranked = [det("circle", 0, 0, score=0.6, color="red"), det("circle", 20, 0, score=0.9, color="blue")]
    assert not evaluate(ranked, RED_CIRCLE).correct


def test_colour_attribution_fails_on_one_wrong_object() -> None:
    right = [det("circle", 0, 0, color="red"), det("square", 20, 0, color="blue")]
    assert evaluate(right, ATTR).correct
    wrong = evaluate([det("circle", 0, 0, color="red"), det("square", 20, 0, color="green")], ATTR)
    assert not wrong.correct
    assert wrong.reason == "expected blue square>=1, found 0 blue; and 1 green"
    swapped = evaluate([det("circle", 0, 0, color="blue"), det("square", 20, 0, color="red")], ATTR)
    assert not swapped.correct and len(swapped.reason.splitlines()) == 2


def test_position_by_box_centres() -> None:
    assert evaluate([det("circle", 0, 10), det("square", 20, 10)], LEFT).correct
    swapped = evaluate([det("circle", 20, 10), det("square", 0, 10)], LEFT)
    assert not swapped.correct and swapped.reason == "expected circle left of target, found right of target"
    no_target = evaluate([det("circle", 0, 10)], LEFT)
    assert "expected square>=1, found 0" in no_target.reason and "no target for circle" in no_target.reason


def test_position_inside_the_shrink_margin_is_no_relation() -> None:
    # centres 1.5 px apart, margin 0.1 * (8 + 8) = 1.6 px: the offset shrinks to nothing
    assert relative_position((0, 0, 8, 8), (1.5, 0, 9.5, 8)) == set()
    inside = evaluate([det("circle", 0, 10), det("square", 1.5, 10)], LEFT)
    assert (
        not inside.correct
        and inside.reason == "expected circle left of target, found no clear relation to target"
    )
    # past the margin, what is left must be over half the offset: 3 px is not enough, 4 px is
    assert relative_position((0, 0, 8, 8), (3, 0, 11, 8)) == set()
    assert relative_position((0, 0, 8, 8), (4, 0, 12, 8)) == {"left of"}


def test_relative_position_diagonals_and_dominant_axis() -> None:
    assert relative_position((0, 0, 8, 8), (20, 20, 28, 28)) == {"left of", "above"}
    assert relative_position((20, 2, 28, 10), (0, 0, 8, 8)) == {"right of"}  # mostly sideways
    assert relative_position((0, 20, 8, 28), (2, 0, 10, 8)) == {"below"}
