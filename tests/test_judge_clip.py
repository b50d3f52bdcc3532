"""The CLIP-score outcome judge on the tiny random-weight checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from actors.judges.clip import ClipJudge, load_clip_judge
from schemas.config import JudgeSpec

PROMPTS = [
    "a red cat",
    "two dogs",
    "a blue car left of a tree",
    "a cup",
    "a clock",
    "x",
    "yes",
    "a photo of " * 40,
]


@pytest.fixture(scope="module")
def judge() -> ClipJudge:
    return load_clip_judge(JudgeSpec(kind="clip", checkpoint="tiny:clip"))


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(64, 64), (48, 80)] * 4]


def test_p_yes_is_the_documented_logistic_of_the_cosine(judge, images):
    answers = judge.ask(images, PROMPTS, "outcome")
    assert answers.shape == (len(images), 2)
    p = answers[:, 0]
    assert np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(answers[:, 1], 1.0 - p)  # no third answer
    model, tokenizer = judge.model, judge.tokenizer
    with torch.no_grad():
        for image, prompt, got in zip(images, PROMPTS, p, strict=True):
            pixels = judge.image_processor([image], return_tensors="pt")["pixel_values"]
            ids = tokenizer([prompt], truncation=True, max_length=77, return_tensors="pt")
            img = model.get_image_features(pixel_values=pixels).pooler_output[0]
            txt = model.get_text_features(**ids).pooler_output[0]
            cos = float(img @ txt / (img.norm() * txt.norm()))
            scale = float(model.logit_scale.exp())
            assert got == pytest.approx(1 / (1 + np.exp(-scale * (cos - 0.25))), rel=1e-4)


def test_scores_are_consistent_batch_equals_singles_and_order(judge, images):
    batch = judge.ask(images, PROMPTS, "outcome")
    singles = [judge.ask([img], [prompt], "outcome")[0] for img, prompt in zip(images, PROMPTS, strict=True)]
    np.testing.assert_allclose(batch, singles, rtol=1e-4)
    order = np.arange(len(images))[::-1]
    reversed_batch = judge.ask([images[i] for i in order], [PROMPTS[i] for i in order], "process")
    np.testing.assert_allclose(reversed_batch, batch[order], rtol=1e-4)
    assert np.ptp(batch) > 1e-3  # rows differ, so a mixed-up batch would show


def test_center_is_where_p_yes_is_one_half(images):
    probe = load_clip_judge(JudgeSpec(kind="clip", checkpoint="tiny:clip"))
    cos = float(probe.similarity(images[:1], PROMPTS[:1])[0])
    centred = load_clip_judge(JudgeSpec(kind="clip", checkpoint="tiny:clip", options={"center": cos}))
    assert centred.ask(images[:1], PROMPTS[:1], "outcome")[0, 0] == pytest.approx(0.5, abs=1e-5)


def test_what_clip_cannot_answer_fails_clearly(judge, images):
    for question in ("clarity", "potential"):
        with pytest.raises(ValueError, match=f"judge clip answers only outcome, process; '{question}'"):
            judge.ask(images[:1], PROMPTS[:1], question)
    with pytest.raises(NotImplementedError, match="cannot write reflections"):
        judge.reflect(images[:1], PROMPTS[:1])
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['centre'\]"):
        load_clip_judge(JudgeSpec(kind="clip", checkpoint="tiny:clip", options={"centre": 0.3}))
