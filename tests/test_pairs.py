"""The pairs workflow on a run the real label flow wrote with the toy models.

Expected pairs are recomputed here from the samples table by brute force, independently of
the workflow's streaming and sorting, and compared exactly (ids and margins).
"""

from __future__ import annotations

import shutil
from itertools import product
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from label_helpers import read

from schemas.tables import SAMPLES
from workflows import label, pairs
from workflows.output.dataset import load_dataset
from workflows.output.writer import ShardWriter

RECIPE = """
generator: {kind: toy, checkpoint: none, options: {num_steps: 6, num_tokens: 12, image_size: 8}}
judge: {kind: toy, checkpoint: none}
search: {strategy: best_of_n, n: 4}
input: {uri: %s}
output: {shard_rows: 8}
run: {backend: local}
"""
PROMPTS = Path(__file__).resolve().parent.parent / "configs" / "prompts" / "smoke.jsonl"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six prompts x four candidates, two prompts per samples shard (so several files)."""
    root = tmp_path_factory.mktemp("labelled")
    recipe = root / "recipe.yaml"
    recipe.write_text(RECIPE % PROMPTS)
    assert label.main(["--config", str(recipe), "--output", str(root), "--run-id", "run"]) == 0
    assert len(list((root / "run" / "samples").glob("part-*.parquet"))) > 1
    return root / "run"


def expected_pairs(
    samples: list[dict], threshold: float, min_margin: float = 0.0, k: int | None = None
) -> dict[str, list[tuple[str, str, float]]]:
    """Per prompt with both labels: every (yes, no) pair at or above the margin, K largest
    (equal margins ordered by chosen then rejected sample id, the documented tie rule)."""
    by_prompt: dict[str, list[dict]] = {}
    for s in samples:
        if s["pruned_at"] is None and s["outcome"] is not None:
            by_prompt.setdefault(s["prompt_id"], []).append(s)
    out = {}
    for prompt_id, rows in by_prompt.items():
        yes = [r for r in rows if r["outcome"] >= threshold]
        no = [r for r in rows if r["outcome"] < threshold]
        found = [
            (y["sample_id"], n["sample_id"], y["outcome"] - n["outcome"])
            for y, n in product(yes, no)
            if y["outcome"] - n["outcome"] >= min_margin
        ]
        if found:
            out[prompt_id] = sorted(found, key=lambda p: (-p[2], p[0], p[1]))[:k]
    return out


def written_pairs(rows: list[dict]) -> dict[str, list[tuple[str, str, float]]]:
    written: dict[str, list[tuple[str, str, float]]] = {}
    for r in rows:
        written.setdefault(r["prompt_id"], []).append(
            (r["chosen_sample_id"], r["rejected_sample_id"], r["margin"])
        )
    return written


def commit_samples(root: Path, run_id: str, rows: list[dict]) -> None:
    """Commit ``rows`` as the samples table of ``root/run_id``, one shard per prompt."""
    by_prompt: dict[str, list[dict]] = {}
    for row in rows:
        by_prompt.setdefault(row["prompt_id"], []).append(row)
    with ShardWriter(str(root), run_id, tables={"samples": SAMPLES}) as writer:
        for prompt_id, prompt_rows in by_prompt.items():
            writer.add_rows(prompt_id, {"samples": prompt_rows})


def split_threshold(samples: list[dict]) -> float:
    """A threshold just above one prompt's best score: that prompt gets only "no" labels while
    the others still have both (the toy judge's scores sit around 0.5)."""
    best = {}
    for s in samples:
        best[s["prompt_id"]] = max(best.get(s["prompt_id"], 0.0), s["outcome"])
    return sorted(best.values())[0] + 1e-6


def test_pairs_match_a_brute_force_count_and_one_label_prompts_are_dropped(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = read(run_dir, "samples").to_pylist()
    threshold = split_threshold(samples)
    expected = expected_pairs(samples, threshold)
    assert 0 < len(expected) < len({s["prompt_id"] for s in samples})  # some paired, some dropped

    assert (
        pairs.main(["--run", str(run_dir), "--output", str(tmp_path / "a"), "--threshold", str(threshold)])
        == 0
    )
    written = written_pairs(read(tmp_path / "a", "pairs").to_pylist())
    assert written == expected
    dropped = len({s["prompt_id"] for s in samples}) - len(expected)
    total = sum(map(len, expected.values()))
    summary = capsys.readouterr().out
    assert f"paired {len(expected)}, dropped as one-label {dropped}," in summary
    assert f"pairs written {total}" in summary

    by_id = {s["sample_id"]: s for s in samples}
    for r in read(tmp_path / "a", "pairs").to_pylist():
        chosen, rejected = by_id[r["chosen_sample_id"]], by_id[r["rejected_sample_id"]]
        assert r["chosen_image"] == chosen["image"] and r["rejected_image"] == rejected["image"]
        assert r["chosen_tokens"] == chosen["image_tokens"]
        assert r["rejected_tokens"] == rejected["image_tokens"]
        assert (r["chosen_score"], r["rejected_score"]) == (chosen["outcome"], rejected["outcome"])
        assert r["run_id"] == "run" and r["prompt"] == chosen["prompt"] == rejected["prompt"]


def test_min_margin_and_max_pairs_per_prompt_keep_the_widest_pairs(run_dir: Path, tmp_path: Path) -> None:
    samples = read(run_dir, "samples").to_pylist()
    margins = sorted(m for pairs_ in expected_pairs(samples, 0.5).values() for _, _, m in pairs_)
    min_margin = margins[len(margins) // 2]  # about half the pairs fall below it
    args = ["--run", str(run_dir), "--output", str(tmp_path / "m"), "--min-margin", str(min_margin)]
    assert pairs.main([*args, "--max-pairs-per-prompt", "2"]) == 0
    written = written_pairs(read(tmp_path / "m", "pairs").to_pylist())
    expected = expected_pairs(samples, 0.5, min_margin, 2)
    assert written == expected  # order too: widest margin first
    assert all(m >= min_margin for w in written.values() for _, _, m in w)
    assert max(map(len, written.values())) == 2
    assert sum(map(len, written.values())) < len(margins)


def test_pruned_and_unscored_candidates_are_never_paired(run_dir: Path, tmp_path: Path) -> None:
    rows = read(run_dir, "samples").to_pylist()
    best = max(rows, key=lambda r: r["outcome"])
    worst = min(rows, key=lambda r: r["outcome"])
    best["pruned_at"] = 3
    worst["outcome"] = None
    commit_samples(tmp_path, "edited", rows)
    assert pairs.main(["--run", str(tmp_path / "edited")]) == 0
    written = written_pairs(read(tmp_path / "edited", "pairs").to_pylist())
    assert written == expected_pairs(rows, 0.5)
    ids = {i for w in written.values() for c, r, _ in w for i in (c, r)}
    assert best["sample_id"] not in ids and worst["sample_id"] not in ids


def test_a_samples_file_published_without_a_commit_record_is_not_paired(
    run_dir: Path, tmp_path: Path
) -> None:
    """A crashed session leaves its published file beside the committed ones until it resumes."""
    samples = read(run_dir, "samples").to_pylist()
    run = tmp_path / "crashed"
    shutil.copytree(run_dir, run)
    first = samples[0]["prompt_id"]
    orphan = [{**s, "prompt_id": "orphan", "sample_id": f"orphan/{s['sample_id']}"} for s in samples]
    orphan = [s for s in orphan if s["sample_id"].startswith(f"orphan/{first}/")]
    assert expected_pairs(orphan, 0.5)  # it would be paired if it were read
    pq.write_table(pa.Table.from_pylist(orphan, schema=SAMPLES), run / "samples" / "part-0-99999.parquet")

    assert pairs.main(["--run", str(run)]) == 0
    written = written_pairs(read(run, "pairs").to_pylist())
    assert written == expected_pairs(samples, 0.5)


def test_rerun_resumes_and_a_changed_threshold_is_refused(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--run", str(run_dir), "--output", str(tmp_path / "r")]
    assert pairs.main(args) == 0
    first = read(tmp_path / "r", "pairs").num_rows
    assert pairs.main(args) == 0
    assert read(tmp_path / "r", "pairs").num_rows == first > 0
    assert "skipped as already paired 6" in capsys.readouterr().out
    assert pairs.main([*args, "--threshold", "0.4"]) == 1
    assert "['threshold']" in capsys.readouterr().err


def test_pairs_beside_the_samples_decode_through_datasets(run_dir: Path, tmp_path: Path) -> None:
    assert pairs.main(["--run", str(run_dir)]) == 0  # default output: the run directory itself
    table = load_dataset(str(run_dir), "pairs", cache_dir=str(tmp_path))
    assert len(table) == read(run_dir, "pairs").num_rows > 0
    first = table[0]
    assert first["chosen_image"].size == first["rejected_image"].size == (8, 8)
    assert read(run_dir, "samples").num_rows == 24  # the label tables are left as they were


def test_a_missing_run_or_a_bad_argument_exits_1_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    assert pairs.main(["--run", str(missing)]) == 1
    assert f"{missing}/_commits" in capsys.readouterr().err
    assert pairs.main(["--run", str(missing), "--threshold", "1.5"]) == 1
    assert "--threshold 1.5" in capsys.readouterr().err
    assert pairs.main(["--run", str(missing), "--score", "clarity"]) == 1
    assert "--score" in capsys.readouterr().err
    assert pairs.main(["--run", str(missing), "--max-pairs-per-prompt", "0"]) == 1
    assert not missing.exists()


@pytest.mark.s3
def test_a_run_on_s3_is_paired_on_s3(run_dir: Path, s3_server: dict[str, str]) -> None:
    import boto3
    import s3fs

    boto3.client("s3").create_bucket(Bucket="pairs")
    fs = s3fs.S3FileSystem()
    fs.put(str(run_dir / "samples"), "pairs/runs/run/samples", recursive=True)
    for record in (run_dir / "_commits").glob("*.json"):  # the label run's, not a pairs test's
        if not record.name.startswith(f"{pairs.WRITER_ID}-"):
            fs.put(str(record), f"pairs/runs/run/_commits/{record.name}")
    assert pairs.main(["--run", "s3://pairs/runs/run", "--threshold", "0.5"]) == 0
    fs.invalidate_cache()
    names = fs.ls("pairs/runs/run/pairs", detail=False)
    assert [n.rsplit("/", 1)[1] for n in names] == ["part-pairs-00000.parquet"]
    with fs.open(names[0], "rb") as handle:
        on_s3 = pq.read_table(handle).to_pylist()
    samples = read(run_dir, "samples").to_pylist()
    assert written_pairs(on_s3) == expected_pairs(samples, 0.5)
