"""Fit the miniature world's image tokenizer: a k-means codebook over 4x4 patches of renders (the
encoder) and the project's MAGVIT-v2 decoder at a tiny width, trained to turn codes back into
the renders.

    python -m workflows.train.mini_tokenizer [--steps 2000] [--out runs/mini_tokenizer] [--resume]
        [--export actors/mini/checkpoints]

The codebook is fitted first (seconds) and saved to ``<out>/codebook.safetensors``; a resumed
run keeps it, so codes never change under a partly trained decoder. The decoder then learns
codes -> pixels with a mean squared error against the renders themselves (not the centroids),
so it may place edges better than the codebook's averages. MAGVIT-v2's encoder is built (the
published layout has one) but never trained: this world encodes with the codebook, and the
encoder weights in the export are unused.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from actors.mini.codebook import CODE_BITS, SIDE, Codebook, fit_codebook
from actors.mini.world import IMAGE_SIZE, TrainStream
from actors.showo.config import MagvitConfig
from actors.showo.magvit import Magvit2
from actors.showo.tiny import write_magvit
from workflows.train.curves import plot_curve
from workflows.train.state import load_state, save_state

CODEBOOK_IMAGES = 5000


def mini_magvit() -> MagvitConfig:
    """32 px from an 8x8 grid (three levels); 32 channels is GroupNorm's smallest width."""
    return MagvitConfig(
        ch=32,
        encoder_ch_mult=(1, 1, 2),
        encoder_num_res_blocks=(1, 1, 1),
        decoder_ch_mult=(1, 1, 2),
        decoder_num_res_blocks=(1, 1, 1),
        attn_resolutions=(),
        resolution=IMAGE_SIZE,
        z_channels=CODE_BITS,
    )


@dataclass
class Setup:
    codebook: Codebook
    vq: Magvit2
    optimizer: torch.optim.Adam
    schedule: torch.optim.lr_scheduler.LambdaLR
    stream: TrainStream
    step: int
    seconds: float
    losses: list[float]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000, help="decoder steps (0: codebook only)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--out", type=Path, default=Path("runs/mini_tokenizer"))
    parser.add_argument("--resume", action="store_true", help="continue from <out>/state.pt")
    parser.add_argument(
        "--export",
        type=Path,
        default=None,
        help="folder for codebook.safetensors and showo/vq (default <out>)",
    )
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> Setup:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    codebook_path = args.out / "codebook.safetensors"
    if args.resume and codebook_path.is_file():
        codebook = Codebook.load(codebook_path)
    else:
        _, images = TrainStream(args.seed + 1000).batch(CODEBOOK_IMAGES)
        codebook = fit_codebook(images, seed=args.seed)
        codebook.save(codebook_path)
    vq = Magvit2(mini_magvit())
    optimizer = torch.optim.Adam(vq.decoder.parameters(), lr=args.lr)

    def lr_factor(step: int) -> float:
        return 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, args.steps))))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    setup = Setup(codebook, vq, optimizer, schedule, TrainStream(args.seed), 0, 0.0, [])
    if args.resume and (args.out / "state.pt").is_file():
        state = load_state(args.out / "state.pt")
        vq.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        setup.stream.rng.bit_generator.state = state["stream_rng"]
        setup.step, setup.seconds, setup.losses = state["step"], state["seconds"], state["losses"]
    return setup


def train_step(setup: Setup, batch: int) -> float:
    _, images = setup.stream.batch(batch)
    codes = torch.from_numpy(setup.codebook.encode(images))
    target = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    loss = F.mse_loss(setup.vq.decode_codes(codes, SIDE), target)
    setup.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    setup.optimizer.step()
    setup.schedule.step()
    return float(loss)


def checkpoint(setup: Setup, out: Path) -> None:
    save_state(
        out / "state.pt",
        {
            "model": setup.vq.state_dict(),
            "optimizer": setup.optimizer.state_dict(),
            "schedule": setup.schedule.state_dict(),
            "stream_rng": setup.stream.rng.bit_generator.state,
            "step": setup.step,
            "seconds": setup.seconds,
            "losses": setup.losses,
        },
    )
    plot_curve(setup.losses, [], out / "loss.png", "mini MAGVIT-v2 decoder: reconstruction MSE")


def export(setup: Setup, folder: Path) -> None:
    """The codebook and MAGVIT-v2 (fp16) in the layout a Show-o checkpoint bundles under ``vq/``."""
    setup.codebook.save(folder / "codebook.safetensors")
    write_magvit(folder / "showo" / "vq", setup.vq, torch.float16)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    setup = build(args)
    bar = tqdm(range(setup.step, args.steps), initial=setup.step, total=args.steps, desc="mini MAGVIT-v2")
    started = time.monotonic()
    for _ in bar:
        setup.losses.append(train_step(setup, args.batch))
        setup.step += 1
        bar.set_postfix(mse=f"{np.mean(setup.losses[-50:]):.4f}")
        if setup.step % args.checkpoint_every == 0 or setup.step == args.steps:
            setup.seconds += time.monotonic() - started
            checkpoint(setup, args.out)
            started = time.monotonic()
    export(setup, args.export or args.out)


if __name__ == "__main__":
    main()
