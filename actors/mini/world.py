"""The miniature world: 32x32 scenes of coloured shapes on black, GenEval's six kinds of prompt
about them, and the exact scene each prompt describes.

Everything is chosen so a model can learn it on two CPU cores and a program can judge it
exactly: three shapes, four colours far apart in RGB, sizes and positions on a 2-pixel grid (so
4x4 token patches see few distinct edges), at most four objects with a gap of at least 2 pixels
(so the connected components of one colour never merge). Prompts are GenEval's templates with
this vocabulary and each carries its GenEval metadata row, so the same rules judge both worlds.

Splits. ``train`` draws prompts from every combination except the held-out ones; ``validation``
and ``test`` draw half of their colour, colour-attribution and position prompts from the held-out
combinations and half from the rest, each split with its own seeds. Held out of training:
the colour-shape pairs ``HELD_OUT_COLOR_SHAPES`` (in colours and colour-attribution prompts;
the pairs still appear in pictures of prompts that name no colour) and the position triples
``HELD_OUT_POSITIONS`` (each one's mirror, e.g. "square right of circle" for "circle left of
square", stays in training).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Literal

import numpy as np

from actors.scorers.rules import relative_position
from schemas.geneval import RELATIONS, TAGS, Clause, Metadata, Relation, Tag

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
}
COLORS: tuple[str, ...] = tuple(PALETTE)
SIZES: tuple[int, ...] = (6, 8, 10, 12)
IMAGE_SIZE = 32
GRID = 2
GAP = 2
MAX_OBJECTS = 4
NUMBER_WORDS: dict[int, str] = {2: "two", 3: "three", 4: "four"}
HELD_OUT_COLOR_SHAPES: frozenset[tuple[str, str]] = frozenset({("yellow", "triangle"), ("blue", "circle")})
HELD_OUT_POSITIONS: frozenset[tuple[str, Relation, str]] = frozenset(
    {
        ("circle", "left of", "square"),
        ("triangle", "above", "circle"),
        ("square", "below", "triangle"),
        ("triangle", "right of", "square"),
    }
)
VOCABULARY: tuple[str, ...] = (
    *("a", "photo", "of", "and", "left", "right", "above", "below"),
    *NUMBER_WORDS.values(),
    *COLORS,
    *SHAPES,
    *(f"{s}s" for s in SHAPES),
)
"""Every word a prompt of this world can use."""

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")
_SPLIT_SALT: dict[str, int] = {"train": 0, "validation": 1, "test": 2, "stream": 3}
_HOLDS_OUT: tuple[Tag, ...] = ("colors", "position", "color_attr")


@dataclass(frozen=True)
class Thing:
    """One object: its top-left corner (x column, y row) and side in pixels."""

    shape: str
    color: str
    size: int
    x: int
    y: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x1, y1, x2, y2) with exclusive ends, as a detector's box of its pixels."""
        return (self.x, self.y, self.x + self.size, self.y + self.size)


Scene = tuple[Thing, ...]


@dataclass(frozen=True)
class Example:
    """A prompt's metadata and the scene that makes it true."""

    metadata: Metadata
    scene: Scene

    @property
    def image(self) -> np.ndarray:
        return render(self.scene)


# -- shapes and rendering -----------------------------------------------------------------------


@cache
def shape_mask(shape: str, height: int, width: int) -> np.ndarray:
    """(height, width) bool mask of a shape filling that box: a disc slightly inside the box
    (so even a 6-px circle has cut corners), a full square, an upward triangle whose base is the
    bottom row. Any box size works, so a scorer can compare a found blob with the ideal shape."""
    rows = (np.arange(height) + 0.5)[:, None] / height  # 0..1 top to bottom
    cols = (np.arange(width) + 0.5)[None, :] / width
    if shape == "circle":
        radius = 0.5 - 0.25 / max(height, width)
        mask = (rows - 0.5) ** 2 + (cols - 0.5) ** 2 <= radius**2
    elif shape == "square":
        mask = np.ones((height, width), dtype=bool)
    elif shape == "triangle":
        half_width = (np.arange(height)[:, None] + 1) / height / 2
        mask = np.abs(cols - 0.5) <= half_width + 1e-9
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")
    mask.setflags(write=False)
    return mask


def render(scene: Scene) -> np.ndarray:
    """(32, 32, 3) uint8."""
    return render_batch([scene])[0]


def render_batch(scenes: list[Scene]) -> np.ndarray:
    """(B, 32, 32, 3) uint8; stamping precomputed masks, a few microseconds per object."""
    images = np.zeros((len(scenes), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for i, scene in enumerate(scenes):
        for thing in scene:
            patch = images[i, thing.y : thing.y + thing.size, thing.x : thing.x + thing.size]
            patch[shape_mask(thing.shape, thing.size, thing.size)] = PALETTE[thing.color]
    return images


# -- prompts ------------------------------------------------------------------------------------


def _article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _named(shape: str, color: str | None) -> str:
    return _article(f"{color} {shape}" if color else shape)


def single_object(shape: str) -> Metadata:
    return Metadata(
        tag="single_object", include=(Clause(cls=shape, count=1),), prompt=f"a photo of {_article(shape)}"
    )


def two_object(first: str, second: str) -> Metadata:
    return Metadata(
        tag="two_object",
        include=(Clause(cls=first, count=1), Clause(cls=second, count=1)),
        prompt=f"a photo of {_article(first)} and {_article(second)}",
    )


def counting(shape: str, count: int) -> Metadata:
    return Metadata(
        tag="counting",
        include=(Clause(cls=shape, count=count),),
        exclude=(Clause(cls=shape, count=count + 1),),
        prompt=f"a photo of {NUMBER_WORDS[count]} {shape}s",
    )


def colors(color: str, shape: str) -> Metadata:
    return Metadata(
        tag="colors",
        include=(Clause(cls=shape, count=1, color=color),),
        prompt=f"a photo of {_named(shape, color)}",
    )


def position(subject: str, relation: Relation, reference: str) -> Metadata:
    """GenEval's order: the reference object first, the subject second pointing back at it."""
    return Metadata(
        tag="position",
        include=(Clause(cls=reference, count=1), Clause(cls=subject, count=1, position=(relation, 0))),
        prompt=f"a photo of {_article(subject)} {relation} {_article(reference)}",
    )


def color_attr(first_color: str, first: str, second_color: str, second: str) -> Metadata:
    return Metadata(
        tag="color_attr",
        include=(
            Clause(cls=first, count=1, color=first_color),
            Clause(cls=second, count=1, color=second_color),
        ),
        prompt=f"a photo of {_named(first, first_color)} and {_named(second, second_color)}",
    )


def all_prompts() -> dict[Tag, list[Metadata]]:
    """Every prompt of the world, by tag (GenEval's rules: two different classes, two different
    colours in colour attribution)."""
    pairs = [(a, b) for a in SHAPES for b in SHAPES if a != b]
    return {
        "single_object": [single_object(s) for s in SHAPES],
        "two_object": [two_object(a, b) for a, b in pairs],
        "counting": [counting(s, n) for s in SHAPES for n in NUMBER_WORDS],
        "colors": [colors(c, s) for c in COLORS for s in SHAPES],
        "position": [position(a, r, b) for a, b in pairs for r in RELATIONS],
        "color_attr": [
            color_attr(ca, a, cb, b) for a, b in pairs for ca in COLORS for cb in COLORS if ca != cb
        ],
    }


def is_held_out(meta: Metadata) -> bool:
    """Whether the prompt names a combination that training never sees."""
    if any((c.color, c.cls) in HELD_OUT_COLOR_SHAPES for c in meta.include if c.color):
        return True
    if meta.tag == "position":
        reference, subject = meta.include
        assert subject.position is not None
        return (subject.cls, subject.position[0], reference.cls) in HELD_OUT_POSITIONS
    return False


_SHAPE, _COLOR, _NUMBER = ("|".join(words) for words in (SHAPES, COLORS, NUMBER_WORDS.values()))
_LINK = "|".join(("and", *RELATIONS))


def _object_pattern(colour_group: str, shape_group: str) -> str:
    return rf"an? (?:(?P<{colour_group}>{_COLOR}) )?(?P<{shape_group}>{_SHAPE})"


_PROMPT = re.compile(
    rf"a photo of (?:(?P<number>{_NUMBER}) (?P<plural>{_SHAPE})s"
    rf"|{_object_pattern('c1', 's1')}(?: (?P<link>{_LINK}) {_object_pattern('c2', 's2')})?)"
)


def parse_prompt(text: str) -> Metadata:
    """The metadata row of a prompt written from this world's templates (the inverse of the
    prompt builders above, used by judges that only see the text)."""
    match = _PROMPT.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a prompt of the miniature world: {text!r}")
    g = match.groupdict()
    if g["number"]:
        number = next(n for n, word in NUMBER_WORDS.items() if word == g["number"])
        return counting(g["plural"], number)
    if g["link"] is None:
        return colors(g["c1"], g["s1"]) if g["c1"] else single_object(g["s1"])
    if g["link"] != "and":
        if g["c1"] or g["c2"]:
            raise ValueError(f"position prompts name no colours in this world: {text!r}")
        return position(g["s1"], g["link"], g["s2"])
    if bool(g["c1"]) != bool(g["c2"]):
        raise ValueError(f"either both objects or neither carry a colour: {text!r}")
    return color_attr(g["c1"], g["s1"], g["c2"], g["s2"]) if g["c1"] else two_object(g["s1"], g["s2"])


# -- scenes -------------------------------------------------------------------------------------


def _place(sizes: list[int], rng: np.random.Generator) -> list[tuple[int, int]] | None:
    """Top-left corners on the grid keeping every pair of boxes at least GAP apart, or None when
    the random order painted itself into a corner."""
    placed: list[tuple[int, int, int]] = []
    for size in sizes:
        coords = np.arange(0, IMAGE_SIZE - size + 1, GRID)
        xs, ys = np.meshgrid(coords, coords)
        free = np.ones(xs.shape, dtype=bool)
        for px, py, ps in placed:
            overlap_x = (xs < px + ps + GAP) & (px < xs + size + GAP)
            overlap_y = (ys < py + ps + GAP) & (py < ys + size + GAP)
            free &= ~(overlap_x & overlap_y)
        options = np.flatnonzero(free)
        if options.size == 0:
            return None
        pick = options[rng.integers(options.size)]
        placed.append((int(xs.flat[pick]), int(ys.flat[pick]), size))
    return [(x, y) for x, y, _ in placed]


def _things(shapes: list[str], colours: list[str], rng: np.random.Generator) -> Scene:
    while True:
        sizes = [int(s) for s in rng.choice(SIZES, size=len(shapes))]
        corners = _place(sizes, rng)
        if corners is not None:
            return tuple(
                Thing(shape, colour, size, x, y)
                for shape, colour, size, (x, y) in zip(shapes, colours, sizes, corners, strict=True)
            )


def scene_for(meta: Metadata, rng: np.random.Generator) -> Scene:
    """A scene with exactly the objects the prompt names (colours it leaves open drawn at random);
    for position prompts the relation holds by GenEval's own rule."""
    shapes = [c.cls for c in meta.include for _ in range(c.count)]
    colours = [c.color or str(rng.choice(COLORS)) for c in meta.include for _ in range(c.count)]
    while True:
        scene = _things(shapes, colours, rng)
        if meta.tag != "position":
            return scene
        reference, subject = scene
        relation = meta.include[1].position
        assert relation is not None
        if relation[0] in relative_position(subject.box, reference.box):
            return scene


def _prompt_pools(split: Split) -> dict[Tag, tuple[list[Metadata], list[Metadata]]]:
    """Per tag: (seen, held-out) prompts; training gets no held-out pool."""
    pools: dict[Tag, tuple[list[Metadata], list[Metadata]]] = {}
    for tag, prompts in all_prompts().items():
        seen = [m for m in prompts if not is_held_out(m)]
        held = [m for m in prompts if is_held_out(m)] if split != "train" else []
        pools[tag] = (seen, held)
    return pools


def examples(split: Split, per_tag: int, seed: int = 0) -> list[Example]:
    """A fixed list of ``per_tag`` examples of each tag, the same for the same (split, seed).
    In validation and test, every other colour, position and colour-attribution example uses a
    held-out combination."""
    rng = np.random.default_rng([_SPLIT_SALT[split], seed])
    out = []
    for tag, (seen, held) in _prompt_pools(split).items():
        for i in range(per_tag):
            pool = held if held and tag in _HOLDS_OUT and i % 2 == 0 else seen
            meta = pool[rng.integers(len(pool))]
            out.append(Example(meta, scene_for(meta, rng)))
    return out


class TrainStream:
    """Endless training examples: a tag uniformly, a training prompt of it uniformly, a fresh scene."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng([_SPLIT_SALT["stream"], seed])
        self.pools = [seen for seen, _ in _prompt_pools("train").values()]

    def batch(self, size: int) -> tuple[list[Metadata], np.ndarray]:
        metas = []
        for _ in range(size):
            pool = self.pools[self.rng.integers(len(TAGS))]
            metas.append(pool[self.rng.integers(len(pool))])
        scenes = [scene_for(m, self.rng) for m in metas]
        return metas, render_batch(scenes)
