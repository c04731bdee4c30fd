"""Runs the real-browser tests (``tests/e2e/inner``) inside a fresh network namespace that has only loopback.

Why: Chromium offers only the machine's non-loopback addresses as ICE candidates, and test traffic must stay
on loopback. In a namespace whose only interface is ``lo``, with ``--allow-loopback-in-peer-connection``,
the pair is 127.0.0.1 <-> 127.0.0.1. Server, Redis and browsers all start inside it.

This needs root (to create the namespace), ``unshare`` (util-linux), ``ip`` (iproute2) and
``/usr/bin/chromium``; ``scripts/dev test`` installs them. Without them this test FAILS with the reason:
a browser suite that silently skips proves nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bench.scenarios.chromium import CHROMIUM
from tests.e2e.browser import ARTIFACTS, ROOT
from tests.e2e.conftest import INNER_ENV

INNER = Path(__file__).parent / "inner"
SUITE_TIMEOUT_S = 540  # the 4-person capped session alone takes about a minute; screen share 40-100 s


def missing_prerequisites() -> list[str]:
    problems = []
    if os.geteuid() != 0:
        problems.append("not running as root: creating a network namespace (unshare --net) needs root")
    for tool, package in (("unshare", "util-linux"), ("ip", "iproute2")):
        if shutil.which(tool) is None:
            problems.append(f"`{tool}` not found: install the Debian package {package}")
    if not CHROMIUM.exists():
        problems.append(f"{CHROMIUM} not found: `apt-get install chromium` (never `playwright install`)")
    return problems


def _stream(pipe: object, sink: list[str], terminal: pytest.CaptureFixture[str]) -> None:
    for line in pipe:  # type: ignore[attr-defined]
        sink.append(line)
        with terminal.disabled():
            sys.stdout.write(f"  [e2e] {line}")
            sys.stdout.flush()


def _failures(report: Path) -> str:
    """Each failed test's message and the end of its traceback, from the inner run's JUnit report: what a
    CI log keeps, where the captured-log noise of the last lines would hide it."""
    if not report.exists():
        return ""
    lines = []
    for case in ET.parse(report).getroot().iter("testcase"):
        for problem in (*case.findall("failure"), *case.findall("error")):
            trace = (problem.text or "").strip().splitlines()
            lines.append(f"{case.get('classname')}::{case.get('name')}: {problem.get('message', '')[:4000]}")
            lines += [f"    {line}" for line in trace[-60:]]
    return "\n".join(lines)


@pytest.mark.e2e
def test_browser_suite_in_loopback_namespace(capsys: pytest.CaptureFixture[str]) -> None:
    problems = missing_prerequisites()
    if problems:
        pytest.fail("cannot run the browser tests:\n  " + "\n  ".join(problems), pytrace=False)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    report = ARTIFACTS / "inner-junit.xml"
    report.unlink(missing_ok=True)
    inner_pytest = [
        sys.executable, "-m", "pytest", str(INNER.relative_to(ROOT)),
        "-p", "no:cacheprovider", "-q", "-rA", f"--junitxml={report}",
    ]  # fmt: skip
    script = 'ip link set lo up && exec "$@"'
    command = ["unshare", "--net", "--", "sh", "-c", script, "sh", *inner_pytest]
    env = {**os.environ, INNER_ENV: "1", "PYTHONUNBUFFERED": "1"}
    output: list[str] = []
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    reader = threading.Thread(target=_stream, args=(proc.stdout, output, capsys), daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=SUITE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        pytest.fail(f"browser suite still running after {SUITE_TIMEOUT_S} s; killed", pytrace=False)
    reader.join(timeout=10)

    tail = "".join(output[-60:])
    assert code == 0, f"browser suite failed (exit {code}):\n{_failures(report) or tail}"
    assert report.exists(), f"the inner run wrote no report:\n{tail}"
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")  # type: ignore[assignment]
    assert suite is not None
    counts = {key: int(suite.get(key, "0")) for key in ("tests", "failures", "errors", "skipped")}
    assert counts["tests"] >= 2, f"the browser suite ran too few tests: {counts}"
    assert counts["failures"] == counts["errors"] == counts["skipped"] == 0, counts
