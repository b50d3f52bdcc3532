"""Convert a LLaVA-NeXT training checkpoint (the layout of the paper's released ``orm_ft`` and
``parm`` judges) into the transformers LLaVA-OneVision layout that ``load_llava_judge`` reads.

    python -m actors.judges.convert SRC DST        (or: parmflow-convert-llava SRC DST)

What changes between the layouts:

- weight names: the LLaVA-NeXT model nests the SigLIP tower as ``model.vision_tower.vision_tower``,
  the projector as an ``nn.Sequential`` (``mm_projector.0`` / ``.2``) and the Qwen2 decoder
  directly under ``model.``; transformers keeps them as separate sub-models;
- the vision tower is described only by its name in the source config, so its shape is read
  from the weights (the attention head count, invisible in weights, is an option: 16 for
  SigLIP-so400m);
- the source marks the image with a sentinel id that never reaches the tokenizer; the target
  needs a real ``<image>`` token, added to the tokenizer (embedding rows grow if needed);
- weights are written as safetensors, whatever the source format; the source's
  ``generation_config.json`` is kept (``score: generate`` reads its sampling settings).

Every source weight must be placed: an unknown name stops the conversion instead of being
dropped, and the result is loaded strictly before it is written.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import (
    AddedToken,
    AutoTokenizer,
    GenerationConfig,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    Qwen2Config,
)
from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
    LlavaOnevisionImageProcessorPil,
)

VISION_SRC = "model.vision_tower.vision_tower.vision_model."
RENAMES: tuple[tuple[str, str], ...] = (
    (VISION_SRC, "model.vision_tower."),
    ("model.mm_projector.0.", "model.multi_modal_projector.linear_1."),
    ("model.mm_projector.2.", "model.multi_modal_projector.linear_2."),
    ("model.image_newline", "model.image_newline"),
    ("model.embed_tokens.", "model.language_model.embed_tokens."),
    ("model.layers.", "model.language_model.layers."),
    ("model.norm.", "model.language_model.norm."),
    ("lm_head.", "lm_head."),
)
"""Source prefix -> transformers module path, first match wins."""
DROPPED = (VISION_SRC + "head.",)
"""SigLIP's pooling head: LLaVA-OneVision reads patch features and never uses it."""
SIGLIP_MEAN_STD = [0.5, 0.5, 0.5]
EXTRA_TOKENS = ("<image>", "<video>")


def rename_key(key: str) -> str | None:
    """Target name of a source weight; None for weights the target model has no place for."""
    if key.endswith(".inv_freq") or key.startswith(DROPPED):
        return None
    for source, target in RENAMES:
        if key.startswith(source):
            return target + key[len(source) :]
    raise ValueError(f"source weight {key!r} has no place in the LLaVA-OneVision layout")


def load_source_weights(src: Path, trust_pickle: bool) -> dict[str, torch.Tensor]:
    files = sorted(src.glob("*.safetensors"))
    if files:
        return {k: v for f in files for k, v in load_file(f).items()}
    pickled = sorted(src.glob("*.bin"))
    if not pickled:
        raise ValueError(f"{src}: no weights found (*.safetensors or *.bin)")
    if not trust_pickle:
        raise ValueError(
            f"{src}: only pickled weights ({pickled[0].name}, ...); pass --trust-pickle to read them"
        )
    return {k: v for f in pickled for k, v in torch.load(f, map_location="cpu", weights_only=True).items()}


def read_pinpoints(value: object, tile: int, where: str) -> list[list[int]]:
    """LLaVA-NeXT writes pinpoints either as pixel pairs or as a tile range "(1x1),...,(6x6)"."""
    if isinstance(value, list):
        return [[int(h), int(w)] for h, w in value]
    match = re.fullmatch(r"\((\d+)x(\d+)\),\.\.\.,\((\d+)x(\d+)\)", str(value).replace(" ", ""))
    if not match:
        raise ValueError(f"{where}: image_grid_pinpoints {value!r}: expected pairs or '(1x1),...,(NxN)'")
    lo_h, lo_w, hi_h, hi_w = (int(g) for g in match.groups())
    return [[h * tile, w * tile] for h in range(lo_h, hi_h + 1) for w in range(lo_w, hi_w + 1)]


def vision_config(weights: dict[str, torch.Tensor], heads: int) -> dict[str, object]:
    """The SigLIP tower's shape, read from its weights."""
    if VISION_SRC + "embeddings.patch_embedding.weight" not in weights:
        raise ValueError(f"no vision tower weights under {VISION_SRC!r}: not a LLaVA-OneVision checkpoint")
    patch = weights[VISION_SRC + "embeddings.patch_embedding.weight"]
    positions = weights[VISION_SRC + "embeddings.position_embedding.weight"].shape[0]
    layers = {int(k.split(".")[6]) for k in weights if k.startswith(VISION_SRC + "encoder.layers.")}
    hidden = patch.shape[0]
    if hidden % heads:
        raise ValueError(f"--vision-heads {heads} does not divide the vision hidden size {hidden}")
    return {
        "model_type": "siglip_vision_model",
        "hidden_size": hidden,
        "patch_size": patch.shape[-1],
        "image_size": math.isqrt(positions) * patch.shape[-1],
        "num_hidden_layers": len(layers),
        "intermediate_size": weights[VISION_SRC + "encoder.layers.0.mlp.fc1.weight"].shape[0],
        "num_attention_heads": heads,
        "vision_use_head": False,
    }


def grow_vocab(weights: dict[str, torch.Tensor], rows: int) -> None:
    """Give new tokens the mean embedding (and output row): neutral until fine-tuned."""
    for key in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        old = weights[key]
        extra = old.float().mean(0, keepdim=True).to(old.dtype).expand(rows - old.shape[0], -1)
        weights[key] = torch.cat([old, extra])


def convert_weights(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Source weights under their transformers names (LLaVA-NeXT may tie the output layer to the
    embeddings, in which case the output layer is written out)."""
    weights = {new: value for key, value in raw.items() if (new := rename_key(key)) is not None}
    weights.setdefault("lm_head.weight", weights["model.language_model.embed_tokens.weight"].clone())
    return weights


def target_config(
    source: dict[str, object],
    raw: dict[str, torch.Tensor],
    vision_heads: int,
    token_ids: tuple[int, int],
    rows: int,
    where: str,
) -> LlavaOnevisionConfig:
    """The LLaVA-OneVision config of a source checkpoint: its text fields, its vision tower's shape
    read from the weights, ``token_ids`` of ``<image>`` and ``<video>``, ``rows`` vocabulary rows."""
    known_text = set(Qwen2Config().to_dict()) | {"rope_theta", "rope_scaling"}
    text = {k: v for k, v in source.items() if k in known_text and not k.startswith("_")}
    text.update(model_type="qwen2", vocab_size=rows, tie_word_embeddings=False)
    vision = vision_config(raw, vision_heads)
    aspect = str(source.get("image_aspect_ratio", "anyres_max_9"))
    if not aspect.startswith("anyres_max_"):
        raise ValueError(f"{where}: image_aspect_ratio {aspect!r} is not an anyres_max_N layout")
    pinpoints = read_pinpoints(
        source.get("image_grid_pinpoints", "(1x1),...,(6x6)"), int(vision["image_size"]), where
    )
    return LlavaOnevisionConfig(
        text_config=text,
        vision_config=vision,
        image_token_index=token_ids[0],
        video_token_index=token_ids[1],
        image_grid_pinpoints=pinpoints,
        vision_aspect_ratio=aspect,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )


def convert(src: Path, dst: Path, vision_heads: int = 16, trust_pickle: bool = False) -> None:
    config_path = src / "config.json"
    try:
        source = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{config_path}: not found (expected a LLaVA-NeXT checkpoint folder)") from None
    raw = load_source_weights(src, trust_pickle)
    weights = convert_weights(raw)

    tokenizer = AutoTokenizer.from_pretrained(src)
    missing = [t for t in EXTRA_TOKENS if t not in tokenizer.get_vocab()]
    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in missing], special_tokens=True
    )
    rows = weights["model.language_model.embed_tokens.weight"].shape[0]
    if len(tokenizer) > rows:
        rows = -(-len(tokenizer) // 64) * 64
        grow_vocab(weights, rows)

    image_id, video_id = (tokenizer.convert_tokens_to_ids(t) for t in EXTRA_TOKENS)
    config = target_config(source, raw, vision_heads, (image_id, video_id), rows, str(config_path))
    with torch.device("meta"):
        model = LlavaOnevisionForConditionalGeneration(config)
    try:
        model.load_state_dict(weights, strict=True, assign=True)
    except RuntimeError as exc:
        raise ValueError(f"{src}: the weights do not fit the model built from config.json: {exc}") from None
    if (src / "generation_config.json").is_file():  # its sampling settings are what the judge was read with
        model.generation_config = GenerationConfig.from_pretrained(src)
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dst)
    tokenizer.save_pretrained(dst)
    tile = config.vision_config.image_size
    LlavaOnevisionImageProcessorPil(
        size={"height": tile, "width": tile},
        image_grid_pinpoints=config.image_grid_pinpoints,
        image_mean=SIGLIP_MEAN_STD,
        image_std=SIGLIP_MEAN_STD,
    ).save_pretrained(dst)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "src", type=Path, help="LLaVA-NeXT checkpoint folder (config.json, weights, tokenizer)"
    )
    parser.add_argument("dst", type=Path, help="output folder, loadable by load_llava_judge")
    parser.add_argument("--vision-heads", type=int, default=16, help="SigLIP attention heads (so400m: 16)")
    parser.add_argument("--trust-pickle", action="store_true", help="read *.bin weights (runs pickle)")
    args = parser.parse_args(argv)
    try:
        convert(args.src, args.dst, args.vision_heads, args.trust_pickle)
    except ValueError as exc:
        parser.exit(2, f"parmflow-convert-llava: {exc}\n")
    print(f"converted {args.src} -> {args.dst}")


if __name__ == "__main__":
    main()
