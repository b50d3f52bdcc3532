"""Janus-Pro (``JanusForConditionalGeneration``) behind the stepwise :class:`Generator` interface.

Schedule. Janus-Pro writes its 24x24 grid of image codes in raster order, one code per forward
pass. A step is a chunk of whole token rows: after step ``t`` the first
``((t + 1) * rows) // num_steps`` rows are decided. The default is two rows per step (12 steps
for the 24-row grid), which keeps the judge cadence close to Show-o's 18 MaskGIT steps.

Prompt and guidance, as in transformers' ``generate(generation_mode="image")``: the checkpoint's
chat template renders the user turn, the processor appends the begin-of-image token, and the
unconditional row of classifier-free guidance keeps only BOS and begin-of-image, every other
prompt token replaced by the pad token. Logits come from the generation head, guided as
``uncond + cfg_weight * (cond - uncond)`` (Janus's default weight 5), and each sampled code is
fed back through the generation embeddings and aligner. Conditional and unconditional rows of
all paths, from any mix of prompts, run as one left-padded batch with explicit position ids, so
padding never shifts a path's positions.

Random streams. Code ``(row, col)`` of a path is drawn by inverse-CDF sampling with uniform
number ``col`` of the stream ``path_generator(seed, path_index, row)``. Keying by raster row
rather than by step means the split into steps changes no token: ``num_steps=1`` and
``num_steps=12`` produce the same image, and a path's codes do not depend on its batch-mates.
Sampling happens in float64 so that the last-bit differences batching causes in the logits
practically never move a draw across a CDF boundary (tests that demand bit equality across
batch shapes run the tiny model in float64 as well).

State and cost. Path state is the flat code grid (UNKNOWN after the generated prefix): no KV
cache crosses a call. Each step starts by re-prefilling prompt + codes so far, with a KV cache
kept only inside the step. Over a whole image that adds ``num_steps`` prefill passes covering
about ``num_steps * prompt + num_tokens * (num_steps - 1) / 2`` positions (12 steps: ~3.5k
positions in 12 parallel passes) next to the 576 sequential one-code passes that dominate. A
replica would keep the cache instead only with sticky routing of paths to replicas and memory
to spare: a cache costs ``layers * 2 * kv_width * bytes * 2 (CFG) * ~620 positions`` per path,
about 230 MiB for Janus-Pro-1B and 580 MiB for -7B in bf16.

Previews. The rows generated so far, with every undecided code copied from the code directly
above it (the last generated row stretched down; code 0 where nothing is above), decoded by the
VQ decoder so the judge sees a full-size image. Pixels map from the decoder's [-1, 1] to uint8 as
Janus's own sampling script does.

Regeneration. Raster order can only continue a prefix. ``PathSpec.regenerate_from`` with ratio
``r`` (PARM++) keeps the first ``rows - round(r * rows)`` token rows of the previous image and
starts at the step that writes the next row, so no step runs empty; ``PathSpec.init_tokens``
keeps the codes before the first UNKNOWN and starts at ``start_step``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from transformers import AutoProcessor, JanusForConditionalGeneration, ProcessorMixin

from actors.interfaces import UNKNOWN, Advanced, Finished, PathSpec, PathState
from actors.loading import check_weights_format, pick_device, pick_dtype, resolve_checkpoint
from actors.rng import path_generator
from schemas.config import GeneratorSpec


class JanusOptions(BaseModel):
    """``generator.options`` for kind ``janus``; unknown keys are refused by name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_steps: int | None = Field(None, ge=1, description="None: two token rows per step")
    cfg_weight: float = Field(5.0, description="classifier-free guidance weight (Janus default 5)")
    temperature: float = Field(1.0, ge=0, description="0: greedy (argmax), as generate(do_sample=False)")


def parse_options(options: dict[str, Any]) -> JanusOptions:
    try:
        return JanusOptions.model_validate(options)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        known = ", ".join(JanusOptions.model_fields)
        raise ValueError(f"generator.options for kind 'janus': {problems} (known options: {known})") from None


def row_uniforms(seed: int, path_index: int, row: int, width: int) -> torch.Tensor:
    """The uniforms that decide one raster row of one path (float64, on the CPU)."""
    return torch.rand(width, generator=path_generator(seed, path_index, row), dtype=torch.float64)


def sample_codes(logits: torch.Tensor, uniforms: torch.Tensor, temperature: float) -> torch.Tensor:
    """One code per row of ``logits`` by inverse-CDF sampling with that row's uniform."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    cdf = torch.softmax(logits.double() / temperature, dim=-1).cumsum(dim=-1)
    picked = torch.searchsorted(cdf, uniforms.to(cdf.device).reshape(-1, 1).contiguous()).squeeze(-1)
    return picked.clamp(max=logits.shape[-1] - 1)  # a uniform above a rounded-down total


def generated_length(tokens: np.ndarray) -> int:
    """Length of the decided prefix (raster order)."""
    unknown = np.flatnonzero(tokens == UNKNOWN)
    return int(unknown[0]) if unknown.size else int(tokens.size)


def fill_preview(tokens: np.ndarray, width: int) -> np.ndarray:
    """Undecided codes copy the code above them; code 0 where nothing is above."""
    grid = tokens.reshape(-1, width).copy()
    grid[0][grid[0] == UNKNOWN] = 0
    for row in range(1, grid.shape[0]):
        undecided = grid[row] == UNKNOWN
        grid[row][undecided] = grid[row - 1][undecided]
    return grid.reshape(-1)


def _first_set(*values: int | None) -> int | None:
    return next((v for v in values if v is not None), None)


class JanusGenerator:
    name = "janus"

    def __init__(
        self,
        model: JanusForConditionalGeneration,
        processor: ProcessorMixin,
        options: JanusOptions,
        identity: str,
    ):
        self.model, self.processor, self.options, self.identity = model, processor, options, identity
        vq = model.config.vq_config
        self.width = vq.num_patches
        self.num_tokens = self.width * self.width
        self.image_size = self.width * 2 ** (len(vq.channel_multiplier) - 1)
        self.num_steps = options.num_steps or max(1, self.width // 2)
        if self.num_steps > self.width:
            raise ValueError(
                f"generator.options.num_steps={self.num_steps}: at most one step per token row "
                f"({self.width} rows)"
            )
        # The unconditional row keeps exactly the BOS and the begin-of-image token the processor appends.
        tokenizer = processor.tokenizer
        self.boi_token_id = tokenizer.convert_tokens_to_ids(tokenizer.boi_token)
        self.bos_token_id = _first_set(model.generation_config.bos_token_id, tokenizer.bos_token_id)
        self.pad_token_id = _first_set(model.generation_config.pad_token_id, tokenizer.pad_token_id)
        if self.pad_token_id is None:
            raise ValueError("janus checkpoint: no pad token id (generation_config.json or tokenizer)")
        self.device = next(model.parameters()).device

    def rows_after(self, step: int) -> int:
        return ((step + 1) * self.width) // self.num_steps

    def start(self, specs: Sequence[PathSpec]) -> list[PathState]:
        return [self._start_one(spec) for spec in specs]

    def _start_one(self, spec: PathSpec) -> PathState:
        where = f"path {spec.prompt_id}/{spec.path_index}"
        if not 0 <= spec.start_step <= self.num_steps:
            raise ValueError(f"{where}: start_step {spec.start_step} outside 0..{self.num_steps}")
        tokens = np.full(self.num_tokens, UNKNOWN, dtype=np.int32)
        step = spec.start_step
        if spec.regenerate_from is not None:
            init = self._checked_codes(spec.regenerate_from.tokens, where)
            rows = self.width - spec.regenerate_from.reopened(self.width)
            tokens[: rows * self.width] = init[: rows * self.width]
            step = sum(1 for s in range(self.num_steps) if self.rows_after(s) <= rows)
        elif spec.init_tokens is not None:
            init = self._checked_codes(spec.init_tokens, where)
            keep = generated_length(init)
            tokens[:keep] = init[:keep]
        return PathState(
            spec.prompt_id,
            spec.prompt,
            spec.seed,
            spec.path_index,
            step,
            self.num_steps,
            tokens,
            image_index=spec.image_index,
        )

    def _checked_codes(self, codes: np.ndarray, where: str) -> np.ndarray:
        init = np.asarray(codes, dtype=np.int32).reshape(-1)
        if init.size != self.num_tokens:
            raise ValueError(f"{where}: init_tokens has {init.size} codes, expected {self.num_tokens}")
        size = self.model.config.vq_config.num_embeddings
        if ((init < UNKNOWN) | (init >= size)).any():
            raise ValueError(f"{where}: init_tokens outside [0, {size}) and UNKNOWN")
        return init

    @torch.inference_mode()
    def advance(self, states: Sequence[PathState], steps: int = 1, previews: bool = False) -> Advanced:
        out = list(states)
        for _ in range(steps):
            active = [i for i, state in enumerate(out) if not state.done]
            if not active:
                break
            for i, state in zip(active, self._step([out[i] for i in active]), strict=True):
                out[i] = state
        images = self._decode([fill_preview(s.tokens, self.width) for s in out]) if previews else None
        return Advanced(out, images)

    @torch.inference_mode()
    def finish(self, states: Sequence[PathState]) -> list[Finished]:
        for state in states:
            if not state.done:
                raise ValueError(f"path {state.prompt_id}/{state.path_index} is at step {state.step}")
        images = self._decode([s.tokens for s in states])
        return [Finished(image, s.tokens.copy()) for image, s in zip(images, states, strict=True)]

    def _step(self, states: list[PathState]) -> list[PathState]:
        starts = [generated_length(s.tokens) for s in states]
        counts = [
            max(0, self.rows_after(s.step) * self.width - n) for s, n in zip(states, starts, strict=True)
        ]
        busy = [i for i, count in enumerate(counts) if count]
        new_codes = self._extend(
            [states[i] for i in busy], [starts[i] for i in busy], [counts[i] for i in busy]
        )
        tokens = [s.tokens.copy() for s in states]
        for i, codes in zip(busy, new_codes, strict=True):
            tokens[i][starts[i] : starts[i] + counts[i]] = codes
        return [replace(s, step=s.step + 1, tokens=t) for s, t in zip(states, tokens, strict=True)]

    def _extend(self, states: list[PathState], starts: list[int], counts: list[int]) -> list[np.ndarray]:
        """Generate ``counts[i]`` codes after the prefix of each path: one prefill, then one
        batched forward per code with the KV cache."""
        if not states:
            return []
        embeds, mask = self._prefill_inputs(states, starts)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        uniforms = torch.stack(
            [self._uniforms(s, start, max(counts)) for s, start in zip(states, starts, strict=True)]
        )
        batch, cache = len(states), None
        drawn = []
        for j in range(max(counts)):
            out = self.model.model.language_model(
                inputs_embeds=embeds,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
            )
            cache = out.past_key_values
            logits = self.model.model.generation_head(out.last_hidden_state[:, -1]).double()
            cond, uncond = logits[:batch], logits[batch:]
            codes = sample_codes(
                uncond + self.options.cfg_weight * (cond - uncond), uniforms[:, j], self.options.temperature
            )
            drawn.append(codes)
            embeds = self.model.prepare_embeddings_for_image_generation(codes.repeat(2).unsqueeze(-1))
            mask = torch.cat([mask, mask.new_ones(2 * batch, 1)], dim=-1)
            positions = positions[:, -1:] + 1
        per_path = torch.stack(drawn, dim=1).cpu().numpy().astype(np.int32)
        return [per_path[i, :count] for i, count in enumerate(counts)]

    def _uniforms(self, state: PathState, start: int, count: int) -> torch.Tensor:
        """Uniforms for slots ``start .. start+count`` (past the grid end: unused padding)."""
        first, last = start // self.width, min((start + count - 1) // self.width, self.width - 1)
        rows = [row_uniforms(state.seed, state.path_index, r, self.width) for r in range(first, last + 1)]
        flat = torch.cat(rows)[start % self.width :]
        return torch.nn.functional.pad(flat, (0, count - flat.numel()), value=0.5)[:count]

    def _prefill_inputs(
        self, states: list[PathState], starts: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded embeddings of [conditional rows; unconditional rows] and their mask."""
        embed_text = self.model.get_input_embeddings()
        conditional, unconditional = [], []
        for state, start in zip(states, starts, strict=True):
            ids = self._prompt_ids(state.prompt)
            blank = [i if i in (self.bos_token_id, self.boi_token_id) else self.pad_token_id for i in ids]
            codes = torch.from_numpy(state.tokens[:start].astype(np.int64)).to(self.device)
            image = self.model.prepare_embeddings_for_image_generation(codes).to(embed_text.weight.dtype)
            for rows, text in ((conditional, ids), (unconditional, blank)):
                rows.append(torch.cat([embed_text(torch.tensor(text, device=self.device)), image]))
        rows = conditional + unconditional
        length = max(row.shape[0] for row in rows)
        embeds = rows[0].new_zeros(len(rows), length, rows[0].shape[-1])
        mask = torch.zeros(len(rows), length, dtype=torch.long, device=self.device)
        for i, row in enumerate(rows):
            embeds[i, length - row.shape[0] :] = row
            mask[i, length - row.shape[0] :] = 1
        return embeds, mask

    def _prompt_ids(self, prompt: str) -> list[int]:
        """The checkpoint's chat template for one user turn, then the begin-of-image token."""
        turn = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
        text = self.processor.apply_chat_template(turn, add_generation_prompt=True)
        return list(self.processor(text=[text], generation_mode="image", return_tensors=None)["input_ids"][0])

    def _decode(self, token_rows: list[np.ndarray]) -> list[np.ndarray]:
        if not token_rows:
            return []
        codes = torch.from_numpy(np.stack(token_rows).astype(np.int64)).to(self.device)
        pixels = self.model.decode_image_tokens(codes).float()
        images = ((pixels + 1) * 127.5).clamp(0, 255).to(torch.uint8).cpu().numpy()
        return list(images)


def load_janus(spec: GeneratorSpec) -> JanusGenerator:
    """Load a Janus checkpoint (tiny:janus, a local directory or a hub id) under the shared rules."""
    options = parse_options(spec.options)
    path = resolve_checkpoint(spec.checkpoint)
    check_weights_format(path, spec.trust_pickle)
    device = pick_device(spec.device)
    dtype = pick_dtype(spec.dtype, device)
    model = JanusForConditionalGeneration.from_pretrained(
        path, dtype=dtype, use_safetensors=None if spec.trust_pickle else True
    )
    model = model.to(device).eval()
    processor = AutoProcessor.from_pretrained(path)
    identity = f"janus({spec.checkpoint}, cfg={options.cfg_weight}, temperature={options.temperature})"
    return JanusGenerator(model, processor, options, identity)
