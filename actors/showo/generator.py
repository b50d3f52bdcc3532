"""Show-o behind the stepwise generator interface, and its loader.

Checkpoint layout (what ``GeneratorSpec.checkpoint`` names, a directory or a hub id):

- ``config.json`` + ``*.safetensors``: the Show-o transformer, as published in ``showlab/show-o``
  (or ``showlab/show-o-512x512``). Pickled ``*.bin`` weights load only with ``trust_pickle``.
- the Phi backbone's config and the text tokenizer come from ``llm_model_path`` of that
  config.json (``microsoft/phi-1_5`` for the public model), as in the reference; a relative path
  that exists inside the checkpoint directory is taken from there. ``options.llm_path`` overrides it.
- MAGVIT-v2: ``options.vq_checkpoint`` if set, else the ``vq/`` subdirectory when the checkpoint
  bundles one (the tiny model does), else ``showlab/magvitv2``; again ``config.json`` + weights.

A path's state is its token grid (UNKNOWN where masked) and its step: nothing else is needed to
continue it, so any replica can. Each step runs one batched forward over all active paths (cond
and uncond rows together); the text tokens are rebuilt from the prompt each call, which costs
microseconds next to the forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, PhiConfig, PreTrainedTokenizerBase

from actors.interfaces import UNKNOWN, Advanced, Finished, PathSpec, PathState, Regeneration
from actors.loading import check_weights_format, pick_device, pick_dtype, resolve_checkpoint
from actors.showo.config import GridShape, MagvitConfig, ShowoConfig, ShowoOptions, grid_for
from actors.showo.magvit import Magvit2
from actors.showo.maskgit import (
    maskgit_step,
    num_to_remask,
    path_uniforms,
    remask_temperature,
    reopen_least_confident,
    start_step_for,
)
from actors.showo.model import ShowoTransformer
from actors.showo.prompting import TokenIds, prompt_blocks
from actors.showo.weights import load_strict, local_dir
from schemas.config import GeneratorSpec

PUBLIC_VQ = "showlab/magvitv2"


class ShowoGenerator:
    name = "showo"

    def __init__(
        self,
        model: ShowoTransformer,
        vq: Magvit2,
        tokenizer: PreTrainedTokenizerBase,
        options: ShowoOptions,
        identity: str,
    ):
        self.model, self.vq, self.tokenizer, self.options = model.eval(), vq.eval(), tokenizer, options
        self.config: ShowoConfig = model.config
        if vq.config.codebook_size != self.config.codebook_size:
            raise ValueError(
                f"MAGVIT-v2 has {vq.config.codebook_size} codes, Show-o expects {self.config.codebook_size}"
            )
        if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError("Show-o text tokenizer needs bos and eos tokens")
        self.grid: GridShape = grid_for(self.config, vq.config, options.resolution)
        self.ids = TokenIds.for_config(self.config, tokenizer.bos_token_id, tokenizer.eos_token_id)
        self.num_steps = options.num_steps
        self.num_tokens = self.grid.num_tokens
        self.image_size = self.grid.pixels
        self.identity = identity
        self.device = model.showo.lm_head.weight.device

    # -- interface ---------------------------------------------------------------------------
    def start(self, specs: Sequence[PathSpec]) -> list[PathState]:
        return [self._start_one(spec) for spec in specs]

    def advance(self, states: Sequence[PathState], steps: int = 1, previews: bool = False) -> Advanced:
        if steps < 1:
            raise ValueError(f"advance: steps must be >= 1, got {steps}")
        current = [self._checked(s) for s in states]
        predicted: list[np.ndarray | None] = [None] * len(current)
        for _ in range(steps):
            active = [i for i, s in enumerate(current) if not s.done]
            if not active:
                break
            sampled, tokens, confidence = self._step([current[i] for i in active])
            for row, i in enumerate(active):
                current[i] = replace(
                    current[i], step=current[i].step + 1, tokens=tokens[row], confidence=confidence[row]
                )
                predicted[i] = sampled[row]
        if not previews:
            return Advanced(current, None)
        grids = [p if p is not None else s.tokens for p, s in zip(predicted, current, strict=True)]
        return Advanced(current, self.decode(np.stack(grids)) if grids else [])

    def finish(self, states: Sequence[PathState]) -> list[Finished]:
        for state in states:
            self._checked(state)
            if not state.done or state.num_unknown:
                raise ValueError(
                    f"path {state.prompt_id}/{state.path_index} is at step {state.step} of {state.num_steps}"
                )
        if not states:
            return []
        images = self.decode(np.stack([s.tokens for s in states]))
        return [Finished(image, s.tokens.copy()) for image, s in zip(images, states, strict=True)]

    # -- internals ---------------------------------------------------------------------------
    def _start_one(self, spec: PathSpec) -> PathState:
        where = f"path {spec.prompt_id}/{spec.path_index}"
        if not 0 <= spec.start_step <= self.num_steps:
            raise ValueError(f"{where}: start_step {spec.start_step} outside 0..{self.num_steps}")
        confidence = np.full(self.num_tokens, np.nan, dtype=np.float32)
        step = spec.start_step
        if spec.regenerate_from is not None:
            tokens, confidence, step = self._regeneration(spec.regenerate_from, where)
        elif spec.init_tokens is None:
            tokens = np.full(self.num_tokens, UNKNOWN, dtype=np.int32)
        else:
            tokens = np.asarray(spec.init_tokens, dtype=np.int32).reshape(-1).copy()
        state = PathState(
            spec.prompt_id,
            spec.prompt,
            spec.seed,
            spec.path_index,
            step,
            self.num_steps,
            tokens,
            confidence=confidence,
            image_index=spec.image_index,
        )
        return self._checked(state)

    def _regeneration(self, previous: Regeneration, where: str) -> tuple[np.ndarray, np.ndarray, int]:
        """Re-open the tokens the previous path was least sure of, and start where the schedule has
        that many masked, so the new path spends its steps as a fresh one would at that point."""
        if previous.confidence is None:
            raise ValueError(f"{where}: Show-o regenerates from the previous path's token confidences")
        confidence = np.asarray(previous.confidence, dtype=np.float32).reshape(-1)
        if confidence.shape != (self.num_tokens,):
            raise ValueError(f"{where}: {confidence.shape} confidences for {self.num_tokens} tokens")
        count = previous.reopened(self.num_tokens)
        tokens = reopen_least_confident(previous.tokens.reshape(-1), confidence, count)
        kept = np.where(tokens == UNKNOWN, np.float32(np.nan), confidence)
        return tokens, kept, start_step_for(count, self.num_steps, self.num_tokens)

    def _checked(self, state: PathState) -> PathState:
        where = f"path {state.prompt_id}/{state.path_index}"
        if state.tokens.shape != (self.num_tokens,):
            raise ValueError(
                f"{where}: {state.tokens.shape} tokens, this generator uses ({self.num_tokens},)"
            )
        bad = (state.tokens < UNKNOWN) | (state.tokens >= self.config.codebook_size)
        if bad.any():
            raise ValueError(
                f"{where}: token {int(state.tokens[bad][0])} outside [0, {self.config.codebook_size})"
            )
        if state.num_steps != self.num_steps:
            raise ValueError(
                f"{where}: made for {state.num_steps} steps, this generator runs {self.num_steps}"
            )
        return state

    @torch.inference_mode()
    def _step(self, states: list[PathState]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One MaskGIT step for paths at any steps; returns (predicted grids, re-masked grids, the
        confidences of the decided tokens)."""
        guided = self.options.guidance_scale > 0
        prompts = [s.prompt for s in states] + ([""] * len(states) if guided else [])
        blocks, pads = prompt_blocks(
            self.tokenizer, prompts, self.ids, self.config.llm_vocab_size, self.options.max_text_len
        )
        tokens = torch.from_numpy(np.stack([s.tokens for s in states]).astype(np.int64)).to(self.device)
        image_tokens = torch.cat([tokens, tokens]) if guided else tokens
        logits = self.model.code_logits(blocks, pads, image_tokens, self.ids).float()
        if guided:
            cond, uncond = logits.chunk(2)
            g = self.options.guidance_scale
            logits = (1 + g) * cond - g * uncond
        uniforms = torch.stack([path_uniforms(s.seed, s.path_index, s.step, self.num_tokens) for s in states])
        counts = [num_to_remask(s.step, s.num_steps, self.num_tokens, s.num_unknown) for s in states]
        temps = [self._temperature(s) for s in states]
        result = maskgit_step(
            logits.softmax(-1),
            tokens,
            uniforms.to(self.device),
            torch.tensor(counts, device=self.device),
            torch.tensor(temps, dtype=torch.float32, device=self.device),
        )
        tokens_out = result.tokens.to(torch.int32).cpu().numpy()
        decided_now = (tokens_out != UNKNOWN) & (np.stack([s.tokens for s in states]) == UNKNOWN)
        confidence = np.where(decided_now, result.chosen.float().cpu().numpy(), self._confidences(states))
        return result.sampled.to(torch.int32).cpu().numpy(), tokens_out, confidence.astype(np.float32)

    def _confidences(self, states: list[PathState]) -> np.ndarray:
        blank = np.full(self.num_tokens, np.nan, dtype=np.float32)
        return np.stack([blank if s.confidence is None else s.confidence for s in states])

    def _temperature(self, state: PathState) -> float:
        first = state.image_index == 0 and state.path_index == 0
        return remask_temperature(
            self.options.temperature, state.step, state.num_steps, self.options.temperature_schedule, first
        )

    @torch.inference_mode()
    def decode(self, grids: np.ndarray) -> list[np.ndarray]:
        """(B, N) codes -> B uint8 images (H, W, 3), scaled as the reference scales them."""
        if (grids == UNKNOWN).any():
            raise ValueError("decode: grid has undecided slots")
        codes = torch.from_numpy(grids.astype(np.int64)).to(self.device)
        pixels = self.vq.decode_codes(codes, self.grid.side).float()
        images = ((pixels + 1) / 2).clamp(0, 1).mul(255).to(torch.uint8).permute(0, 2, 3, 1)
        return list(images.cpu().numpy())


def _sub_or_hub(root: Path, name: str) -> str:
    """A path relative to the checkpoint directory when it exists there, else as given."""
    inside = root / name
    return str(inside) if not Path(name).is_absolute() and inside.is_dir() else name


def load_showo(spec: GeneratorSpec) -> ShowoGenerator:
    options = ShowoOptions.parse(spec.options)
    root = Path(local_dir(resolve_checkpoint(spec.checkpoint), spec.trust_pickle))
    check_weights_format(str(root), spec.trust_pickle)
    config = ShowoConfig.from_file(root / "config.json")

    llm = _sub_or_hub(root, options.llm_path or config.llm_model_path)
    phi = PhiConfig.from_pretrained(llm)
    tokenizer = AutoTokenizer.from_pretrained(llm)
    if options.vq_checkpoint is not None:
        vq_label, vq_name = options.vq_checkpoint, resolve_checkpoint(options.vq_checkpoint)
    elif (root / "vq").is_dir():
        vq_label, vq_name = "bundled", str(root / "vq")
    else:
        vq_label = vq_name = PUBLIC_VQ
    vq_root = Path(local_dir(vq_name, spec.trust_pickle))
    magvit = MagvitConfig.from_file(vq_root / "config.json")

    device = pick_device(spec.device)
    dtype = pick_dtype(spec.dtype, device)
    with torch.device(device):
        model = ShowoTransformer(config, phi)
        vq = Magvit2(magvit)
    load_strict(model, root, spec.trust_pickle)
    load_strict(vq, vq_root, spec.trust_pickle)
    model.to(dtype)
    if options.head_dtype is not None:
        model.showo.lm_head.to(getattr(torch, options.head_dtype))
    vq_dtype = getattr(torch, options.vq_dtype) if options.vq_dtype else dtype
    vq.to(vq_dtype)
    identity = (
        f"showo({spec.checkpoint}; vq={vq_label}; steps={options.num_steps}; "
        f"g={options.guidance_scale}; t={options.temperature}/{options.temperature_schedule}; "
        f"res={options.resolution or 'native'}; head={options.head_dtype or dtype}; vq={vq_dtype})"
    )
    return ShowoGenerator(model, vq, tokenizer, options, identity)
