"""The three kinds of Show-o settings: the Show-o checkpoint's own config, the MAGVIT-v2 config,
and the user's generator options.

The checkpoint configs are read from ``config.json`` files written by the reference training
code (diffusers-style: ``_class_name`` and other ``_``-prefixed bookkeeping keys, which are
skipped). Their field names are the published ones so that ``showlab/show-o`` and
``showlab/magvitv2`` load unchanged; the MAGVIT-v2 fields default to the published model's
sizes because its published config stores none of them. User options are validated strictly
at the boundary: a misspelt option fails with its name instead of being ignored.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

NUM_SPECIAL_TOKENS = 10
"""[PAD] then <|soi|> <|eoi|> <|sov|> <|eov|> <|t2i|> <|mmu|> <|t2v|> <|v2v|> <|lvg|>, appended in
that order right after the text vocabulary (the reference adds the pad token first)."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: missing (expected a Show-o/MAGVIT-v2 config.json)") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def _known_fields(cls: type, data: dict[str, Any], source: Path) -> dict[str, Any]:
    """Keep the dataclass's fields: the published files carry bookkeeping keys besides them."""
    out = {f.name: data[f.name] for f in fields(cls) if f.name in data}
    for f in fields(cls):
        if f.default is MISSING and f.default_factory is MISSING and f.name not in out:
            raise ValueError(f"{source}: field {f.name!r} is required")
    return out


@dataclass(frozen=True)
class ShowoConfig:
    """Fields of the Show-o checkpoint's config.json (``showlab/show-o``)."""

    vocab_size: int
    llm_vocab_size: int
    codebook_size: int = 8192
    num_vq_tokens: int = 256
    llm_model_path: str = "microsoft/phi-1_5"
    w_clip_vit: bool = False

    @property
    def image_offset(self) -> int:
        """Vocabulary id of image code 0."""
        return self.llm_vocab_size + NUM_SPECIAL_TOKENS

    @property
    def mask_token_id(self) -> int:
        return self.vocab_size - 1

    @classmethod
    def from_file(cls, path: Path) -> ShowoConfig:
        config = cls(**_known_fields(cls, _read_json(path), path))
        expected = config.llm_vocab_size + NUM_SPECIAL_TOKENS + config.codebook_size + 1
        if config.vocab_size != expected:
            raise ValueError(
                f"{path}: vocab_size {config.vocab_size} != llm_vocab_size + {NUM_SPECIAL_TOKENS} special "
                f"+ codebook_size + 1 mask = {expected}"
            )
        if config.w_clip_vit:
            raise ValueError(
                f"{path}: w_clip_vit checkpoints (understanding with CLIP-ViT) are not supported"
            )
        return config


@dataclass(frozen=True)
class MagvitConfig:
    """MAGVIT-v2 sizes; the defaults are the published ``showlab/magvitv2`` model (13-bit LFQ)."""

    ch: int = 128
    encoder_ch_mult: tuple[int, ...] = (1, 2, 2, 4, 4)
    encoder_num_res_blocks: tuple[int, ...] = (4, 3, 4, 3, 4)
    decoder_ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    decoder_num_res_blocks: tuple[int, ...] = (4, 4, 3, 4, 3)
    attn_resolutions: tuple[int, ...] = (5,)
    resolution: int = 256
    z_channels: int = 13
    in_channels: int = 3
    out_channels: int = 3

    @property
    def codebook_size(self) -> int:
        return 2**self.z_channels

    @property
    def downsample(self) -> int:
        """Pixels per token along one side."""
        return 2 ** (len(self.decoder_ch_mult) - 1)

    @classmethod
    def from_file(cls, path: Path) -> MagvitConfig:
        data = _known_fields(cls, _read_json(path), path)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class ShowoOptions(BaseModel):
    """``GeneratorSpec.options`` of kind ``showo``."""

    model_config = ConfigDict(extra="forbid")

    num_steps: int = Field(18, ge=1, description="MaskGIT steps")
    guidance_scale: float = Field(1.75, ge=0, description="g in (1+g)*cond - g*uncond; 0 disables CFG")
    temperature: float = Field(1.0, ge=0, description="Gumbel re-masking noise at step 0")
    temperature_schedule: Literal["linear", "compound", "reference"] = Field(
        "linear",
        description="re-masking noise over steps: linear (fresh each step), compound (the reference's "
        "in-place product), reference (compound on a prompt's first path, none after it)",
    )
    head_dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        None, description="LM head dtype (float32 under a bfloat16 backbone); None: the generator's dtype"
    )
    vq_dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        None, description="MAGVIT-v2 decoder dtype; None: the generator's dtype"
    )
    resolution: int | None = Field(None, ge=1, description="pixels per side; None: the checkpoint's own")
    max_text_len: int = Field(128, ge=1, description="text tokens kept (the reference's max_seq_length)")
    vq_checkpoint: str | None = Field(
        None,
        description="MAGVIT-v2 directory or hub id; None: <checkpoint>/vq if present, else showlab/magvitv2",
    )
    llm_path: str | None = Field(
        None, description="Phi config + tokenizer; None: the checkpoint's llm_model_path"
    )

    @classmethod
    def parse(cls, options: dict[str, Any]) -> ShowoOptions:
        try:
            return cls(**options)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise ValueError(f"generator.options (showo): {problems}") from None


@dataclass(frozen=True)
class GridShape:
    """Token grid side and image side for one resolution."""

    side: int
    pixels: int
    num_tokens: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_tokens", self.side * self.side)


def grid_for(config: ShowoConfig, magvit: MagvitConfig, resolution: int | None) -> GridShape:
    """The resolution the options ask for (default: the checkpoint's ``num_vq_tokens``)."""
    if resolution is None:
        side = round(config.num_vq_tokens**0.5)
        if side * side != config.num_vq_tokens:
            raise ValueError(f"num_vq_tokens {config.num_vq_tokens} is not a square grid")
        return GridShape(side, side * magvit.downsample)
    if resolution % magvit.downsample:
        raise ValueError(
            f"resolution {resolution} is not a multiple of the VQ downsampling {magvit.downsample}"
        )
    return GridShape(resolution // magvit.downsample, resolution)
