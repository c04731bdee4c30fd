"""Benchmark: field encryption throughput, blind index, Redis sealing, KEK rotation and the audit chain.

    .venv/bin/python bench/crypto.py [--seconds 1.0] [--records 10000] [--audit-rows 2000]

One process, one event loop, one core. Field operations use a 24-character name (a typical display name).
Target from issue 3: >= 50,000 field operations per second on one core.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import shlex
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import insert

from vIOP.storage.audit import AuditEvent, AuditLog
from vIOP.storage.crypto import FieldCipher, FieldRef, KeyRing, KeyScope, data_key_aad, utc_now
from vIOP.storage.database import Database, default_sqlite_url, upgrade
from vIOP.storage.keys import FileKeySource
from vIOP.storage.rotation import rotate_keys
from vIOP.storage.schema import clients, data_keys

NAME = "Alexandra Rivera-Nguyen."  # 24 characters
WHERE = FieldRef("clients", "display_name", "cl_AbCdEfGhIjKlMnOp")


def rate(label: str, seconds: float, op: Callable[[], object]) -> float:
    """Run ``op`` in batches for about ``seconds``; print and return operations per second (CPU time)."""
    count, batch = 0, 1000
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < seconds:
        for _ in range(batch):
            op()
        count += batch
    cpu = time.process_time() - cpu0
    per_second = count / cpu
    print(f"  {label:<44} {per_second:>12,.0f} ops/s   {1e6 / per_second:7.2f} µs/op")
    return per_second


async def arate(label: str, seconds: float, op: Callable[[], Awaitable[object]]) -> float:
    count, batch = 0, 1000
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < seconds:
        for _ in range(batch):
            await op()
        count += batch
    per_second = count / (time.process_time() - cpu0)
    print(f"  {label:<44} {per_second:>12,.0f} ops/s   {1e6 / per_second:7.2f} µs/op")
    return per_second


async def populate(ring: KeyRing, count: int) -> None:
    now, keys, rows = utc_now(), [], []
    for i in range(count):
        key_id, client_id, key = f"dk_{i:07d}", f"cl_{i:07d}", secrets.token_bytes(32)
        kek, wrapped = await ring.source.wrap(key, data_key_aad(key_id))
        keys.append(
            {"id": key_id, "scope": KeyScope.CLIENT.value, "kek_id": kek.kek_id, "kek_version": kek.version}
            | {"wrapped": wrapped, "created_at": now}
        )
        name = FieldCipher(key_id, key).encrypt(FieldRef("clients", "display_name", client_id), NAME)
        rows.append({"id": client_id, "data_key_id": key_id, "display_name": name, "created_at": now})
    async with ring.db.begin() as conn:
        await conn.execute(insert(data_keys), keys)
        await conn.execute(insert(clients), rows)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="viop-bench-crypto-") as tmp:
        await run(args, Path(tmp))


async def run(args: argparse.Namespace, folder: Path) -> None:
    url = default_sqlite_url(folder)
    await upgrade(url)
    db = await Database.open(url)
    ring = await KeyRing.open(db, FileKeySource(folder / "keys.json", create=True))

    print("field encryption (AES-256-GCM, AAD = table/column/row id), one core:")
    async with db.begin() as conn:
        key_id = await ring.create_data_key(conn)
    cipher = await ring.cipher(key_id)
    blob = cipher.encrypt(WHERE, NAME)
    enc = rate("FieldCipher.encrypt", args.seconds, lambda: cipher.encrypt(WHERE, NAME))
    dec = rate("FieldCipher.decrypt_text", args.seconds, lambda: cipher.decrypt_text(WHERE, blob))
    await arate(
        "KeyRing.decrypt_text (blob names its key)", args.seconds, lambda: ring.decrypt_text(WHERE, blob)
    )
    print(f"  -> blob size for a {len(NAME)}-character name: {len(blob)} bytes")

    print("other primitives:")
    sealer = ring.redis_sealer()
    sealed = sealer.seal(NAME.encode(), b"viop:wr:rm_1/pt_1")
    rate("redis sealer seal", args.seconds, lambda: sealer.seal(NAME.encode(), b"viop:wr:rm_1/pt_1"))
    rate("redis sealer unseal", args.seconds, lambda: sealer.unseal(sealed, b"viop:wr:rm_1/pt_1"))
    rate("blind index (HMAC-SHA256, NFKC+casefold)", args.seconds, lambda: ring.blind_index("username", NAME))

    print(f"KEK rotation over {args.records:,} client data keys (SQLite, batches of 500):")
    await populate(ring, args.records)
    report = await rotate_keys(ring, batch_size=500)
    assert report.finished
    print(
        f"  re-wrapped {report.rewrapped:,} keys in {report.seconds:.2f} s ({report.rewrapped / report.seconds:,.0f}/s)"
    )

    print(f"audit chain ({args.audit_rows:,} appends, one transaction each, SQLite WAL):")
    audit = AuditLog(ring)
    started = time.perf_counter()
    for i in range(args.audit_rows):
        await audit.append("us_1", "clinician", AuditEvent.ADMIT, "participant", f"pt_{i}", ip="203.0.113.9")
    append_s = time.perf_counter() - started
    started = time.perf_counter()
    result = await audit.verify()
    verify_s = time.perf_counter() - started
    assert result.ok
    print(
        f"  append {args.audit_rows / append_s:,.0f} rows/s; verify {result.rows_checked / verify_s:,.0f} rows/s"
    )

    await db.close()
    verdict = "meets" if min(enc, dec) >= 50_000 else "MISSES"
    print(f"\nfield ops/s on one core: encrypt {enc:,.0f}, decrypt {dec:,.0f} ({verdict} the 50,000 target)")
    print(f"command: .venv/bin/python {shlex.join(sys.argv)}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="time per micro-benchmark")
    parser.add_argument("--records", type=int, default=10_000, help="client data keys to rotate")
    parser.add_argument("--audit-rows", type=int, default=2_000)
    asyncio.run(main(parser.parse_args()))
