"""Random-weight Show-o checkpoints in the published layout: tiny ones for tests and the smoke
recipe, real-size ones for benchmarks on a GPU.

The directory written is what ``load_showo`` reads from a user's checkpoint: a Show-o
``config.json`` + ``model.safetensors``, the Phi config and tokenizer under ``llm/`` (named by
``llm_model_path``), and MAGVIT-v2 under ``vq/``. The tiny text tokenizer is a word-level
vocabulary built offline with ``tokenizers``; like Phi's it uses ``<|endoftext|>`` as bos and eos.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PhiConfig, PreTrainedTokenizerFast

from actors.showo.config import NUM_SPECIAL_TOKENS, MagvitConfig, ShowoConfig
from actors.showo.magvit import Magvit2
from actors.showo.model import ShowoTransformer

TINY_WORDS = [
    *("a", "an", "the", "photo", "of", "and", "on", "in", "with", "next", "to", "above", "below"),
    *("left", "right", "one", "two", "three", "four", "red", "green", "blue", "yellow", "black"),
    *("white", "purple", "orange", "brown", "pink", "cat", "dog", "car", "bird", "bench", "cup"),
    *("chair", "clock", "apple", "banana", "person", "bicycle"),
]
TINY_TEXT_VOCAB = 64
TINY_CODE_BITS = 6


def word_tokenizer(words: Sequence[str]) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer over ``words`` (id 0 ``<|endoftext|>``, id 1 ``<unk>``)."""
    vocab = {word: i for i, word in enumerate(["<|endoftext|>", "<unk>", *words])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<unk>"
    )


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    return word_tokenizer(TINY_WORDS)


def showo_config(llm_vocab_size: int, code_bits: int, num_vq_tokens: int) -> ShowoConfig:
    codebook = 2**code_bits
    return ShowoConfig(
        vocab_size=llm_vocab_size + NUM_SPECIAL_TOKENS + codebook + 1,
        llm_vocab_size=llm_vocab_size,
        codebook_size=codebook,
        num_vq_tokens=num_vq_tokens,
        llm_model_path="llm",
    )


def write_showo_checkpoint(
    path: Path,
    config: ShowoConfig,
    phi: PhiConfig,
    magvit: MagvitConfig,
    tokenizer: PreTrainedTokenizerFast,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    model: ShowoTransformer | None = None,
    vq: Magvit2 | None = None,
) -> None:
    """Write a checkpoint of ``model`` and ``vq`` (trained modules, left as they are), or of fresh
    random ones built on ``device`` where not given; the weights are stored in ``dtype``."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"_class_name": "Showo", **config.__dict__}, indent=2))
    phi.save_pretrained(path / "llm")
    tokenizer.save_pretrained(path / "llm")
    with torch.device(device):
        model = model if model is not None else ShowoTransformer(config, phi)
        vq = vq if vq is not None else Magvit2(magvit)
    save_weights(model, path / "model.safetensors", dtype)
    write_magvit(path / "vq", vq, dtype)


def save_weights(module: torch.nn.Module, file: Path, dtype: torch.dtype) -> None:
    """A module's state dict as safetensors, floating tensors in ``dtype`` (integer buffers kept)."""
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in module.state_dict().items()}
    save_file({k: v.contiguous().cpu() for k, v in state.items()}, file)


def write_magvit(path: Path, vq: Magvit2, dtype: torch.dtype) -> None:
    """MAGVIT-v2 as ``showlab/magvitv2`` lays it out: ``config.json`` + ``model.safetensors``."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"_class_name": "MAGVITv2", **vq.config.to_dict()}))
    save_weights(vq, path / "model.safetensors", dtype)


def tiny_magvit() -> MagvitConfig:
    """16 px images from 4x4 grids; attention at the coarsest level so that path is exercised."""
    return MagvitConfig(
        ch=32,
        encoder_ch_mult=(1, 1, 2),
        encoder_num_res_blocks=(1, 1, 1),
        decoder_ch_mult=(1, 1, 2),
        decoder_num_res_blocks=(1, 1, 1),
        attn_resolutions=(4,),
        resolution=16,
        z_channels=TINY_CODE_BITS,
    )


def build_tiny_showo(path: Path) -> None:
    torch.manual_seed(0)
    phi = PhiConfig(
        vocab_size=TINY_TEXT_VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=2048,
    )
    config = showo_config(TINY_TEXT_VOCAB, TINY_CODE_BITS, num_vq_tokens=16)
    write_showo_checkpoint(path, config, phi, tiny_magvit(), tiny_tokenizer())


def build_realistic_showo(path: Path, device: str = "cuda") -> None:
    """Published sizes (Phi-1.5, 58498-token vocabulary, 13-bit MAGVIT-v2), random bf16 weights."""
    torch.manual_seed(0)
    config = showo_config(50295, 13, num_vq_tokens=256)
    write_showo_checkpoint(
        path, config, PhiConfig(), MagvitConfig(), tiny_tokenizer(), torch.bfloat16, device
    )
