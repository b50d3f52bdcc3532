"""The LLaVA-NeXT -> transformers converter, on a tiny state dict written in the source layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import (
    GenerationConfig,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    PreTrainedTokenizerFast,
)

from actors.judges.convert import convert, main
from actors.judges.llava import load_llava_judge
from actors.judges.tiny import train_tiny_bpe
from schemas.config import JudgeSpec

# module path in transformers -> name in a LLaVA-NeXT checkpoint, written out independently of
# the converter's own table
TO_SOURCE = [
    ("model.vision_tower.", "model.vision_tower.vision_tower.vision_model."),
    ("model.multi_modal_projector.linear_1.", "model.mm_projector.0."),
    ("model.multi_modal_projector.linear_2.", "model.mm_projector.2."),
    ("model.image_newline", "model.image_newline"),
    ("model.language_model.", "model."),
    ("lm_head.", "lm_head."),
]
TEXT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "max_position_embeddings": 512,
}


def source_name(key: str) -> str:
    for ours, theirs in TO_SOURCE:
        if key.startswith(ours):
            return theirs + key[len(ours) :]
    raise AssertionError(key)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A LLaVA-NeXT style folder: Qwen2 fields + mm_* fields in config.json, a tokenizer with no
    <image> token, and weights under the source names, with parts the target drops (a rotary
    buffer, SigLIP's pooling head)."""
    src = tmp_path_factory.mktemp("src")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=train_tiny_bpe(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], 640),
        pad_token="<|endoftext|>",
    )
    tokenizer.save_pretrained(src)
    vocab = len(tokenizer)
    config = LlavaOnevisionConfig(
        text_config={"model_type": "qwen2", "vocab_size": vocab, **TEXT},
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 48,
            "num_hidden_layers": 3,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        image_token_index=0,
    )
    torch.manual_seed(1)
    model = LlavaOnevisionForConditionalGeneration(config)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    on_disk = {source_name(k): v for k, v in weights.items()}
    on_disk["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(4)
    save_file(on_disk, str(src / "model.safetensors"))
    (src / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["LlavaQwenForCausalLM"],
                "model_type": "llava",
                "vocab_size": vocab,
                **TEXT,
                "image_aspect_ratio": "anyres_max_9",
                "image_grid_pinpoints": "(1x1),...,(2x2)",
                "mm_projector_type": "mlp2x_gelu",
                "mm_vision_tower": "google/siglip-so400m-patch14-384",
                "mm_hidden_size": 32,
                "mm_patch_merge_type": "spatial_unpad",
                "tie_word_embeddings": False,
            }
        )
    )
    GenerationConfig(
        do_sample=True, top_k=20, top_p=0.8, temperature=0.7, repetition_penalty=1.05
    ).save_pretrained(src)
    return src, weights


def test_converted_checkpoint_keeps_the_sources_sampling_settings(source, tmp_path):
    """``score: generate`` reads them: they are what the paper's selector sampled with."""
    src, _ = source
    convert(src, tmp_path / "out", vision_heads=2)
    generation = GenerationConfig.from_pretrained(tmp_path / "out")
    assert (generation.top_k, generation.top_p, generation.repetition_penalty) == (20, 0.8, 1.05)
    tokenizer = load_llava_judge(
        JudgeSpec(kind="llava", checkpoint=str(tmp_path / "out"))
    ).processor.tokenizer
    assert generation.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_converted_checkpoint_loads_with_no_missing_keys(source, tmp_path):
    src, weights = source
    main([str(src), str(tmp_path / "out"), "--vision-heads", "2"])
    model, info = LlavaOnevisionForConditionalGeneration.from_pretrained(
        tmp_path / "out", output_loading_info=True
    )
    assert (
        info["missing_keys"] == set()
        and info["unexpected_keys"] == set()
        and info["mismatched_keys"] == set()
    )
    state = model.state_dict()
    vocab = weights["lm_head.weight"].shape[0]
    for key, value in weights.items():
        if key.startswith("model.vision_tower.head."):
            assert key not in state
        elif key.endswith(("embed_tokens.weight", "lm_head.weight")):  # grown by the new tokens
            assert state[key].shape[0] % 64 == 0 and state[key].shape[0] >= vocab + 2
            assert torch.equal(state[key][:vocab], value)
        else:
            assert torch.equal(state[key], value), key
    config = model.config
    assert config.image_grid_pinpoints == [[32, 32], [32, 64], [64, 32], [64, 64]]
    assert config.vision_config.num_hidden_layers == 3 and config.vision_config.intermediate_size == 48
    assert config.text_config.rope_parameters["rope_theta"] == 1000000.0


def test_converted_checkpoint_works_as_a_judge(source, tmp_path):
    src, _ = source
    convert(src, tmp_path / "out", vision_heads=2)
    judge = load_llava_judge(JudgeSpec(kind="llava", checkpoint=str(tmp_path / "out")))
    assert judge.processor.tokenizer.convert_ids_to_tokens(judge.model.config.image_token_id) == "<image>"
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    p = judge.ask([image, image], ["a cat", "a dog"], "outcome")
    assert p.shape == (2, 2) and np.all((p > 0) & (p < 1))


def test_unplaced_source_weights_stop_the_conversion(source, tmp_path):
    src, _ = source
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in src.iterdir():
        if f.name != "model.safetensors":
            (bad / f.name).write_bytes(f.read_bytes())
    save_file({"model.vision_resampler.weight": torch.ones(2)}, str(bad / "extra.safetensors"))
    (bad / "model.safetensors").symlink_to(src / "model.safetensors")
    with pytest.raises(ValueError, match=r"'model\.vision_resampler\.weight' has no place"):
        convert(bad, tmp_path / "out", vision_heads=2)
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing"), str(tmp_path / "out")])
