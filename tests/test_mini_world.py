"""The miniature world: deterministic scenes that say exactly what their GenEval rows say."""

from __future__ import annotations

import json
from collections import Counter
from itertools import combinations

import numpy as np
import pytest

from actors.mini import world
from actors.mini.world import Example, Thing, all_prompts, examples, is_held_out, parse_prompt, render
from actors.scorers.rules import relative_position
from schemas.geneval import TAGS, Metadata


def test_renders_are_deterministic_per_split_and_seed() -> None:
    first, again = examples("test", 4, seed=3), examples("test", 4, seed=3)
    assert [e.metadata for e in first] == [e.metadata for e in again]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, again, strict=True))
    other = examples("test", 4, seed=4)
    assert any(not np.array_equal(a.image, b.image) for a, b in zip(first, other, strict=True))
    metas, images = world.TrainStream(7).batch(16)
    metas_again, images_again = world.TrainStream(7).batch(16)
    assert metas == metas_again and np.array_equal(images, images_again)


def test_a_render_paints_each_object_in_its_palette_colour_on_black() -> None:
    image = render((Thing("square", "red", 6, 0, 0), Thing("circle", "blue", 8, 10, 20)))
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert (image[0:6, 0:6] == world.PALETTE["red"]).all()
    assert (image[24, 10:18] == world.PALETTE["blue"]).all()  # the disc's middle row
    assert (image[20, 10] == 0).all()  # its cut corner
    assert image[:, 20:].sum() == 0


def test_metadata_rows_are_in_genevals_format() -> None:
    prompts = all_prompts()
    assert {len(v) for v in prompts.values()} and set(prompts) == set(TAGS)
    row = world.position("circle", "below", "square").to_row()
    assert row == {
        "tag": "position",
        "include": [
            {"class": "square", "count": 1},
            {"class": "circle", "count": 1, "position": ["below", 0]},
        ],
        "prompt": "a photo of a circle below a square",
    }
    assert world.counting("triangle", 3).to_row() == {
        "tag": "counting",
        "include": [{"class": "triangle", "count": 3}],
        "exclude": [{"class": "triangle", "count": 4}],
        "prompt": "a photo of three triangles",
    }
    assert world.color_attr("red", "circle", "blue", "square").to_row() == {
        "tag": "color_attr",
        "include": [
            {"class": "circle", "count": 1, "color": "red"},
            {"class": "square", "count": 1, "color": "blue"},
        ],
        "prompt": "a photo of a red circle and a blue square",
    }
    for metas in prompts.values():
        for meta in metas:
            assert Metadata.parse(json.loads(json.dumps(meta.to_row()))) == meta


def test_a_malformed_row_names_its_field() -> None:
    with pytest.raises(ValueError, match=r"prompts.jsonl:3: .*include.0.count"):
        Metadata.parse(
            {"tag": "single_object", "include": [{"class": "circle"}], "prompt": "x"}, "prompts.jsonl:3"
        )
    with pytest.raises(ValueError, match="earlier one"):
        Metadata.parse(
            {
                "tag": "position",
                "include": [{"class": "a", "count": 1, "position": ["above", 0]}],
                "prompt": "x",
            }
        )


def test_parse_prompt_inverts_every_template() -> None:
    every = [meta for metas in all_prompts().values() for meta in metas]
    assert len(every) == 3 + 6 + 9 + 12 + 24 + 72
    for meta in every:
        assert parse_prompt(meta.prompt) == meta
    for bad in (
        "a photo of a dog",
        "a photo of five circles",
        "a photo of a red circle left of a square",
        "",
    ):
        with pytest.raises(ValueError, match=r"miniature world|colour"):
            parse_prompt(bad)


def test_training_never_sees_the_held_out_combinations() -> None:
    every = [meta for metas in all_prompts().values() for meta in metas]
    held = {m.prompt for m in every if is_held_out(m)}
    assert {m.prompt for m in every if m.tag == "colors"} & held == {
        "a photo of a yellow triangle",
        "a photo of a blue circle",
    }
    assert len({m.prompt for m in every if m.tag == "position"} & held) == len(world.HELD_OUT_POSITIONS)
    stream = world.TrainStream(0)
    seen = Counter(m.prompt for _ in range(20) for m in stream.batch(100)[0])
    assert not set(seen) & held
    assert Counter(parse_prompt(p).tag for p in seen.elements()).keys() == set(TAGS)
    test = examples("test", 20)
    assert (
        sum(e.metadata.prompt in held for e in test) == 30
    )  # every other colour/position/attribution example
    # each held-out position's mirror image (same picture, other words) stays in training
    for subject, relation, reference in world.HELD_OUT_POSITIONS:
        mirror = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}[relation]
        assert world.position(reference, mirror, subject).prompt not in held


def test_splits_draw_different_scenes() -> None:
    images = {
        split: np.stack([e.image for e in examples(split, 30)]) for split in ("train", "validation", "test")
    }
    for a, b in combinations(images, 2):
        same = (images[a] == images[b]).all(axis=(1, 2, 3)).mean()
        assert same < 0.05, (a, b, same)


def _check_ground_truth(example: Example) -> None:
    meta, scene = example.metadata, example.scene
    expected = Counter((c.cls, c.color) for c in meta.include for _ in range(c.count))
    for shape, colour in list(expected):
        if colour is None:  # colour left open: any palette colour
            count = expected.pop((shape, None))
            assert sum(t.shape == shape for t in scene) == count
    for (shape, colour), count in expected.items():
        assert sum(t.shape == shape and t.color == colour for t in scene) == count
    assert len(scene) == sum(c.count for c in meta.include) <= world.MAX_OBJECTS
    for a, b in combinations(scene, 2):
        apart_x = a.x + a.size + world.GAP <= b.x or b.x + b.size + world.GAP <= a.x
        apart_y = a.y + a.size + world.GAP <= b.y or b.y + b.size + world.GAP <= a.y
        assert apart_x or apart_y
    for t in scene:
        assert t.x % 2 == t.y % 2 == 0 and t.size in world.SIZES and t.x + t.size <= 32 and t.y + t.size <= 32
    if meta.tag == "position":
        reference, subject = scene
        assert meta.include[1].position[0] in relative_position(subject.box, reference.box)


def test_ground_truth_scenes_hold_exactly_what_the_prompt_says() -> None:
    for example in examples("test", 40) + examples("train", 40):
        _check_ground_truth(example)
