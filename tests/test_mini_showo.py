"""The trained mini Show-o: loaded by name like a real checkpoint, better than chance where it
matters (best-of-8 by the exact scorer beats one sample), and its training script learns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from actors.loading import resolve_checkpoint
from actors.mini.sampling import best_of, correctness, sample_images
from actors.mini.world import examples
from actors.registry import build_generator
from actors.showo.generator import ShowoGenerator
from actors.showo.prompting import prompt_blocks
from schemas.config import GeneratorSpec
from workflows.train import mini_showo
from workflows.train.state import load_state

# the sampling options tuned on the validation split (bench/RESULTS.md)
OPTIONS = {"num_steps": 10, "guidance_scale": 3.0, "temperature": 1.0, "max_text_len": 12}


def mini(**options: object) -> ShowoGenerator:
    gen = build_generator(
        GeneratorSpec(kind="showo", checkpoint="mini:showo", options={**OPTIONS, **options})
    )
    assert isinstance(gen, ShowoGenerator)
    return gen


@pytest.fixture(scope="module")
def gen() -> ShowoGenerator:
    return mini()


def test_committed_weights_load_strictly_by_name(gen: ShowoGenerator) -> None:
    folder = Path(resolve_checkpoint("mini:showo"))
    stored = load_file(folder / "model.safetensors")
    assert {v.dtype for v in stored.values()} == {torch.float16}
    state = gen.model.state_dict()
    assert set(stored) == set(state)
    assert all(torch.equal(stored[k].float(), state[k]) for k in stored)
    assert gen.model.showo.lm_head.weight.dtype == torch.float32  # fp16 on disk, fp32 on the CPU
    assert (gen.num_tokens, gen.image_size, gen.config.codebook_size) == (64, 32, 256)
    with pytest.raises(ValueError, match=r"mini:nope.*showo"):
        resolve_checkpoint("mini:nope")


def test_a_longer_text_block_gives_the_same_logits(gen: ShowoGenerator) -> None:
    """Left padding is never attended and rotary positions are relative, so the default
    max_text_len (128) samples what the model was trained on (12)."""
    prompts = ["a photo of a red circle and a blue square", "a photo of two triangles", ""]
    tokens = torch.full((3, 64), -1, dtype=torch.long)
    tokens[:, ::3] = 5
    logits = []
    for width in (12, 128):
        blocks, pads = prompt_blocks(gen.tokenizer, prompts, gen.ids, gen.config.llm_vocab_size, width)
        with torch.no_grad():
            logits.append(gen.model.code_logits(blocks, pads, tokens, gen.ids))
    torch.testing.assert_close(logits[0], logits[1], atol=1e-4, rtol=1e-4)


def test_best_of_8_beats_one_sample_on_held_out_prompts(gen: ShowoGenerator) -> None:
    held = examples("test", per_tag=6, seed=1)[:32]
    images = sample_images(gen, [e.metadata.prompt for e in held], samples=8, seed=0)
    correct = correctness(images, [e.metadata for e in held])
    one, best = correct[:, 0].mean(), best_of(correct, 8).mean()
    assert best - one >= 0.15, (one, best)
    assert one > 0.2  # a trained model: random weights draw no shapes at all


def test_training_runs_from_scratch_and_its_loss_falls(tmp_path: Path) -> None:
    out = tmp_path / "run"
    tiny = ["--hidden", "32", "--layers", "1", "--heads", "2", "--batch", "16", "--warmup", "5"]
    mini_showo.main([*tiny, "--steps", "40", "--checkpoint-every", "20", "--lr", "3e-3", "--out", str(out)])
    state = load_state(out / "state.pt")
    losses = state["losses"]
    assert state["step"] == 40 and len(losses) == 40
    assert np.mean(losses[-10:]) < np.mean(losses[:5]) - 0.5, losses
    assert (out / "loss.png").stat().st_size > 0
    mini_showo.main([*tiny, "--steps", "45", "--checkpoint-every", "20", "--out", str(out), "--resume"])
    resumed = load_state(out / "state.pt")
    assert resumed["step"] == 45 and resumed["losses"][:40] == losses
    exported = build_generator(GeneratorSpec(kind="showo", checkpoint=str(out / "export"), options=OPTIONS))
    assert isinstance(exported, ShowoGenerator) and exported.model.config.num_vq_tokens == 64


def test_a_resumed_run_continues_exactly_where_it_stopped(tmp_path: Path) -> None:
    """Same batches, same masks, same optimiser state: 20 + 20 resumed steps equal 40 straight
    (a long warm-up keeps the learning rate independent of --steps)."""
    tiny = ["--hidden", "32", "--layers", "1", "--heads", "2", "--batch", "8", "--warmup", "100"]
    tiny += ["--threads", "1", "--checkpoint-every", "20"]
    mini_showo.main([*tiny, "--steps", "40", "--out", str(tmp_path / "straight")])
    mini_showo.main([*tiny, "--steps", "20", "--out", str(tmp_path / "split")])
    mini_showo.main([*tiny, "--steps", "40", "--out", str(tmp_path / "split"), "--resume"])
    straight = load_state(tmp_path / "straight" / "state.pt")
    split = load_state(tmp_path / "split" / "state.pt")
    assert split["losses"] == straight["losses"]
    assert all(torch.equal(split["model"][k], v) for k, v in straight["model"].items())
