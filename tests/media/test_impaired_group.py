"""A short run of the issue-13 group on impaired links (``bench/impaired.py`` is the full-size version)."""

from __future__ import annotations

from bench.scenarios.impaired_group import CAP_BPS, close_group, everyone_hears_everyone, join_group
from bench.scenarios.impairment import DEFAULT_BURST_BYTES
from tests.media.harness import Room, wait_until
from vIOP.client.media import ReceiveMode, encode_opus_clip, encode_video_clip
from vIOP.ids import ParticipantId


async def test_the_impaired_group_caps_repairs_and_still_delivers_to_clean_receivers() -> None:
    room = Room()
    people = []

    async def join(pid: str, sdp: str) -> str:
        await room.relay.add_participant(ParticipantId(pid))
        return await room.relay.handle_offer(ParticipantId(pid), sdp)

    try:
        people = await join_group(
            join,
            room.peers,  # type: ignore[arg-type]  # the room answers renegotiation offers with these
            video=encode_video_clip(320, 180, 15, 4.0, bitrate=300_000),  # 4 streams: ~5x the cap
            audio=encode_opus_clip(1.0),
            receive=ReceiveMode.ENCODED,
        )
        by_role = {p.role: p for p in people}
        assert await everyone_hears_everyone(people, 30)
        lossdown = by_role["lossdown"].peer

        def lost_video() -> int:
            reports = lossdown.receive_report().values()
            return sum(r.recovered_by_rtx + r.packets_missing for r in reports if r.kind == "video")

        await wait_until(lambda: lost_video() >= 15, 40, "15 lost video packets at the lossy receiver")

        video = [r for r in lossdown.receive_report().values() if r.kind == "video"]
        recovered = sum(r.recovered_by_rtx for r in video)
        assert recovered >= 0.9 * lost_video(), [(r.recovered_by_rtx, r.packets_missing) for r in video]

        capped = by_role["cap250"].link.down.stats
        per_second = capped.bytes_per_second()  # what the capped receiver actually got, each second
        assert per_second and max(per_second) <= CAP_BPS / 8 + DEFAULT_BURST_BYTES
        assert by_role["cap250"].peer.counter.publishers("audio") == {p.pid for p in people} - {"pt_cap250"}

        clean = by_role["clean1"].peer.counter
        assert all(clean.frames(p.pid, "video") > 0 for p in people if p.role != "clean1")
    finally:
        await close_group(people)
        await room.close()
