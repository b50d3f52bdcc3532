"""A tiny random-weight Janus checkpoint: the real config classes at toy sizes, saved the way a
converted Janus-Pro checkpoint is laid out (model + generation config + processor), so tests and
the smoke recipe load it through ``JanusForConditionalGeneration.from_pretrained`` exactly like
``deepseek-community/Janus-Pro-1B``.

Sizes: a 2-layer Llama of width 32, a 32 px image as an 8x8 grid of codes from a 64-code VQ
codebook (two upsamplings: 8 -> 32 px). The config constraints this satisfies (the classes do
not check them, the forward pass fails instead): VQ ``base_channels`` is a multiple of 32 (group
norm), the vision ``num_image_tokens`` is ``num_patches**2``, and every projection size equals
the text hidden size. The tokenizer is a word-level vocabulary built offline with ``tokenizers``.

``build_realistic_janus`` writes the same layout at Janus-Pro-1B's sizes (random bf16 weights)
so GPU benchmarks measure real shapes without downloading anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    GenerationConfig,
    JanusConfig,
    JanusForConditionalGeneration,
    JanusProcessor,
    JanusVisionConfig,
    JanusVQVAEConfig,
    LlamaConfig,
    PreTrainedTokenizerFast,
)
from transformers.models.janus.image_processing_pil_janus import JanusImageProcessorPil

HIDDEN = 32
IMAGE_SIZE = 32
PATCH = 4  # vision patch size: 32 / 4 = 8 patches per side = the 8x8 generation grid
CODES = 64
INIT_STD = 0.2  # wider than the default 0.02 so random logits differ by prompt and position
SPECIAL = ["<pad>", "<unk>", "<bos>", "<eos>", "<image_placeholder>", "<begin_of_image>", "<end_of_image>"]
SPECIAL += ["<|User|>", "<|Assistant|>"]
WORDS = (  # enough of a vocabulary for test prompts; anything else is <unk>
    "a an the of and on in with to red green blue yellow black white photo cat dog car tree "
    "two three big small bench clock cup bird sky under next left right above below : ."
)
# The real checkpoint's template renders one user turn as "<|User|>: TEXT\n\n<|Assistant|>:"; this
# one keeps that shape for a single text turn, which is all image generation sends.
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}<|User|>: "
    "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{{ '\\n\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}<|Assistant|>:{% endif %}"
)


def janus_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate(SPECIAL + WORDS.split())}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.add_special_tokens(SPECIAL)  # matched whole, before the punctuation split
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={
            "image_token": "<image_placeholder>",
            "boi_token": "<begin_of_image>",
            "eoi_token": "<end_of_image>",
        },
    )


def _special_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    return {name: getattr(tokenizer, name) for name in ("pad_token_id", "bos_token_id", "eos_token_id")}


def _assemble(
    tokenizer: PreTrainedTokenizerFast, text: dict[str, Any], vision: JanusVisionConfig, vq: JanusVQVAEConfig
) -> JanusConfig:
    """A Llama text config with the tokenizer's special ids, plus the vision and VQ parts."""
    return JanusConfig(
        text_config=LlamaConfig(**text, **_special_ids(tokenizer)),
        vision_config=vision,
        vq_config=vq,
        image_token_id=tokenizer.convert_tokens_to_ids("<image_placeholder>"),
    )


def _config(tokenizer: PreTrainedTokenizerFast) -> JanusConfig:
    text = {"vocab_size": len(tokenizer), "hidden_size": HIDDEN, "intermediate_size": 64}
    text |= {"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}
    text |= {"max_position_embeddings": 256, "initializer_range": INIT_STD}
    grid = IMAGE_SIZE // PATCH
    vision = JanusVisionConfig(
        hidden_size=HIDDEN,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
        projection_dim=HIDDEN,
        num_image_tokens=grid * grid,
    )
    vq = JanusVQVAEConfig(
        embed_dim=8,
        num_embeddings=CODES,
        latent_channels=32,
        base_channels=32,
        channel_multiplier=[1, 1, 2],
        num_res_blocks=1,
        projection_dim=HIDDEN,
        image_token_embed_dim=HIDDEN,
        initializer_range=INIT_STD,
    )
    return _assemble(tokenizer, text, vision, vq)


def _write_checkpoint(
    path: Path,
    config: JanusConfig,
    tokenizer: PreTrainedTokenizerFast,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
) -> None:
    """Model, generation config (with the begin-of-image id ``generate`` needs) and processor."""
    torch.manual_seed(0)  # every process builds identical weights
    with torch.device(device):
        model = JanusForConditionalGeneration(config).to(dtype).eval()
    model.generation_config = GenerationConfig(
        **_special_ids(tokenizer),
        generation_kwargs={"boi_token_id": tokenizer.convert_tokens_to_ids("<begin_of_image>")},
    )
    model.save_pretrained(path)
    size = config.vision_config.image_size
    image_processor = JanusImageProcessorPil(
        size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    processor = JanusProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
        num_image_tokens=config.vision_config.num_image_tokens,
    )
    processor.save_pretrained(path)


def build_tiny_janus(path: Path) -> None:
    tokenizer = janus_tokenizer()
    _write_checkpoint(path, _config(tokenizer), tokenizer)


def realistic_config(tokenizer: PreTrainedTokenizerFast) -> JanusConfig:
    """Janus-Pro-1B's sizes: DeepSeek-LLM 1.3B (24 layers of width 2048), SigLIP-L/16 at 384 px,
    and the 16384-code VQ that decodes 24x24 codes to 384 px. The small test vocabulary only
    indexes the first rows of the 102400-row embedding."""
    text = {"vocab_size": 102400, "hidden_size": 2048, "intermediate_size": 5632}
    text |= {"num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 16}
    text |= {"max_position_embeddings": 16384}
    vq = JanusVQVAEConfig(projection_dim=2048, image_token_embed_dim=2048)
    return _assemble(tokenizer, text, JanusVisionConfig(projection_dim=2048), vq)


def build_realistic_janus(path: Path, device: str = "cuda") -> None:
    """Random bf16 weights at Janus-Pro-1B's sizes, for GPU benchmarks; nothing is downloaded."""
    tokenizer = janus_tokenizer()
    _write_checkpoint(path, realistic_config(tokenizer), tokenizer, torch.bfloat16, device)
