"""Checkpoint rules shared by every model: tiny checkpoints, trusted formats, device and dtype."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch

from actors import loading


@pytest.fixture
def fake_builder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny-checkpoint builder in its own module, registered as ``tiny:fake``."""
    module_dir = tmp_path / "mods"
    module_dir.mkdir()
    (module_dir / "fake_tiny_builder.py").write_text(
        textwrap.dedent(
            """
            CALLS = []
            def build(path):
                CALLS.append(path)
                (path / "model.safetensors").write_bytes(b"weights")
            """
        )
    )
    monkeypatch.syspath_prepend(str(module_dir))
    monkeypatch.setitem(loading.TINY_BUILDERS, "fake", "fake_tiny_builder:build")
    monkeypatch.setenv("PARMFLOW_CACHE", str(tmp_path / "cache"))
    yield module_dir
    sys.modules.pop("fake_tiny_builder", None)


def test_tiny_checkpoint_is_built_once_and_reused(fake_builder: Path) -> None:
    first = loading.resolve_checkpoint("tiny:fake")
    second = loading.resolve_checkpoint("tiny:fake")
    assert first == second
    assert (Path(first) / "model.safetensors").read_bytes() == b"weights"
    assert len(sys.modules["fake_tiny_builder"].CALLS) == 1


def test_a_changed_builder_gets_a_fresh_checkpoint(fake_builder: Path) -> None:
    first = loading.resolve_checkpoint("tiny:fake")
    source = fake_builder / "fake_tiny_builder.py"
    source.write_text(source.read_text().replace('b"weights"', 'b"weights v2"'))
    sys.modules.pop("fake_tiny_builder")
    second = loading.resolve_checkpoint("tiny:fake")
    assert second != first
    assert (Path(second) / "model.safetensors").read_bytes() == b"weights v2"


def test_unknown_tiny_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"tiny:nope.*showo"):
        loading.resolve_checkpoint("tiny:nope")


def test_hub_ids_and_paths_pass_through(tmp_path: Path) -> None:
    assert loading.resolve_checkpoint("showlab/show-o") == "showlab/show-o"
    assert loading.resolve_checkpoint(str(tmp_path)) == str(tmp_path)


def test_pickled_weights_are_refused_unless_trusted(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match=r"pytorch_model\.bin.*trust_pickle"):
        loading.check_weights_format(str(tmp_path), trust_pickle=False)
    loading.check_weights_format(str(tmp_path), trust_pickle=True)
    (tmp_path / "model.safetensors").write_bytes(b"")
    loading.check_weights_format(str(tmp_path), trust_pickle=False)


def test_a_folder_without_weights_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=str(tmp_path)):
        loading.check_weights_format(str(tmp_path), trust_pickle=False)


def test_dtype_follows_the_device() -> None:
    assert loading.pick_dtype("auto", torch.device("cpu")) is torch.float32
    assert loading.pick_dtype("auto", torch.device("cuda")) is torch.bfloat16
    assert loading.pick_dtype("float16", torch.device("cpu")) is torch.float16
    assert loading.pick_device("cpu") == torch.device("cpu")
