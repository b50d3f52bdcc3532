"""Reading a Show-o or MAGVIT-v2 weights directory into a module, strictly.

Only the directory's own top-level weight files count (a bundled ``vq/`` subdirectory holds
another model's weights). Safetensors are preferred; pickled ``*.bin`` files are read only when
the spec trusts pickle, and then with ``weights_only`` so they cannot run code.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

WEIGHT_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model"]


def local_dir(name: str, trust_pickle: bool) -> str:
    """A local directory for ``name``: itself if it is one, else a hub snapshot (config and weights)."""
    if Path(name).is_dir():
        return name
    from huggingface_hub import snapshot_download

    patterns = WEIGHT_PATTERNS + (["*.bin"] if trust_pickle else [])
    try:
        return snapshot_download(repo_id=name, allow_patterns=patterns)
    except Exception as err:  # the hub client raises many types; all mean "not reachable here"
        raise ValueError(f"{name}: not a local directory and not fetchable from the hub ({err})") from err


def read_state_dict(directory: Path, trust_pickle: bool) -> dict[str, torch.Tensor]:
    safetensors = sorted(directory.glob("*.safetensors"))
    if safetensors:
        state: dict[str, torch.Tensor] = {}
        for file in safetensors:
            state.update(load_file(file))
        return state
    pickled = sorted(directory.glob("*.bin"))
    if pickled and trust_pickle:
        state = {}
        for file in pickled:
            state.update(torch.load(file, map_location="cpu", weights_only=True))
        return state
    if pickled:
        raise ValueError(f"{directory}: only pickled weights ({pickled[0].name}); set trust_pickle: true")
    raise ValueError(f"{directory}: no weights (expected *.safetensors)")


def load_strict(module: nn.Module, directory: Path, trust_pickle: bool) -> None:
    """Load every parameter and persistent buffer; a missing or extra key is an error naming it."""
    state = read_state_dict(directory, trust_pickle)
    expected = set(module.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{directory}: weights do not match {type(module).__name__}: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    module.load_state_dict(state, strict=True)
