"""The attendance page flags billing shortfalls: a client at two evening sessions (one cut short) in a week
still running "needs 3.5 h more by Sunday", with the short day named, in the program's time zone; a room
opened for a track occurrence shows the track's title. The browser's clock is injected (Playwright's clock)."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from tests.api import signal_support as ss
from tests.e2e.browser import Browsers
from tests.support import LiveServer
from vIOP.ids import RoomId, SessionId, new_participant_id
from vIOP.rooms.attendance import CloseMark, CloseReason, OpenMark
from vIOP.rooms.occurrences import OccurrenceRef
from vIOP.rooms.participant import Role as ParticipantRole

NEW_YORK = ZoneInfo("America/New_York")
PASSWORD = "correct horse battery staple"  # what ss.clinician gives the account


def local(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=NEW_YORK).timestamp()


class OneTrack:
    """The occurrence port as tracks provide it: this room is the Evening IOP's occurrence."""

    def __init__(self, room_id: RoomId, occurrence: OccurrenceRef) -> None:
        self.room_id, self.occurrence = room_id, occurrence

    async def occurrence_of(self, room_id: RoomId) -> OccurrenceRef | None:
        return self.occurrence if room_id == self.room_id else None


async def test_weekly_flags_say_what_is_missing_by_when(server: LiveServer, people: Browsers) -> None:
    host = await ss.clinician(server, "dr.billing")
    by_hand, occurrence = await ss.room(server, host), await ss.room(server, host)
    client = (await ss.invite(server, host, by_hand, "Dana Canary")).subject
    services = ss.services(server)
    ledger = services.rooms.attendance
    assert ledger is not None
    # Monday 2026-03-02 18:00-21:00 in a room made by hand, Wednesday 18:00-20:30 in the Evening IOP's
    # occurrence (New York time): 5.5 h of 9.
    for room, session, start, stop in (
        (by_hand.room_id, "ss_monday", "2026-03-02T18:00:00", "2026-03-02T21:00:00"),
        (occurrence.room_id, "ss_wednesday", "2026-03-04T18:00:00", "2026-03-04T20:30:00"),
    ):
        ids = (RoomId(room), SessionId(session), new_participant_id(), client)
        await ledger.open(OpenMark(*ids, role=ParticipantRole.CLIENT, at=local(start)), 60.0)
        await ledger.close(CloseMark(*ids, at=local(stop), reason=CloseReason.LEFT))
    evening = OccurrenceRef("tr_evening", "Evening IOP", local("2026-03-04T18:00:00"))
    services.occurrences = OneTrack(RoomId(occurrence.room_id), evening)
    try:
        clinician = await people.launch("clinician")
        # Thursday noon in New York: the week (Monday to Sunday) is still running.
        await clinician.page.clock.set_fixed_time(datetime.fromisoformat("2026-03-05T17:00:00+00:00"))
        await clinician.page.goto("/")
        await clinician.on_screen("login")
        await clinician.page.get_by_label("Username").fill("dr.billing")
        await clinician.page.get_by_label("Password").fill(PASSWORD)
        await clinician.page.get_by_role("button", name="Sign in").click()
        await clinician.page.wait_for_url("**/console", timeout=10_000)
        await clinician.page.goto("/attendance")
        await clinician.on_screen("attendance")
        await clinician.page.get_by_label("Program time zone").fill("America/New_York")
        await clinician.page.get_by_role("button", name="Show").click()
        # The page first showed the browser's own zone (UTC here); wait for the program's report.
        await clinician.wait_until(
            "document.querySelector('#weekly-body').dataset.timeZone === 'America/New_York'", timeout_s=30
        )
        row = f"document.querySelector('#weekly-body tr[data-subject=\"{client}\"]')"
        await clinician.wait_until(f"{row}?.dataset.minutesMissing === '210'", timeout_s=30)
        flags = await clinician.wait_until(f"{row}.querySelector('.flags').textContent")
        assert flags == (
            "needs 3.5 h more by Sunday; fewer than 3 days of 3 h; Wednesday 0.5 h short of 3 h"
        ), flags
        headings = await clinician.wait_until(
            "document.querySelectorAll('#sessions h3').length === 2 && "
            "[...document.querySelectorAll('#sessions h3')].map(h => h.textContent.split(' · '))"
        )
        assert [title for title, _ in headings] == [by_hand.room_id, "Evening IOP"], headings
        # Shown in program time (18:00 in New York), not the browser's UTC (23:00), in either clock style.
        assert all(re.search(r"\b(6:00\sPM|18:00)\b", when) for _, when in headings), headings
        await clinician.screenshot("attendance-flags")
        await clinician.assert_accessible("attendance with billing flags")
        await clinician.assert_clean()
    finally:
        services.occurrences = None
