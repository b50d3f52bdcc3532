"""The trained mini Show-o on the miniature world's held-out split, scored by the exact scorer.

    python bench/mini_world.py [--split test] [--per-tag 50] [--guidance 3] [--temperature 1]
    python bench/mini_world.py --tune            # sampling options on the validation split

Prints one markdown table: per GenEval tag and overall (the mean of the six tag scores, as
GenEval reports it) for the scorer on ground-truth renders and on their reconstructions
(codebook codes -> MAGVIT-v2 decoder), one sample with and without guidance, and best-of-4/8/16
picked by the exact scorer (an upper bound for any judge). Candidates are sampled in-process
through the generator class the workflows load (``mini:showo``, fp16 weights read into fp32).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from actors.mini.codebook import Codebook
from actors.mini.packaged import CODEBOOK
from actors.mini.sampling import best_of, correctness, sample_images
from actors.mini.world import examples, is_held_out
from actors.registry import build_generator
from actors.scorers.mini import score
from actors.showo.generator import ShowoGenerator
from schemas.config import GeneratorSpec
from schemas.geneval import TAGS

MAX_TEXT_LEN = 12  # the longest prompt; a longer block gives the same logits, only slower


def generator(steps: int, guidance: float, temperature: float) -> ShowoGenerator:
    options = {
        "num_steps": steps,
        "guidance_scale": guidance,
        "temperature": temperature,
        "max_text_len": MAX_TEXT_LEN,
    }
    gen = build_generator(GeneratorSpec(kind="showo", checkpoint="mini:showo", options=options))
    assert isinstance(gen, ShowoGenerator)
    return gen


def tag_scores(correct: np.ndarray, tags: list[str]) -> list[float]:
    """Per tag in GenEval's order, then overall as the mean of the six."""
    per_tag = [float(correct[[t == tag for t in tags]].mean()) for tag in TAGS]
    return [*per_tag, float(np.mean(per_tag))]


def row(name: str, nfe: str, values: list[float]) -> str:
    return f"| {name} | {nfe} | " + " | ".join(f"{v:.2f}" for v in values) + " |"


def held_out_row(name: str, correct: np.ndarray, held: np.ndarray, tags: list[str]) -> str:
    cells = []
    for tag in TAGS:
        pick = held & np.array([t == tag for t in tags])
        cells.append(f"{correct[pick].mean():.2f}" if pick.any() else "-")
    return f"| {name} | | " + " | ".join(cells) + " | |"


def tune(args: argparse.Namespace) -> None:
    """Expected one-sample score (mean over ``--samples`` candidates) on the validation split."""
    held = examples("validation", args.per_tag)
    prompts, metas = [e.metadata.prompt for e in held], [e.metadata for e in held]
    tags = [m.tag for m in metas]
    print(f"validation, {len(held)} prompts x {args.samples} samples, {args.steps} steps")
    print("| guidance | temperature | " + " | ".join(TAGS) + " | overall |")
    print("| --- | --- | " + " | ".join("---" for _ in TAGS) + " | --- |")
    for g in args.guidance_grid:
        for t in args.temperature_grid:
            correct = correctness(
                sample_images(generator(args.steps, g, t), prompts, args.samples, args.seed), metas
            )
            values = tag_scores(correct.mean(axis=1), tags)
            print(f"| {g} | {t} | " + " | ".join(f"{v:.2f}" for v in values) + " |", flush=True)


def measure(args: argparse.Namespace) -> None:
    held = examples(args.split, args.per_tag)
    prompts, metas = [e.metadata.prompt for e in held], [e.metadata for e in held]
    tags = [m.tag for m in metas]
    unseen = np.array([is_held_out(m) for m in metas])
    started = time.perf_counter()
    guided = generator(args.steps, args.guidance, args.temperature)
    correct = correctness(sample_images(guided, prompts, args.samples, args.seed), metas)
    unguided = correctness(
        sample_images(generator(args.steps, 0.0, args.temperature), prompts, 1, args.seed), metas
    )
    truth = np.stack([e.image for e in held])
    recon = guided.decode(Codebook.load(CODEBOOK).encode(truth))
    on_truth = np.array([score(image, m).correct for image, m in zip(truth, metas, strict=True)])
    on_recon = np.array([score(image, m).correct for image, m in zip(recon, metas, strict=True)])
    minutes = (time.perf_counter() - started) / 60

    s = args.steps
    print(
        f"{args.split} split: {len(held)} prompts ({args.per_tag} per tag, {int(unseen.sum())} with "
        f"combinations never seen in training); {s} steps, guidance {args.guidance}, "
        f"temperature {args.temperature}; {minutes:.1f} min"
    )
    print("| strategy | generator NFE per prompt | " + " | ".join(TAGS) + " | overall |")
    print("| --- | --- | " + " | ".join("---" for _ in TAGS) + " | --- |")
    print(row("scorer on ground-truth renders", "-", tag_scores(on_truth, tags)))
    print(row("scorer on reconstructions", "-", tag_scores(on_recon, tags)))
    print(row("one sample, guidance 0", str(s), tag_scores(unguided[:, 0], tags)))
    print(row(f"one sample, guidance {args.guidance}", str(s), tag_scores(correct[:, 0], tags)))
    for n in (4, 8, 16):
        if n <= args.samples:
            print(row(f"scorer best-of-{n}", str(n * s), tag_scores(best_of(correct, n), tags)))
    print(held_out_row("one sample, unseen combinations only", correct[:, 0], unseen, tags))
    print(
        held_out_row(
            f"best-of-{args.samples}, unseen combinations only", best_of(correct, args.samples), unseen, tags
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("validation", "test"), default="test")
    parser.add_argument("--per-tag", type=int, default=50)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--guidance", type=float, default=3.0, help="tuned on validation")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tune", action="store_true", help="grid over guidance and temperature on validation"
    )
    parser.add_argument("--guidance-grid", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0, 5.0])
    parser.add_argument("--temperature-grid", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    args = parser.parse_args()
    if args.tune:
        tune(args)
    else:
        measure(args)


if __name__ == "__main__":
    main()
