"""42 CFR Part 2 consent: who may receive which of a client's records, for what, until when. Pure rules.

The treating team is the room's hosts: a clinician reading the attendance of a room they host is not a
disclosure. A *disclosure* is a client's data leaving the treating team for a named outside recipient
(a court, an employer, a payer, a referral program): an export made ``for`` a recipient, or any integration
that sends PHI out. Every disclosure calls :func:`missing_consent` (through
``vIOP.storage.consents_sql.require_consent``) and is refused when any client named in it has no active
consent for that recipient and that kind of data. Disclosed documents carry :data:`REDISCLOSURE_NOTICE`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from vIOP.errors import BadRequest, Forbidden

REDISCLOSURE_NOTICE: Final = "42 CFR part 2 prohibits unauthorized use or disclosure of these records."
"""The short form of the 42 CFR 2.32 notice (allowed since the 2024 final rule)."""

MAX_TEXT_CHARS: Final = 200
_SPACES: Final = re.compile(r"\s+")
_INVISIBLE: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


class DataCategory(StrEnum):
    """What a consent lets go out. One value today; integrations add theirs."""

    ATTENDANCE = "attendance"


class ConsentRequired(Forbidden):
    """A disclosure with no active consent for some client in it (403 ``consent_required``)."""

    code = "consent_required"


@dataclass(frozen=True, slots=True)
class Consent:
    id: str
    client_id: str
    recipient: str
    purpose: str
    data: frozenset[DataCategory]
    created_by: str | None
    created_at: float
    expires_at: float
    revoked_at: float | None = None
    revoked_by: str | None = None

    def active(self, now: float) -> bool:
        return self.revoked_at is None and now < self.expires_at

    def covers(self, recipient: str, category: DataCategory, now: float) -> bool:
        return (
            self.active(now)
            and category in self.data
            and normalise_recipient(self.recipient) == normalise_recipient(recipient)
        )


def check_text(raw: str, what: str) -> str:
    text = _SPACES.sub(" ", unicodedata.normalize("NFC", raw)).strip()
    if not 1 <= len(text) <= MAX_TEXT_CHARS:
        raise BadRequest(f"{what} has 1 to {MAX_TEXT_CHARS} characters")
    if any(unicodedata.category(ch) in _INVISIBLE for ch in text):
        raise BadRequest(f"{what} cannot contain control or invisible characters")
    return text


def normalise_recipient(name: str) -> str:
    """How two spellings of a recipient are compared: NFKC, case-folded, spaces collapsed."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", name).casefold()).strip()


def parse_categories(raw: Iterable[str]) -> frozenset[DataCategory]:
    values = list(raw)
    if not values:
        raise BadRequest("data names at least one kind of record: " + ", ".join(DataCategory))
    try:
        return frozenset(DataCategory(v) for v in values)
    except ValueError:
        raise BadRequest("data may hold only: " + ", ".join(DataCategory)) from None


def missing_consent(
    client_ids: Sequence[str],
    consents: Mapping[str, Sequence[Consent]],
    recipient: str,
    category: DataCategory,
    now: float,
) -> list[str]:
    """The clients (in the given order, once each) without an active consent covering this disclosure."""
    return [
        client
        for client in dict.fromkeys(client_ids)
        if not any(c.covers(recipient, category, now) for c in consents.get(client, ()))
    ]


def refuse_unless_consented(missing: Sequence[str]) -> None:
    if missing:
        shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
        raise ConsentRequired(
            f"no active 42 CFR part 2 consent for this recipient and data for client(s): {shown}"
        )
