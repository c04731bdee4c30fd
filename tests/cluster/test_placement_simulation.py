"""``bench/placement.py`` run small: the real placement keeps nodes level and a failure moves only the dead
node's rooms."""

from __future__ import annotations

import argparse

from bench.placement import by_hash, by_load, simulate


def small(**overrides: int) -> argparse.Namespace:
    values = {"rooms": 1000, "nodes": 10, "capacity": 150, "events": 2000, "failures": 4, "down_events": 100}
    return argparse.Namespace(**(values | overrides), seed=14)


def test_load_based_placement_stays_level_through_churn_and_failures() -> None:
    report = simulate(small(), by_load)
    assert report["refused"] == 0
    assert report["initial"] == {"min": 100, "max": 100, "mean": 100.0, "max_over_mean": 1.0}
    worst = report["worst_during_churn"]
    # With one of 10 nodes down its rooms sit on the other nine: 1000 / 9 = 111.1 each, at most one more.
    assert isinstance(worst, dict) and worst["max"] <= 113
    moved = report["rooms_moved_per_failure"]
    assert isinstance(moved, dict) and moved["failures"] == 4
    # Only the dead node's rooms move: about rooms / nodes each time.
    assert 90 <= moved["mean"] <= 112


def test_the_same_seed_gives_the_same_figures_and_hash_is_worse() -> None:
    by_load_report = simulate(small(), by_load)
    again = simulate(small(), by_load)
    del again["placement_us"], by_load_report["placement_us"]  # a timing
    assert again == by_load_report
    hashed = simulate(small(), by_hash)
    assert (
        hashed["worst_during_churn"]["max_over_mean"] > by_load_report["worst_during_churn"]["max_over_mean"]
    )  # type: ignore[index]


def test_capacity_is_respected_and_overflow_is_refused() -> None:
    report = simulate(small(rooms=1000, capacity=90, events=0, failures=0), by_load)
    assert report["refused"] == 100  # 10 nodes of 90 rooms: 900 placed, the rest refused
    assert report["initial"]["max"] == 90  # type: ignore[index]
