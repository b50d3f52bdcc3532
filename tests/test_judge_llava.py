"""The LLaVA-OneVision judge on the tiny random-weight checkpoint, loaded like a real one."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from transformers import (
    GenerationConfig,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    PreTrainedTokenizerFast,
)

from actors.interfaces import QUESTIONS
from actors.judges.chat import render_chat
from actors.judges.inputs import model_inputs, single_view_features
from actors.judges.llava import LlavaJudge, answer_token_id, load_llava_judge
from actors.judges.processor import LAYOUTS, LlavaImageProcessor
from actors.judges.questions import ASKABLE, BUILTIN_QUESTIONS, load_questions
from actors.judges.tiny import train_tiny_bpe
from actors.loading import resolve_checkpoint
from schemas.config import JudgeSpec

SIZES = [(64, 64), (48, 80), (80, 48), (32, 32), (64, 64), (20, 100), (100, 20), (40, 40)]
PROMPTS = [
    "a red cat",
    "two dogs",
    "a blue car left of a tree",
    "{weird} braces",
    "a cup",
    "a clock",
    "x",
    "yes",
]


@pytest.fixture(scope="module", params=LAYOUTS)
def judge(request) -> LlavaJudge:
    return load_llava_judge(
        JudgeSpec(kind="llava", checkpoint="tiny:llava", options={"image_layout": request.param})
    )


@pytest.fixture(scope="module")
def pad_judge() -> LlavaJudge:
    """The default judge: the paper's "pad" layout."""
    judge = load_llava_judge(JudgeSpec(kind="llava", checkpoint="tiny:llava"))
    assert judge.processor.layout == "pad" and judge.identity == "llava(tiny:llava, layout=pad, score=raw)"
    return judge


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES]


def direct_answers(judge: LlavaJudge, image: np.ndarray, prompt: str, question: str) -> list[float]:
    """P(yes) and P(no) for one image straight from the model's full logits, no padding, no
    shortcuts (under "pad", from the same inputs_embeds the judge builds)."""
    inputs = model_inputs(
        judge.model, judge.processor, [render_chat(judge.questions[question], prompt)], [image]
    )
    with torch.no_grad():
        logits = judge.model(**inputs).logits[0, -1].double()
    probs = torch.softmax(logits, -1)
    tokens = judge.processor.tokenizer.convert_tokens_to_ids(["yes", "no"])
    return [float(probs[token]) for token in tokens]


@pytest.mark.parametrize("question", QUESTIONS)
def test_p_yes_and_p_no_are_probabilities_equal_to_the_direct_computation(judge, images, question):
    p = judge.ask(images[:3], PROMPTS[:3], question)
    assert p.shape == (3, 2) and p.dtype == np.float64
    assert np.all((p >= 0) & (p <= 1)) and np.all(p.sum(axis=1) <= 1 + 1e-6)
    direct = np.array(
        [
            direct_answers(judge, img, prompt, question)
            for img, prompt in zip(images[:3], PROMPTS[:3], strict=True)
        ]
    )
    np.testing.assert_allclose(p[:, 0], direct[:, 0], rtol=1e-4)
    np.testing.assert_allclose(p[:, 1], direct[:, 1], rtol=1e-4)


def test_batch_of_eight_equals_eight_singles(judge, images):
    batch = judge.ask(images, PROMPTS, "outcome")
    singles = np.array(
        [judge.ask([img], [prompt], "outcome")[0] for img, prompt in zip(images, PROMPTS, strict=True)]
    )
    np.testing.assert_allclose(batch, singles, rtol=1e-4)
    # the images score differently, so a batch that mixed up rows would not pass
    assert np.ptp(singles) > 100 * 1e-4 * singles.max()


@pytest.fixture(scope="module")
def varied_images(images) -> list[np.ndarray]:
    """Noise of several sizes and aspect ratios plus flat colours: inputs a judge must tell apart."""
    flats = [np.full((32, 32, 3), value, dtype=np.uint8) for value in (0, 90, 170, 255)]
    return images + flats + [np.full((48, 80, 3), (200, 30, 60), dtype=np.uint8)]


def answer_probabilities(judge: LlavaJudge, images: list[np.ndarray], question: str) -> torch.Tensor:
    logits = judge.answer_logits(images, ["a photo of a kite"] * len(images), question)
    return torch.softmax(logits.double(), dim=-1)


@pytest.mark.parametrize("question", ASKABLE)
def test_the_tiny_judge_answers_yes_or_no(judge, varied_images, question):
    """Like a trained judge, the tiny one puts its answer mass on yes and no, not on the vocabulary."""
    probs = answer_probabilities(judge, varied_images, question)
    mass = probs[:, judge.yes_id] + probs[:, judge.no_id]
    assert mass.min() > 0.9
    assert probs.shape[1] > 500  # the two tokens win against a real-sized vocabulary


@pytest.mark.parametrize("question", ASKABLE)
def test_the_tiny_judge_says_yes_to_some_images_and_no_to_others(judge, varied_images, question):
    """So a smoke search sees clear and unclear previews and paths with and without potential."""
    p_yes = answer_probabilities(judge, varied_images, question)[:, judge.yes_id].numpy()
    assert p_yes.max() - p_yes.min() > 0.3
    assert p_yes.min() < 0.5 < p_yes.max()
    asked = judge.ask(varied_images, ["a photo of a kite"] * len(p_yes), question)
    np.testing.assert_allclose(p_yes, asked[:, 0], rtol=1e-4, atol=1e-6)


def test_one_forward_pass_per_batch(judge, images, monkeypatch):
    calls = []
    original = judge.model.forward
    monkeypatch.setattr(judge.model, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    judge.ask(images, PROMPTS, "clarity")
    assert len(calls) == 1


def test_pad_layout_image_tokens_equal_the_single_view_feature_count(pad_judge, images):
    """One view of (image_size / patch_size)**2 patch features plus the newline, per image, and
    the text holds exactly that many image tokens for every image of a batch."""
    vision = pad_judge.model.config.vision_config
    count = (vision.image_size // vision.patch_size) ** 2 + 1
    texts = [render_chat(pad_judge.questions["outcome"], p) for p in PROMPTS]
    encoded = pad_judge.processor(texts, images)
    assert encoded["pixel_values"].shape == (len(images), 3, vision.image_size, vision.image_size)
    with torch.no_grad():
        features = single_view_features(pad_judge.model, encoded["pixel_values"])
    assert features.shape[:2] == (len(images), count)
    image_id = pad_judge.model.config.image_token_id
    assert (encoded["input_ids"] == image_id).sum(1).tolist() == [count] * len(images)
    assert [pad_judge.processor.num_image_tokens(h, w) for h, w in SIZES] == [count] * len(SIZES)
    # the newline embedding closes every image's features
    newline = pad_judge.model.model.image_newline
    assert all(torch.equal(f[-1], newline) for f in features)


def test_pad_layout_pads_a_non_square_image_with_the_mean_colour(pad_judge):
    processor = pad_judge.processor
    mean = processor.image_processor.image_mean
    colour = [int(m * 255) for m in mean]
    image = np.random.default_rng(3).integers(0, 256, (12, 30, 3), dtype=np.uint8)
    by_hand = np.empty((30, 30, 3), dtype=np.uint8)
    by_hand[:] = colour
    by_hand[9:21] = image  # (30 - 12) // 2 = 9 rows above, 9 below
    tall = np.ascontiguousarray(image.transpose(1, 0, 2))
    tall_by_hand = np.ascontiguousarray(by_hand.transpose(1, 0, 2))
    tile = pad_judge.model.config.vision_config.image_size
    got = processor.square_views([image, tall])
    reference = torch.stack(
        [
            processor.image_processor([square], return_tensors="pt")["pixel_values"][0, 0]
            for square in (by_hand, tall_by_hand)
        ]
    )
    assert got.shape == (2, 3, tile, tile)
    torch.testing.assert_close(got, reference)
    # the padding is the mean colour, which normalises to (about) zero at the tile's border
    assert got[0, :, 0, :].abs().max() < 0.01 and got[1, :, :, 0].abs().max() < 0.01
    assert got[:, :, tile // 2].abs().mean() > 0.1  # and the image itself is there


def test_an_unknown_image_layout_fails_clearly():
    with pytest.raises(ValueError, match=r"image_layout must be one of \('anyres', 'pad'\), got 'tiles'"):
        load_llava_judge(JudgeSpec(kind="llava", checkpoint="tiny:llava", options={"image_layout": "tiles"}))


def expected_chat(turns: list[tuple[str, str]], prompt: str) -> str:
    text = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    for role, body in turns:
        text += f"<|im_start|>{role}\n{body.replace('{prompt}', prompt)}<|im_end|>\n"
    return text + "<|im_start|>assistant\n"


@pytest.mark.parametrize("question", QUESTIONS)
def test_rendered_chat_matches_the_expected_token_sequence(judge, images, question):
    data = yaml.safe_load(BUILTIN_QUESTIONS.read_text(encoding="utf-8"))
    turns = [next(iter(turn.items())) for turn in data[question]["turns"]]
    if question == "potential":
        assert [role for role, _ in turns] == ["user", "assistant", "user"] and turns[1][1] == "yes"
    prompt = "a red cat"
    expected = expected_chat(turns, prompt)
    assert render_chat(judge.questions[question], prompt) == expected

    tokenizer = judge.processor.tokenizer
    image = images[1]
    count = judge.processor.num_image_tokens(*image.shape[:2])
    before, after = expected.split("<image>")
    image_id = judge.model.config.image_token_id
    want = tokenizer.encode(before) + [image_id] * count + tokenizer.encode(after)
    got = judge.processor([expected], [image])["input_ids"][0].tolist()
    assert got == want
    assert got.count(image_id) == count and got[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert tokenizer.decode(got).endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_image_token_count_equals_the_model_feature_count():
    """The text must hold exactly as many image tokens as the model makes features, per image,
    including the anyres_max downsampling branch (forced here with max 1 tile)."""
    path = resolve_checkpoint("tiny:llava")
    for aspect in ("anyres_max_9", "anyres_max_1"):
        config = LlavaOnevisionConfig.from_pretrained(path, vision_aspect_ratio=aspect)
        model = LlavaOnevisionForConditionalGeneration(config).eval()
        processor = LlavaImageProcessor.from_pretrained(path, config, "anyres")
        rng = np.random.default_rng(0)
        imgs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES]
        pixels = processor.image_processor(imgs, return_tensors="pt")
        with torch.no_grad():
            features = model.model.get_image_features(
                pixel_values=pixels["pixel_values"],
                image_sizes=pixels["image_sizes"],
                vision_aspect_ratio=aspect,
            ).pooler_output
        assert [processor.num_image_tokens(h, w) for h, w in SIZES] == [f.shape[0] for f in features]


def test_yes_and_no_ids_come_from_the_tokenizer(judge):
    tokenizer = judge.processor.tokenizer
    assert tokenizer.decode([judge.yes_id]) == "yes" and tokenizer.decode([judge.no_id]) == "no"
    assert judge.yes_id == tokenizer.get_vocab()["yes"] and judge.no_id == tokenizer.get_vocab()["no"]


def char_level_tokenizer() -> PreTrainedTokenizerFast:
    """A tokenizer that splits every word into characters: 'yes' is three tokens."""
    return PreTrainedTokenizerFast(
        tokenizer_object=train_tiny_bpe(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"], 100),
        pad_token="<|endoftext|>",
    )


def test_a_tokenizer_without_single_token_yes_fails_clearly(tmp_path: Path):
    with pytest.raises(ValueError, match="'yes' must be a single token"):
        answer_token_id(char_level_tokenizer(), "yes")
    # and at load time, through the same path a user's checkpoint takes
    broken = tmp_path / "broken"
    shutil.copytree(resolve_checkpoint("tiny:llava"), broken)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (broken / name).unlink()
    char_level_tokenizer().save_pretrained(broken)
    with pytest.raises(ValueError, match="'yes' must be a single token"):
        load_llava_judge(JudgeSpec(kind="llava", checkpoint=str(broken)))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_reflect_is_batched_greedy_and_bounded(images, monkeypatch, layout):
    options = {"max_new_tokens": 4, "image_layout": layout}
    judge = load_llava_judge(JudgeSpec(kind="llava", checkpoint="tiny:llava", options=options))
    lengths = []
    original = judge.model.generate

    def generate(**kwargs):
        out = original(**kwargs)
        # from embeddings alone, the output holds only the new tokens
        lengths.append(out.shape[1] - kwargs["input_ids"].shape[1] if "input_ids" in kwargs else out.shape[1])
        return out

    monkeypatch.setattr(judge.model, "generate", generate)
    texts = judge.reflect(images[:3], PROMPTS[:3])
    assert len(lengths) == 1 and lengths[0] <= 4
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    assert texts == [judge.reflect([img], [p])[0] for img, p in zip(images[:3], PROMPTS[:3], strict=True)]


@pytest.mark.filterwarnings("ignore:Passing `repetition_penalty`")  # transformers notes the no-op
def test_generate_score_applies_the_checkpoints_sampling_processors(images, tmp_path: Path):
    """A checkpoint whose generation config keeps the top 3 tokens and then the top-p 0.6 nucleus:
    ``generate`` renormalises P(yes), P(no) over what survives, at temperature 1 whatever the config
    says (the reference's call passes temperature=1) and with no repetition penalty at the first
    answer token (its processors see no prompt ids); ``raw`` is the plain softmax."""
    checkpoint = tmp_path / "judge"
    shutil.copytree(resolve_checkpoint("tiny:llava"), checkpoint)
    generation = GenerationConfig.from_pretrained(checkpoint)
    generation.update(do_sample=True, top_k=3, top_p=0.6, temperature=0.25, repetition_penalty=3.0)
    generation.save_pretrained(checkpoint)
    raw, generate = (
        load_llava_judge(JudgeSpec(kind="llava", checkpoint=str(checkpoint), options={"score": score}))
        for score in ("raw", "generate")
    )
    logits = raw.answer_logits(images[:3], PROMPTS[:3], "clarity").double()
    expected = []
    for row in logits:
        top = torch.topk(row, 3)
        probs = torch.softmax(top.values, -1)
        kept = int((torch.cumsum(probs, -1) < 0.6).sum()) + 1  # smallest prefix reaching 0.6
        renormalised = torch.softmax(top.values[:kept], -1).tolist()
        nucleus = dict(zip(top.indices[:kept].tolist(), renormalised, strict=True))
        expected.append([nucleus.get(raw.yes_id, 0.0), nucleus.get(raw.no_id, 0.0)])
    got = generate.ask(images[:3], PROMPTS[:3], "clarity")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    plain = raw.ask(images[:3], PROMPTS[:3], "clarity")
    np.testing.assert_allclose(plain, torch.softmax(logits, -1)[:, [raw.yes_id, raw.no_id]], rtol=1e-5)
    assert np.abs(got - plain).max() > 0.1
    with pytest.raises(ValueError, match="score='sampled'"):
        load_llava_judge(JudgeSpec(kind="llava", checkpoint="tiny:llava", options={"score": "sampled"}))


def test_bad_requests_fail_clearly(judge, images):
    with pytest.raises(ValueError, match="unknown question 'reflect'"):
        judge.ask(images[:1], PROMPTS[:1], "reflect")
    with pytest.raises(ValueError, match="1 images for 2 prompts"):
        judge.ask(images[:1], PROMPTS[:2], "outcome")
    with pytest.raises(ValueError, match="uint8"):
        judge.ask([images[0].astype(np.float32)], PROMPTS[:1], "outcome")
    with pytest.raises(ValueError, match="contains '<image>'"):
        judge.ask(images[:1], ["a <image> here"], "outcome")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['max_tokens'\]"):
        load_llava_judge(JudgeSpec(kind="llava", checkpoint="tiny:llava", options={"max_tokens": 3}))
    with pytest.raises(ValueError, match="max_new_tokens='8' should be int"):
        load_llava_judge(JudgeSpec(kind="llava", checkpoint="tiny:llava", options={"max_new_tokens": "8"}))
    assert judge.ask([], [], "outcome").shape == (0, 2)


def test_a_user_questions_file_overrides_by_name(tmp_path: Path):
    own = tmp_path / "q.yaml"
    own.write_text("outcome:\n  turns:\n  - user: '<image> Is this {prompt}?'\n", encoding="utf-8")
    questions = load_questions(own)
    assert render_chat(questions["outcome"], "a cat").endswith(
        "user\n<image> Is this a cat?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert questions["clarity"] == load_questions()["clarity"]
    own.write_text("outcomes:\n  turns:\n  - user: '<image> x'\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{own}: unknown question 'outcomes'"):
        load_questions(own)
    own.write_text("outcome:\n  turns:\n  - user: 'no image here'\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{own}: outcome: the first turn must hold '<image>'"):
        load_questions(own)
    own.write_text("outcome:\n  turns:\n  - assistant: '<image> x'\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"outcome.turns\[0\]: expected a 'user' turn"):
        load_questions(own)
