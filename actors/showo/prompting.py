"""Show-o's text-to-image token layout and its omni-attention mask.

One sequence per path, always the same length so a path's input never depends on its batch-mates:

    [PAD]* <|t2i|> <bos> text... <eos> | <|soi|> image_1 ... image_N <|eoi|>
    '---------- max_text_len + 1 ----------'

The text part is left-padded (a too-long prompt is cut and keeps its final <eos>). Image slots hold
``image_offset + code`` or the mask token. Classifier-free guidance uses the same layout with an
empty prompt. Attention: text is causal and ignores padding; every slot of the image block
(including <|soi|> and <|eoi|>) sees all non-padding positions. Positions are 0..L-1 over the
whole sequence, padding included, as in the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from actors.interfaces import UNKNOWN
from actors.showo.config import ShowoConfig


@dataclass(frozen=True)
class TokenIds:
    pad: int
    soi: int
    eoi: int
    t2i: int
    bos: int
    eos: int
    image_offset: int
    mask: int

    @classmethod
    def for_config(cls, config: ShowoConfig, bos: int, eos: int) -> TokenIds:
        # [PAD] <|soi|> <|eoi|> <|sov|> <|eov|> <|t2i|> ... follow the text vocabulary in this order
        base = config.llm_vocab_size
        return cls(
            pad=base,
            soi=base + 1,
            eoi=base + 2,
            t2i=base + 5,
            bos=bos,
            eos=eos,
            image_offset=config.image_offset,
            mask=config.mask_token_id,
        )


def text_block(text_ids: list[int], ids: TokenIds, max_text_len: int) -> tuple[list[int], int]:
    """The padded text part of one sequence and how many padding tokens open it."""
    if not text_ids or text_ids[0] != ids.bos:
        text_ids = [ids.bos, *text_ids]
    body = [ids.t2i, *text_ids, ids.eos]
    width = max_text_len + 1
    if len(body) > width:
        body = [*body[: width - 1], ids.eos]
    pad = width - len(body)
    return [ids.pad] * pad + body, pad


def prompt_blocks(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    ids: TokenIds,
    llm_vocab_size: int,
    max_text_len: int,
) -> tuple[list[list[int]], list[int]]:
    """Text blocks and padding counts for prompts, as both sampling and training build them (the
    empty prompt is the unconditional row of classifier-free guidance)."""
    blocks, pads = [], []
    for prompt in prompts:
        text_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if any(t >= llm_vocab_size for t in text_ids):
            raise ValueError(f"tokenizer gave ids >= llm_vocab_size {llm_vocab_size}: {prompt!r}")
        block, pad = text_block(list(text_ids), ids, max_text_len)
        blocks.append(block)
        pads.append(pad)
    return blocks, pads


def t2i_sequences(text_blocks: list[list[int]], tokens: torch.Tensor, ids: TokenIds) -> torch.Tensor:
    """(B, L) input ids from padded text blocks and (B, N) image tokens (UNKNOWN = masked)."""
    image = torch.where(tokens == UNKNOWN, ids.mask, tokens + ids.image_offset)
    text = torch.tensor(text_blocks, dtype=torch.long, device=tokens.device)
    b = tokens.shape[0]
    soi = torch.full((b, 1), ids.soi, dtype=torch.long, device=tokens.device)
    eoi = torch.full((b, 1), ids.eoi, dtype=torch.long, device=tokens.device)
    return torch.cat([text, soi, image.long(), eoi], dim=1)


def omni_attention(num_pad: torch.Tensor, text_len: int, total_len: int) -> torch.Tensor:
    """(B, L, L) bool, True where query row may attend key column, for left-padded sequences."""
    device = num_pad.device
    q = torch.arange(total_len, device=device)[:, None]
    k = torch.arange(total_len, device=device)[None, :]
    key_is_real = k[None] >= num_pad[:, None, None]
    query_is_pad = q[None] < num_pad[:, None, None]
    causal = (k <= q)[None]
    text_rows = causal & (key_is_real | query_is_pad)
    return torch.where((q < text_len)[None], text_rows, key_is_real)
