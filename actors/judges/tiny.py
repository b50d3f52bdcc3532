"""Tiny random-weight judges for tests and the smoke recipe.

They are built from the real config classes and saved the way a downloaded checkpoint is laid
out (weights, config, tokenizer, image processor config), so ``load_llava_judge`` and
``load_clip_judge`` load them through exactly the code a real checkpoint takes. Tokenizers are
byte-level BPE trained offline on the question texts, with the special tokens of the real
ones; ``yes`` and ``no`` come out as single tokens, as in Qwen2's vocabulary.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    CLIPConfig,
    CLIPModel,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    PreTrainedTokenizerFast,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
    LlavaOnevisionImageProcessorPil,
)

from actors.judges.chat import render_chat
from actors.judges.inputs import model_inputs
from actors.judges.processor import LAYOUTS, LlavaImageProcessor
from actors.judges.questions import ASKABLE, BUILTIN_QUESTIONS, load_questions

QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
CLIP_SPECIALS = ["<|startoftext|>", "<|endoftext|>"]
TILE = 32
"""Tiny vision tile side in pixels (the real SigLIP tile is 384)."""
TINY_VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": TILE,
    "patch_size": 8,
}
_WORDS = (
    "a photo of the red green blue yellow black white cat dog car bird apple clock cup two three "
    "left right above below on under next to and with image prompt does this match yes no"
)


def train_tiny_bpe(specials: list[str], vocab_size: int) -> Tokenizer:
    corpus = [BUILTIN_QUESTIONS.read_text(encoding="utf-8"), _WORDS] + ["yes\nno\n"] * 50
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer)
    return tokenizer


def tiny_qwen_tokenizer() -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=train_tiny_bpe(QWEN_SPECIALS, 700),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
    )


def build_tiny_llava(path: Path) -> None:
    torch.manual_seed(0)
    tokenizer = tiny_qwen_tokenizer()
    pinpoints = [[TILE, TILE], [TILE, 2 * TILE], [2 * TILE, TILE], [2 * TILE, 2 * TILE]]
    config = LlavaOnevisionConfig(
        vision_config={"model_type": "siglip_vision_model", **TINY_VISION, "vision_use_head": False},
        text_config={
            "model_type": "qwen2",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 2048,
            "tie_word_embeddings": False,
        },
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    image_processor = LlavaOnevisionImageProcessorPil(
        size={"height": TILE, "width": TILE},
        image_grid_pinpoints=pinpoints,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processors = [LlavaImageProcessor(image_processor, tokenizer, config, layout) for layout in LAYOUTS]
    calibrate_yes_no(model, processors)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    image_processor.save_pretrained(path)


def calibration_images(count: int) -> list[np.ndarray]:
    """Seeded images of the kinds and sizes tiny generators make: pixel noise, blocky noise,
    flat colours and blends of them, at half and full tile size."""
    rng = np.random.default_rng(0)
    images = []
    for i in range(count):
        side = TILE // 2 if i % 2 else TILE
        block = 1 + (i // 2) % 4
        noise = rng.integers(0, 256, (side // block, side // block, 3)).repeat(block, 0).repeat(block, 1)
        flat = rng.integers(0, 256, 3)
        mix = (i // 8) % 3 / 2
        images.append((mix * flat + (1 - mix) * noise).round().astype(np.uint8))
    return images


def answer_hidden_states(
    model: LlavaOnevisionForConditionalGeneration, processors: list[LlavaImageProcessor], question: str
) -> torch.Tensor:
    """The lm_head inputs at the first answer position, one row per calibration image, prompt
    and image layout."""
    captured: list[torch.Tensor] = []
    images = calibration_images(48)
    hook = model.lm_head.register_forward_hook(lambda _m, args, _o: captured.append(args[0][:, -1]))
    conversation = load_questions()[question]
    try:
        with torch.no_grad():
            for processor in processors:
                for prompt in ("a photo of a cat", "two red apples", "a blue car left of a dog"):
                    for side in (TILE // 2, TILE):  # one size per batch: no padding, no position shift
                        batch = [image for image in images if image.shape[0] == side]
                        texts = [render_chat(conversation, prompt)] * len(batch)
                        model(**model_inputs(model, processor, texts, batch))
    finally:
        hook.remove()
    return torch.cat(captured)


LEANING = {"outcome": 0.0, "process": 0.0, "clarity": 0.5, "potential": -1.0}
"""Mean yes - no logit of each question over the calibration images: potential is asked only of
clear previews, and leans to no, so some clear paths are judged hopeless and get pruned."""


def calibrate_yes_no(
    model: LlavaOnevisionForConditionalGeneration,
    processors: list[LlavaImageProcessor],
    spread: float = 2.5,
) -> None:
    """Rewrite the ``yes`` and ``no`` rows of the random lm_head so the tiny judge answers like a
    trained one: nearly all mass on those two tokens, split differently for different images.

    A random head spreads the answer over the whole vocabulary (P(yes) about 1/vocab for every
    image), so every PARM search would fall back and nothing would be pruned. From the answer
    states of seeded calibration renders of every question in both image layouts (so either
    ``image_layout`` judges like a trained model), both rows get a shared component along the
    mean state that lifts them far above every other logit. Their difference is the
    direction in which images vary most within a question, orthogonal to every question's
    mean state and scaled so yes - no has standard deviation ``spread``, plus a part in the span
    of those means that sets each question's average to its ``LEANING``: the image decides.
    """
    states = [answer_hidden_states(model, processors, question) for question in ASKABLE]
    means = torch.stack([s.mean(0) for s in states])
    basis, _ = torch.linalg.qr(means.T)
    residual = torch.cat([s - s.mean(0) for s in states])
    residual = residual - residual @ basis @ basis.T
    direction = torch.linalg.svd(residual, full_matrices=False).Vh[0]
    leaning = torch.tensor([LEANING[question] for question in ASKABLE])
    offset = basis @ torch.linalg.solve(means @ basis, leaning)
    all_states = torch.cat(states)
    difference = spread / (all_states @ direction).std() * direction + offset
    shared = means.mean(0) / means.mean(0).norm()
    lift = all_states @ shared
    if lift.min() <= 0:
        raise RuntimeError("tiny llava: an answer state points away from the mean; change the seed")
    head = model.lm_head.weight.data
    highest_other = (all_states @ head.T).max()
    scale = (highest_other + (all_states @ difference).abs().max() + np.log(head.shape[0]) + 6) / lift.min()
    yes, no = (processors[0].tokenizer.convert_tokens_to_ids(word) for word in ("yes", "no"))
    head[yes] = scale * shared + difference / 2
    head[no] = scale * shared - difference / 2


def build_tiny_clip(path: Path) -> None:
    torch.manual_seed(0)
    bpe = train_tiny_bpe(CLIP_SPECIALS, 600)
    bos, eos = (bpe.token_to_id(token) for token in CLIP_SPECIALS)
    bpe.post_processor = processors.TemplateProcessing(
        single=f"{CLIP_SPECIALS[0]} $A {CLIP_SPECIALS[1]}",
        special_tokens=[(CLIP_SPECIALS[0], bos), (CLIP_SPECIALS[1], eos)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=CLIP_SPECIALS[0],
        eos_token=CLIP_SPECIALS[1],
        pad_token=CLIP_SPECIALS[1],
    )
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 77,
            "bos_token_id": bos,
            "eos_token_id": eos,
            "pad_token_id": eos,
        },
        vision_config=TINY_VISION,
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    CLIPImageProcessorPil(
        size={"shortest_edge": TILE}, crop_size={"height": TILE, "width": TILE}
    ).save_pretrained(path)
