"""The Show-o transformer: transformers' Phi causal LM with the vocabulary extended by the special
tokens, the image codes and the mask token, run under an explicit omni-attention mask.

The Phi model sits under the attribute ``showo`` so the parameter names are the published
``showlab/show-o`` ones (``showo.model.layers.N.self_attn.q_proj.weight``, ``showo.lm_head.bias``,
...). The mask is passed as a ready 4-D additive mask, which transformers uses as given, so text
stays causal while the image block sees everything.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import PhiConfig, PhiForCausalLM

from actors.showo.config import ShowoConfig
from actors.showo.prompting import TokenIds, omni_attention, t2i_sequences


def phi_config_for(config: ShowoConfig, llm: PhiConfig) -> PhiConfig:
    """The backbone's config with the extended vocabulary (the reference resizes the embeddings)
    and QK-norm: a LayerNorm over each head's dims on queries and keys, before RoPE, whatever
    the Phi config says (``microsoft/phi-1_5`` ships ``qk_layernorm: false``)."""
    merged = copy.deepcopy(llm)
    merged.vocab_size = config.vocab_size
    merged.qk_layernorm = True  # Show-o's own Phi copy forces it; the public checkpoints carry the norms
    merged._attn_implementation = "sdpa"
    return merged


class ShowoTransformer(nn.Module):
    def __init__(self, config: ShowoConfig, llm: PhiConfig):
        super().__init__()
        self.config = config
        self.showo = PhiForCausalLM(phi_config_for(config, llm))

    def forward(self, input_ids: torch.Tensor, allowed: torch.Tensor, logits_from: int) -> torch.Tensor:
        """Logits of positions ``logits_from:`` for ``input_ids`` (B, L) under ``allowed`` (B, L, L) bool
        (query row may attend to key column). Only the image slots' logits are ever needed, so the
        LM head runs on those alone, in its own dtype (it may be kept in fp32 under a bf16 body)."""
        dtype = self.showo.model.embed_tokens.weight.dtype
        additive = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
        additive.masked_fill_(~allowed, torch.finfo(dtype).min)
        hidden = self.showo.model(input_ids=input_ids, attention_mask=additive[:, None]).last_hidden_state
        head = self.showo.lm_head
        return head(hidden[:, logits_from:].to(head.weight.dtype))

    def code_logits(
        self, blocks: list[list[int]], pads: list[int], tokens: torch.Tensor, ids: TokenIds
    ) -> torch.Tensor:
        """(B, N, codebook_size) logits over image codes for every image slot, from text blocks of
        ``prompt_blocks`` and (B, N) tokens (UNKNOWN = masked). Sampling and training both go
        through here, so they see the same sequences."""
        input_ids = t2i_sequences(blocks, tokens, ids)
        text_len = len(blocks[0])
        allowed = omni_attention(torch.tensor(pads, device=tokens.device), text_len, input_ids.shape[1])
        logits = self(input_ids, allowed, logits_from=text_len + 1)[:, : tokens.shape[1]]
        return logits[..., ids.image_offset : ids.image_offset + self.config.codebook_size]
