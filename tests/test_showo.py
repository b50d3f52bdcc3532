"""Show-o generator on the tiny random-weight checkpoint, plus its pure parts on small doubles."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import PhiConfig

from actors.interfaces import UNKNOWN, Generator, PathSpec, PathState, Regeneration
from actors.registry import build_generator
from actors.showo.config import ShowoConfig
from actors.showo.generator import ShowoGenerator
from actors.showo.magvit import LookupFreeQuantizer, Magvit2
from actors.showo.maskgit import (
    masked_at,
    maskgit_step,
    num_to_remask,
    remask_temperature,
    reopen_least_confident,
    start_step_for,
)
from actors.showo.model import ShowoTransformer
from actors.showo.prompting import TokenIds, omni_attention, text_block
from actors.showo.tiny import showo_config, tiny_magvit
from actors.showo.weights import load_strict
from schemas.config import GeneratorSpec

STEPS = 18
TEXT = 16  # max_text_len: short sequences keep the tiny model fast; the layout is the same


def tiny_spec(**options: object) -> GeneratorSpec:
    return GeneratorSpec(kind="showo", checkpoint="tiny:showo", options=options)


@pytest.fixture(scope="module")
def gen() -> Iterator[ShowoGenerator]:
    generator = build_generator(tiny_spec(max_text_len=TEXT))
    assert isinstance(generator, ShowoGenerator)
    yield generator


def specs(prompt: str, seeds: list[int], prompt_id: str = "p") -> list[PathSpec]:
    return [PathSpec(prompt_id, prompt, seed, path_index=i) for i, seed in enumerate(seeds)]


def run(gen: ShowoGenerator, states: list[PathState], chunks: list[int]) -> list[PathState]:
    for steps in chunks:
        states = gen.advance(states, steps).states
    return states


# -- the generator on the tiny checkpoint -----------------------------------------------------


def test_shapes_and_value_ranges(gen: ShowoGenerator) -> None:
    assert isinstance(gen, Generator)
    assert (gen.num_steps, gen.num_tokens, gen.image_size) == (STEPS, 16, 16)
    states = gen.start(specs("a red cat", [0, 1]))
    assert all(s.step == 0 and s.num_unknown == 16 and s.tokens.dtype == np.int32 for s in states)
    states = run(gen, states, [STEPS])
    assert all(s.done and s.num_unknown == 0 for s in states)
    finished = gen.finish(states)
    for f in finished:
        assert f.image.shape == (16, 16, 3) and f.image.dtype == np.uint8
        assert f.tokens.dtype == np.int32 and f.tokens.min() >= 0 and f.tokens.max() < 64
    assert not np.array_equal(finished[0].tokens, finished[1].tokens)


def test_same_seed_same_tokens(gen: ShowoGenerator) -> None:
    first = run(gen, gen.start(specs("two dogs", [7, 8])), [STEPS])
    again = run(gen, gen.start(specs("two dogs", [7, 8])), [STEPS])
    assert all(np.array_equal(a.tokens, b.tokens) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0].tokens, first[1].tokens)


def test_one_step_at_a_time_equals_chunks(gen: ShowoGenerator) -> None:
    start = gen.start(specs("a blue car", [3, 4]))
    singles = run(gen, start, [1] * STEPS)
    for chunks in ([6, 6, 6], [5, 1, 12]):
        chunked = run(gen, start, chunks)
        for a, b in zip(singles, chunked, strict=True):
            assert np.array_equal(a.tokens, b.tokens), chunks


def test_path_alone_equals_path_in_batch(gen: ShowoGenerator) -> None:
    alone = run(gen, gen.start(specs("a green bird", [5])), [STEPS])[0]
    others = gen.start(specs("a cat on a chair", [11, 12], "q") + specs("one apple", [13], "r"))
    others = run(gen, others, [4])  # batch-mates at another step
    mixed = [*others[:2], *gen.start(specs("a green bird", [5])), others[2]]
    mixed = run(gen, mixed, [STEPS])
    assert np.array_equal(mixed[2].tokens, alone.tokens)


def test_schedule_unmasks_by_cosine_and_finishes_complete(gen: ShowoGenerator) -> None:
    state = gen.start(specs("a clock", [2]))
    seen = []
    for _ in range(STEPS):
        state = gen.advance(state, 1).states
        seen.append(state[0].num_unknown)
    expected, unknown = [], 16
    for s in range(STEPS - 1):
        unknown = max(1, min(unknown - 1, math.floor(16 * math.cos(math.pi / 2 * (s + 1) / STEPS))))
        expected.append(unknown)
    assert seen == [*expected, 0]


def test_every_step_preview_decodes_the_full_prediction(
    gen: ShowoGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[np.ndarray] = []
    real_decode = gen.decode

    def recording_decode(grids: np.ndarray) -> list[np.ndarray]:
        decoded.append(grids.copy())
        return real_decode(grids)

    monkeypatch.setattr(gen, "decode", recording_decode)
    states = gen.start(specs("a person", [1, 2]))
    for _ in range(STEPS):
        out = gen.advance(states, 1, previews=True)
        assert out.previews is not None and len(out.previews) == 2
        grids = decoded[-1]
        for preview, grid, state in zip(out.previews, grids, out.states, strict=True):
            assert preview.shape == (16, 16, 3) and preview.dtype == np.uint8
            assert (grid != UNKNOWN).all()
            known = state.tokens != UNKNOWN
            assert np.array_equal(grid[known], state.tokens[known])
        states = out.states
    assert np.array_equal(decoded[-1], np.stack([s.tokens for s in states]))


def test_init_tokens_are_kept(gen: ShowoGenerator) -> None:
    init = np.full(16, UNKNOWN, dtype=np.int32)
    init[:6] = [1, 2, 3, 4, 5, 6]
    spec = PathSpec("p", "a dog", 0, 0, init_tokens=init, start_step=9)
    state = gen.start([spec])[0]
    assert state.step == 9 and state.num_unknown == 10
    done = run(gen, [state], [STEPS])[0]
    assert done.done and done.num_unknown == 0 and list(done.tokens[:6]) == [1, 2, 3, 4, 5, 6]


def test_states_carry_the_confidence_each_token_was_decided_with(gen: ShowoGenerator) -> None:
    state = gen.start(specs("a clock", [4]))[0]
    assert np.isnan(state.confidence).all()
    earlier = state
    for _ in range(STEPS):
        state = gen.advance([earlier], 1).states[0]
        decided = state.tokens != UNKNOWN
        assert np.array_equal(np.isnan(state.confidence), ~decided)
        assert ((state.confidence[decided] > 0) & (state.confidence[decided] <= 1)).all()
        before = earlier.tokens != UNKNOWN
        assert np.array_equal(state.confidence[before], earlier.confidence[before])
        earlier = state


def test_regeneration_reopens_the_least_confident_half_and_starts_on_schedule(gen: ShowoGenerator) -> None:
    """Half of 16 re-opened: the cosine schedule has 9 masked at step 11 and 7 at step 12, so the
    new path starts at step 11 and unmasks as a fresh path would from there: 7, 6, 5, 4, 2, 1, 0."""
    done = run(gen, gen.start(specs("a red cat", [3])), [STEPS])[0]
    source = Regeneration(done.tokens, 0.5, done.confidence)
    state = gen.start([PathSpec("p", "a red cat", 3, 1, regenerate_from=source)])[0]
    least = np.argsort(done.confidence, kind="stable")[:8]
    assert state.step == 11 and sorted(np.flatnonzero(state.tokens == UNKNOWN)) == sorted(least)
    kept = state.tokens != UNKNOWN
    assert np.array_equal(state.tokens[kept], done.tokens[kept])
    assert np.array_equal(state.confidence[kept], done.confidence[kept])
    unknown = []
    while not state.done:
        state = gen.advance([state], 1).states[0]
        unknown.append(state.num_unknown)
    assert unknown == [7, 6, 5, 4, 2, 1, 0]
    with pytest.raises(ValueError, match="confidences"):
        gen.start([PathSpec("p", "x", 0, 0, regenerate_from=Regeneration(done.tokens, 0.5))])


def test_reference_temperature_schedule_silences_every_path_but_the_prompts_first() -> None:
    """``reference``: path 0 of image 0 re-masks with the compounded noise, any other path by
    confidence alone, i.e. exactly as with temperature 0."""

    generators: dict[str, ShowoGenerator] = {}

    def tokens(path: int, image: int, temperature: float, schedule: str) -> np.ndarray:
        key = f"{temperature}/{schedule}"
        if key not in generators:
            options = {"temperature": temperature, "temperature_schedule": schedule}
            generators[key] = build_generator(tiny_spec(max_text_len=TEXT, num_steps=6, **options))
        g = generators[key]
        return run(g, g.start([PathSpec("p", "a dog on a bench", 9, path, image_index=image)]), [6])[0].tokens

    assert np.array_equal(tokens(0, 0, 4.0, "reference"), tokens(0, 0, 4.0, "compound"))
    for path, image in ((1, 0), (0, 1)):
        assert np.array_equal(tokens(path, image, 4.0, "reference"), tokens(path, image, 0.0, "linear"))
    assert not np.array_equal(tokens(0, 0, 4.0, "reference"), tokens(0, 0, 0.0, "linear"))


def test_per_part_dtypes() -> None:
    spec = GeneratorSpec(
        kind="showo",
        checkpoint="tiny:showo",
        dtype="bfloat16",
        options={"max_text_len": TEXT, "num_steps": 2, "head_dtype": "float32", "vq_dtype": "float32"},
    )
    g = build_generator(spec)
    assert g.model.showo.model.embed_tokens.weight.dtype == torch.bfloat16
    assert g.model.showo.lm_head.weight.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in g.vq.parameters())
    image = g.finish(run(g, g.start(specs("a cat", [0])), [2]))[0].image
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8


def test_guidance_runs_an_empty_prompt_row_per_path(
    gen: ShowoGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[torch.Tensor] = []
    real_forward = gen.model.forward

    def recording_forward(input_ids: torch.Tensor, allowed: torch.Tensor, logits_from: int) -> torch.Tensor:
        batches.append(input_ids.clone())
        return real_forward(input_ids, allowed, logits_from)

    monkeypatch.setattr(gen.model, "forward", recording_forward)
    gen.advance(gen.start(specs("a red cat", [0, 1, 2])), 1)
    ids = batches[-1]
    assert ids.shape == (6, TEXT + 1 + 16 + 2)
    uncond_text = ids[3:, : TEXT + 1]
    assert (uncond_text[:, -3:] == torch.tensor([gen.ids.t2i, gen.ids.bos, gen.ids.eos])).all()
    assert (uncond_text[:, :-3] == gen.ids.pad).all()


def test_resolution_option_sets_the_grid() -> None:
    big = build_generator(tiny_spec(resolution=32, num_steps=4, max_text_len=TEXT))
    assert (big.num_tokens, big.image_size, big.num_steps) == (64, 32, 4)
    states = run(big, big.start(specs("a cat", [0])), [4])
    assert big.finish(states)[0].image.shape == (32, 32, 3)


def test_bad_options_and_states_are_named(gen: ShowoGenerator) -> None:
    with pytest.raises(ValueError, match="num_stepz"):
        build_generator(tiny_spec(num_stepz=3))
    with pytest.raises(ValueError, match="resolution 30"):
        build_generator(tiny_spec(resolution=30))
    with pytest.raises(ValueError, match=r"p/0.*step 0"):
        gen.finish(gen.start(specs("a cat", [0])))
    with pytest.raises(ValueError, match="outside"):
        gen.start([PathSpec("p", "x", 0, 0, init_tokens=np.full(16, 64))])


# -- pure parts -------------------------------------------------------------------------------


def test_remask_temperature_schedules() -> None:
    assert [remask_temperature(1.0, s, 4) for s in range(4)] == [0.75, 0.5, 0.25, 0.0]
    assert remask_temperature(2.0, 1, 4) == 1.0
    # the reference's in-place t <- t * (1 - (s+1)/T): 0.75, 0.75 * 0.5, 0.375 * 0.25, then * 0
    compound = [0.75, 0.375, 0.09375, 0.0]
    assert [remask_temperature(1.0, s, 4, "compound") for s in range(4)] == compound
    assert [remask_temperature(1.0, s, 4, "reference", first_of_prompt=True) for s in range(4)] == compound
    assert [remask_temperature(1.0, s, 4, "reference", first_of_prompt=False) for s in range(4)] == [0.0] * 4
    assert remask_temperature(2.0, 1, 4, "compound") == 0.75


def test_schedule_counts() -> None:
    assert num_to_remask(17, 18, 256, 3) == 0 and num_to_remask(0, 18, 256, 0) == 0
    assert num_to_remask(0, 18, 256, 256) == math.floor(256 * math.cos(math.pi / 2 / 18))
    # half of 256 known at step 0: the clamp decides one token a step for twelve steps
    assert [num_to_remask(s, 18, 256, 128 - s) for s in range(12)] == list(range(127, 115, -1))
    assert masked_at(12, 18, 256) == 127  # floor(256 * cos(pi/3)) in float32
    assert start_step_for(128, 18, 256) == 12 and start_step_for(0, 18, 256) == 18
    assert start_step_for(256, 18, 256) == 0 and start_step_for(8, 18, 16) == 11  # 9 and 7 tie: earlier


def test_reopen_least_confident_tokens() -> None:
    tokens = np.array([5, 6, 7, 8], dtype=np.int32)
    confidence = np.array([0.9, 0.2, np.nan, 0.2], dtype=np.float32)
    assert reopen_least_confident(tokens, confidence, 2).tolist() == [5, UNKNOWN, UNKNOWN, 8]
    assert reopen_least_confident(tokens, confidence, 3).tolist() == [5, UNKNOWN, UNKNOWN, UNKNOWN]


def test_maskgit_step_samples_by_inverse_cdf_and_remasks_lowest_confidence() -> None:
    probs = torch.tensor([[[0.5, 0.5, 0.0], [0.1, 0.2, 0.7], [0.25, 0.25, 0.5]]])
    tokens = torch.tensor([[UNKNOWN, UNKNOWN, 1]])
    noise_free = torch.full((1, 3), 0.5)  # gumbel(0.5) is equal for all slots; temperature 0 anyway
    uniforms = torch.stack([torch.tensor([[0.6, 0.05, 0.9]]), noise_free], dim=1)
    result = maskgit_step(probs, tokens, uniforms, torch.tensor([1]), torch.tensor([0.0]))
    assert result.sampled.tolist() == [[1, 0, 1]]  # slot 2 was known and stays 1
    assert result.tokens.tolist() == [[1, UNKNOWN, 1]]  # p=0.1 < p=0.5: slot 1 goes back
    hot = torch.stack([torch.tensor([[0.6, 0.05, 0.9]]), torch.tensor([[1e-9, 0.999999, 0.5]])], dim=1)
    flipped = maskgit_step(probs, tokens, hot, torch.tensor([1]), torch.tensor([5.0]))
    assert flipped.tokens.tolist() == [[UNKNOWN, 0, 1]]  # large noise on slot 1 saves it


def test_text_block_layout() -> None:
    ids = TokenIds(pad=90, soi=91, eoi=92, t2i=95, bos=0, eos=0, image_offset=100, mask=199)
    block, pad = text_block([5, 6], ids, max_text_len=6)
    assert block == [90, 90, 95, 0, 5, 6, 0] and pad == 2
    long, pad = text_block(list(range(1, 20)), ids, max_text_len=6)
    assert long == [95, 0, 1, 2, 3, 4, 0] and pad == 0


def test_omni_attention_matches_rules() -> None:
    num_pad, text_len, total = torch.tensor([2, 0]), 5, 9
    mask = omni_attention(num_pad, text_len, total)
    for b, pads in enumerate(num_pad.tolist()):
        for q in range(total):
            for k in range(total):
                if q >= text_len:
                    want = k >= pads
                elif q < pads:
                    want = k <= q
                else:
                    want = pads <= k <= q
                assert bool(mask[b, q, k]) == want, (b, q, k)


def test_lookup_free_codes_round_trip() -> None:
    lfq = LookupFreeQuantizer(bits=4)
    codes = torch.tensor([[0, 5, 15, 8]])
    latents = lfq.codes_to_latents(codes, side=2)
    assert latents[0, :, 0, 1].tolist() == [-1, 1, -1, 1]  # 5 = 0b0101, most significant bit first
    assert lfq.latents_to_codes(latents).tolist() == codes.tolist()


# -- strict loading (the public key names are pinned in test_manifests.py) ---------------------


def test_strict_loading_names_missing_and_unexpected_keys(tmp_path: Path) -> None:
    cfg, config = tiny_magvit(), showo_config(64, 6, num_vq_tokens=16)
    phi = PhiConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    for module in (ShowoTransformer(config, phi), Magvit2(cfg)):
        state = {k: torch.randn(v.shape).to(v.dtype) for k, v in module.state_dict().items()}
        save_file(state, tmp_path / "model.safetensors")
        load_strict(module, tmp_path, trust_pickle=False)
        first = next(iter(state))
        assert torch.equal(module.state_dict()[first], state[first])
        renamed = {("x" + k if k == first else k): v for k, v in state.items()}
        save_file(renamed, tmp_path / "model.safetensors")
        with pytest.raises(ValueError, match=f"missing \\['{first}'\\].*unexpected \\['x{first}'\\]"):
            load_strict(module, tmp_path, trust_pickle=False)


def test_pickled_weights_need_trust(tmp_path: Path) -> None:
    torch.save({"a": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="trust_pickle"):
        load_strict(torch.nn.Linear(1, 1), tmp_path, trust_pickle=False)


def test_checkpoint_config_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"vocab_size": 10, "llm_vocab_size": 5}')
    with pytest.raises(ValueError, match=r"config\.json: vocab_size 10"):
        ShowoConfig.from_file(tmp_path / "config.json")
    (tmp_path / "config.json").write_text('{"vocab_size": 10,\n oops}')
    with pytest.raises(ValueError, match="line 2"):
        ShowoConfig.from_file(tmp_path / "config.json")
