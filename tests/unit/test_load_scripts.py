"""`make load`'s pieces that need no running suite: every k6 script loads (its protos
included) with the options it promises, it refuses any target but this machine, and the
capacity is read off the ladder as documented."""

from __future__ import annotations

import json
import subprocess

import pytest

from rag_bench.load import K6_DIR, SCRIPTS, Step, capacity, k6_binary


def inspect(script: str, **env: str) -> subprocess.CompletedProcess:
    variables = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    return subprocess.run(
        [k6_binary(), "inspect", *variables, f"{script}.js"],
        cwd=K6_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_each_script_loads_as_an_open_loop_at_the_offered_rate(script):
    done = inspect(script, RATE="40", DURATION="7")
    assert done.returncode == 0, done.stderr
    scenarios = json.loads(done.stdout)["scenarios"]
    queries = next(s for name, s in scenarios.items() if name != "ingest")
    assert queries["executor"] == "constant-arrival-rate"
    assert (queries["rate"], queries["duration"]) == (40, "7s")


def test_a_script_refuses_a_target_off_this_machine():
    done = inspect("query_miss", TARGET="10.0.0.5:50051")
    assert done.returncode != 0
    assert "this machine only" in done.stderr + done.stdout


def step(rate: int, p95: float, failed: float = 0.0) -> Step:
    return Step("mix", rate, p95 / 2, p95, p95 * 1.5, failed, float(rate))


def test_capacity_is_the_last_rate_before_the_budget_or_errors_give_way():
    ladder = [step(10, 40), step(20, 90), step(40, 700), step(80, 300)]
    assert capacity(ladder, 500) == 20  # 80 after 40 broke it does not count
    assert capacity(ladder, 5000) == 80
    assert capacity([step(10, 40), step(20, 90, failed=0.02)], 500) == 10
    assert capacity([step(10, 900)], 500) == 0
