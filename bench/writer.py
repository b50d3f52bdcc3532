"""Does writing stall generation? And what does the PNG compression level cost?

Part 1 encodes a 256 px image (smooth gradients, then the same with sensor-like noise: two
stand-ins for a generated image) at zlib levels 1 and 6 and prints time and size ratios.

Part 2 runs a stand-in generation loop: each prompt "generates" for ``--gen-ms`` (a sleep,
which releases the GIL as a GPU wait does), then its rows go to the shard writer. It runs
twice on the same rows: commits in the writer's background thread (``add`` only), and
commits inline (``flush`` after every ``add``, as a writer without a thread would). It prints
the time the loop spent inside the writer and the loop's wall time, side by side, on a local
directory and on a local S3 server (moto).

    python bench/writer.py
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from collections.abc import Callable

import numpy as np

import workflows.output.rows as rows_module
from schemas.prompts import PromptRecord
from workflows.output.rows import PromptRows, png_struct, prompt_rows
from workflows.output.writer import ShardWriter
from workflows.search.types import Candidate, Cost, SearchResult, SearchTask, TraceRow


def textured_image(seed: int, size: int = 256, noise: float = 6.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    channels = [np.sin(6 * x + c) * np.cos(4 * y - c) * 100 + 128 for c in range(3)]
    image = np.stack(channels, axis=-1) + rng.normal(0, noise, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def encode_levels(repeats: int) -> None:
    for noise in (0.0, 6.0):
        image = textured_image(0, noise=noise)
        results = {}
        for level in (1, 6):
            rows_module.PNG_COMPRESS_LEVEL = level
            start = time.perf_counter()
            for _ in range(repeats):
                struct, _, _ = png_struct(image, "bench")
            results[level] = ((time.perf_counter() - start) / repeats, len(struct["bytes"]))
        (t1, b1), (t6, b6) = results[1], results[6]
        print(
            f"PNG 256px, noise sd {noise}: level 1 {t1 * 1e3:.2f} ms {b1} B"
            f" | level 6 {t6 * 1e3:.2f} ms {b6} B"
            f" | level 6 / level 1: time x{t6 / t1:.2f}, size x{b6 / b1:.2f}"
        )
    rows_module.PNG_COMPRESS_LEVEL = 1


def prompt_rows_for(index: int, samples: int) -> PromptRows:
    record = PromptRecord(f"p{index}", f"prompt {index}")
    result = SearchResult(
        [Candidate(c, index, textured_image(index * 100 + c), np.arange(256)) for c in range(samples)],
        [TraceRow(c, s, "clarity", 0.5, True) for c in range(samples) for s in range(18)],
        Cost(nfe=18 * samples),
    )
    task = SearchTask(record.prompt_id, record.prompt, 0, index)
    return prompt_rows("bench", record, [(task, result)], strategy="best_of_n", generator="g", judge="j")


def generation_loop(
    writer: ShardWriter, prompts: list[PromptRows], gen_s: float, inline: bool
) -> tuple[float, float]:
    """(seconds spent inside the writer, wall seconds of the whole loop). Inline flushes exactly
    where the writer rotates, so both variants commit the same shards."""
    per_shard = max(1, writer.shard_rows // len(prompts[0].samples))
    in_writer = 0.0
    start = time.perf_counter()
    for index, rows in enumerate(prompts):
        time.sleep(gen_s)
        before = time.perf_counter()
        writer.add(rows)
        if inline and (index + 1) % per_shard == 0:
            writer.flush()
        in_writer += time.perf_counter() - before
    before = time.perf_counter()
    writer.close()
    in_writer += time.perf_counter() - before
    return in_writer, time.perf_counter() - start


def compare(
    where: str, make_writer: Callable[[str], ShardWriter], prompts: list[PromptRows], gen_s: float
) -> None:
    generation_loop(make_writer("warm-up"), prompts[:4], 0.0, inline=False)  # first-use costs
    background = generation_loop(make_writer("background"), prompts, gen_s, inline=False)
    inline = generation_loop(make_writer("inline"), prompts, gen_s, inline=True)
    print(
        f"{where}: in writer background {background[0]:.3f} s vs inline {inline[0]:.3f} s "
        f"(x{inline[0] / background[0]:.1f}); loop wall {background[1]:.2f} s vs {inline[1]:.2f} s "
        f"(x{inline[1] / background[1]:.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--samples", type=int, default=4, help="images per prompt")
    parser.add_argument("--gen-ms", type=float, default=20.0)
    parser.add_argument("--shard-rows", type=int, default=8)
    args = parser.parse_args()
    encode_levels(repeats=20)
    prompts = [prompt_rows_for(i, args.samples) for i in range(args.prompts)]
    print(f"{args.prompts} prompts x {args.samples} images of 256 px, {args.gen_ms} ms generation each (CPU)")
    gen_s = args.gen_ms / 1000
    with tempfile.TemporaryDirectory() as tmp:
        compare("local", lambda run: ShardWriter(tmp, run, shard_rows=args.shard_rows), prompts, gen_s)

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
    )
    import boto3

    boto3.client("s3").create_bucket(Bucket="bench")
    try:
        compare(
            "s3 (moto)",
            lambda run: ShardWriter("s3://bench/out", run, shard_rows=args.shard_rows),
            prompts,
            gen_s,
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
