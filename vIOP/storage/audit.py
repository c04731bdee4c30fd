"""The append-only, hash-chained audit log (HIPAA 164.312(b)) and its verifier.

Row ``n`` stores ``mac = HMAC-SHA256(chain key, prev_mac || canonical(row n))`` where ``prev_mac`` is row
``n-1``'s mac (32 zero bytes for row 1) and ``seq`` is dense. Editing, inserting or deleting a row breaks
the chain at that row, which :meth:`AuditLog.verify` names. Truncating the tail leaves a valid chain, so
signed checkpoints (``seq`` + ``mac``, HMAC'd under a second key) are appended to a separate file every
``checkpoint_every`` rows: a tail cut below the last checkpoint is detected. Keys derive from ``sys.root``.

No PHI: actors and objects are opaque ids (validated), the client IP is encrypted (``sys.fields``) and the
user agent is stored as a keyed hash.
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import hmac
import json
import os
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from vIOP.errors import BadRequest, Unavailable
from vIOP.storage.crypto import FieldRef, KeyRing, utc_now
from vIOP.storage.schema import audit_anchors, audit_log

GENESIS = bytes(32)
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # opaque ids only: a name with a space is refused
_WORD = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_APPEND_ATTEMPTS = 8
_PG_CHAIN_LOCK = 0x56494F50_41554454  # 'VIOPAUDT'
_VERIFY_BATCH = 2000


class AuditEvent(StrEnum):
    """Audited events. Other modules may pass their own lowercase dotted names as plain strings."""

    LOGIN = "auth.login"
    LOGOUT = "auth.logout"
    ACCOUNT_LOCKED = "auth.account_locked"
    TOKEN_ISSUED = "auth.token_issued"  # noqa: S105 (an event name)
    TOKEN_REJECTED = "auth.token_rejected"  # noqa: S105
    TICKET_ISSUED = "auth.ticket_issued"
    TICKET_REJECTED = "auth.ticket_rejected"
    USER_CREATED = "user.created"
    USER_DISABLED = "user.disabled"
    MFA_RESET = "user.mfa_reset"
    ROOM_CREATED = "room.created"
    ROOM_ENDED = "room.ended"
    INVITE_CREATED = "invite.created"
    INVITE_REVOKED = "invite.revoked"
    KNOCK = "room.knock"
    ADMIT = "room.admit"
    DENY = "room.deny"
    REMOVE = "room.remove"
    MUTE = "room.mute"
    PRESENCE_VIEWED = "presence.viewed"
    ATTENDANCE_EXPORTED = "attendance.exported"
    KEYS_ROTATED = "keys.rotated"
    KEYS_RETIRED = "keys.retired"
    CLIENT_SHREDDED = "client.shredded"
    BREAK_GLASS = "access.break_glass"
    AUDIT_VERIFIED = "audit.verified"
    # issue 11: reads of PHI, every moderation action, refusals on a socket, TURN credentials
    ROOM_VIEWED = "room.viewed"
    HOST_ENTERED = "room.host_entered"
    RESUMED = "room.resumed"
    RESUME_REJECTED = "room.resume_rejected"
    ALREADY_CONNECTED = "room.already_connected"
    JOIN = "room.join"  # a refused join (the successful ones are knock, host_entered or resumed)
    LEFT = "room.left"
    LOBBY_MESSAGE = "room.lobby_message"
    RETURN_TO_LOBBY = "room.return_to_lobby"
    LOCKED = "room.locked"
    UNLOCKED = "room.unlocked"
    SIGNAL = "room.signal"  # a participant's own signaling (media, flags, heartbeat): only refusals
    TURN_ISSUED = "turn.credentials_issued"
    # issue 15, chat: the policy switch (chat lines themselves are never audited: content-free rows per line
    # would only say who talked when)
    CHAT = "room.chat"  # only refusals (e.g. a client writing to the room while chat is off)
    CHAT_POLICY = "room.chat_policy"
    # issue 15: co-hosts and the private "I need to talk" signal (ids only)
    COHOST_ADDED = "room.cohost_added"
    COHOST_REMOVED = "room.cohost_removed"
    NEED_TO_TALK = "room.need_to_talk"
    NEED_ACKNOWLEDGED = "room.need_acknowledged"
    BREAKOUT_STARTED = "room.breakout_started"  # issue 15: ids only (the client)
    BREAKOUT_ENDED = "room.breakout_ended"
    CHAT_TRANSCRIPT_SAVED = "room.chat_transcript_saved"  # a host saved the chat to the record (ids only)
    CHAT_TRANSCRIPT_VIEWED = "room.chat_transcript_viewed"  # a read of that PHI (ids only)
    SHARE_STARTED = "room.share_started"  # screen share (issue 15), ids only
    SHARE_STOPPED = "room.share_stopped"
    SHARE_ALLOWED = "room.share_allowed"
    SHARE_REVOKED = "room.share_revoked"
    # issue 16: tracks, enrollments, calendar feeds (ids only)
    TRACK_CREATED = "track.created"
    TRACK_VIEWED = "track.viewed"
    TRACK_CHANGED = "track.changed"
    TRACK_ENDED = "track.ended"
    ENROLLMENT_CREATED = "enrollment.created"
    ENROLLMENT_REVOKED = "enrollment.revoked"
    ENROLLMENT_KNOCKED = "enrollment.knocked"
    CALENDAR_FEED_CREATED = "calendar_feed.created"
    CALENDAR_FEED_REVOKED = "calendar_feed.revoked"
    DISPLAY_NAME_CHANGED = "user.display_name_changed"  # the same name the CLI's change is audited under
    # issue 16: webhook subscriptions (ids only: never the URL or the secret)
    WEBHOOK_ADDED = "webhook.added"
    WEBHOOK_REMOVED = "webhook.removed"
    WEBHOOKS_VIEWED = "webhook.viewed"


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


class Problem(StrEnum):
    ALTERED = "altered"
    INSERTED = "inserted"
    DELETED = "deleted"
    TRUNCATED = "truncated"
    BAD_CHECKPOINT = "bad_checkpoint"


@dataclass(frozen=True, slots=True)
class Verification:
    rows_checked: int
    last_seq: int
    checkpoints_checked: int
    problem: Problem | None = None
    bad_seq: int | None = None  # the first row (or checkpoint line) that is wrong
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.problem is None


def _lp(value: str | bytes | None) -> bytes:
    if value is None:
        return b"\xff\xff\xff\xff"
    raw = value.encode() if isinstance(value, str) else value
    return len(raw).to_bytes(4, "big") + raw


def _canonical(row: Any) -> bytes:
    at: datetime = row.at
    fields = (
        str(row.seq),
        at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        row.actor_id,
        row.actor_role,
        row.action,
        row.object_type,
        row.object_id,
        row.outcome,
        row.ip,
        row.user_agent_hash,
    )
    return b"viop/audit/v1" + b"".join(_lp(f) for f in fields)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One event to append: ``at`` None means now (the log's clock)."""

    at: datetime | None
    actor_id: str | None
    actor_role: str
    action: AuditEvent | str
    object_type: str | None
    object_id: str | None
    outcome: Outcome | str
    ip: str | None
    user_agent_hash: str | None = None


@dataclass(frozen=True, slots=True)
class _Row:
    """Column values of one audit row, as the MAC sees them."""

    seq: int
    at: datetime
    actor_id: str | None
    actor_role: str
    action: str
    object_type: str | None
    object_id: str | None
    outcome: str
    ip: bytes | None
    user_agent_hash: str | None


def _check(value: str | None, pattern: re.Pattern[str], what: str, optional: bool = True) -> None:
    if value is None and optional:
        return
    if value is None or not pattern.match(value):
        raise BadRequest(f"audit {what} must be an opaque id or a lowercase name (no names or free text)")


def check_entry(
    actor_id: str | None,
    actor_role: str,
    action: AuditEvent | str,
    object_type: str | None,
    object_id: str | None,
    outcome: Outcome | str,
    ip: str | None,
) -> None:
    """BadRequest for anything but ids and names: an audit row never holds a name or free text."""
    _check(actor_id, _ID, "actor id")
    _check(actor_role, _WORD, "actor role", optional=False)
    _check(str(action), _WORD, "action", optional=False)
    _check(object_type, _WORD, "object type")
    _check(object_id, _ID, "object id")
    _check(str(outcome), _WORD, "outcome", optional=False)
    if ip is not None and len(ip) > 64:
        raise BadRequest("audit ip is too long")


OPERATOR_ROLE = "operator"
_OS_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,60}$")


def operator_id(environ: Mapping[str, str] | None = None) -> str:
    """Who runs a CLI command: the person behind ``sudo`` (``SUDO_USER``), else the login name, as
    ``os:<name>``. A name that is not a plain login name (a space, a domain) is kept as a short hash."""
    env = os.environ if environ is None else environ
    try:
        name = env.get("SUDO_USER") or env.get("LOGNAME") or env.get("USER") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for this uid (a bare container)
        name = f"uid{os.getuid()}"
    if not _OS_NAME.match(name):
        name = "h" + hashlib.sha256(name.encode()).hexdigest()[:16]
    return f"os:{name}"


class AuditLog:
    """Append and verify. One instance per process; appends from several processes are safe."""

    def __init__(
        self,
        ring: KeyRing,
        *,
        checkpoint_path: Path | None = None,
        checkpoint_every: int = 1000,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.ring = ring
        self.db = ring.db
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every
        self._clock = clock
        self._chain_key = ring.derive_key("audit/chain")
        self._checkpoint_key = ring.derive_key("audit/checkpoint")
        self._ua_key = ring.derive_key("audit/user-agent")
        self._lock = asyncio.Lock()

    def _mac(self, prev: bytes, row: Any) -> bytes:
        return hmac.new(self._chain_key, prev + _canonical(row), hashlib.sha256).digest()

    def user_agent_hash(self, user_agent: str) -> str:
        return hmac.new(self._ua_key, user_agent.encode(), hashlib.sha256).hexdigest()[:32]

    async def append(
        self,
        actor_id: str | None,
        actor_role: str,
        action: AuditEvent | str,
        object_type: str | None = None,
        object_id: str | None = None,
        outcome: Outcome | str = Outcome.SUCCESS,
        ip: str | None = None,
        user_agent: str | None = None,
        *,
        at: datetime | None = None,
        user_agent_hash: str | None = None,
    ) -> int:
        """Record one event; returns its seq. BadRequest (nothing written) for anything but ids and names.

        The application records through ``vIOP.storage.audit_outbox.AuditOutbox`` (one recorder for HTTP,
        sockets and the CLI), which calls :meth:`append_many`. ``at``: when it happened, if earlier than now
        (an entry that waited for the database to come back); the row still goes at the tail of the chain.
        ``user_agent_hash``: :meth:`user_agent_hash` already taken (the outbox keeps no raw user agent)."""
        ua_hash = self.user_agent_hash(user_agent) if user_agent else user_agent_hash
        entry = AuditEntry(at, actor_id, actor_role, action, object_type, object_id, outcome, ip, ua_hash)
        return await self.append_many([entry])

    async def append_many(self, entries: Sequence[AuditEntry]) -> int:
        """Append ``entries`` in order in one transaction (one chain step each); returns the last seq.
        BadRequest (nothing written) if any is not ids and names."""
        for e in entries:
            check_entry(e.actor_id, e.actor_role, e.action, e.object_type, e.object_id, e.outcome, e.ip)
        if not entries:
            raise BadRequest("nothing to append")
        async with self._lock:
            for _ in range(_APPEND_ATTEMPTS):
                try:
                    first, last = await self._append_once(entries)
                    break
                except IntegrityError:
                    continue  # another process took this seq first: chain onto its row instead
            else:
                raise Unavailable("the audit log is too busy: retry")
        every = self.checkpoint_every
        if self.checkpoint_path is not None and last // every > (first - 1) // every:
            await self.checkpoint()  # the batch reached a multiple of checkpoint_every
        return last

    async def _append_once(self, entries: Sequence[AuditEntry]) -> tuple[int, int]:
        async with self.db.begin() as conn:
            if self.db.dialect == "postgresql":
                # Serialise appenders across processes for this transaction: the chain has one tail.
                # (SQLite's BEGIN IMMEDIATE already does; the IntegrityError retry stays as a backstop.)
                await conn.execute(select(func.pg_advisory_xact_lock(_PG_CHAIN_LOCK)))
            last = (
                await conn.execute(
                    select(audit_log.c.seq, audit_log.c.mac).order_by(audit_log.c.seq.desc()).limit(1)
                )
            ).first()
            seq, prev = (last.seq + 1, last.mac) if last else (1, GENESIS)
            first, values = seq, []
            for e in entries:
                sealed_ip = (
                    self.ring.system_fields.encrypt(FieldRef("audit_log", "ip", str(seq)), e.ip)
                    if e.ip
                    else None
                )
                # aware; stored (and MAC'd) in UTC to the microsecond, as both databases keep it
                at = e.at if e.at is not None else self._clock()
                row = _Row(
                    seq,
                    at,
                    e.actor_id,
                    e.actor_role,
                    str(e.action),
                    e.object_type,
                    e.object_id,
                    str(e.outcome),
                    sealed_ip,
                    e.user_agent_hash,
                )
                mac = self._mac(prev, row)
                values.append(
                    {
                        "seq": seq,
                        "at": at,
                        "actor_id": e.actor_id,
                        "actor_role": e.actor_role,
                        "action": str(e.action),
                        "object_type": e.object_type,
                        "object_id": e.object_id,
                        "outcome": str(e.outcome),
                        "ip": sealed_ip,
                        "user_agent_hash": e.user_agent_hash,
                        "prev_mac": prev,
                        "mac": mac,
                    }
                )
                seq, prev = seq + 1, mac
            await conn.execute(insert(audit_log), values)
        return int(first), int(seq - 1)

    async def client_ip(self, seq: int, sealed: bytes) -> str:
        """Decrypt the IP of row ``seq`` (for an admin reading the log)."""
        return self.ring.system_fields.decrypt_text(FieldRef("audit_log", "ip", str(seq)), sealed)

    # --- checkpoints ----------------------------------------------------------------------------

    def _sign(self, seq: int, mac_hex: str, at: str) -> str:
        message = f"viop/audit-checkpoint/v1|{seq}|{mac_hex}|{at}".encode()
        return hmac.new(self._checkpoint_key, message, hashlib.sha256).hexdigest()

    async def checkpoint(self) -> int | None:
        """Append (seq, mac) of the newest row, signed, to the checkpoint file; returns that seq."""
        if self.checkpoint_path is None:
            raise BadRequest("no audit checkpoint file is configured")
        async with self.db.read() as conn:
            last = (
                await conn.execute(
                    select(audit_log.c.seq, audit_log.c.mac).order_by(audit_log.c.seq.desc()).limit(1)
                )
            ).first()
        if last is None:
            return None
        at = utc_now().isoformat()
        line = {
            "seq": last.seq,
            "mac": last.mac.hex(),
            "at": at,
            "sig": self._sign(last.seq, last.mac.hex(), at),
        }
        await asyncio.to_thread(_append_line, self.checkpoint_path, json.dumps(line, sort_keys=True))
        return int(last.seq)

    def _read_checkpoints(self, path: Path) -> tuple[dict[int, bytes], Verification | None]:
        """Signed (seq -> mac) pairs; or a failed Verification naming the first bad line."""
        marks: dict[int, bytes] = {}
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return marks, None
        for number, text in enumerate(lines, start=1):
            try:
                item = json.loads(text)
                seq, mac_hex, at, sig = int(item["seq"]), str(item["mac"]), str(item["at"]), str(item["sig"])
                valid = hmac.compare_digest(sig, self._sign(seq, mac_hex, at))
                mac = bytes.fromhex(mac_hex)
            except (ValueError, KeyError, TypeError):
                valid = False
            if not valid:
                detail = (
                    f"line {number} of the checkpoint file is malformed or not signed by this installation"
                )
                return marks, Verification(0, 0, number - 1, Problem.BAD_CHECKPOINT, number, detail)
            marks[seq] = mac
        return marks, None

    # --- verification ---------------------------------------------------------------------------

    async def _rows(self, after: int = 0) -> AsyncIterator[Any]:
        while True:
            async with self.db.read() as conn:
                batch = (
                    await conn.execute(
                        select(audit_log)
                        .where(audit_log.c.seq > after)
                        .order_by(audit_log.c.seq)
                        .limit(_VERIFY_BATCH)
                    )
                ).all()
            if not batch:
                return
            for row in batch:
                yield row
            after = batch[-1].seq

    async def verify(self, checkpoint_path: Path | None = None) -> Verification:
        """Walk the whole chain; the first altered, inserted or deleted row, or a truncated tail."""
        path = checkpoint_path or self.checkpoint_path
        marks, bad = self._read_checkpoints(path) if path is not None else ({}, None)
        if bad is not None:
            return bad
        anchor = await self._anchor()
        if isinstance(anchor, Verification):
            return anchor
        expected_seq, expected_prev = (anchor[0] + 1, anchor[1]) if anchor else (1, GENESIS)
        checked = 0
        suspect: Any = None  # a row whose MAC failed: the next row tells inserted from altered
        async for row in self._rows(after=expected_seq - 1):
            if suspect is not None:
                kind = Problem.INSERTED if row.prev_mac == expected_prev else Problem.ALTERED
                return _failed(checked, suspect.seq, len(marks), kind)
            if row.seq != expected_seq:
                return _failed(checked, expected_seq, len(marks), Problem.DELETED)
            if (
                not hmac.compare_digest(row.mac, self._mac(row.prev_mac, row))
                or row.prev_mac != expected_prev
            ):
                suspect = row
                continue
            mark = marks.get(row.seq)
            if mark is not None and mark != row.mac:
                detail = f"row {row.seq} differs from its signed checkpoint: the chain was rewritten"
                return Verification(checked, row.seq - 1, len(marks), Problem.ALTERED, row.seq, detail)
            checked, expected_seq, expected_prev = checked + 1, row.seq + 1, row.mac
        if suspect is not None:
            return _failed(checked, suspect.seq, len(marks), Problem.ALTERED)
        last_seq = expected_seq - 1
        beyond = [seq for seq in marks if seq > last_seq]
        if beyond:
            detail = (
                f"a checkpoint names row {max(beyond)} but the log ends at row {last_seq}: the tail was cut"
            )
            return Verification(checked, last_seq, len(marks), Problem.TRUNCATED, last_seq + 1, detail)
        return Verification(checked, last_seq, len(marks))

    # --- retention: purging the oldest rows behind a signed anchor -----------------------------

    def _anchor_sig(self, seq: int, mac: bytes) -> str:
        message = f"viop/audit-anchor/v1|{seq}|{mac.hex()}".encode()
        return hmac.new(self._checkpoint_key, message, hashlib.sha256).hexdigest()

    async def _anchor(self) -> tuple[int, bytes] | Verification | None:
        """The anchor in force (seq, mac of the last purged row), a failed Verification if it is forged."""
        async with self.db.read() as conn:
            row = (
                await conn.execute(select(audit_anchors).order_by(audit_anchors.c.seq.desc()).limit(1))
            ).first()
        if row is None:
            return None
        if not hmac.compare_digest(row.sig, self._anchor_sig(row.seq, row.mac)):
            detail = f"the retention anchor at row {row.seq} is not signed by this installation"
            return Verification(0, 0, 0, Problem.BAD_CHECKPOINT, row.seq, detail)
        return int(row.seq), bytes(row.mac)

    async def purge_before(self, cutoff: datetime, *, dry_run: bool = False) -> int:
        """Delete the oldest rows, every one before the first row at or after ``cutoff`` (never the newest
        row), after checking the chain; a signed anchor (seq and mac of the last row deleted) lets
        :meth:`verify` start after them. Returns the number of rows (that would be) deleted; 0 when the chain
        does not verify (nothing is deleted from a broken log: it is evidence)."""
        async with self.db.read() as conn:
            young = (
                await conn.execute(select(func.min(audit_log.c.seq)).where(audit_log.c.at >= cutoff))
            ).scalar_one_or_none()
            newest = (await conn.execute(select(func.max(audit_log.c.seq)))).scalar_one_or_none()
            first = (await conn.execute(select(func.min(audit_log.c.seq)))).scalar_one_or_none()
        if newest is None or first is None:
            return 0
        last = min(int(young) - 1 if young is not None else int(newest), int(newest) - 1)
        if last < first:
            return 0
        if dry_run:
            return last - int(first) + 1
        if not (await self.verify()).ok:
            return 0
        async with self._lock, self.db.begin() as conn:
            mac = (await conn.execute(select(audit_log.c.mac).where(audit_log.c.seq == last))).scalar_one()
            await conn.execute(
                insert(audit_anchors).values(
                    seq=last, mac=mac, at=self._clock(), sig=self._anchor_sig(last, mac)
                )
            )
            deleted = await conn.execute(delete(audit_log).where(audit_log.c.seq <= last))
        return int(deleted.rowcount or 0)


_DETAILS = {
    Problem.ALTERED: "row {seq} does not match its MAC: it was altered (or rows were renumbered)",
    Problem.INSERTED: "row {seq} was inserted: it is not part of the chain around it",
    Problem.DELETED: "row {seq} is missing: it was deleted",
}


def _failed(checked: int, seq: int, checkpoints: int, problem: Problem) -> Verification:
    return Verification(checked, seq - 1, checkpoints, problem, seq, _DETAILS[problem].format(seq=seq))


def _append_line(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
