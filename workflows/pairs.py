"""DPO pairs from a labelled run: per prompt, each "yes" image against each "no" image.

    python workflows/pairs.py --run URI/RUN_ID [--output URI/RUN_ID] [--threshold 0.5]
        [--min-margin 0.0] [--max-pairs-per-prompt K] [--score outcome]

A completed candidate (not pruned, scored) is "yes" when its score is at least the threshold.
A prompt whose candidates all got one label teaches nothing by contrast and is dropped. Rows go
to ``<output>/pairs/`` (default: the run directory itself) through the shard writer, so each
shard appears whole; rerunning with the same arguments resumes after the committed prompts.

Only the samples files the run's commit records list are read (``output/dataset.py``): a file a
crashed session published without committing it is never paired.

Exit codes: 0 done; 1 a bad argument, a run without a committed samples file, or a rerun whose
arguments differ from those the existing pairs were built with.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script, as label.py is: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow.compute as pc

from schemas.tables import PAIRS
from workflows.output.dataset import committed_files, read_files
from workflows.output.writer import ShardWriter

EXIT_OK, EXIT_BAD = 0, 1
SCORES = ("outcome", "process", "potential")
WRITER_ID = "pairs"
PARAMS_FILE = "pairs.json"
"""Arguments the pairs under an output were built with; a resume must use the same."""


class PairsError(Exception):
    """A bad argument or a run that cannot be read; the message names what and where."""


@dataclass(frozen=True)
class PairParams:
    run: str
    threshold: float
    min_margin: float
    max_pairs_per_prompt: int | None
    score: str


@dataclass
class PairCounts:
    prompts_read: int = 0
    prompts_resumed: int = 0
    prompts_paired: int = 0
    prompts_one_label: int = 0
    prompts_below_margin: int = 0
    pairs_written: int = 0

    def summary(self) -> str:
        return (
            f"prompts read {self.prompts_read}, paired {self.prompts_paired}, "
            f"dropped as one-label {self.prompts_one_label}, "
            f"without a pair above the margin {self.prompts_below_margin}, "
            f"skipped as already paired {self.prompts_resumed}; pairs written {self.pairs_written}"
        )


def parse_args(argv: list[str] | None) -> tuple[PairParams, str]:
    parser = argparse.ArgumentParser(prog="parmflow-pairs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="run directory or s3:// URI: URI/RUN_ID")
    parser.add_argument("--output", help="where pairs/ goes: URI/RUN_ID (default: the run itself)")
    parser.add_argument("--threshold", type=float, default=0.5, help="score >= threshold is 'yes'")
    parser.add_argument("--min-margin", type=float, default=0.0, help="least chosen - rejected score")
    parser.add_argument("--max-pairs-per-prompt", type=int, help="keep the K pairs of largest margin")
    parser.add_argument("--score", choices=SCORES, default="outcome", help="samples column to label by")
    args = parser.parse_args(argv)
    if not 0.0 <= args.threshold <= 1.0:
        raise PairsError(f"--threshold {args.threshold}: scores are P(yes), pick a value in [0, 1]")
    if args.min_margin < 0:
        raise PairsError(f"--min-margin {args.min_margin}: must be >= 0")
    if args.max_pairs_per_prompt is not None and args.max_pairs_per_prompt < 1:
        raise PairsError(f"--max-pairs-per-prompt {args.max_pairs_per_prompt}: must be >= 1")
    run = args.run.rstrip("/")
    params = PairParams(run, args.threshold, args.min_margin, args.max_pairs_per_prompt, args.score)
    return params, (args.output or run).rstrip("/")


def split_run(uri: str) -> tuple[str, str]:
    """``URI/RUN_ID`` -> (URI, RUN_ID), the two halves ShardWriter takes."""
    parent, sep, run_id = uri.rpartition("/")
    if not sep:
        return ".", run_id
    if not run_id or parent.endswith(":") or parent.endswith(":/"):
        raise PairsError(f"--output {uri!r}: expected URI/RUN_ID")
    return parent or "/", run_id


def check_samples(run: str) -> None:
    """A run with committed samples; a file published by a crashed session does not count."""
    try:
        files = committed_files(run, "samples")
    except FileNotFoundError as exc:
        raise PairsError(f"--run {run!r}: {exc}") from None
    if not files:
        raise PairsError(f"--run {run!r}: no committed samples file in {run}/samples")


def prompts_of(run: str, score: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(prompt id, completed candidates) per prompt, one file at a time: a prompt's samples all
    live in one shard, so memory holds one shard, never the table."""
    columns = ["run_id", "prompt_id", "prompt", "sample_id", "image", "image_tokens", "pruned_at", score]
    for table in read_files(run, "samples", columns=columns):
        completed = pc.and_(pc.is_null(table["pruned_at"]), pc.is_valid(table[score]))
        groups: dict[str, list[dict[str, Any]]] = {pid: [] for pid in table["prompt_id"].to_pylist()}
        for row in table.filter(completed).to_pylist():
            groups[row["prompt_id"]].append(row)
        yield from groups.items()


def prompt_pairs(candidates: list[dict[str, Any]], params: PairParams) -> list[tuple[dict, dict, float]]:
    """(chosen, rejected, margin), largest margin first; ties ordered by sample ids so that a
    rerun writes the same rows."""
    yes = [c for c in candidates if c[params.score] >= params.threshold]
    no = [c for c in candidates if c[params.score] < params.threshold]
    pairs = [(y, n, y[params.score] - n[params.score]) for y in yes for n in no]
    pairs = [p for p in pairs if p[2] >= params.min_margin]
    pairs.sort(key=lambda p: (-p[2], p[0]["sample_id"], p[1]["sample_id"]))
    return pairs[: params.max_pairs_per_prompt]


def pair_row(chosen: dict[str, Any], rejected: dict[str, Any], margin: float, score: str) -> dict[str, Any]:
    return {
        "run_id": chosen["run_id"],
        "prompt_id": chosen["prompt_id"],
        "prompt": chosen["prompt"],
        "chosen_image": chosen["image"],
        "rejected_image": rejected["image"],
        "chosen_tokens": chosen["image_tokens"],
        "rejected_tokens": rejected["image_tokens"],
        "chosen_score": chosen[score],
        "rejected_score": rejected[score],
        "margin": margin,
        "chosen_sample_id": chosen["sample_id"],
        "rejected_sample_id": rejected["sample_id"],
    }


def check_resume(writer: ShardWriter, params: PairParams) -> None:
    """Refuse to mix pairs built with other arguments into one table."""
    earlier = writer.read_run_json(PARAMS_FILE)
    if earlier is not None and earlier != asdict(params):
        changed = sorted(k for k, v in asdict(params).items() if earlier.get(k) != v)
        raise PairsError(
            f"{writer.root}/{PARAMS_FILE}: pairs there were built with other {changed}; "
            "rerun with the same arguments or choose another --output"
        )


def build_pairs(params: PairParams, output: str) -> PairCounts:
    # setup: the samples to read, the writer of the pairs table, what an earlier session did
    check_samples(params.run)
    with ShardWriter(*split_run(output), writer_id=WRITER_ID, tables={"pairs": PAIRS}) as writer:
        check_resume(writer, params)
        writer.write_run_json(asdict(params), PARAMS_FILE)
        done = writer.committed_prompt_ids(WRITER_ID)

        # run: label, pair and buffer one prompt at a time
        counts = PairCounts()
        for prompt_id, candidates in prompts_of(params.run, params.score):
            counts.prompts_read += 1
            if prompt_id in done:
                counts.prompts_resumed += 1
                continue
            labels = {c[params.score] >= params.threshold for c in candidates}
            pairs = prompt_pairs(candidates, params) if len(labels) == 2 else []
            if len(labels) < 2:
                counts.prompts_one_label += 1
            elif not pairs:
                counts.prompts_below_margin += 1
            else:
                counts.prompts_paired += 1
                counts.pairs_written += len(pairs)
            rows = [pair_row(chosen, rejected, margin, params.score) for chosen, rejected, margin in pairs]
            writer.add_rows(prompt_id, {"pairs": rows})

        # save: commit the last shard (and an empty file if no prompt had a pair)
        writer.close()
    return counts


def main(argv: list[str] | None = None) -> int:
    try:
        params, output = parse_args(argv)
        counts = build_pairs(params, output)
    except SystemExit as exit_:  # argparse: --help is 0, a bad argument is ours to number
        return EXIT_OK if exit_.code in (0, None) else EXIT_BAD
    except PairsError as exc:
        print(f"parmflow-pairs: {exc}", file=sys.stderr)
        return EXIT_BAD
    print(f"parmflow-pairs: {params.run} -> {output}/pairs: {counts.summary()}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
