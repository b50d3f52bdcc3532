"""The public checkpoints parmflow claims to load, pinned by name, shape and dtype.

Each manifest in ``tests/fixtures/manifests`` was written by the reference implementation of that
checkpoint, built at its real config on the meta device (the README there has the commands). Here
parmflow builds its own models at the same configs, again on the meta device (no weights, no
memory), and the two key sets must agree exactly in both directions: a key the checkpoint has and
the model lacks is what made ``load_strict`` refuse the public Show-o, and a key the model has and
the checkpoint lacks would fail the same way from the other side.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import (
    JanusConfig,
    JanusForConditionalGeneration,
    LlavaOnevisionForConditionalGeneration,
    PhiConfig,
)

from actors.janus.tiny import janus_tokenizer, realistic_config
from actors.judges.convert import convert_weights, target_config
from actors.showo.config import MagvitConfig, ShowoConfig
from actors.showo.magvit import Magvit2
from actors.showo.model import ShowoTransformer

FIXTURES = Path(__file__).parent / "fixtures" / "manifests"
Manifest = dict[str, tuple[tuple[int, ...], str]]


def read_manifest(name: str) -> Manifest:
    entries = json.loads((FIXTURES / f"{name}.json").read_text())
    return {key: (tuple(shape), dtype) for key, (shape, dtype) in entries.items()}


def read_config(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.config.json").read_text())


def manifest_of(tensors: dict[str, torch.Tensor]) -> Manifest:
    return {key: (tuple(t.shape), str(t.dtype).removeprefix("torch.")) for key, t in tensors.items()}


def assert_same(ours: Manifest, reference: Manifest) -> None:
    """Both directions, then shapes and dtypes, with the first differences named."""
    missing, extra = sorted(set(reference) - set(ours)), sorted(set(ours) - set(reference))
    assert not missing, f"{len(missing)} checkpoint keys the model lacks: {missing[:6]}"
    assert not extra, f"{len(extra)} model keys the checkpoint lacks: {extra[:6]}"
    differ = {k: (ours[k], reference[k]) for k in reference if ours[k] != reference[k]}
    assert not differ, f"{len(differ)} keys differ (ours, checkpoint): {dict(list(differ.items())[:6])}"


def built_on_meta(make: type[nn.Module] | object, *args: object, dtype: torch.dtype) -> Manifest:
    with torch.device("meta"):
        module = make(*args).to(dtype)
    return manifest_of(module.state_dict())


@pytest.mark.parametrize("name", ["show-o", "show-o-512x512"])
def test_showo_matches_the_public_checkpoint(name: str) -> None:
    """The fp32 Show-o transformer from the checkpoint's own config.json and Phi-1.5's config: the
    q/k layernorms (96 keys at 24 layers) are what the public checkpoints carry."""
    config = ShowoConfig.from_file(FIXTURES / f"{name}.config.json")
    phi = PhiConfig(**read_config("phi-1_5"))
    assert_same(built_on_meta(ShowoTransformer, config, phi, dtype=torch.float32), read_manifest(name))


def test_magvit_matches_the_public_checkpoint() -> None:
    """``showlab/magvitv2`` stores no sizes in its config: parmflow's defaults are the model."""
    assert_same(built_on_meta(Magvit2, MagvitConfig(), dtype=torch.float32), read_manifest("magvitv2"))


@pytest.mark.parametrize("name", ["Janus-Pro-1B", "Janus-Pro-7B"])
def test_janus_matches_the_transformers_layout_checkpoint(name: str) -> None:
    """The checkpoints were written by an older transformers (4.52); the pinned one must build the
    same keys from the same config, or ``from_pretrained`` would silently leave some random."""
    config = JanusConfig(**read_config(name))
    ours = built_on_meta(JanusForConditionalGeneration, config, dtype=torch.bfloat16)
    assert_same(ours, read_manifest(name))


def test_realistic_janus_benchmark_model_is_janus_pro_1b() -> None:
    """``bench/`` measures random weights at these sizes: they must be Janus-Pro-1B's."""
    config = realistic_config(janus_tokenizer())
    ours = built_on_meta(JanusForConditionalGeneration, config, dtype=torch.bfloat16)
    assert_same(ours, read_manifest("Janus-Pro-1B"))


def meta_tensors(manifest: Manifest) -> dict[str, torch.Tensor]:
    return {
        key: torch.empty(shape, dtype=getattr(torch, dtype), device="meta")
        for key, (shape, dtype) in manifest.items()
    }


def test_llava_next_judge_converts_to_exactly_the_onevision_layout() -> None:
    """parmflow's converter over the paper's judge (LLaVA-NeXT layout: 26 SigLIP layers, no pooling
    head, ``mm_projector.0/.2``, ``image_newline``) gives exactly the transformers model's keys,
    and that model, built from the config the converter derives, accepts them strictly."""
    raw = meta_tensors(read_manifest("llava-next-parm"))
    weights = convert_weights(raw)
    expected = read_manifest("llava-onevision-parm")
    assert_same(manifest_of(weights), expected)

    rows = raw["model.embed_tokens.weight"].shape[0]
    image_video = (151646, 151647)  # appended after Qwen2's 151646 tokens: they fit in the rows
    config = target_config(read_config("llava-next-7b"), raw, 16, image_video, rows, "llava-next-7b")
    with torch.device("meta"):
        model = LlavaOnevisionForConditionalGeneration(config).to(torch.bfloat16)
    assert_same(manifest_of(model.state_dict()), expected)
    model.load_state_dict(weights, strict=True, assign=True)
