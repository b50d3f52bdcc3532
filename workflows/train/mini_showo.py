"""Train the miniature world's Show-o: the project's own Show-o classes at a tiny size, taught
text-to-image on the world's training split with the MaskGIT objective.

    python -m workflows.train.mini_showo [--steps 8000] [--out runs/mini_showo] [--resume]
        [--export actors/mini/checkpoints/showo]

Each step draws a batch of training prompts with fresh scenes, encodes the renders with the
world's codebook, masks a share of the 64 codes drawn from the cosine schedule, drops 10% of the
prompts to the empty prompt (the row the generator uses for guidance, so guidance works), and
takes cross-entropy on the masked slots over the code range. Inputs go through the same
``prompt_blocks`` / ``code_logits`` as sampling. Token embeddings start at std 0.02 like the
rest: at std 1 they drown the attention's signal and the model learns only the background.

The run checkpoints to ``--out`` every ``--checkpoint-every`` steps (model, optimiser, schedule
and both random streams, so a killed run resumed with ``--resume`` continues the same batches),
redraws the loss curve there, and finally exports the published Show-o layout in fp16 to
``--export`` with the MAGVIT-v2 decoder from ``--vq``, plus ``training.json`` and ``loss.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import PhiConfig, PreTrainedTokenizerBase

from actors.interfaces import UNKNOWN
from actors.mini.codebook import CODE_BITS, SIDE, Codebook
from actors.mini.packaged import CODEBOOK, SHOWO
from actors.mini.world import VOCABULARY, TrainStream, examples
from actors.showo.config import MagvitConfig, ShowoConfig
from actors.showo.magvit import Magvit2
from actors.showo.maskgit import cosine_mask_ratio
from actors.showo.model import ShowoTransformer
from actors.showo.prompting import TokenIds, prompt_blocks
from actors.showo.tiny import showo_config, word_tokenizer, write_showo_checkpoint
from actors.showo.weights import load_strict
from workflows.train.curves import plot_curve
from workflows.train.state import load_state, save_state

TEXT_VOCAB = 32
"""Text ids: the world's words plus <|endoftext|> and <unk>, rounded up."""
MAX_TEXT_LEN = 12
"""Longest prompt ("a photo of a red circle and a blue square") + bos + eos. Phi's rotary
positions are relative and padding is never attended, so sampling with a longer text block
gives the same logits."""
EMBED_STD = 0.02
NUM_TOKENS = SIDE * SIDE


@dataclass
class Setup:
    config: ShowoConfig
    phi: PhiConfig
    tokenizer: PreTrainedTokenizerBase
    ids: TokenIds
    model: ShowoTransformer
    optimizer: torch.optim.AdamW
    schedule: torch.optim.lr_scheduler.LambdaLR
    stream: TrainStream
    rng: np.random.Generator
    codebook: Codebook
    step: int = 0
    seconds: float = 0.0
    losses: list[float] | None = None
    accuracies: list[tuple[int, float]] | None = None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8000, help="total optimiser steps")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=400, help="linear warm-up steps, then cosine decay")
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--prompt-dropout", type=float, default=0.1, help="share of empty prompts")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--out", type=Path, default=Path("runs/mini_showo"), help="checkpoints and curves")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/state.pt")
    parser.add_argument("--codebook", type=Path, default=CODEBOOK)
    parser.add_argument("--vq", type=Path, default=SHOWO / "vq", help="trained MAGVIT-v2 to bundle")
    parser.add_argument("--export", type=Path, default=None, help="checkpoint folder (default <out>/export)")
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> Setup:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    phi = PhiConfig(
        vocab_size=TEXT_VOCAB,
        hidden_size=args.hidden,
        intermediate_size=4 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        max_position_embeddings=512,
        hidden_act="gelu",  # one fused kernel where gelu_new's tanh formula costs six on a CPU
    )
    config = showo_config(TEXT_VOCAB, CODE_BITS, NUM_TOKENS)
    tokenizer = word_tokenizer(VOCABULARY)
    model = ShowoTransformer(config, phi)
    torch.nn.init.normal_(model.showo.model.embed_tokens.weight, std=EMBED_STD)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.98),
    )

    def lr_factor(step: int) -> float:
        if step < args.warmup:
            return (step + 1) / args.warmup
        progress = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
        return 0.5 * (1 + math.cos(math.pi * progress))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    ids = TokenIds.for_config(config, tokenizer.bos_token_id, tokenizer.eos_token_id)
    setup = Setup(
        config=config,
        phi=phi,
        tokenizer=tokenizer,
        ids=ids,
        model=model,
        optimizer=optimizer,
        schedule=schedule,
        stream=TrainStream(args.seed),
        rng=np.random.default_rng([args.seed, 1]),
        codebook=Codebook.load(args.codebook),
        losses=[],
        accuracies=[],
    )
    if args.resume and (args.out / "state.pt").is_file():
        restore(setup, args.out / "state.pt")
    return setup


def masked_batch(codes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Tokens with a cosine-scheduled share of slots set to UNKNOWN, and which slots those are."""
    b, n = codes.shape
    ratios = np.array([cosine_mask_ratio(float(r)) for r in rng.random(b)])
    counts = np.clip(np.round(n * ratios), 1, n)
    ranks = rng.random((b, n)).argsort(1).argsort(1)
    masked = ranks < counts[:, None]
    return np.where(masked, UNKNOWN, codes), masked


def masked_logits(setup: Setup, prompts: list[str], tokens: np.ndarray) -> torch.Tensor:
    blocks, pads = prompt_blocks(
        setup.tokenizer, prompts, setup.ids, setup.config.llm_vocab_size, MAX_TEXT_LEN
    )
    return setup.model.code_logits(blocks, pads, torch.from_numpy(tokens), setup.ids)


def train_step(setup: Setup, batch: int, prompt_dropout: float) -> float:
    metas, images = setup.stream.batch(batch)
    codes = setup.codebook.encode(images)
    tokens, masked = masked_batch(codes, setup.rng)
    dropped = setup.rng.random(batch) < prompt_dropout
    prompts = ["" if drop else m.prompt for m, drop in zip(metas, dropped, strict=True)]
    logits = masked_logits(setup, prompts, tokens)
    where = torch.from_numpy(masked)
    loss = F.cross_entropy(logits[where], torch.from_numpy(codes)[where])
    setup.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(setup.model.parameters(), 1.0)
    setup.optimizer.step()
    setup.schedule.step()
    return loss.item()


@torch.no_grad()
def validation_accuracy(setup: Setup) -> float:
    """Argmax accuracy on the masked slots of fixed validation scenes under fixed masks."""
    setup.model.eval()
    held = examples("validation", per_tag=32)
    codes = setup.codebook.encode(np.stack([e.image for e in held]))
    tokens, masked = masked_batch(codes, np.random.default_rng(0))
    logits = masked_logits(setup, [e.metadata.prompt for e in held], tokens)
    setup.model.train()
    right = (logits.argmax(-1).numpy() == codes) & masked
    return float(right.sum() / masked.sum())


def restore(setup: Setup, path: Path) -> None:
    state = load_state(path)
    setup.model.load_state_dict(state["model"])
    setup.optimizer.load_state_dict(state["optimizer"])
    setup.schedule.load_state_dict(state["schedule"])
    setup.stream.rng.bit_generator.state = state["stream_rng"]
    setup.rng.bit_generator.state = state["rng"]
    setup.step, setup.seconds = state["step"], state["seconds"]
    setup.losses, setup.accuracies = state["losses"], [tuple(a) for a in state["accuracies"]]


def checkpoint(setup: Setup, out: Path) -> None:
    setup.accuracies.append((setup.step, validation_accuracy(setup)))
    save_state(
        out / "state.pt",
        {
            "model": setup.model.state_dict(),
            "optimizer": setup.optimizer.state_dict(),
            "schedule": setup.schedule.state_dict(),
            "stream_rng": setup.stream.rng.bit_generator.state,
            "rng": setup.rng.bit_generator.state,
            "step": setup.step,
            "seconds": setup.seconds,
            "losses": setup.losses,
            "accuracies": setup.accuracies,
        },
    )
    plot_curve(setup.losses, setup.accuracies, out / "loss.png", "mini Show-o: masked-token loss")


def summary(setup: Setup, args: argparse.Namespace) -> dict[str, Any]:
    tail = setup.losses[-100:]
    return {
        "steps": setup.step,
        "batch": args.batch,
        "minutes": round(setup.seconds / 60, 1),
        "steps_per_second": round(setup.step / max(setup.seconds, 1e-9), 2),
        "final_loss": round(float(np.mean(tail)), 4) if tail else None,
        "validation_token_accuracy": round(setup.accuracies[-1][1], 4) if setup.accuracies else None,
        "parameters": sum(p.numel() for p in setup.model.parameters()),
        "seed": args.seed,
        "size": {"hidden": args.hidden, "layers": args.layers, "heads": args.heads},
    }


def export(setup: Setup, args: argparse.Namespace, folder: Path) -> None:
    magvit = MagvitConfig.from_file(args.vq / "config.json")
    vq = Magvit2(magvit)
    load_strict(vq, args.vq, trust_pickle=False)
    write_showo_checkpoint(
        folder, setup.config, setup.phi, magvit, setup.tokenizer, torch.float16, model=setup.model, vq=vq
    )
    (folder / "training.json").write_text(json.dumps(summary(setup, args), indent=2) + "\n")
    shutil.copyfile(args.out / "loss.png", folder / "loss.png")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    setup = build(args)
    setup.model.train()
    bar = tqdm(range(setup.step, args.steps), initial=setup.step, total=args.steps, desc="mini Show-o")
    started = time.monotonic()
    for _ in bar:
        setup.losses.append(train_step(setup, args.batch, args.prompt_dropout))
        setup.step += 1
        bar.set_postfix(
            loss=f"{np.mean(setup.losses[-50:]):.3f}", lr=f"{setup.schedule.get_last_lr()[0]:.1e}"
        )
        if setup.step % args.checkpoint_every == 0 or setup.step == args.steps:
            setup.seconds += time.monotonic() - started
            checkpoint(setup, args.out)
            started = time.monotonic()
    if not setup.accuracies:
        checkpoint(setup, args.out)
    export(setup, args, args.export or args.out / "export")


if __name__ == "__main__":
    main()
