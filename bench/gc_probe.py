"""Run ``python -m vIOP <args>`` and record every garbage-collection pause (for the load benchmark).

    python bench/gc_probe.py OUT.json serve

Writes ``{"pauses": [[monotonic start, generation, ms], ...]}`` to OUT.json when the process exits normally.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import runpy
import sys
import time
from pathlib import Path

OUT = Path(sys.argv[1])
pauses: list[tuple[float, int, float]] = []
_started: list[float] = [0.0]
_cpu: list[float] = [0.0]
tracked: list[tuple[int, int]] = []  # (objects in the oldest generation, frozen) after each full collection


def _track(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
        _cpu[0] = time.thread_time()
    else:
        took = time.perf_counter() - _started[0]
        pauses.append((round(time.monotonic() - took, 4), info["generation"], round(took * 1000, 2)))
        if info["generation"] == 2:
            cpu_ms = round((time.thread_time() - _cpu[0]) * 1000, 2)
            tracked.append((len(gc.get_objects(2)), gc.get_freeze_count(), info["collected"], cpu_ms))


def _write() -> None:
    OUT.write_text(json.dumps({"pauses": pauses, "tracked": tracked}))


if os.environ.get("GC_PROBE_THRESHOLD"):  # experiments: override the server's own thresholds
    _threshold = tuple(int(x) for x in os.environ["GC_PROBE_THRESHOLD"].split(","))
    _set_threshold = gc.set_threshold
    _set_threshold(*_threshold)
    gc.set_threshold = lambda *a: None  # type: ignore[assignment]
gc.callbacks.append(_track)
atexit.register(_write)
sys.argv = ["vIOP", *sys.argv[2:]]
runpy.run_module("vIOP", run_name="__main__", alter_sys=True)
