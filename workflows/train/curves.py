"""The loss curve every training script redraws at its checkpoints."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: training runs headless
import matplotlib.pyplot as plt
import numpy as np


def plot_curve(losses: list[float], evaluations: list[tuple[int, float]], path: Path, title: str) -> None:
    """Per-step loss (faint) with its 100-step running mean, and a held-out measure on a second
    axis when there is one (``evaluations`` as (step, value))."""
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, color="tab:blue", alpha=0.25, linewidth=0.5)
    if len(losses) >= 100:
        smooth = np.convolve(losses, np.ones(100) / 100, mode="valid")
        ax.plot(steps[99:], smooth, color="tab:blue", label="loss (100-step mean)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    if evaluations:
        right = ax.twinx()
        at, values = zip(*evaluations, strict=True)
        right.plot(at, values, "o-", color="tab:orange", label="validation")
        right.set_ylabel("validation")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
