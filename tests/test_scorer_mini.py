"""The miniature world's exact scorer on hand-built scenes, ground truth and reconstructions."""

from __future__ import annotations

import time

import numpy as np
import pytest

from actors.mini import world
from actors.mini.codebook import Codebook
from actors.mini.packaged import CODEBOOK
from actors.mini.world import Thing, examples, parse_prompt, render
from actors.registry import build_generator
from actors.scorers.mini import detect, score
from actors.showo.generator import ShowoGenerator
from schemas.config import GeneratorSpec


def verdict(prompt: str, *things: Thing) -> tuple[bool, str]:
    v = score(render(tuple(things)), parse_prompt(prompt))
    return v.correct, v.reason


# (prompt, scene, correct, a word the reason must contain)
CASES = [
    ("a photo of a circle", [Thing("circle", "green", 8, 4, 4)], True, ""),
    ("a photo of a circle", [Thing("square", "green", 8, 4, 4)], False, "circle>=1"),  # wrong shape
    ("a photo of a triangle", [Thing("triangle", "red", 6, 20, 2)], True, ""),
    ("a photo of a triangle", [Thing("circle", "red", 6, 20, 2)], False, "triangle>=1"),
    (
        "a photo of a square and a triangle",
        [Thing("square", "blue", 10, 0, 0), Thing("triangle", "blue", 12, 16, 16)],
        True,
        "",
    ),
    (
        "a photo of a square and a triangle",
        [Thing("square", "blue", 10, 0, 0), Thing("square", "red", 12, 16, 16)],
        False,
        "triangle>=1",
    ),
    (
        "a photo of two circles",
        [Thing("circle", "red", 6, 0, 0), Thing("circle", "blue", 8, 20, 20)],
        True,
        "",
    ),
    (
        "a photo of two circles",  # a wrong count: the exclude clause (three or more) fails
        [
            Thing("circle", "red", 6, 0, 0),
            Thing("circle", "red", 6, 10, 0),
            Thing("circle", "blue", 8, 20, 20),
        ],
        False,
        "circle<3",
    ),
    (
        "a photo of four squares",
        [Thing("square", c, 6, x, 0) for c, x in zip(world.COLORS, (0, 8, 16, 24), strict=True)],
        True,
        "",
    ),
    ("a photo of four squares", [Thing("square", "red", 6, x, 0) for x in (0, 8, 16)], False, "square>=4"),
    ("a photo of a yellow triangle", [Thing("triangle", "yellow", 10, 10, 10)], True, ""),
    (
        "a photo of a yellow triangle",
        [Thing("triangle", "green", 10, 10, 10)],
        False,
        "1 green",
    ),  # wrong colour
    (
        "a photo of a circle left of a square",
        [Thing("circle", "red", 8, 0, 10), Thing("square", "red", 8, 20, 12)],
        True,
        "",
    ),
    (
        "a photo of a circle left of a square",
        [Thing("circle", "red", 8, 20, 10), Thing("square", "red", 8, 0, 12)],
        False,
        "right of",
    ),  # swapped
    (
        "a photo of a triangle above a circle",
        [Thing("triangle", "blue", 8, 10, 0), Thing("circle", "green", 8, 12, 20)],
        True,
        "",
    ),
    (
        "a photo of a triangle above a circle",
        [Thing("triangle", "blue", 8, 10, 20), Thing("circle", "green", 8, 12, 0)],
        False,
        "below",
    ),
    (
        "a photo of a red circle and a blue square",
        [Thing("circle", "red", 12, 0, 0), Thing("square", "blue", 6, 20, 20)],
        True,
        "",
    ),
    (
        "a photo of a red circle and a blue square",  # colours swapped between the two objects
        [Thing("circle", "blue", 12, 0, 0), Thing("square", "red", 6, 20, 20)],
        False,
        "red circle",
    ),
]


@pytest.mark.parametrize(("prompt", "scene", "correct", "reason"), CASES)
def test_hand_built_scenes(prompt: str, scene: list[Thing], correct: bool, reason: str) -> None:
    got, why = verdict(prompt, *scene)
    assert got == correct, why
    assert reason in why and (why == "") == correct


def test_detections_read_class_colour_box_and_full_score() -> None:
    found = detect(render((Thing("triangle", "yellow", 12, 2, 4), Thing("circle", "blue", 6, 20, 24))))
    assert sorted((d.cls, d.color, d.box, d.score) for d in found) == [
        ("circle", "blue", (20.0, 24.0, 26.0, 30.0), 1.0),
        ("triangle", "yellow", (2.0, 4.0, 14.0, 16.0), 1.0),
    ]


def test_off_palette_pixels_and_specks_still_read() -> None:
    image = render((Thing("circle", "red", 10, 4, 4), Thing("square", "green", 8, 20, 20))).astype(int)
    noisy = np.random.default_rng(0).integers(-40, 41, image.shape)
    image = np.clip(image + noisy, 0, 255)
    image[0:2, 30:32] = (0, 0, 255)  # a 4-pixel speck of blue: noise, not an object
    assert score(image.astype(np.uint8), parse_prompt("a photo of a red circle and a green square")).correct
    assert not any(d.color == "blue" for d in detect(image.astype(np.uint8)))


def test_an_unshapely_blob_is_too_unsure_to_count() -> None:
    image = render((Thing("square", "red", 8, 0, 0), Thing("square", "red", 8, 20, 0)))
    image[20:30, 4:8] = world.PALETTE["red"]  # a 4x10 bar: a square's fill, not its shape
    bar = [d for d in detect(image) if d.box[1] >= 20]
    assert len(bar) == 1 and 0.3 < bar[0].score < 0.9
    assert score(image, parse_prompt("a photo of two squares")).correct  # unsure: not counted (0.9)
    assert not score(image, parse_prompt("a photo of two circles")).correct
    three = render(
        (Thing("square", "red", 8, 0, 0), Thing("square", "red", 8, 20, 0), Thing("square", "red", 8, 4, 20))
    )
    assert not score(three, parse_prompt("a photo of two squares")).correct  # a clean third one is


def test_every_ground_truth_render_is_correct_and_fast() -> None:
    held = examples("test", 50) + examples("train", 20)
    images = [e.image for e in held]
    started = time.perf_counter()
    verdicts = [score(image, e.metadata) for image, e in zip(images, held, strict=True)]
    per_image = (time.perf_counter() - started) / len(held)
    assert [v.reason for v in verdicts if not v.correct] == []
    assert per_image < 0.02, f"{per_image * 1000:.1f} ms per image"


def test_reconstructions_of_held_out_scenes_read_correctly() -> None:
    """Codes from the packaged codebook, pixels from the packaged MAGVIT-v2 decoder, decoded as
    the generator decodes its samples."""
    held = examples("test", 50)
    codes = Codebook.load(CODEBOOK).encode(np.stack([e.image for e in held]))
    generator = build_generator(GeneratorSpec(kind="showo", checkpoint="mini:showo"))
    assert isinstance(generator, ShowoGenerator)
    decoded = generator.decode(codes)
    right = np.mean([score(image, e.metadata).correct for image, e in zip(decoded, held, strict=True)])
    assert right >= 0.98
