"""Active speaker in real browsers: Chromium's own audio-level header reaches the relay, which names the
speaker; the console highlights their tile and, on a phone-sized screen, puts it first.

The client's fake microphone plays a continuous tone from a WAV file; the clinician's is Chromium's default
fake device (a short beep twice a second: never a speaker)."""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

from tests.e2e.browser import Browsers
from tests.e2e.inner import flows
from tests.support import LiveServer
from vIOP.auth.permissions import Role

ROOM_TITLE = "Thursday group"


def tone_wav(path: Path, seconds: float = 2.0, rate: int = 48_000) -> Path:
    """A 440 Hz tone at about -14 dBFS, mono 16-bit (Chromium loops the file)."""
    samples = (int(6000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(int(seconds * rate)))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return path


async def test_the_speaking_client_is_highlighted_and_first_on_a_small_screen(
    server: LiveServer, people: Browsers, tmp_path: Path
) -> None:
    await flows.create_account(server, Role.CLINICIAN, "dr.speaker")
    clinician = await people.launch("clinician")
    talker = tone_wav(tmp_path / "tone.wav")
    alex = await people.launch("client-alex", extra_args=(f"--use-file-for-fake-audio-capture={talker}",))
    await flows.sign_in(clinician, "dr.speaker", "/console")
    await flows.create_room(clinician, ROOM_TITLE)
    await flows.open_room(clinician, ROOM_TITLE)
    link = await flows.create_invite(clinician, "Alex")
    await flows.client_joins(alex, link)
    await clinician.page.get_by_role("button", name="Admit Alex").click()
    await alex.wait_until("window.viop.phase() === 'in_room'", timeout_s=15)
    alex_id = await flows.participant_id(alex)
    await flows.wait_audio_flowing(clinician, alex_id)

    # Both pages are told Alex holds the floor; the console rings Alex's tile.
    named = f"window.viop.speaker().speaker === '{alex_id}'"
    await clinician.wait_until(named, timeout_s=10)
    await alex.wait_until(named, timeout_s=10)
    tile = f"document.querySelector('#grid > li[data-participant=\"{alex_id}\"]')"
    await clinician.wait_until(f"{tile}.classList.contains('speaking')")
    assert await clinician.page.evaluate("document.querySelectorAll('#grid > li.speaking').length") == 1
    # Wide screen: the grid keeps its order (the clinician's own tile came first).
    assert (
        await clinician.page.evaluate("document.querySelector('#grid > li').dataset.participant") != alex_id
    )
    await clinician.screenshot("alex-speaking")

    # A phone-sized screen: the last speakers' video first.
    await clinician.page.set_viewport_size({"width": 390, "height": 800})
    await clinician.wait_until("window.viop.speaker().compact === true")
    await clinician.wait_until(f"document.querySelector('#grid > li').dataset.participant === '{alex_id}'")
    await clinician.screenshot("alex-first-on-a-phone")
    await clinician.assert_accessible("console: active speaker, small screen")
