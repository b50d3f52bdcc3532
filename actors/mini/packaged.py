"""Where the miniature world's trained files live inside the installed package: the codebook
and the Show-o checkpoint (with its MAGVIT-v2 under ``vq/``) that ``mini:showo`` names."""

from __future__ import annotations

from pathlib import Path

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
CODEBOOK = CHECKPOINTS / "codebook.safetensors"
SHOWO = CHECKPOINTS / "showo"
