"""Checkpoint rules shared by every model: where weights come from, which formats are
trusted, and which device and dtype a replica uses.

- ``tiny:<name>`` builds a small random-weight model of that name once (seeded, so every
  process gets the same weights), saves it with ``save_pretrained`` into the cache, and
  returns that directory: tests and the smoke recipe then load it through exactly the
  code path a real checkpoint takes. The cache folder is keyed by a hash of the builder's
  source file, so a changed builder never serves a stale checkpoint.
- ``mini:<name>`` is a trained checkpoint of the miniature world shipped inside the package
  (``actors/mini/checkpoints/<name>``), loaded like any local directory.
- Anything else is a local directory or a hub id, handed to ``from_pretrained``.
- Weights load from safetensors; a checkpoint that only has pickled weights is refused
  unless the spec sets ``trust_pickle`` (pickle runs arbitrary code on load).
- No loader passes ``trust_remote_code``: a checkpoint whose model needs code from its repository
  is refused by transformers rather than run (``tests/test_reliability_input.py`` checks every call).
- ``check_checkpoint`` is what can be known without loading, so a driver checks it before any
  replica starts; torch is imported only by the functions that need it, so the driver can.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

TINY_BUILDERS: dict[str, str] = {
    "showo": "actors.showo.tiny:build_tiny_showo",
    "janus": "actors.janus.tiny:build_tiny_janus",
    "llava": "actors.judges.tiny:build_tiny_llava",
    "clip": "actors.judges.tiny:build_tiny_clip",
}
TINY_PREFIX = "tiny:"
MINI_PREFIX = "mini:"
_DONE_MARKER = ".parmflow-complete"


def cache_dir() -> Path:
    return Path(os.environ.get("PARMFLOW_CACHE", Path.home() / ".cache" / "parmflow"))


def packaged_mini(checkpoint: str) -> str:
    """The folder of a ``mini:<name>`` checkpoint; an unknown name fails listing the known ones."""
    from actors.mini.packaged import CHECKPOINTS

    known = sorted(p.name for p in CHECKPOINTS.iterdir() if (p / "config.json").is_file())
    name = checkpoint[len(MINI_PREFIX) :]
    if name not in known:
        raise ValueError(f"unknown mini checkpoint {checkpoint!r}; known: {known}")
    return str(CHECKPOINTS / name)


def resolve_checkpoint(checkpoint: str) -> str:
    """Return a directory or hub id that ``from_pretrained`` can load."""
    if checkpoint.startswith(MINI_PREFIX):
        return packaged_mini(checkpoint)
    if not checkpoint.startswith(TINY_PREFIX):
        return os.path.expanduser(checkpoint) if checkpoint.startswith(("~", "/", ".")) else checkpoint
    name = _tiny_name(checkpoint)
    module, _, attr = TINY_BUILDERS[name].partition(":")
    builder_module = importlib.import_module(module)
    build: Callable[[Path], None] = getattr(builder_module, attr)
    version = hashlib.sha256(inspect.getsource(builder_module).encode()).hexdigest()[:12]
    target = cache_dir() / "tiny" / f"{name}-{version}"
    if (target / _DONE_MARKER).exists():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    build(staging)
    (staging / _DONE_MARKER).touch()
    try:  # several replicas may race to build the same tiny model: first one wins
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / _DONE_MARKER).exists():
            raise
    return str(target)


def _tiny_name(checkpoint: str) -> str:
    name = checkpoint[len(TINY_PREFIX) :]
    if name not in TINY_BUILDERS:
        raise ValueError(f"unknown tiny checkpoint {checkpoint!r}; known: {sorted(TINY_BUILDERS)}")
    return name


def is_local_path(checkpoint: str) -> bool:
    """A path rather than a hub id: one that exists, starts like a path, or has more parts than a
    hub id's ``owner/name``."""
    return checkpoint.startswith(("~", "/", ".")) or checkpoint.count("/") > 1 or os.path.exists(checkpoint)


def check_checkpoint(checkpoint: str, trust_pickle: bool) -> None:
    """What can be known of a checkpoint without loading it: a ``tiny:`` or ``mini:`` name must be
    known, and a local path must exist and hold weights this run may load. A hub id is checked
    when it loads."""
    if checkpoint.startswith(MINI_PREFIX):
        packaged_mini(checkpoint)
        return
    if checkpoint.startswith(TINY_PREFIX):
        _tiny_name(checkpoint)
        return
    if not is_local_path(checkpoint):
        return
    path = os.path.expanduser(checkpoint)
    if not os.path.isdir(path):
        raise ValueError(f"{checkpoint}: no such checkpoint directory")
    check_weights_format(path, trust_pickle)


def check_weights_format(path: str, trust_pickle: bool) -> None:
    """Refuse a local checkpoint without safetensors unless pickled weights are allowed."""
    root = Path(path)
    if not root.is_dir():
        return  # a hub id: from_pretrained is called with use_safetensors accordingly
    if any(root.rglob("*.safetensors")):
        return
    pickled = [p.name for p in root.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".ckpt"}]
    if pickled and not trust_pickle:
        raise ValueError(
            f"{path}: only pickled weights found ({', '.join(sorted(pickled)[:3])}); "
            "loading them can run arbitrary code. Convert them to safetensors or set trust_pickle: true."
        )
    if not pickled:
        raise ValueError(f"{path}: no weights found (expected *.safetensors)")


def pick_device(device: str) -> torch.device:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """bf16 on GPU, fp32 on CPU unless the spec says otherwise."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, dtype)
