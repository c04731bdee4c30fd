"""``bench/capacity.py`` must not rot silently: its summaries on known inputs, and one real short run (one
worker, one 3-person group, a 2 s window) whose per-worker CPU from /proc, placement and frame rates are
checked for sense."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.capacity import (
    bound,
    cpu_share,
    holds,
    parse_args,
    per_worker,
    run,
    stream_rates,
    summarise_fps,
)


def test_a_stream_that_delivered_nothing_counts_as_zero_and_own_streams_are_not_expected() -> None:
    before = {"a": {"b": 10, "c": 10}, "b": {"a": 0}}
    after = {"a": {"b": 40, "c": 25}, "b": {"a": 30, "c": 0}}
    rates = stream_rates(before, after, wall=2.0, receivers=["a", "b", "c"], group=["a", "b", "c"])
    assert rates == {
        ("a", "b"): 15.0,
        ("a", "c"): 7.5,
        ("b", "a"): 15.0,
        ("b", "c"): 0.0,
        ("c", "a"): 0.0,  # "c" reported nothing at all: its streams still count
        ("c", "b"): 0.0,
    }


def test_fps_summary_percentiles_and_the_hold_rule() -> None:
    rates = {("r", f"p{i}"): 15.0 for i in range(19)} | {("s", "p0"): 3.0}
    summary = summarise_fps(rates)
    assert summary.streams == 20 and summary.median == 15.0 and summary.min == 3.0
    assert summary.p5 == 3.0  # nearest rank: the 1st of 20
    assert summary.receivers == 2 and summary.receiver_p5 == 3.0
    assert not holds(summary, fps=15, hold=0.95)
    assert holds(summarise_fps({("r", "p"): 14.5}), fps=15, hold=0.95)
    assert not holds(summarise_fps({}), fps=15, hold=0.95)  # nothing measured never holds


def test_the_bound_is_the_last_k_before_the_first_that_failed() -> None:
    assert bound([(1, True), (2, True), (3, False), (4, True)]) == 2
    assert bound([(1, False)]) == 0
    assert bound([]) == 0


def test_cpu_share_and_rooms_per_worker() -> None:
    assert cpu_share(10.0, 15.0, wall=20.0) == 25.0
    assert cpu_share(1.0, 2.0, wall=0.0) == 0.0
    placed = per_worker(
        {"rm_a": "worker-0", "rm_b": "worker-1", "rm_c": "worker-0"}, 13, ["worker-0", "worker-1"]
    )
    assert placed == {
        "worker-0": {"rooms": 2, "participants": 26},
        "worker-1": {"rooms": 1, "participants": 13},
    }


def test_bad_arguments_are_refused_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--groups", "3,1"])
    assert exit_.value.code == 2
    assert "--groups increasing" in capsys.readouterr().err


def test_a_real_short_run_measures_the_worker_and_the_group(tmp_path: Path) -> None:
    args = parse_args(
        ["--workers", "1", "--groups", "1", "--group-size", "3", "--warmup", "1", "--seconds", "2",
         "--max-seconds", "90"]
    )  # fmt: skip
    report = run(args)
    (step,) = report["steps"]
    assert step["participants"] == 3
    assert step["rooms_per_worker"] == {"worker-0": {"rooms": 1, "participants": 3}}
    assert step["registry"]["worker-0"]["participants"] == 3  # what the node itself announced
    # Forwarding 6 video and 6 audio streams costs the worker something, and less than all of a core.
    assert 0.5 < step["worker_cpu_pct"]["worker-0"] < 100
    assert step["fps"]["streams"] == 6
    assert step["fps"]["median"] > 5  # frames arrive (the rate itself is the benchmark's, not a test's)
