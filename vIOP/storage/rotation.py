"""KEK rotation: re-wrap every data key under the primary KEK, without decrypting any field.

Resumable: each batch commits its re-wrapped keys together with the progress row (``key_rotations``), so an
interrupted run loses at most one batch of work and the next ``keys rotate`` continues where it stopped.
Keys that other processes wrapped under an older KEK while the pass ran are caught by a final sweep.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, func, not_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from vIOP.errors import Conflict
from vIOP.storage.crypto import KeyRing, data_key_aad, utc_now
from vIOP.storage.keys import KekRef
from vIOP.storage.schema import data_keys, key_rotations

MAX_SWEEPS = 5  # each sweep only finds keys created by processes that had not yet seen the new KEK


@dataclass(frozen=True, slots=True)
class RotationReport:
    rotation_id: str
    target: KekRef
    rewrapped: int  # by this run
    remaining: int  # live data keys not yet under the target
    finished: bool
    resumed: bool
    seconds: float


async def kek_usage(conn: AsyncConnection) -> dict[KekRef, int]:
    """How many live (not destroyed) data keys each KEK version wraps."""
    rows = await conn.execute(
        select(data_keys.c.kek_id, data_keys.c.kek_version, func.count())
        .where(data_keys.c.destroyed_at.is_(None))
        .group_by(data_keys.c.kek_id, data_keys.c.kek_version)
    )
    return {KekRef(kek_id, version): count for kek_id, version, count in rows}


def _not_under(target: KekRef) -> ColumnElement[bool]:
    return and_(
        data_keys.c.destroyed_at.is_(None),
        not_(and_(data_keys.c.kek_id == target.kek_id, data_keys.c.kek_version == target.version)),
    )


async def _open_rotation(ring: KeyRing, new_kek: bool) -> tuple[str, KekRef, bool]:
    """Resume the unfinished rotation if it targets the current primary, else start one."""
    async with ring.db.begin() as conn:
        pending = (
            await conn.execute(
                select(key_rotations.c.id, key_rotations.c.target_kek_id, key_rotations.c.target_kek_version)
                .where(key_rotations.c.finished_at.is_(None))
                .order_by(key_rotations.c.started_at.desc())
            )
        ).all()
        primary = await ring.source.primary()
        for row in pending:
            if KekRef(row.target_kek_id, row.target_kek_version) == primary:
                return row.id, primary, True
        # Superseded runs (the primary changed since): closed, their work is redone towards the new target.
        if pending:
            await conn.execute(
                update(key_rotations)
                .where(key_rotations.c.finished_at.is_(None))
                .values(finished_at=utc_now())
            )
    target = await ring.source.add_primary() if new_kek else primary
    rotation_id = f"kr_{secrets.token_urlsafe(9)}"
    async with ring.db.begin() as conn:
        await conn.execute(
            key_rotations.insert().values(
                id=rotation_id,
                target_kek_id=target.kek_id,
                target_kek_version=target.version,
                started_at=utc_now(),
                rewrapped=0,
            )
        )
    return rotation_id, target, False


async def _rewrap_batch(
    ring: KeyRing, rotation_id: str, target: KekRef, cursor: str, size: int
) -> tuple[str, int] | None:
    """Re-wrap up to ``size`` keys after ``cursor`` in one transaction: (new cursor, count), None when done."""
    async with ring.db.begin() as conn:
        rows = (
            await conn.execute(
                select(data_keys.c.id, data_keys.c.kek_id, data_keys.c.kek_version, data_keys.c.wrapped)
                .where(_not_under(target), data_keys.c.id > cursor)
                .order_by(data_keys.c.id)
                .limit(size)
            )
        ).all()
        if not rows:
            return None
        now = utc_now()
        params = []
        for row in rows:
            aad = data_key_aad(row.id)
            key = await ring.source.unwrap(KekRef(row.kek_id, row.kek_version), row.wrapped, aad)
            kek, wrapped = await ring.source.wrap(key, aad)
            params.append(
                {"b_id": row.id, "b_kek_id": kek.kek_id, "b_kek_version": kek.version, "b_wrapped": wrapped}
            )
        await conn.execute(
            update(data_keys)
            .where(data_keys.c.id == bindparam("b_id"), data_keys.c.destroyed_at.is_(None))
            .values(
                kek_id=bindparam("b_kek_id"),
                kek_version=bindparam("b_kek_version"),
                wrapped=bindparam("b_wrapped"),
                rewrapped_at=now,
            ),
            params,
        )
        last = rows[-1].id
        await conn.execute(
            update(key_rotations)
            .where(key_rotations.c.id == rotation_id)
            .values(rewrapped=key_rotations.c.rewrapped + len(rows), cursor=last)
        )
    return str(last), len(rows)


async def rotate_keys(
    ring: KeyRing,
    *,
    new_kek: bool = True,
    batch_size: int = 500,
    max_batches: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> RotationReport:
    """Add a new primary KEK (unless ``new_kek`` is False) and re-wrap every live data key under it.

    ``max_batches`` stops early (as an interruption would); calling again resumes.
    """
    started = time.perf_counter()
    rotation_id, target, resumed = await _open_rotation(ring, new_kek)
    async with ring.db.read() as conn:
        saved = (
            await conn.execute(select(key_rotations.c.cursor).where(key_rotations.c.id == rotation_id))
        ).scalar_one()
    cursor, rewrapped, batches, interrupted = saved or "", 0, 0, False
    for _sweep in range(MAX_SWEEPS):
        while not (interrupted := max_batches is not None and batches >= max_batches):
            step = await _rewrap_batch(ring, rotation_id, target, cursor, batch_size)
            if step is None:
                break
            cursor, count = step
            batches, rewrapped = batches + 1, rewrapped + count
            if on_progress is not None:
                on_progress(rewrapped)
        if interrupted or await _remaining(ring, target) == 0:
            break
        cursor = ""  # sweep again from the start: keys created meanwhile under an old KEK
    remaining = await _remaining(ring, target)
    if remaining == 0:
        async with ring.db.begin() as conn:
            await conn.execute(
                update(key_rotations).where(key_rotations.c.id == rotation_id).values(finished_at=utc_now())
            )
    elapsed = time.perf_counter() - started
    return RotationReport(rotation_id, target, rewrapped, remaining, remaining == 0, resumed, elapsed)


async def _remaining(ring: KeyRing, target: KekRef) -> int:
    async with ring.db.read() as conn:
        count = (await conn.execute(select(func.count()).where(_not_under(target)))).scalar_one()
    return int(count)


async def retire_keks(ring: KeyRing) -> tuple[list[KekRef], dict[KekRef, int]]:
    """Remove every non-primary KEK version that no live data key uses. Returns (retired, still in use)."""
    async with ring.db.read() as conn:
        unfinished = (
            await conn.execute(select(func.count()).where(key_rotations.c.finished_at.is_(None)))
        ).scalar_one()
        usage = await kek_usage(conn)
    if unfinished:
        raise Conflict("a key rotation is unfinished: run `keys rotate` again to complete it first")
    primary = await ring.source.primary()
    candidates = sorted(v for v in await ring.source.versions() if v != primary)
    in_use = {v: usage[v] for v in candidates if usage.get(v)}
    retired = [v for v in candidates if v not in in_use]
    if retired:
        await ring.source.retire(retired)
    return retired, in_use
