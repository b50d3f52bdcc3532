"""What a running job tells its user: periodic lines even while nothing finishes, ETA, summary."""

from __future__ import annotations

import asyncio
import io

from workflows.driver.progress import Progress
from workflows.search.types import Cost


def test_heartbeat_reports_while_no_prompt_finishes() -> None:
    stream = io.StringIO()
    progress = Progress(total=10, every_s=0.01, stream=stream)

    async def quiet_run() -> None:
        beat = asyncio.create_task(progress.heartbeat())
        await asyncio.sleep(0.2)
        beat.cancel()

    asyncio.run(quiet_run())
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 2 and all("prompts 0/10" in line and "elapsed" in line for line in lines)


def test_eta_follows_the_rate_of_finished_prompts() -> None:
    progress = Progress(total=4, every_s=1e9, stream=io.StringIO())
    progress.started -= 60.0  # one minute in
    progress.prompt_ok(images=2, costs=[Cost(nfe=10, judge_calls=4, paths_pruned=1, steps_saved=10)])
    progress.prompt_ok(images=2, costs=[Cost(nfe=20, judge_calls=6)])
    assert "prompts 2/4" in progress.line() and "ETA 1m00s" in progress.line()
    progress.prompt_failed("p9", 3, "RuntimeError: boom\ntraceback")
    assert "failed 1" in progress.line()
    assert "INCOMPLETE" in progress.summary("out/run") and "4 images" in progress.summary("out/run")
    assert progress.cost_line() == (
        "cost: 30 generator path-steps, 10 judge calls, 1 paths pruned saving 10 path-steps (25% of 40)"
    )
    assert progress.counts()["steps_saved"] == 10
