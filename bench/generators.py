"""How much does batching buy a stepwise generator? Per-step latency and paths/s against batch size.

Works for any registered generator kind: the generator is built through
``actors.registry.build_generator`` from a ``GeneratorSpec``, exactly as a replica builds it.
For each batch size ``b`` it starts ``b`` paths (prompts cycling over a few texts, distinct
seeds), warms up with one step, then times ``--steps`` single-step ``advance`` calls and one
call with previews. Columns: milliseconds per step, path-steps/s, full paths/s (one path =
``num_steps`` steps, extrapolated from the step time), and the path-steps/s ratio to the first
batch size, all measured in the same run.

``--size tiny`` (default) loads ``tiny:<kind>`` on the CPU: the numbers show per-call overhead
that batching amortises, not model speed. ``--size realistic`` writes a random-weight checkpoint
with the published shapes (see ``REALISTIC_BUILDERS``) and loads it in bf16 on a GPU; no weights
are downloaded.

    python bench/generators.py --kind showo
    python bench/generators.py --kind showo --size realistic --batches 1 4 16 64
"""

from __future__ import annotations

import argparse
import importlib
import json
import tempfile
import time
from pathlib import Path

import torch

from actors.interfaces import Generator, PathSpec
from actors.registry import build_generator
from schemas.config import GeneratorSpec

REALISTIC_BUILDERS: dict[str, str] = {
    "showo": "actors.showo.tiny:build_realistic_showo",
    "janus": "actors.janus.tiny:build_realistic_janus",
}
"""kind -> ``builder(path: Path, device: str)`` writing a real-size random-weight checkpoint."""

PROMPTS = ("a photo of a red cat", "two dogs on a bench", "a blue car left of a clock", "one banana")


def realistic_checkpoint(kind: str, workdir: Path, device: str) -> str:
    if kind not in REALISTIC_BUILDERS:
        raise SystemExit(f"no realistic builder for kind {kind!r}; known: {sorted(REALISTIC_BUILDERS)}")
    module, _, attr = REALISTIC_BUILDERS[kind].partition(":")
    target = workdir / f"realistic-{kind}"
    getattr(importlib.import_module(module), attr)(target, device)
    return str(target)


def path_specs(batch: int) -> list[PathSpec]:
    return [PathSpec(f"p{i % len(PROMPTS)}", PROMPTS[i % len(PROMPTS)], i, i) for i in range(batch)]


def seconds_per_step(generator: Generator, batch: int, steps: int) -> tuple[float, float]:
    """(plain step, step with previews) in seconds, each the median over its calls."""
    states = generator.advance(generator.start(path_specs(batch)), 1).states  # warm-up
    plain = []
    for _ in range(steps):
        start = time.perf_counter()
        states = generator.advance(states, 1).states
        plain.append(time.perf_counter() - start)
    start = time.perf_counter()
    generator.advance(states, 1, previews=True)
    with_previews = time.perf_counter() - start
    return sorted(plain)[len(plain) // 2], with_previews


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", default="showo")
    parser.add_argument("--checkpoint", default=None, help="default: tiny:<kind> (or a realistic build)")
    parser.add_argument("--size", choices=["tiny", "realistic"], default="tiny")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--steps", type=int, default=3, help="timed single steps per batch size")
    parser.add_argument("--options", default="{}", help="JSON generator options, e.g. '{\"num_steps\": 18}'")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    options = json.loads(args.options)
    with tempfile.TemporaryDirectory(prefix="bench-generators-") as workdir:
        checkpoint = args.checkpoint or f"tiny:{args.kind}"
        if args.size == "realistic" and args.checkpoint is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
            checkpoint = realistic_checkpoint(args.kind, Path(workdir), device)
        spec = GeneratorSpec(kind=args.kind, checkpoint=checkpoint, device=args.device, options=options)
        generator = build_generator(spec)
        if generator.num_steps < args.steps + 2:
            raise SystemExit(f"--steps {args.steps} leaves no room in a {generator.num_steps}-step schedule")
        print(
            f"kind={args.kind} size={args.size} checkpoint={checkpoint} device="
            f"{'cuda' if torch.cuda.is_available() and args.device != 'cpu' else 'cpu'} "
            f"steps/path={generator.num_steps} tokens={generator.num_tokens} image={generator.image_size}px "
            f"torch threads={torch.get_num_threads()}"
        )
        print("batch  ms/step  ms/step+previews  path-steps/s  paths/s  path-steps/s vs first")
        base = None
        for batch in args.batches:
            step, with_previews = seconds_per_step(generator, batch, args.steps)
            rate = batch / step
            base = base or rate
            print(
                f"{batch:5d}  {step * 1e3:7.1f}  {with_previews * 1e3:16.1f}  {rate:12.1f}  "
                f"{rate / generator.num_steps:7.2f}  {rate / base:6.2f}x"
            )


if __name__ == "__main__":
    main()
