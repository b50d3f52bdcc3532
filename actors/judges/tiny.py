"""Tiny random-weight judges for tests and the smoke recipe.

They are built from the real config classes and saved the way a downloaded checkpoint is laid
out (weights, config, tokenizer, image processor config), so ``load_llava_judge`` and
``load_clip_judge`` load them through exactly the code a real checkpoint takes. Tokenizers are
byte-level BPE trained offline on the question texts, with the special tokens of the real
ones; ``yes`` and ``no`` come out as single tokens, as in Qwen2's vocabulary.
"""

from __future__ import annotations

from pathlib import Path

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

from actors.judges.questions import BUILTIN_QUESTIONS

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
    model = LlavaOnevisionForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    LlavaOnevisionImageProcessorPil(
        size={"height": TILE, "width": TILE},
        image_grid_pinpoints=pinpoints,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    ).save_pretrained(path)


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
