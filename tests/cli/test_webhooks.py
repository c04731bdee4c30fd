"""``python -m vIOP webhooks add|list|remove`` as an operator runs it (a real process, a real database):
the secret printed once, never listed; bad input one clear line, exit 1, nothing stored; audited by id."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, select

from vIOP.storage.schema import audit_log, webhook_subscriptions

REPO = Path(__file__).resolve().parents[2]
# A host that cannot resolve: a 64-character label is refused before any DNS query (nothing leaves the machine).
UNRESOLVABLE = f"http://{'a' * 64}.test/x"


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIOP_")}
    env.update(
        PYTHONPATH=str(REPO), VIOP_DATA_DIR=str(data_dir), VIOP_KEY_FILE=str(data_dir.parent / "k.json")
    )
    env.update(extra)
    return env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vIOP", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )


def rows(data_dir: Path, table: object) -> list[dict[str, object]]:
    engine = create_engine(f"sqlite:///{data_dir / 'viop.db'}")
    with engine.connect() as conn:
        found = [dict(r._mapping) for r in conn.execute(select(table))]  # type: ignore[call-overload]
    engine.dispose()
    return found


def test_add_list_remove_and_bad_input(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = _env(data)
    assert cli(env, "keys", "init", str(data.parent / "k.json")).returncode == 0
    added = cli(env, "webhooks", "add", "--url", "http://127.0.0.1:9/ehr", "--event", "session.ended")
    assert added.returncode == 0, added.stderr
    first, second = added.stdout.strip().splitlines()
    webhook_id = first.split()[0]
    assert webhook_id.startswith("wh_") and "session.ended" in first
    secret = second.rsplit(" ", 1)[1]
    assert secret.startswith("whsec_")

    listed = cli(env, "webhooks", "list")
    assert listed.returncode == 0 and webhook_id in listed.stdout and secret not in listed.stdout

    for bad, needle in [
        (["--url", "ftp://127.0.0.1/x", "--event", "session.ended"], "http:// or https://"),
        (["--url", UNRESOLVABLE, "--event", "session.ended"], "does not resolve"),
    ]:
        refused = cli(env, "webhooks", "add", *bad)
        assert refused.returncode == 1
        assert (
            refused.stderr.count("\n") == 1 and needle in refused.stderr and "Traceback" not in refused.stderr
        )
    usage = cli(env, "webhooks", "add", "--url", "http://127.0.0.1/x", "--event", "session.exploded")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
    strict = cli(
        _env(data, VIOP_WEBHOOK_ALLOW_PRIVATE="false"),
        *["webhooks", "add", "--url", "http://127.0.0.1:9/x", "--event", "session.ended"],
    )
    assert strict.returncode == 1 and "private" in strict.stderr
    assert len(rows(data, webhook_subscriptions)) == 1  # the refusals stored nothing

    removed = cli(env, "webhooks", "remove", webhook_id)
    assert removed.returncode == 0, removed.stderr
    again = cli(env, "webhooks", "remove", webhook_id)
    assert again.returncode == 1 and "no such webhook subscription" in again.stderr
    assert "no webhook subscriptions" in cli(env, "webhooks", "list").stdout

    audited = [
        (r["action"], r["object_id"])
        for r in rows(data, audit_log)
        if str(r["action"]).startswith("webhook.")
    ]
    assert audited == [
        ("webhook.added", webhook_id),
        ("webhook.viewed", None),
        ("webhook.removed", webhook_id),
        ("webhook.viewed", None),
    ]
